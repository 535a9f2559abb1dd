"""Soak: relaygate under mixed traffic for minutes, one of its two upstreams failing.

Starts a real ``relaygate serve`` (SQLite, its defaults) and two loopback upstreams that
both serve ``gpt-soak``: ``steady`` always answers, ``flaky`` alternates 20 s of normal
service with 20 s of failing before the first byte (HTTP 500, 503 with ``Retry-After: 1``,
429, connections dropped without an answer, and stalls past its 1 s first-byte timeout).
``CONCURRENCY`` clients send chat completions for ``DURATION`` seconds, half of them
streamed, and check every answer (a stream must end with ``[DONE]``). Reports requests
served, client-visible errors by kind, and relaygate's resident memory (VmRSS) after
start, after a warm-up minute, and at the end, sampled every minute.

    PYTHONPATH=. .venv/bin/python bench/soak.py [DURATION_SECONDS]

Failures after the first byte cannot be failed over (the answer has begun), so the flaky
upstream only fails before it: every client-visible error here is a relaygate defect.
"""

from __future__ import annotations

import asyncio
import collections
import itertools
import pathlib
import random
import secrets
import sys
import tempfile
import time

import aiohttp
import httpx
from tests.support.faults import FaultServer
from tests.support.process import ServeProcess, cli_env

DURATION = float(sys.argv[1]) if len(sys.argv) > 1 else 600.0
CONCURRENCY = 8
PHASE = 20.0
WARM_UP = 60.0
FAILURES = ("status:500", "status:503:1", "status:429", "drop", "stall")


def rss_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


async def client(
    session: aiohttp.ClientSession,
    url: str,
    key: str,
    stop_at: float,
    counts: collections.Counter[str],
) -> None:
    headers = {"authorization": f"Bearer {key}"}
    for n in itertools.count():
        if time.monotonic() >= stop_at:
            return
        stream = n % 2 == 0
        body = {
            "model": "gpt-soak",
            "messages": [{"role": "user", "content": "hello " * random.randint(1, 200)}],
            "stream": stream,
        }
        try:
            async with session.post(url, json=body, headers=headers) as response:
                data = await response.read()
                if response.status != 200:
                    counts[f"http_{response.status}"] += 1
                elif stream and not data.rstrip().endswith(b"data: [DONE]"):
                    counts["stream_incomplete"] += 1
                elif not stream and b'"choices"' not in data:
                    counts["bad_body"] += 1
                else:
                    counts["ok_stream" if stream else "ok"] += 1
                    counts[response.headers.get("x-relaygate-endpoint", "?")] += 1
        except (aiohttp.ClientError, TimeoutError) as exc:
            counts[f"client_{type(exc).__name__}"] += 1


async def drive(server: ServeProcess, key: str) -> tuple[collections.Counter[str], list[str]]:
    counts: collections.Counter[str] = collections.Counter()
    samples = [f"0 s: {rss_mb(server.process.pid):.1f} MB (after start)"]
    started = time.monotonic()
    stop_at = started + DURATION
    timeout = aiohttp.ClientTimeout(total=60)
    async with aiohttp.ClientSession(timeout=timeout) as session:
        url = server.url + "/v1/chat/completions"
        clients = [
            asyncio.create_task(client(session, url, key, stop_at, counts))
            for _ in range(CONCURRENCY)
        ]
        next_sample = started + WARM_UP
        while time.monotonic() < stop_at:
            await asyncio.sleep(1)
            if time.monotonic() >= next_sample:
                elapsed = time.monotonic() - started
                samples.append(f"{elapsed:.0f} s: {rss_mb(server.process.pid):.1f} MB")
                next_sample += 60
        await asyncio.gather(*clients)
    samples.append(f"{time.monotonic() - started:.0f} s: {rss_mb(server.process.pid):.1f} MB (end)")
    return counts, samples


def main() -> None:
    tmp = pathlib.Path(tempfile.mkdtemp())
    key = "rg-" + secrets.token_urlsafe(32)
    env = cli_env(tmp, RELAYGATE_ADMIN_KEY=key, RELAYGATE_LOG_LEVEL="warning")
    steady, flaky = FaultServer("steady").start(), FaultServer("flaky").start()
    steady.chunks = flaky.chunks = 20
    began = time.monotonic()

    def flaky_fault() -> str:
        failing = int((time.monotonic() - began) / PHASE) % 2 == 1
        return random.choice(FAILURES) if failing else "ok"

    flaky.fault = flaky_fault
    server = ServeProcess(tmp, env).wait_ready()
    try:
        admin = httpx.Client(base_url=server.url, headers={"authorization": f"Bearer {key}"})
        for name, upstream in (("steady", steady), ("flaky", flaky)):
            fields = {"name": name, "url": upstream.url}
            if name == "flaky":
                fields["timeouts"] = {"first_byte": 1}
            created = admin.post("/admin/api/v1/endpoints", json=fields)
            assert created.status_code == 201, created.text
        models = admin.get("/admin/api/v1/models").json()
        for model in models:
            admin.patch(f"/admin/api/v1/models/{model['id']}", json={"alias": "gpt-soak"})
        user_key = admin.post("/admin/api/v1/keys", json={"name": "soak"}).json()["key"]
        counts, samples = asyncio.run(drive(server, user_key))
        health = {e["name"]: e["health"] for e in admin.get("/admin/api/v1/endpoints").json()}
        admin.close()
    finally:
        code = server.stop()
        steady.stop()
        flaky.stop()
    served = counts["ok"] + counts["ok_stream"]
    errors = {
        k: v for k, v in counts.items() if not k.startswith("ok") and k not in ("steady", "flaky")
    }
    print(f"duration {DURATION:.0f} s, {CONCURRENCY} clients, half streamed (20 chunks)")
    print(f"requests served: {served} ({counts['ok']} JSON, {counts['ok_stream']} streams)")
    print(f"answered by: steady {counts['steady']}, flaky {counts['flaky']}")
    print(f"requests that reached the flaky upstream: {flaky.requests}")
    print(f"client-visible errors: {sum(errors.values())} {dict(errors)}")
    print("relaygate RSS: " + "; ".join(samples))
    print(f"flaky health at the end: {health['flaky']['state']}")
    print(f"relaygate exit code after SIGTERM: {code}")


if __name__ == "__main__":
    main()
