"""The Batch API under load (issue 19): what a running batch does to the live path, how
fast a batch goes, and whether relaygate's memory stays flat in the number of requests.

One run on one machine starts the static nginx upstream of ``bench/compare.py`` (chat
completions answered as JSON, model ``bench-json``) and ``relaygate serve`` on its SQLite
defaults in a temporary directory (``tests.support.process.ServeProcess``; admin key,
secret key, log level warning; the batch settings at their defaults unless named). The
nginx port is added as an endpoint through the admin API and the admin key is the client
key. Then, in ``--rounds`` rounds (default 3; medians reported):

1. **Live alone**: wrk (2 threads, ``--latency``) posts JSON chat completions through
   relaygate at concurrency 8 for ``--duration`` seconds (default 20): req/s, p50, p99.
2. **Live while a batch runs**: a 10,000-request JSONL is uploaded (``POST /v1/files``)
   and a batch created (``POST /v1/batches``); once it is ``in_progress`` the same wrk run
   goes again. Meanwhile a thread samples every 0.5 s relaygate's VmRSS (its process
   tree, ``/proc/<pid>/status``), its CPU time and ``GET /v1/batches/{id}``. Reported: the
   live p50/p99, the batch's requests per second while wrk ran and between 10% and 90%
   of its requests done, the time from create to ``completed``, and the peak RSS.
3. **Batches alone**, each on a fresh relaygate: 1,000 requests and 10,000 requests at
   the default ``RELAYGATE_BATCH_CONCURRENCY`` (4), and 10,000 at 16: RSS before, at 10,
   50 and 90% done and at its peak, VmHWM (the kernel's high-water mark), the rate
   between 10% and 90%, the time to ``completed``, relaygate's CPU use meanwhile, and the
   requests sent upstream twice (usage records beyond one per request, read from its
   SQLite file once stopped).

Every batch must end ``completed`` with none failed. Each relaygate's log records are
counted (numbers masked) at the end.

    bench/setup.sh   # nginx and wrk (once)
    PYTHONPATH=. .venv/bin/python bench/batches.py [--rounds 3] [--duration 20]

``--requests`` and ``--small`` change the two sizes (10,000 and 1,000); ``--skip-live``
runs only step 3 (e.g. ``--rounds 1 --skip-live --small 10000 --requests 30000``).
Prints markdown tables and writes ``bench/out/batches-<UTC time>.json``.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import json
import os
import pathlib
import re
import secrets
import sqlite3
import statistics
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

import httpx
from bench.compare import Gateway, Nginx, check, request_body, rss_mb, wrk
from tests.support.process import ServeProcess, cli_env

OUT = pathlib.Path(__file__).parent / "out"
MODEL = "bench-json"
SECRET_KEY = secrets.token_urlsafe(32)
LIVE_CONCURRENCY = 8
SAMPLE_EVERY = 0.5
FINAL = ("completed", "failed", "expired", "cancelled")
TICK = os.sysconf("SC_CLK_TCK")


def cpu_seconds(pid: int) -> float:
    """User plus system CPU time of ``pid`` so far."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / TICK


def vm_hwm_mb(pid: int) -> float:
    for line in pathlib.Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return 0.0


def write_jsonl(work: pathlib.Path, count: int) -> pathlib.Path:
    path = work / f"requests-{count}.jsonl"
    if not path.exists():
        with path.open("w") as out:
            for n in range(count):
                body = {"model": MODEL, "messages": [{"role": "user", "content": f"Hi {n}."}]}
                line = {"custom_id": f"req-{n}", "method": "POST", "url": "/v1/chat/completions"}
                out.write(json.dumps({**line, "body": body}) + "\n")
    return path


class Server:
    """``relaygate serve`` in a directory of its own, with the nginx JSON port as an endpoint."""

    def __init__(self, work: pathlib.Path, nginx: Nginx, name: str, **extra: str) -> None:
        self.dir = home = work / name
        home.mkdir()
        key = "rg-" + secrets.token_urlsafe(32)
        extra.update(RELAYGATE_ADMIN_KEY=key, RELAYGATE_SECRET_KEY=SECRET_KEY)
        env = cli_env(home, RELAYGATE_LOG_LEVEL="warning", **extra)
        self.serve = ServeProcess(home, env).wait_ready()
        self.pid = self.serve.process.pid
        auth = {"Authorization": f"Bearer {key}"}
        self.client = httpx.Client(base_url=self.serve.url, headers=auth, timeout=120)
        url = self.serve.url + "/v1/chat/completions"
        self.gateway = Gateway(name, url, url, {"json": auth}, [self.serve.process])
        try:
            endpoint = {"name": "nginx", "url": nginx.base(False)}
            self.call("POST", "/admin/api/v1/endpoints", json=endpoint)
            deadline = time.monotonic() + 60
            while MODEL not in {m["id"] for m in self.call("GET", "/v1/models")["data"]}:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"relaygate does not list {MODEL}")
                time.sleep(0.2)
            check(self.gateway, False, request_body(False))
        except BaseException:
            self.stop()
            raise

    def call(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self.client.request(method, path, **kwargs)
        if response.status_code >= 300:
            raise RuntimeError(f"{method} {path}: HTTP {response.status_code} {response.text}")
        return response.json()

    def start_batch(self, path: pathlib.Path) -> tuple[str, float]:
        """Upload ``path`` and create its batch; its id and the monotonic time of creation."""
        with path.open("rb") as handle:
            files = {"file": (path.name, handle, "application/jsonl")}
            uploaded = self.call("POST", "/v1/files", data={"purpose": "batch"}, files=files)
        started = time.monotonic()
        body = {"input_file_id": uploaded["id"], "completion_window": "24h"}
        batch = self.call("POST", "/v1/batches", json={**body, "endpoint": "/v1/chat/completions"})
        return batch["id"], started

    def stop(self) -> dict[str, Any]:
        """Stop it; its exit code, usage records (one per request sent upstream) and log
        records (their first lines, numbers masked, counted)."""
        self.client.close()
        code = self.serve.stop()
        with contextlib.closing(sqlite3.connect(self.dir / "data" / "relaygate.db")) as db:
            usage = db.execute("SELECT count(*) FROM usage_records").fetchone()[0]
        lines = self.serve.output.splitlines()
        records = Counter(re.sub(r"\d+", "N", x[24:140]) for x in lines if x[:2] == "20")
        return {"exit": code, "usage_rows": usage, "log_lines": len(lines), "records": records}


@dataclass
class Sample:
    t: float
    rss_mb: float
    cpu_s: float
    done: int
    status: str


@dataclass
class Watch:
    """Samples relaygate's RSS, CPU time and the batch every 0.5 s until the batch ends."""

    server: Server
    batch_id: str
    started: float
    samples: list[Sample] = field(default_factory=list)
    final: dict[str, Any] = field(default_factory=dict)
    thread: threading.Thread | None = None

    def start(self) -> Watch:
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()
        return self

    def _run(self) -> None:
        headers = dict(self.server.client.headers)
        with httpx.Client(base_url=self.server.serve.url, headers=headers, timeout=30) as c:
            while True:
                now = time.monotonic()
                batch = c.get(f"/v1/batches/{self.batch_id}").json()
                counts = batch["request_counts"]
                done = counts["completed"] + counts["failed"]
                pid, status = self.server.pid, batch["status"]
                self.samples.append(
                    Sample(now - self.started, rss_mb(pid), cpu_seconds(pid), done, status)
                )
                if batch["status"] in FINAL:
                    self.final = batch
                    return
                time.sleep(max(0.0, SAMPLE_EVERY - (time.monotonic() - now)))

    def wait_status(self, status: str, timeout: float = 120) -> float:
        deadline = time.monotonic() + timeout
        while not self.samples or self.samples[-1].status != status:
            if time.monotonic() > deadline or (self.samples and self.samples[-1].status in FINAL):
                raise RuntimeError(f"batch {self.batch_id} never {status}: {self.samples[-1:]}")
            time.sleep(0.05)
        return self.samples[-1].t

    def join(self, timeout: float = 900) -> dict[str, Any]:
        assert self.thread is not None
        self.thread.join(timeout)
        final = self.final
        if final.get("status") != "completed" or final["request_counts"]["failed"]:
            raise RuntimeError(f"batch {self.batch_id} ended badly: {final}")
        return final

    def at(self, fraction: float, total: int) -> Sample:
        return next(s for s in self.samples if s.done >= fraction * total)


def run_batch(server: Server, path: pathlib.Path, count: int, live_s: float) -> dict[str, Any]:
    """One batch of ``count`` requests; with ``live_s``, wrk drives live traffic as it runs."""
    rss_before = rss_mb(server.pid)
    batch_id, started = server.start_batch(path)
    watch = Watch(server, batch_id, started).start()
    result: dict[str, Any] = {"requests": count, "rss_before_mb": rss_before}
    result["created_unix"] = time.time() - (time.monotonic() - started)
    if live_s:
        result["in_progress_after_s"] = watch.wait_status("in_progress")
        before = watch.samples[-1]
        live = live_load(server, live_s)
        after = watch.samples[-1]
        live["batch_rps_meanwhile"] = (after.done - before.done) / (after.t - before.t)
        live["batch_ran_throughout"] = after.status == "in_progress" and after.done < count
        result["live"] = live
    watch.join()
    low, high = watch.at(0.1, count), watch.at(0.9, count)
    result.update(
        rps_10_90=(high.done - low.done) / (high.t - low.t),
        cpu_10_90=(high.cpu_s - low.cpu_s) / (high.t - low.t),
        to_completed_wall_s=watch.samples[-1].t,
        rss_peak_mb=max(s.rss_mb for s in watch.samples),
        rss_at_mb=[watch.at(f, count).rss_mb for f in (0.1, 0.5, 0.9)],
        vm_hwm_mb=vm_hwm_mb(server.pid),
        samples=[[s.t, s.rss_mb, s.cpu_s, s.done, s.status] for s in watch.samples],
    )
    return result


def live_load(server: Server, seconds: float) -> dict[str, Any]:
    """wrk's JSON chat completions at ``LIVE_CONCURRENCY``, and relaygate's CPU meanwhile."""
    cpu = cpu_seconds(server.pid)
    result = wrk(server.dir, server.gateway, False, LIVE_CONCURRENCY, seconds, request_body(False))
    result["relaygate_cpu"] = (cpu_seconds(server.pid) - cpu) / seconds
    return result


def pick(row: Any, keys: tuple[str, ...]) -> Any:
    for key in keys:
        row = row[key]
    return row


def med(rows: list[dict[str, Any]], *keys: str) -> float:
    return statistics.median(float(pick(row, keys)) for row in rows)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--duration", type=float, default=20.0)
    parser.add_argument("--requests", type=int, default=10_000)
    parser.add_argument("--small", type=int, default=1_000)
    parser.add_argument("--skip-live", action="store_true", help="only the batches alone")
    args = parser.parse_args()
    load_before = os.getloadavg()
    work = pathlib.Path(tempfile.mkdtemp(prefix="relaygate-batches-"))
    work.chmod(0o755)  # nginx's workers run as another user
    nginx = Nginx(work, [MODEL], ["bench-stream"])
    big, small = write_jsonl(work, args.requests), write_jsonl(work, args.small)
    results: dict[str, Any] = {"alone": [], "with_batch": [], "fresh": [], "logs": {}}
    try:
        server = Server(work, nginx, "live")
        try:
            for round_ in range(0 if args.skip_live else args.rounds):
                print(f"round {round_ + 1}: live alone, then live with a batch", flush=True)
                results["alone"].append(live_load(server, args.duration))
                results["with_batch"].append(run_batch(server, big, args.requests, args.duration))
        finally:
            results["logs"]["live"] = server.stop()
        for round_ in range(args.rounds):
            for count, concurrency in ((args.small, 4), (args.requests, 4), (args.requests, 16)):
                name = f"fresh-{round_}-{count}-{concurrency}"
                print(f"round {round_ + 1}: {count} requests alone, concurrency {concurrency}")
                fresh = Server(work, nginx, name, RELAYGATE_BATCH_CONCURRENCY=str(concurrency))
                try:
                    row = run_batch(fresh, small if count == args.small else big, count, 0)
                finally:
                    results["logs"][name] = log = fresh.stop()
                twice = log["usage_rows"] - 1 - count  # one request by hand (``check``)
                results["fresh"].append({**row, "concurrency": concurrency, "sent_twice": twice})
    finally:
        nginx.stop()
    results["load_average"] = {"before": load_before, "after": os.getloadavg()}
    report(results, args)
    OUT.mkdir(exist_ok=True)
    stamp = datetime.datetime.now(datetime.UTC).strftime("%Y%m%dT%H%M%SZ")
    out = OUT / f"batches-{stamp}.json"
    out.write_text(json.dumps(results, indent=1))
    print(f"\nwrote {out}")


def cell(rows: list[dict[str, Any]], *keys: str, fmt: str = "{:.1f}", unit: str = "") -> str:
    """The median of ``rows``' value at ``keys``, then each round's in brackets."""
    each = ", ".join(fmt.format(pick(row, keys)) for row in rows)
    return f"{fmt.format(med(rows, *keys))}{unit} ({each})"


def report(results: dict[str, Any], args: argparse.Namespace) -> None:
    alone, loaded = results["alone"], results["with_batch"]
    live = [row["live"] for row in loaded]
    if alone:
        print(f"\n**Live, c={LIVE_CONCURRENCY}, {args.duration:g} s** (median (rounds))\n")
        print("| live load | req/s | p50 | p99 | relaygate CPU (cores) | non-2xx |")
        print("|---|---|---|---|---|---|")
        for name, rows in (("alone", alone), ("while a batch runs", live)):
            print(
                f"| {name} | {cell(rows, 'rps', fmt='{:,.0f}')} "
                f"| {cell(rows, 'p50_ms', fmt='{:.2f}', unit=' ms')} "
                f"| {cell(rows, 'p99_ms', fmt='{:.2f}', unit=' ms')} "
                f"| {cell(rows, 'relaygate_cpu', fmt='{:.2f}')} "
                f"| {sum(r['non_2xx'] for r in rows)} |"
            )
        ratio = [{"r": b["p99_ms"] / a["p99_ms"]} for a, b in zip(alone, live, strict=True)]
        print(f"\np99 with a batch / alone: {cell(ratio, 'r', fmt='{:.2f}')}; target <= 1.5")
        print(f"\n**The {args.requests:,}-request batch under that live load**\n")
        print("| batch req/s during wrk | 10-90% | create to completed | peak RSS | RSS before |")
        print("|---|---|---|---|---|")
        print(
            f"| {cell(live, 'batch_rps_meanwhile', fmt='{:.0f}')} "
            f"| {cell(loaded, 'rps_10_90', fmt='{:.0f}')} "
            f"| {cell(loaded, 'to_completed_wall_s', unit=' s')} "
            f"| {cell(loaded, 'rss_peak_mb', unit=' MB')} | {cell(loaded, 'rss_before_mb')} |"
        )
        throughout = sum(bool(r["batch_ran_throughout"]) for r in live)
        print(f"\nThe batch ran throughout wrk's run in {throughout} of {len(live)} rounds.")
    print("\n**Batches alone, each on a fresh relaygate** (median (rounds))\n")
    print(
        "| requests | concurrency | RSS before | RSS at 10 / 50 / 90% done | peak RSS | VmHWM "
        "| peak - before | req/s 10-90% | create to completed | relaygate CPU | sent twice |"
    )
    print("|---|---|---|---|---|---|---|---|---|---|---|")
    for count, concurrency in sorted({(r["requests"], r["concurrency"]) for r in results["fresh"]}):
        rows = [
            r for r in results["fresh"] if (r["requests"], r["concurrency"]) == (count, concurrency)
        ]
        for r in rows:
            r["growth_mb"] = r["rss_peak_mb"] - r["rss_before_mb"]
        at = " / ".join(
            f"{statistics.median(r['rss_at_mb'][i] for r in rows):.1f}" for i in range(3)
        )
        print(
            f"| {count:,} | {concurrency} | {med(rows, 'rss_before_mb'):.1f} MB "
            f"| {at} MB "
            f"| {med(rows, 'rss_peak_mb'):.1f} MB | {cell(rows, 'vm_hwm_mb', unit=' MB')} "
            f"| {cell(rows, 'growth_mb', unit=' MB')} | {cell(rows, 'rps_10_90', fmt='{:.0f}')} "
            f"| {cell(rows, 'to_completed_wall_s', unit=' s')} | {med(rows, 'cpu_10_90'):.2f} "
            f"| {sum(r['sent_twice'] for r in rows)} |"
        )
    print(
        f"\nload average before {results['load_average']['before']}, after "
        f"{results['load_average']['after']}"
    )
    for name, log in results["logs"].items():
        print(f"{name}: exit {log['exit']}, {log['usage_rows']} usage records, log records:")
        print("".join(f"    {n} x {text}\n" for text, n in log["records"].most_common()))


if __name__ == "__main__":
    main()
