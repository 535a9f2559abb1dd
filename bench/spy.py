"""A py-spy profile of relaygate under load, summed by function: where its CPU goes per
request (issue 22).

    PYTHONPATH=src .venv/bin/python bench/spy.py [--stream] [--seconds 10] [--top 40]

Starts ``bench/compare.py``'s nginx upstream and relaygate (every feature on), drives it
with wrk at c=4, and records it with ``py-spy record --format raw`` (``pip install
py-spy``; needs ptrace rights over the process). Prints, per function, the samples spent
in it (self) and under it (total), as µs of CPU per request (samples ÷ rate ÷ requests
served): idle samples (the event loop waiting) are left out with ``--idle`` off, the
default.
"""

from __future__ import annotations

import argparse
import collections
import os
import pathlib
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import compare
from cpu_cost import cpu_seconds, served


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--stream", action="store_true")
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rate", type=int, default=250)
    parser.add_argument("--top", type=int, default=40)
    args = parser.parse_args()
    work = pathlib.Path(tempfile.mkdtemp(prefix="relaygate-spy-"))
    work.chmod(0o755)
    nginx = compare.Nginx(work, ["bench-json"], ["bench-stream"])
    gateway = compare.start_relaygate(work, nginx)[0]
    raw = work / "profile.txt"
    kind = "stream" if args.stream else "json"
    body = compare.request_body(args.stream)
    try:
        served(work, gateway.json_url, gateway.headers[kind], body, 2)  # warm
        pid = gateway.processes[0].pid
        spy = subprocess.Popen(
            [
                str(pathlib.Path(sys.executable).with_name("py-spy")),
                "record",
                "--format",
                "raw",
                "-r",
                str(args.rate),
                "-p",
                str(pid),
                "-o",
                str(raw),
                "-d",
                str(int(args.seconds) + 2),
                "--nonblocking",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        time.sleep(1)
        before = cpu_seconds(pid)
        count = served(work, gateway.json_url, gateway.headers[kind], body, args.seconds)
        used = cpu_seconds(pid) - before
        spy.wait(60)
    finally:
        gateway.stop()
        nginx.stop()
    selfs: collections.Counter[str] = collections.Counter()
    totals: collections.Counter[str] = collections.Counter()
    samples = 0
    for line in raw.read_text().splitlines():
        stack, _, n = line.rpartition(" ")
        frames = stack.split(";")
        if "select" in frames[-1] or "epoll" in frames[-1]:
            continue  # the loop waiting for events
        weight = int(n)
        samples += weight
        names = [f.split(" (")[0] + " (" + f.split(" (")[-1].split(":")[0] for f in frames]
        selfs[names[-1]] += weight
        for name in set(names):
            totals[name] += weight
    scale = 1e6 / args.rate / count
    print(
        f"{count:,} {kind} requests, {used / count * 1e6:.1f} µs CPU each (/proc); "
        f"{samples * scale:.1f} µs in samples"
    )
    print(f"{'self µs':>8} {'total µs':>9}  function")
    for name, _ in totals.most_common(args.top):
        print(f"{selfs[name] * scale:8.1f} {totals[name] * scale:9.1f}  {name}")
    print(f"(raw profile: {raw})")
    os.environ.pop("PYTHONPATH", None)


if __name__ == "__main__":
    main()
