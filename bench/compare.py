"""Side by side: relaygate, nginx proxy_pass, a bare Python forwarder, Portkey and LiteLLM.

One run on one machine starts a static nginx upstream (two ports: one answers chat
completions as JSON, the other as a stream of 50 SSE chunks plus a usage chunk; both
list their models at ``/v1/models``), then each gateway in turn, one process each, and
drives it with ``wrk`` at concurrency 1, 16 and 64, JSON and streamed. It reports
requests per second, p50 and p99 latency, the p50 added over the direct upstream, and
the gateway's resident memory (VmRSS of its process tree) after its runs. relaygate
runs with every feature on: a user's API key checked against group grants, rate limits
(in memory, set high enough never to refuse), usage records, metrics.

    bench/setup.sh                     # nginx, wrk, LiteLLM and Portkey (once)
    .venv/bin/python bench/compare.py  # about 10 minutes

Options: ``--duration S`` per point (default 10), ``--only relaygate,bare`` (a subset of
direct, nginx, relaygate, bare, portkey, litellm; ``nginx`` is nginx's own ``proxy_pass``
over a keep-alive upstream pool, the compiled limit of forwarding), ``--curves`` (also
the body-size and keys/models curves), ``--soak N`` (relaygate's RSS over N requests),
``--rounds N`` (every gateway of ``--only`` running at once, each point measured on each in turn, N
times; medians reported). A relaygate variant adds to its name, after ``+``: ``prices``
(the models priced), ``budget`` (priced, and a budget on the key too large to refuse),
``redis`` (counters in Redis), ``workers2`` (``serve --workers 2``), e.g.
``--only relaygate+prices,relaygate+budget --rounds 3`` (issue 17). Results go to
``bench/out/compare.json``; ``bench/chart.py`` draws them. A peer that cannot start is
reported as such.
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import re
import secrets
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from typing import Any

import httpx

ROOT = pathlib.Path(__file__).resolve().parent.parent
OUT = ROOT / "bench" / "out"
PEERS = pathlib.Path(os.environ.get("BENCH_PEERS", OUT / "peers"))
LITELLM = PEERS / "litellm" / "bin" / "python"
PORTKEY = PEERS / "portkey" / "node_modules" / "@portkey-ai" / "gateway" / "build"
CHUNKS = 50
SECRET_KEY = secrets.token_urlsafe(32)
CONCURRENCY = (1, 16, 64)
WRK_SCRIPT = """
local f = assert(io.open(os.getenv("BENCH_BODY"), "rb"))
wrk.method = "POST"
wrk.body = f:read("*a")
f:close()
wrk.headers["Content-Type"] = "application/json"
for line in string.gmatch(os.getenv("BENCH_HEADERS") or "", "[^\\n]+") do
  local name, value = line:match("^([^:]+):%s*(.*)$")
  wrk.headers[name] = value
end
"""


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def rss_mb(pid: int) -> float:
    """VmRSS of ``pid`` and all its descendants, in MB (MiB)."""
    total = 0
    pids = [pid]
    while pids:
        current = pids.pop()
        try:
            status = pathlib.Path(f"/proc/{current}/status").read_text()
            children = pathlib.Path(f"/proc/{current}/task/{current}/children").read_text()
        except FileNotFoundError:
            continue
        for line in status.splitlines():
            if line.startswith("VmRSS:"):
                total += int(line.split()[1])
        pids.extend(int(child) for child in children.split())
    return total / 1024


def wait_http(url: str, timeout: float = 60, headers: dict[str, str] | None = None) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            if httpx.get(url, timeout=1, headers=headers).status_code < 500:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    raise RuntimeError(f"{url} did not answer within {timeout:.0f} s")


# --- the static upstream ---------------------------------------------------------------


def completion_body() -> bytes:
    return json.dumps(
        {
            "id": "chatcmpl-bench",
            "object": "chat.completion",
            "created": 1764000000,
            "model": "bench",
            "choices": [
                {
                    "index": 0,
                    "message": {"role": "assistant", "content": "Hello from the static upstream."},
                    "finish_reason": "stop",
                }
            ],
            "usage": {"prompt_tokens": 12, "completion_tokens": 7, "total_tokens": 19},
        },
        separators=(",", ":"),
    ).encode()


def stream_body() -> bytes:
    def chunk(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> bytes:
        event = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1764000000,
            "model": "bench",
            "choices": [{"index": 0, "delta": delta, "finish_reason": finish}],
            **extra,
        }
        return b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n"

    events = [chunk({"role": "assistant", "content": ""})]
    events += [chunk({"content": f"word{n} "}) for n in range(CHUNKS - 2)]
    events.append(chunk({}, "stop"))
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "created": 1764000000,
        "model": "bench",
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": CHUNKS, "total_tokens": 62},
    }
    events.append(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return b"".join(events)


def models_body(names: list[str]) -> bytes:
    data = [{"id": n, "object": "model", "created": 1764000000, "owned_by": "bench"} for n in names]
    return json.dumps({"object": "list", "data": data}).encode()


class Nginx:
    """nginx with one worker: port ``json_port`` answers chat completions as JSON,
    ``stream_port`` as an event stream; each lists its models from a file."""

    def __init__(self, workdir: pathlib.Path, json_models: list[str], stream_models: list[str]):
        self.dir = workdir / "nginx"
        self.dir.mkdir()
        self.json_port, self.stream_port = free_port(), free_port()
        files = {
            "json-models.json": models_body(json_models),
            "stream-models.json": models_body(stream_models),
            "completion.json": completion_body(),
            "stream.txt": stream_body(),
        }
        for name, content in files.items():
            (self.dir / name).write_bytes(content)
        servers = []
        for port, models, answer, kind in (
            (self.json_port, "json-models.json", "completion.json", "application/json"),
            (self.stream_port, "stream-models.json", "stream.txt", "text/event-stream"),
        ):
            # A POST to a static file is refused (405), so the answer is sent by error_page.
            # A stream is sent chunked, as providers do (SSI drops the Content-Length).
            chunked = "ssi on; ssi_types text/event-stream;" if kind != "application/json" else ""
            servers.append(f"""
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        keepalive_requests 10000000;
        client_max_body_size 16m;
        location = /v1/models {{ default_type application/json; alias {self.dir}/{models}; }}
        location = /v1/chat/completions {{
            error_page 405 =200 /answer;
            default_type {kind};
            alias {self.dir}/{answer};
        }}
        location = /answer {{
            internal;
            default_type {kind};
            alias {self.dir}/{answer};
            {chunked}
        }}
    }}""")
        (self.dir / "nginx.conf").write_text(f"""
worker_processes 1;
pid {self.dir}/nginx.pid;
error_log {self.dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {self.dir}/body;
    proxy_temp_path {self.dir}/proxy;
    fastcgi_temp_path {self.dir}/fastcgi;
    uwsgi_temp_path {self.dir}/uwsgi;
    scgi_temp_path {self.dir}/scgi;
    {"".join(servers)}
}}
""")
        self.process = subprocess.Popen(
            ["nginx", "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-g", "daemon off;"]
        )
        wait_http(f"http://127.0.0.1:{self.json_port}/v1/models")

    def base(self, stream: bool) -> str:
        return f"http://127.0.0.1:{self.stream_port if stream else self.json_port}/v1"

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(10)


# --- gateways ---------------------------------------------------------------------------


@dataclass
class Gateway:
    """A gateway under test: where to send each kind of request, and with which headers."""

    name: str
    json_url: str
    stream_url: str
    headers: dict[str, dict[str, str]] = field(default_factory=dict)
    """Extra request headers by kind ("json", "stream")."""
    processes: list[subprocess.Popen[bytes]] = field(default_factory=list)
    version: str = ""

    def rss(self) -> float:
        return sum(rss_mb(p.pid) for p in self.processes)

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                process.send_signal(signal.SIGTERM)
        for process in self.processes:
            try:
                process.wait(30)
            except subprocess.TimeoutExpired:
                process.kill()


def spawn(args: list[str], log: pathlib.Path, **kwargs: Any) -> subprocess.Popen[bytes]:
    handle = log.open("wb")
    return subprocess.Popen(args, stdout=handle, stderr=subprocess.STDOUT, **kwargs)


VARIANTS = ("prices", "budget", "redis", "workers2")
"""What a relaygate variant's name may add after ``relaygate``, joined by ``+``."""


def start_relaygate(
    work: pathlib.Path,
    nginx: Nginx,
    *,
    database: pathlib.Path | None = None,
    variant: frozenset[str] = frozenset(),
) -> tuple[Gateway, str]:
    """relaygate serve with every feature on; returns the gateway and the user's API key.

    ``variant`` adds: ``prices``, both models priced at 1 per million tokens (so budgets
    would apply, but none is set); ``budget``, prices and a monthly budget of 1,000,000 on
    the key, too large ever to refuse; ``redis``, ``RELAYGATE_REDIS_URL`` (``BENCH_REDIS_URL``,
    default redis://127.0.0.1:6379) under a prefix of its own, which moves the rate limits'
    counters there too, and the budget's when it has one; ``workers2``, ``serve --workers
    2`` (two worker processes behind one port, sharing rate limits through their LMDB
    table and metrics through Prometheus' multiprocess directory).
    """
    port = free_port()
    admin_key = "rg-" + secrets.token_urlsafe(32)
    env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYGATE_")}
    env.update(
        RELAYGATE_ADMIN_KEY=admin_key,
        RELAYGATE_LOG_LEVEL="warning",
        RELAYGATE_SECRET_KEY=SECRET_KEY,
        RELAYGATE_MAX_BODY_BYTES=str(16 * 1024 * 1024),
    )
    if database is not None:
        env["RELAYGATE_DATABASE_URL"] = f"sqlite:///{database}"
    elif os.environ.get("BENCH_DATABASE_URL"):  # e.g. PostgreSQL instead of the SQLite default
        env["RELAYGATE_DATABASE_URL"] = os.environ["BENCH_DATABASE_URL"]
    if "redis" in variant:
        env["RELAYGATE_REDIS_URL"] = os.environ.get("BENCH_REDIS_URL", "redis://127.0.0.1:6379")
        env["RELAYGATE_REDIS_PREFIX"] = f"relaygate-bench-{secrets.token_hex(6)}"
    home = work / f"relaygate-{port}"  # its own data directory (SQLite file, key file)
    home.mkdir()
    process = spawn(
        [
            sys.executable,
            "-m",
            "relaygate",
            "serve",
            "--port",
            str(port),
            *(["--workers", "2"] if "workers2" in variant else []),
        ],
        work / f"relaygate-{port}.log",
        cwd=home,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/readyz")
    admin = httpx.Client(
        base_url=url, headers={"authorization": f"Bearer {admin_key}"}, timeout=600
    )
    existing = {e["name"]: e for e in admin.get("/admin/api/v1/endpoints").json()}

    def call(method: str, path: str, **kwargs: Any) -> Any:
        response = admin.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json() if response.content else None

    group = call("POST", "/admin/api/v1/groups", json={"name": f"bench-{port}"})
    for stream in (False, True):
        name = "stream" if stream else "json"
        endpoint = existing.get(name) or call(
            "POST",
            "/admin/api/v1/endpoints",
            json={"name": name, "url": nginx.base(stream), "api_key": "sk-upstream-bench"},
        )
        call("PUT", f"/admin/api/v1/groups/{group['id']}/endpoints/{endpoint['id']}")
    user = call(
        "POST",
        "/admin/api/v1/users",
        json={
            "name": f"bench-{port}",
            "requests_per_minute": 10**9,
            "tokens_per_minute": 2**31 - 1,
        },
    )
    call("PUT", f"/admin/api/v1/groups/{group['id']}/users/{user['id']}")
    created = call(
        "POST",
        "/admin/api/v1/keys",
        json={"user_id": user["id"], "requests_per_minute": 10**9, "tokens_per_minute": 2**31 - 1},
    )
    key = created["key"]
    from relaygate import __version__

    gateway = Gateway(
        "+".join(["relaygate", *(v for v in VARIANTS if v in variant)]),
        url + "/v1/chat/completions",
        url + "/v1/chat/completions",
        {"json": {"Authorization": f"Bearer {key}"}, "stream": {"Authorization": f"Bearer {key}"}},
        [process],
        __version__,
    )
    wait_models(gateway, key)
    if variant & {"prices", "budget"}:
        for model in call("GET", "/admin/api/v1/models"):
            prices = {"input_cost_per_million_tokens": 1, "output_cost_per_million_tokens": 1}
            call("PATCH", f"/admin/api/v1/models/{model['id']}", json=prices)
    if "budget" in variant:
        budget = {"budget": 1_000_000, "budget_period": "monthly"}
        call("PATCH", f"/admin/api/v1/keys/{created['id']}", json=budget)
        # One request by hand, and its spend seen, before the load: the budget is in force.
        check(gateway, False, request_body(False))
        deadline = time.monotonic() + 10
        while not call("GET", f"/admin/api/v1/keys/{created['id']}").get("budget_spent"):
            if time.monotonic() > deadline:
                raise RuntimeError("the key's budget shows no spend after a request")
            time.sleep(0.2)
    admin.close()
    return gateway, key


def wait_models(gateway: Gateway, key: str, in_a_row: int = 20) -> None:
    """Wait until the key sees both bench models ``in_a_row`` times running, each on a new
    connection: with ``--workers N`` each connection may reach another worker, and a
    worker sees a change (the key, its grants, the synced models) a moment after another."""
    base = gateway.json_url.rsplit("/chat/", 1)[0]
    deadline = time.monotonic() + 60
    seen = 0
    while time.monotonic() < deadline:
        listed = httpx.get(base + "/models", headers={"authorization": f"Bearer {key}"}).json()
        names = {m["id"] for m in listed.get("data", [])}
        seen = seen + 1 if {"bench-json", "bench-stream"} <= names else 0
        if seen >= in_a_row:
            return
        time.sleep(0.05 if seen else 0.2)
    raise RuntimeError(f"relaygate did not list the bench models: {listed}")


def start_bare(work: pathlib.Path, nginx: Nginx) -> Gateway:
    ports = free_port(), free_port()
    processes = [
        spawn(
            [sys.executable, str(ROOT / "bench" / "bare_forwarder.py"), str(port), upstream],
            work / f"bare-{port}.log",
        )
        for port, upstream in zip(
            ports, (nginx.base(False)[:-3], nginx.base(True)[:-3]), strict=True
        )
    ]
    for port in ports:
        wait_http(f"http://127.0.0.1:{port}/v1/models")
    return Gateway(
        "bare forwarder",
        f"http://127.0.0.1:{ports[0]}/v1/chat/completions",
        f"http://127.0.0.1:{ports[1]}/v1/chat/completions",
        processes=processes,
        version="uvicorn + httptools + uvloop, aiohttp",
    )


def start_portkey(work: pathlib.Path, nginx: Nginx) -> Gateway:
    if not (PORTKEY / "start-server.js").exists():
        raise RuntimeError(f"not installed ({PORTKEY}); run bench/setup.sh")
    port = free_port()
    process = spawn(
        ["node", str(PORTKEY / "start-server.js"), f"--port={port}", "--headless"],
        work / "portkey.log",
        cwd=work,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/")
    package = json.loads((PORTKEY.parent / "package.json").read_text())

    def headers(stream: bool) -> dict[str, str]:
        return {
            "Authorization": "Bearer sk-upstream-bench",
            "x-portkey-provider": "openai",
            "x-portkey-custom-host": nginx.base(stream),
        }

    return Gateway(
        "Portkey gateway",
        url + "/v1/chat/completions",
        url + "/v1/chat/completions",
        {"json": headers(False), "stream": headers(True)},
        [process],
        package["version"],
    )


def start_litellm(work: pathlib.Path, nginx: Nginx) -> Gateway:
    if not LITELLM.exists():
        raise RuntimeError(f"not installed ({LITELLM}); run bench/setup.sh")
    port = free_port()
    config = work / "litellm.yaml"
    entries = [
        f"  - model_name: {name}\n    litellm_params:\n      model: openai/{name}\n"
        f"      api_base: {nginx.base(stream)}\n      api_key: sk-upstream-bench\n"
        for name, stream in (("bench-json", False), ("bench-stream", True))
    ]
    config.write_text("model_list:\n" + "".join(entries))
    master_key = "sk-" + secrets.token_hex(32)
    env = dict(
        os.environ,
        LITELLM_LOCAL_MODEL_COST_MAP="True",
        LITELLM_LOG="ERROR",
        LITELLM_MASTER_KEY=master_key,
    )
    process = spawn(
        [
            str(LITELLM),
            "-m",
            "litellm.proxy.proxy_cli",
            "--config",
            str(config),
            "--port",
            str(port),
            "--num_workers",
            "1",
        ],
        work / "litellm.log",
        cwd=work,
        env=env,
    )
    url = f"http://127.0.0.1:{port}"
    wait_http(url + "/health/liveliness", timeout=180)
    version = subprocess.run(
        [str(LITELLM), "-c", "import importlib.metadata as m;print(m.version('litellm'))"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    auth = {"Authorization": f"Bearer {master_key}"}
    return Gateway(
        "LiteLLM proxy",
        url + "/v1/chat/completions",
        url + "/v1/chat/completions",
        {"json": auth, "stream": auth},
        processes=[process],
        version=version,
    )


def start_nginx_proxy(work: pathlib.Path, nginx: Nginx) -> Gateway:
    """nginx's ``proxy_pass`` in front of the upstream: the compiled limit of forwarding on
    this machine. One worker (as one relaygate process), HTTP/1.1 to the upstream over a
    keep-alive pool, and ``proxy_buffering off`` so that a stream's chunks go on as they
    come (as a gateway must pass them); no feature of a gateway, only the forwarding."""
    home = work / "nginx-proxy"
    home.mkdir()
    port = free_port()
    servers = []
    for name, upstream_port in (("json", nginx.json_port), ("stream", nginx.stream_port)):
        servers.append(f"""
    upstream {name} {{ server 127.0.0.1:{upstream_port}; keepalive 128; }}""")
    locations = "".join(
        f"""
        location = /{name}/v1/chat/completions {{
            proxy_pass http://{name}/v1/chat/completions;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_buffering off;
            proxy_request_buffering on;
        }}"""
        for name in ("json", "stream")
    )
    (home / "nginx.conf").write_text(f"""
worker_processes 1;
pid {home}/nginx.pid;
error_log {home}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {home}/body;
    proxy_temp_path {home}/proxy;
    fastcgi_temp_path {home}/fastcgi;
    uwsgi_temp_path {home}/uwsgi;
    scgi_temp_path {home}/scgi;
    {"".join(servers)}
    server {{
        listen 127.0.0.1:{port} reuseport backlog=4096;
        keepalive_requests 10000000;
        client_max_body_size 16m;
        client_body_buffer_size 16m;
        {locations}
    }}
}}
""")
    process = subprocess.Popen(
        ["nginx", "-p", str(home), "-c", str(home / "nginx.conf"), "-g", "daemon off;"],
        stdout=(work / "nginx-proxy.log").open("wb"),
        stderr=subprocess.STDOUT,
    )
    url = f"http://127.0.0.1:{port}"
    gateway = Gateway(
        "nginx proxy_pass",
        url + "/json/v1/chat/completions",
        url + "/stream/v1/chat/completions",
        processes=[process],
        version=subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
    )
    deadline = time.monotonic() + 30
    while True:  # it answers once it listens: a request by hand each way
        try:
            check(gateway, False, request_body(False))
            break
        except (httpx.HTTPError, RuntimeError):
            if time.monotonic() > deadline or process.poll() is not None:
                gateway.stop()
                raise
            time.sleep(0.2)
    return gateway


def direct(nginx: Nginx) -> Gateway:
    return Gateway(
        "nginx upstream, direct",
        nginx.base(False) + "/chat/completions",
        nginx.base(True) + "/chat/completions",
        version=subprocess.run(["nginx", "-v"], capture_output=True, text=True).stderr.strip(),
    )


# --- load ---------------------------------------------------------------------------------


def request_body(stream: bool, pad: int = 0) -> bytes:
    content = "Say hello." + (" lorem" * (pad // 6) if pad else "")
    return json.dumps(
        {
            "model": "bench-stream" if stream else "bench-json",
            "messages": [{"role": "user", "content": content}],
            "stream": stream,
        }
    ).encode()


_UNIT = {"us": 1e-3, "ms": 1.0, "s": 1000.0, "m": 60000.0}


def _ms(text: str) -> float:
    number, unit = re.fullmatch(r"([\d.]+)(us|ms|s|m)", text).groups()  # type: ignore[union-attr]
    return float(number) * _UNIT[unit]


def check(gateway: Gateway, stream: bool, body: bytes) -> None:
    """One request by hand: the answer must be whole before wrk hammers it."""
    kind = "stream" if stream else "json"
    url = gateway.stream_url if stream else gateway.json_url
    headers = {"content-type": "application/json", **gateway.headers.get(kind, {})}
    response = httpx.post(url, content=body, headers=headers, timeout=30)
    ok = response.status_code == 200 and (
        response.text.rstrip().endswith("[DONE]") if stream else '"choices"' in response.text
    )
    if not ok:
        raise RuntimeError(
            f"{gateway.name} {kind}: HTTP {response.status_code} {response.text[:300]}"
        )


def wrk(
    work: pathlib.Path,
    gateway: Gateway,
    stream: bool,
    connections: int,
    duration: float,
    body: bytes,
) -> dict[str, Any]:
    """Drive ``gateway`` with wrk; returns req/s, p50 and p99 (ms) and error counts."""
    kind = "stream" if stream else "json"
    script = work / "bench.lua"
    script.write_text(WRK_SCRIPT)
    body_file = work / f"body-{len(body)}-{kind}.json"
    body_file.write_bytes(body)
    env = dict(
        os.environ,
        BENCH_BODY=str(body_file),
        BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in gateway.headers.get(kind, {}).items()),
    )
    threads = 1 if connections == 1 else 2
    args = [
        "wrk",
        f"-t{threads}",
        f"-c{connections}",
        f"-d{duration:g}s",
        "--latency",
        "--timeout",
        "10s",
        "-s",
        str(script),
    ]
    out = subprocess.run(
        [*args, gateway.stream_url if stream else gateway.json_url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    latency = dict(re.findall(r"^\s+(50|99)(?:\.0+)?%\s+(\S+)\s*$", out, re.M))
    non_2xx = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)$", out, re.M)
    if "50" not in latency or "99" not in latency:
        raise RuntimeError(f"wrk measured no latency (every request failed?):\n{out}")
    return {
        "rps": float(re.search(r"Requests/sec:\s+([\d.]+)", out).group(1)),  # type: ignore[union-attr]
        "p50_ms": _ms(latency["50"]),
        "p99_ms": _ms(latency["99"]),
        "non_2xx": int(non_2xx.group(1)) if non_2xx else 0,
        "socket_errors": socket_errors.group(1) if socket_errors else "",
    }


def run_table(
    work: pathlib.Path, gateway: Gateway, duration: float, results: dict[str, Any]
) -> None:
    entry: dict[str, Any] = {"version": gateway.version, "points": [], "failures": []}
    results["table"][gateway.name] = entry
    for stream in (False, True):
        kind = "stream" if stream else "json"
        body = request_body(stream)
        try:
            check(gateway, stream, body)
        except Exception as exc:  # reported, never silently dropped
            entry["failures"].append(f"{kind}: {exc}")
            print(f"  {gateway.name:24} {kind:6} failed: {exc}", flush=True)
            continue
        for connections in CONCURRENCY:
            try:
                point = wrk(work, gateway, stream, connections, duration, body)
            except Exception as exc:
                entry["failures"].append(f"{kind} c={connections}: {exc}")
                print(f"  {gateway.name:24} {kind:6} c={connections:<3} failed: {exc}", flush=True)
                continue
            point.update(stream=stream, connections=connections)
            entry["points"].append(point)
            print(
                f"  {gateway.name:24} {kind:6} c={connections:<3} "
                f"{point['rps']:>10,.0f} req/s  p50 {point['p50_ms']:7.3f} ms  "
                f"p99 {point['p99_ms']:8.3f} ms  non-2xx {point['non_2xx']} "
                f"{point['socket_errors']}",
                flush=True,
            )
    if gateway.processes:
        entry["rss_mb"] = gateway.rss()
        print(f"  {gateway.name}: RSS {entry['rss_mb']:.1f} MB", flush=True)


def run_rounds(
    work: pathlib.Path,
    gateways: list[Gateway],
    duration: float,
    rounds: int,
    results: dict[str, Any],
) -> None:
    """Every point of every gateway, ``rounds`` times, the gateways taken in turn at each
    point (all of them running), so that a noisy machine weighs on each alike; reports
    each point's median req/s, p50 and p99 over the rounds, and keeps every round."""
    entries: dict[str, dict[str, Any]] = {}
    for gateway in gateways:
        entries[gateway.name] = results["table"][gateway.name] = {
            "version": gateway.version,
            "points": [],
            "rounds": [],
            "failures": [],
        }
    points = [(stream, c) for stream in (False, True) for c in CONCURRENCY]
    for gateway in gateways:
        for stream in (False, True):
            check(gateway, stream, request_body(stream))
    for round_ in range(rounds):
        for stream, connections in points:
            kind = "stream" if stream else "json"
            for gateway in gateways:
                entry = entries[gateway.name]
                try:
                    point = wrk(work, gateway, stream, connections, duration, request_body(stream))
                except Exception as exc:  # reported, never silently dropped
                    entry["failures"].append(f"round {round_ + 1} {kind} c={connections}: {exc}")
                    print(f"  {gateway.name:24} {kind:6} c={connections:<3} failed: {exc}")
                    continue
                point.update(stream=stream, connections=connections, round=round_ + 1)
                entry["rounds"].append(point)
                print(
                    f"  {round_ + 1} {gateway.name:24} {kind:6} c={connections:<3} "
                    f"{point['rps']:>10,.0f} req/s  p50 {point['p50_ms']:7.3f} ms  "
                    f"p99 {point['p99_ms']:8.3f} ms  non-2xx {point['non_2xx']} "
                    f"{point['socket_errors']}",
                    flush=True,
                )
    print("medians:")
    for gateway in gateways:
        entry = entries[gateway.name]
        for stream, connections in points:
            runs = [
                p
                for p in entry["rounds"]
                if p["stream"] == stream and p["connections"] == connections
            ]
            if not runs:
                continue
            median = {k: statistics.median(p[k] for p in runs) for k in ("rps", "p50_ms", "p99_ms")}
            median.update(
                stream=stream,
                connections=connections,
                non_2xx=sum(p["non_2xx"] for p in runs),
                rounds=len(runs),
            )
            entry["points"].append(median)
            print(
                f"  {gateway.name:24} {'stream' if stream else 'json':6} c={connections:<3} "
                f"{median['rps']:>10,.0f} req/s  p50 {median['p50_ms']:7.3f} ms  "
                f"p99 {median['p99_ms']:8.3f} ms  non-2xx {median['non_2xx']}",
                flush=True,
            )
        if gateway.processes:
            entry["rss_mb"] = gateway.rss()
            print(f"  {gateway.name}: RSS {entry['rss_mb']:.1f} MB", flush=True)


# --- curves -------------------------------------------------------------------------------


def body_curve(work: pathlib.Path, nginx: Nginx, duration: float, results: dict[str, Any]) -> None:
    """Latency at c=1 for request bodies of 10 KB, 100 KB and 1 MB, JSON and streamed."""
    relaygate, _ = start_relaygate(work, nginx)
    bare = start_bare(work, nginx)
    curve: list[dict[str, Any]] = []
    try:
        for size in (1_000, 10_000, 100_000, 1_000_000):
            for stream in (False, True):
                body = request_body(stream, size)
                row: dict[str, Any] = {"bytes": len(body), "stream": stream}
                for gateway in (direct(nginx), bare, relaygate):
                    check(gateway, stream, body)
                    point = wrk(work, gateway, stream, 1, duration, body)
                    row[gateway.name] = point
                print(
                    f"  body {len(body):>9,} B {'stream' if stream else 'json':6} "
                    + "  ".join(
                        f"{g}: p50 {row[g]['p50_ms']:.3f} ms"
                        for g in ("nginx upstream, direct", "bare forwarder", "relaygate")
                    ),
                    flush=True,
                )
                curve.append(row)
    finally:
        relaygate.stop()
        bare.stop()
    results["body_curve"] = curve


def seed_keys(database: pathlib.Path, count: int) -> None:
    """Add ``count`` API keys (of one new user) straight into relaygate's SQLite file."""
    import hashlib

    connection = sqlite3.connect(database)
    with connection:
        cursor = connection.execute(
            "INSERT INTO users (name, role, created_at, updated_at) VALUES (?, 'user', ?, ?)",
            (f"bench-keys-{count}", "2026-11-25 00:00:00.000000", "2026-11-25 00:00:00.000000"),
        )
        user_id = cursor.lastrowid
        connection.executemany(
            "INSERT INTO api_keys (name, user_id, prefix, key_hash, created_at) "
            "VALUES (?, ?, ?, ?, ?)",
            (
                (
                    f"k{n}",
                    user_id,
                    "rg-bench",
                    hashlib.sha256(secrets.token_bytes(16)).hexdigest(),
                    "2026-11-25 00:00:00.000000",
                )
                for n in range(count)
            ),
        )
    connection.close()


def scale_curve(work: pathlib.Path, duration: float, results: dict[str, Any]) -> None:
    """Throughput and latency with 1, 1,000 and 100,000 keys, and with 10,000 models."""
    curve: list[dict[str, Any]] = []
    for keys, models in ((1, 2), (1_000, 2), (100_000, 2), (1, 10_000), (100_000, 10_000)):
        run = work / f"scale-{keys}-{models}"
        run.mkdir()
        extra = [f"bench-extra-{n:05d}" for n in range(models - 2)]
        nginx = Nginx(run, ["bench-json", *extra], ["bench-stream"])
        database = run / "relaygate.db"
        env = dict(
            {k: v for k, v in os.environ.items() if not k.startswith("RELAYGATE_")},
            RELAYGATE_DATABASE_URL=f"sqlite:///{database}",
            RELAYGATE_SECRET_KEY=SECRET_KEY,
        )
        subprocess.run(
            [sys.executable, "-m", "relaygate", "db", "upgrade"],
            cwd=run,
            env=env,
            check=True,
            capture_output=True,
        )
        if keys > 1:
            seed_keys(database, keys - 1)
        gateway, _ = start_relaygate(run, nginx, database=database)
        try:
            row: dict[str, Any] = {"keys": keys, "models": models}
            for connections in (1, 16):
                point = wrk(run, gateway, False, connections, duration, request_body(False))
                row[f"c{connections}"] = point
            row["rss_mb"] = gateway.rss()
            print(
                f"  {keys:>7,} keys {models:>6,} models: c=1 p50 {row['c1']['p50_ms']:.3f} ms, "
                f"c=16 {row['c16']['rps']:,.0f} req/s p99 {row['c16']['p99_ms']:.2f} ms, "
                f"RSS {row['rss_mb']:.1f} MB",
                flush=True,
            )
            curve.append(row)
        finally:
            gateway.stop()
            nginx.stop()
    results["scale_curve"] = curve


def usage_backlog(gateway: Gateway) -> tuple[float, float]:
    """The usage records waiting to be written and those dropped so far (``/metrics``)."""
    base = gateway.json_url.split("/v1/", 1)[0]
    found = {"relaygate_usage_queue_depth": 0.0, "relaygate_usage_dropped_total": 0.0}
    for line in httpx.get(base + "/metrics", timeout=30).text.splitlines():
        name, _, value = line.partition(" ")
        if name in found:
            found[name] = float(value)
    return found["relaygate_usage_queue_depth"], found["relaygate_usage_dropped_total"]


def soak(work: pathlib.Path, nginx: Nginx, requests: int, results: dict[str, Any]) -> None:
    """relaygate's RSS while it serves ``requests`` JSON requests at c=16, sampled with
    the usage records waiting and dropped: (requests, MB, waiting, dropped)."""
    gateway, _ = start_relaygate(work, nginx)
    samples = [(0, gateway.rss(), *usage_backlog(gateway))]
    served = 0
    body = request_body(False)
    try:
        while served < requests:
            point = wrk(work, gateway, False, 16, 20, body)
            served += int(point["rps"] * 20)
            samples.append((served, gateway.rss(), *usage_backlog(gateway)))
            print(
                f"  {served:>9,} requests: RSS {samples[-1][1]:.1f} MB, usage records "
                f"waiting {samples[-1][2]:,.0f}, dropped {samples[-1][3]:,.0f}",
                flush=True,
            )
    finally:
        gateway.stop()
    store = "postgresql" if os.environ.get("BENCH_DATABASE_URL") else "sqlite"
    results[f"soak_{store}"] = samples


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--duration", type=float, default=10)
    parser.add_argument(
        "--only",
        default="direct,nginx,relaygate,bare,portkey,litellm",
        help="the gateways to measure, in order (default: all of them): direct, nginx "
        "(nginx proxy_pass), relaygate (or relaygate+VARIANT), bare, portkey, litellm",
    )
    parser.add_argument(
        "--rounds",
        type=int,
        default=0,
        help="run every gateway of --only at once, measured in turn at each point, N times",
    )
    parser.add_argument("--curves", action="store_true", help="body sizes, keys and models")
    parser.add_argument("--bodies", action="store_true", help="the body-size curve only")
    parser.add_argument("--scale", action="store_true", help="the keys/models curve only")
    parser.add_argument("--soak", type=int, default=0)
    parser.add_argument("--out", default=str(OUT / "compare.json"))
    parser.add_argument("--add", action="store_true", help="add to the results in --out")
    args = parser.parse_args()
    out = pathlib.Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    for tool in ("nginx", "wrk"):
        if shutil.which(tool) is None:
            sys.exit(f"{tool} is not installed; run bench/setup.sh")
    work = pathlib.Path(tempfile.mkdtemp(prefix="relaygate-bench-"))
    work.chmod(0o755)  # nginx's workers run as another user
    results: dict[str, Any] = {
        "date": time.strftime("%Y-%m-%d %H:%M"),
        "duration_s": args.duration,
        "cpus": os.cpu_count(),
        "commit": subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip(),
        "table": {},
        "unavailable": {},
    }
    if args.add and out.exists():
        results.update(json.loads(out.read_text()), added=time.strftime("%Y-%m-%d %H:%M"))

    def save() -> None:
        out.write_text(json.dumps(results, indent=2))

    nginx = Nginx(work, ["bench-json"], ["bench-stream"])
    starters = {
        "direct": lambda: direct(nginx),
        "nginx": lambda: start_nginx_proxy(work, nginx),
        "relaygate": lambda: start_relaygate(work, nginx)[0],
        "bare": lambda: start_bare(work, nginx),
        "portkey": lambda: start_portkey(work, nginx),
        "litellm": lambda: start_litellm(work, nginx),
    }

    def starter(name: str) -> Any:
        head, *added = name.split("+")
        if head == "relaygate" and added and set(added) <= set(VARIANTS):
            return lambda: start_relaygate(work, nginx, variant=frozenset(added))[0]
        return starters[name]

    names = list(filter(None, args.only.split(",")))
    try:
        if args.rounds:
            gateways: list[Gateway] = []
            try:
                for name in names:
                    print(f"starting {name}", flush=True)
                    gateways.append(starter(name)())
                run_rounds(work, gateways, args.duration, args.rounds, results)
            finally:
                for gateway in gateways:
                    gateway.stop()
                save()
            names = []
        for name in names:
            print(f"{name}:", flush=True)
            try:
                gateway = starter(name)()
            except Exception as exc:  # reported, never silently dropped
                print(f"  could not start: {exc}", flush=True)
                results["unavailable"][name] = str(exc)
                continue
            try:
                run_table(work, gateway, args.duration, results)
            except Exception as exc:
                print(f"  failed: {exc}", flush=True)
                results["unavailable"][name] = str(exc)
            finally:
                gateway.stop()
            save()
        if args.curves or args.bodies:
            print("body sizes:", flush=True)
            body_curve(work, nginx, args.duration, results)
            save()
        if args.curves or args.scale:
            print("keys and models:", flush=True)
            scale_curve(work, args.duration, results)
            save()
        if args.soak:
            print(f"memory over {args.soak:,} requests:", flush=True)
            soak(work, nginx, args.soak, results)
            save()
    finally:
        nginx.stop()
        save()
    print(f"results: {out}  (work files: {work})")


if __name__ == "__main__":
    main()
