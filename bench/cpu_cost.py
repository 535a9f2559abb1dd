"""relaygate's CPU time per request and per streamed chunk: figures a loaded machine
hardly moves, for before/after comparisons (issue 22).

    PYTHONPATH=src .venv/bin/python bench/cpu_cost.py [--before /path/to/other/src]
        [--only chunk|request] [--rounds 3] [--seconds 5] [--chunks 200] [--callgrind N]

**Per request.** ``bench/compare.py``'s nginx upstream and relaygate with every feature
on (group grants, rate limits, usage records, metrics), driven by ``wrk`` at c=4 for a
fixed time; the CPU time the relaygate process used (user + system, from
``/proc/PID/stat``) divided by the requests it served, for JSON answers and for streams
of 50 events (nginx sends them in one or two reads). With ``--before SRC``, a second
relaygate runs from another source tree (e.g. the main checkout) and the two are measured
in turn, round by round, so that the machine's load weighs on both alike.

With ``--callgrind N``, instructions instead of CPU time: relaygate runs under
``valgrind --tool=callgrind`` with its periodic work (syncs, change and batch polls)
pushed an hour away, instrumentation is switched on after warm-up, N requests are sent
one at a time, and what the process does over as long with no request is subtracted.
Slow (minutes per tree), but load does not change the counts.

**Per chunk.** In this process: ``Upstream``'s relay loop fed an event stream one event
per read (each chunk a separate object, as the socket gives them), to a ``send`` that
does nothing; CPU time (``time.process_time``) over the stream, less that of a
one-event stream, divided by the events. Plain (usage read, chunks passed unchanged)
and stripping (relaygate asked for the usage chunk, so it keeps it from the client). With
``--before``, the other tree's code is measured the same way in a subprocess.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import pathlib
import re
import statistics
import subprocess
import sys
import tempfile
import time
from typing import Any

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))

import compare


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far, in seconds."""
    fields = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def served(
    work: pathlib.Path, url: str, headers: dict[str, str], body: bytes, seconds: float
) -> int:
    """Drive ``url`` with wrk at c=4 for ``seconds``; returns the requests it completed."""
    script = work / "cpu.lua"
    script.write_text(compare.WRK_SCRIPT)
    body_file = work / f"cpu-body-{len(body)}.json"
    body_file.write_bytes(body)
    env = dict(
        os.environ,
        BENCH_BODY=str(body_file),
        BENCH_HEADERS="\n".join(f"{k}: {v}" for k, v in headers.items()),
    )
    out = subprocess.run(
        ["wrk", "-t1", "-c4", f"-d{seconds:g}s", "-s", str(script), url],
        capture_output=True,
        text=True,
        env=env,
        check=True,
    ).stdout
    if "Non-2xx" in out:
        raise RuntimeError(f"relaygate refused requests:\n{out}")
    match = re.search(r"(\d+) requests in", out)
    assert match is not None, out
    return int(match.group(1))


def per_request(args: argparse.Namespace) -> dict[str, Any]:
    work = pathlib.Path(tempfile.mkdtemp(prefix="relaygate-cpu-"))
    work.chmod(0o755)
    nginx = compare.Nginx(work, ["bench-json"], ["bench-stream"])
    trees = {"after": os.environ.get("PYTHONPATH", "")}
    if args.before:
        trees["before"] = args.before
    gateways: dict[str, compare.Gateway] = {}
    results: dict[str, Any] = {name: {"json": [], "stream": []} for name in trees}
    try:
        for name, tree in trees.items():
            os.environ["PYTHONPATH"] = tree
            gateways[name] = compare.start_relaygate(work, nginx)[0]
        for gateway in gateways.values():  # warm: imports, first series, caches
            for stream in (False, True):
                served(
                    work, gateway.json_url, gateway.headers["json"], compare.request_body(stream), 1
                )
        for round_ in range(args.rounds):
            for stream in (False, True):
                kind = "stream" if stream else "json"
                # Turns alternate, so that neither goes first (or last) every time.
                turns = list(gateways.items())
                for name, gateway in turns if round_ % 2 == 0 else turns[::-1]:
                    pid = gateway.processes[0].pid
                    before = cpu_seconds(pid)
                    count = served(
                        work,
                        gateway.stream_url if stream else gateway.json_url,
                        gateway.headers[kind],
                        compare.request_body(stream),
                        args.seconds,
                    )
                    used = (cpu_seconds(pid) - before) / count * 1e6
                    results[name][kind].append(used)
                    print(
                        f"  round {round_ + 1} {name:6} {kind:6} {count:>7,} requests  "
                        f"{used:7.1f} µs CPU each",
                        flush=True,
                    )
    finally:
        for gateway in gateways.values():
            gateway.stop()
        nginx.stop()
    return results


def per_request_instructions(args: argparse.Namespace) -> dict[str, dict[str, float]]:
    """Instructions per request of relaygate run under callgrind (``valgrind``), one tree
    after the other: instrumentation is switched on after start-up and warm-up, then
    ``--requests`` requests are sent one at a time, JSON then streamed, each counted from
    a dump of its own. Load on the machine does not change these counts."""
    import httpx

    spawn, wait_http = compare.spawn, compare.wait_http

    def under_valgrind(command: list[str], log: pathlib.Path, **kwargs: Any) -> Any:
        if command[1:3] == ["-m", "relaygate"]:
            # No periodic work of its own (syncs, change polls, batch polls, key-use
            # flushes) falls into a measured window: under valgrind one of them weighs
            # as much as a hundred requests. The usage records' writer runs as usual.
            kwargs["env"] = dict(
                kwargs["env"],
                RELAYGATE_SYNC_INTERVAL="3600",
                RELAYGATE_CHANGE_POLL_INTERVAL="3600",
                RELAYGATE_BATCH_POLL_INTERVAL="3600",
                RELAYGATE_KEY_USAGE_FLUSH_INTERVAL="3600",
            )
            out = log.with_suffix(".callgrind.%p")
            command = [
                "valgrind",
                "--tool=callgrind",
                "--instr-atstart=no",
                f"--callgrind-out-file={out}",
                *command,
            ]
        return spawn(command, log, **kwargs)

    compare.spawn = under_valgrind
    compare.wait_http = lambda url, timeout=600, headers=None: wait_http(url, 600, headers)
    work = pathlib.Path(tempfile.mkdtemp(prefix="relaygate-callgrind-"))
    work.chmod(0o755)
    nginx = compare.Nginx(work, ["bench-json"], ["bench-stream"])
    trees = {"after": os.environ.get("PYTHONPATH", "")}
    if args.before:
        trees["before"] = args.before
    results: dict[str, dict[str, float]] = {}
    try:
        for name, tree in trees.items():
            os.environ["PYTHONPATH"] = tree
            gateway = compare.start_relaygate(work, nginx)[0]
            pid = gateway.processes[0].pid
            results[name] = {}
            try:
                with httpx.Client(timeout=120) as client:
                    for stream in (False, True):
                        kind = "stream" if stream else "json"
                        body = compare.request_body(stream)
                        headers = {"content-type": "application/json", **gateway.headers[kind]}

                        url = gateway.json_url

                        def send(
                            count: int, body: bytes = body, headers: Any = headers, url: str = url
                        ) -> None:
                            for _ in range(count):
                                answer = client.post(url, content=body, headers=headers)
                                assert answer.status_code == 200, answer.text

                        send(20)  # warm: first series, caches, pools
                        subprocess.run(
                            ["callgrind_control", "-i", "on", str(pid)],
                            check=True,
                            capture_output=True,
                        )
                        subprocess.run(
                            ["callgrind_control", "-z", str(pid)], check=True, capture_output=True
                        )
                        began = time.monotonic()
                        send(args.requests)
                        time.sleep(1.5)  # the usage records' writer flushes its batch
                        spent = time.monotonic() - began
                        dump(pid, kind)
                        # What the process does meanwhile with no request (timers, loop
                        # lag probe, syncs), over as long, is left out.
                        time.sleep(spent)
                        dump(pid, kind + "-idle")
                        subprocess.run(
                            ["callgrind_control", "-i", "off", str(pid)],
                            check=True,
                            capture_output=True,
                        )
                        total = dumped(work, pid, kind) - dumped(work, pid, kind + "-idle")
                        results[name][kind] = total / args.requests
                        print(
                            f"  {name:6} {kind:6} {total / args.requests / 1e6:.3f} M "
                            "instructions per request",
                            flush=True,
                        )
            finally:
                gateway.stop()
    finally:
        compare.spawn, compare.wait_http = spawn, wait_http
        nginx.stop()
    return results


def dump(pid: int, name: str) -> None:
    """Have callgrind write the counts since the last dump (or zeroing), as ``name``."""
    subprocess.run(["callgrind_control", "-d", name, str(pid)], check=True, capture_output=True)


def dumped(work: pathlib.Path, pid: int, name: str) -> int:
    """The instructions of the dump ``name`` of ``pid`` in ``work``."""
    for path in work.glob(f"relaygate-*.callgrind.{pid}.*"):
        text = path.read_text(errors="replace")
        if f"desc: Trigger: dump {name}\n" in text:
            summary = re.search(r"^summary: (\d+)", text, re.M)
            assert summary is not None, path
            return int(summary.group(1))
    raise RuntimeError(f"no callgrind dump {name!r} of {pid} in {work}")


def stream_events(count: int) -> list[bytes]:
    """``count`` chat.completion.chunk events, then the usage chunk and ``[DONE]``, one
    bytes object each (as separate socket reads give them)."""
    events = []
    for n in range(count):
        event = {
            "id": "chatcmpl-bench",
            "object": "chat.completion.chunk",
            "created": 1764000000,
            "model": "bench",
            "choices": [{"index": 0, "delta": {"content": f"word{n} "}, "finish_reason": None}],
            "usage": None,
        }
        events.append(b"data: " + json.dumps(event, separators=(",", ":")).encode() + b"\n\n")
    usage = {
        "id": "chatcmpl-bench",
        "object": "chat.completion.chunk",
        "choices": [],
        "usage": {"prompt_tokens": 12, "completion_tokens": count, "total_tokens": 12 + count},
    }
    events.append(b"data: " + json.dumps(usage, separators=(",", ":")).encode() + b"\n\n")
    events.append(b"data: [DONE]\n\n")
    return events


async def relay_cpu(events: list[bytes], strip: bool, repeats: int) -> float:
    """Best CPU seconds of ``repeats`` runs of the relay loop over ``events``."""
    from relaygate.health import Health
    from relaygate.metrics import Metrics
    from relaygate.proxy.accounting import Exchange
    from relaygate.proxy.relay import Opened, Relay
    from relaygate.proxy.tokens import StreamTokens
    from relaygate.proxy.upstream import Upstream

    async def send(message: Any) -> None:
        return None

    async def chunks() -> Any:
        for event in events:
            yield event

    upstream = Upstream(None, Metrics(), Health())  # type: ignore[arg-type]
    best = float("inf")
    for _ in range(repeats):
        state = Exchange(time.perf_counter(), "bench")
        state.strip_usage = strip
        opened = Opened(200, "text/event-stream")
        opened.stream = StreamTokens(strip, 1024 * 1024)
        opened.chunks = chunks()
        relay = Relay(600.0, asyncio.get_running_loop().time() + 600)
        async with asyncio.timeout(None) as timer:
            relay.timer = timer
            start = time.process_time()
            await upstream._relay(send, opened, relay, state, None)  # type: ignore[arg-type]
            best = min(best, time.process_time() - start)
        assert opened.stream.tokens.prompt == 12, opened.stream.tokens.prompt
    return best


async def floor_cpu(events: list[bytes], repeats: int) -> float:
    """Best CPU seconds of the harness alone: the chunks iterated and sent, nothing else."""

    async def send(message: Any) -> None:
        return None

    async def chunks() -> Any:
        for event in events:
            yield event

    best = float("inf")
    for _ in range(repeats):
        start = time.process_time()
        async for chunk in chunks():
            await send({"type": "http.response.body", "body": chunk, "more_body": True})
        best = min(best, time.process_time() - start)
    return best


def per_chunk(chunks: int, repeats: int = 41) -> dict[str, float]:
    """µs of CPU per streamed chunk of the relay loop, plain and stripping."""
    import uvloop

    async def main() -> dict[str, float]:
        long, short = stream_events(chunks), stream_events(1)
        out = {}
        slope = await floor_cpu(long, repeats) - await floor_cpu(short, repeats)
        out["harness alone"] = slope / (chunks - 1) * 1e6
        for strip in (False, True):
            await relay_cpu(long, strip, 5)  # warm
            slope = await relay_cpu(long, strip, repeats) - await relay_cpu(short, strip, repeats)
            out["stripping" if strip else "plain"] = slope / (chunks - 1) * 1e6
        # The whole stream in one read (a coalesced stream, or nginx's): per event.
        whole, one = [b"".join(long)], [b"".join(short)]
        slope = await relay_cpu(whole, True, repeats) - await relay_cpu(one, True, repeats)
        out["stripping, one read"] = slope / (chunks - 1) * 1e6
        return out

    return uvloop.run(main())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--before", help="another source tree to measure side by side")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--seconds", type=float, default=5)
    parser.add_argument("--chunks", type=int, default=200)
    parser.add_argument("--only", choices=("chunk", "request"), help="one of the two measures")
    parser.add_argument(
        "--callgrind",
        type=int,
        default=0,
        metavar="N",
        help="per request: instructions counted under valgrind over N requests, not CPU time",
    )
    parser.add_argument("--json", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.json:  # the per-chunk measure of this interpreter's relaygate, for --before
        print(json.dumps(per_chunk(args.chunks)))
        return
    if args.only != "request":
        print("per streamed chunk (µs of CPU, best of 41, relay loop in process):")
        trees = {"after": os.environ.get("PYTHONPATH", "")}
        if args.before:
            trees["before"] = args.before
        for name, tree in trees.items():
            for _ in range(3):
                out = subprocess.run(
                    [sys.executable, __file__, "--json", "--chunks", str(args.chunks)],
                    env=dict(os.environ, PYTHONPATH=tree),
                    capture_output=True,
                    text=True,
                    check=True,
                ).stdout
                figures = json.loads(out)
                print(f"  {name:6} " + "  ".join(f"{k} {v:.2f} µs" for k, v in figures.items()))
    if args.only != "chunk":
        if args.callgrind:
            print("per request (instructions under callgrind, one request at a time):")
            args.requests = args.callgrind
            per_request_instructions(args)
            return
        print("per request (µs of CPU of the relaygate process, wrk c=4):", flush=True)
        results = per_request(args)
        for name, kinds in results.items():
            print(
                f"  {name:6} "
                + "  ".join(
                    f"{kind} median {statistics.median(v):.1f} µs" for kind, v in kinds.items() if v
                )
            )


if __name__ == "__main__":
    main()
