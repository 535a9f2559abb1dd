"""What ``serve --workers N`` costs per request, in CPU time (the machine is shared, so
wall-clock throughput says little): issue 22, item 4.

1. ``metrics``: the metric updates one proxied JSON request makes (labels bound once, as
   the proxy does), in a process of its own (values in memory) and in prometheus-client's
   multiprocess mode (values in memory-mapped files), in µs of CPU per request.
2. ``limits``: one admission of a key and its user (both limited), counted in the
   process's memory and in the LMDB table the workers share.
3. ``serve``: CPU time per request of the whole ``relaygate serve`` process (user plus
   system, from /proc: the counters getrusage reads), JSON chat completions from wrk at 16
   connections over a static nginx upstream, every feature on (rate limits on the key
   and the user); for each source tree given with ``--src`` (e.g. main's and this
   branch's), one process, and with ``--workers 2`` (CPU of every worker summed).
   Rounds alternate between the trees, so both see the same load from the neighbours.

    PYTHONPATH=. .venv/bin/python bench/workers_cost.py --src /work/main/src --src src
"""

from __future__ import annotations

import argparse
import json
import os
import pathlib
import secrets
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

import httpx
from bench.compare import Nginx, free_port, request_body, wait_http, wrk

TICK = os.sysconf("SC_CLK_TCK")
MODEL = "bench-json"

METRICS_SNIPPET = """
import time
from relaygate.metrics import Metrics
m = Metrics()
bound = m.for_model("bench-json", "json")
by_class = m.proxy_requests.labels("2xx")
n = 200_000
start = time.process_time()
for _ in range(n):
    by_class.inc()
    bound.request(200).inc()
    bound.duration().observe(0.0004)
    bound.token_usage("input").observe(12)
    bound.tokens("input").inc(12)
    bound.token_usage("output").observe(30)
    bound.tokens("output").inc(30)
print((time.process_time() - start) / n * 1e6)
"""

LIMITS_SNIPPET = """
import sys, tempfile, time
from pathlib import Path
from relaygate.ratelimit_counters import LocalCounters, SharedCounters, Subject, create_shared_table
limits = (10**9, 2**31 - 1)
subjects = [Subject("rl:{user:1}:key:1", "k", *limits), Subject("rl:{user:1}", "u", *limits)]
if sys.argv[1] == "shared":
    table = Path(tempfile.mkdtemp()) / "ratelimit"
    create_shared_table(table)
    counters = SharedCounters(table, 60.0)
else:
    counters = LocalCounters(60.0)
n = 200_000
start = time.process_time()
for _ in range(n):
    counters.take(subjects, time.monotonic())
print((time.process_time() - start) / n * 1e6)
"""


def snippet(code: str, src: str, *args: str, **env: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", code, *args],
        env={**os.environ, "PYTHONPATH": src, **env},
        capture_output=True,
        text=True,
        check=True,
    )
    return float(out.stdout.strip())


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants alive now."""
    found, pids = [], [pid]
    while pids:
        current = pids.pop()
        try:
            children = pathlib.Path(f"/proc/{current}/task/{current}/children").read_text()
        except FileNotFoundError:
            continue
        found.append(current)
        pids += [int(c) for c in children.split()]
    return found


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` and its descendants alive now."""
    total = 0.0
    for current in tree(pid):
        fields = pathlib.Path(f"/proc/{current}/stat").read_text().rsplit(")", 1)[1].split()
        total += (int(fields[11]) + int(fields[12])) / TICK
    return total


def rss_mb(pid: int) -> list[float]:
    """Resident memory of ``pid`` and each descendant, in MB."""
    sizes = []
    for current in tree(pid):
        for line in pathlib.Path(f"/proc/{current}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                sizes.append(round(int(line.split()[1]) / 1024, 1))
    return sizes


class Serve:
    """``relaygate serve`` from source tree ``src`` with the nginx JSON port as an endpoint
    and a key limited (high) on itself and its user."""

    def __init__(self, work: pathlib.Path, nginx: Nginx, src: str, workers: int):
        self.port = free_port()
        admin = "rg-" + secrets.token_urlsafe(32)
        home = work / f"serve-{self.port}"
        home.mkdir()
        env = {k: v for k, v in os.environ.items() if not k.startswith("RELAYGATE_")}
        env.update(
            PYTHONPATH=src,
            RELAYGATE_ADMIN_KEY=admin,
            RELAYGATE_LOG_LEVEL="warning",
            RELAYGATE_SECRET_KEY=secrets.token_urlsafe(32),
        )
        args = ["serve", "--port", str(self.port), "--workers", str(workers)]
        self.log = (work / f"serve-{self.port}.log").open("w")
        self.process = subprocess.Popen(
            [sys.executable, "-m", "relaygate", *args],
            cwd=home,
            env=env,
            stdout=self.log,
            stderr=subprocess.STDOUT,
        )
        self.url = f"http://127.0.0.1:{self.port}"
        wait_http(self.url + "/readyz", timeout=120)
        with httpx.Client(
            base_url=self.url, headers={"authorization": f"Bearer {admin}"}, timeout=60
        ) as client:
            made = client.post(
                "/admin/api/v1/endpoints",
                json={"name": "json", "url": nginx.base(False), "api_key": "sk-upstream-bench"},
            )
            if made.status_code != 201:
                raise RuntimeError(f"endpoint not made: {made.status_code} {made.text}")
            endpoint = made.json()
            limits = {"requests_per_minute": 10**9, "tokens_per_minute": 2**31 - 1}
            user = client.post("/admin/api/v1/users", json={"name": "bench", **limits}).json()
            group = client.post("/admin/api/v1/groups", json={"name": "bench"}).json()
            groups = f"/admin/api/v1/groups/{group['id']}"
            client.put(f"{groups}/endpoints/{endpoint['id']}").raise_for_status()
            client.put(f"{groups}/users/{user['id']}").raise_for_status()
            self.key = client.post(
                "/admin/api/v1/keys", json={"name": "bench", "user_id": user["id"], **limits}
            ).json()["key"]
        deadline = time.monotonic() + 60
        while True:  # every worker serves the model and the key
            answers = [self.chat() for _ in range(8)]
            if all(a == 200 for a in answers):
                break
            if time.monotonic() > deadline:
                raise RuntimeError(f"relaygate never served {MODEL}: {answers}")
            time.sleep(0.5)

    def chat(self) -> int | str:
        answer = httpx.post(
            self.url + "/v1/chat/completions",
            headers={"authorization": f"Bearer {self.key}", "content-type": "application/json"},
            content=request_body(False),
        )
        return 200 if answer.status_code == 200 else f"{answer.status_code} {answer.text[:200]}"

    def measure(self, work: pathlib.Path, seconds: float) -> dict[str, Any]:
        from bench.compare import Gateway

        url = self.url + "/v1/chat/completions"
        gateway = Gateway("relaygate", url, url, {"json": {"Authorization": f"Bearer {self.key}"}})
        before = cpu_seconds(self.process.pid)
        result = wrk(work, gateway, False, 16, seconds, request_body(False))
        spent = cpu_seconds(self.process.pid) - before
        requests = result["rps"] * seconds
        return {
            "rps": result["rps"],
            "cpu_us_per_request": spent / requests * 1e6,
            "p99_ms": result["p99_ms"],
            "rss_mb": rss_mb(self.process.pid),
        }

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(60)
        self.log.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--src", action="append", required=True, help="a source tree (src/)")
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=3)
    args = parser.parse_args()
    results: dict[str, Any] = {"micro": {}, "serve": {}}
    srcs = [str(pathlib.Path(s).resolve()) for s in args.src]
    mine = srcs[-1]
    with tempfile.TemporaryDirectory() as multiproc:
        results["micro"]["metrics_us"] = {
            "one process": snippet(METRICS_SNIPPET, mine),
            "multiprocess": snippet(METRICS_SNIPPET, mine, PROMETHEUS_MULTIPROC_DIR=multiproc),
        }
    results["micro"]["admission_us"] = {
        "one process": snippet(LIMITS_SNIPPET, mine, "local"),
        "shared table": snippet(LIMITS_SNIPPET, mine, "shared"),
    }
    print(json.dumps(results["micro"], indent=2), flush=True)
    with tempfile.TemporaryDirectory() as tmp:
        work = pathlib.Path(tmp)
        work.chmod(0o755)  # nginx's workers (another user) read their answers from it
        nginx = Nginx(work, [MODEL], ["bench-stream"])
        try:
            runs: dict[str, list[dict[str, Any]]] = {}
            for _ in range(args.rounds):
                for src in srcs:
                    for workers in (1, 2):
                        if workers == 2 and src != mine:
                            continue
                        serve = Serve(work, nginx, src, workers)
                        try:
                            row = serve.measure(work, args.seconds)
                        finally:
                            serve.stop()
                        name = f"{src} workers={workers}"
                        runs.setdefault(name, []).append(row)
                        print(name, row, flush=True)
        finally:
            nginx.stop()
    for name, rows in runs.items():
        results["serve"][name] = {
            "cpu_us_per_request": statistics.median(r["cpu_us_per_request"] for r in rows),
            "rps": statistics.median(r["rps"] for r in rows),
            "runs": rows,
        }
    print(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
