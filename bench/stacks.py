"""Which server and upstream client to build relaygate on: the bare forwarder
(``bench/bare_forwarder.py``) on each stack, side by side over the same nginx upstream,
JSON chat completions at concurrency 1 and 16, rounds interleaved so the machine's noise
falls on all alike. Needs ``granian`` installed for its rows (``pip install granian``).

    .venv/bin/python bench/stacks.py [ROUNDS=3] [SECONDS=5]
"""

from __future__ import annotations

import pathlib
import statistics
import sys
import tempfile

import compare

STACKS = (("uvicorn", "aiohttp"), ("uvicorn", "httpx"), ("granian", "aiohttp"))


def main() -> None:
    rounds = int(sys.argv[1]) if len(sys.argv) > 1 else 3
    seconds = float(sys.argv[2]) if len(sys.argv) > 2 else 5
    work = pathlib.Path(tempfile.mkdtemp(prefix="relaygate-stacks-"))
    work.chmod(0o755)
    nginx = compare.Nginx(work, ["bench-json"], ["bench-stream"])
    gateways = []
    try:
        for server, client in STACKS:
            port = compare.free_port()
            process = compare.spawn(
                [
                    sys.executable,
                    str(compare.ROOT / "bench" / "bare_forwarder.py"),
                    str(port),
                    nginx.base(False)[:-3],
                    server,
                    client,
                ],
                work / f"{server}-{client}.log",
            )
            url = f"http://127.0.0.1:{port}/v1/chat/completions"
            gateway = compare.Gateway(f"{server} + {client}", url, url, processes=[process])
            try:
                compare.wait_http(f"http://127.0.0.1:{port}/v1/models", timeout=20)
            except RuntimeError as exc:
                print(f"{gateway.name}: could not start ({exc})")
                gateway.stop()
                continue
            gateways.append(gateway)
        body = compare.request_body(False)
        runs: dict[tuple[str, int], list[dict[str, float]]] = {}
        for _ in range(rounds):
            for connections in (1, 16):
                for gateway in gateways:
                    point = compare.wrk(work, gateway, False, connections, seconds, body)
                    runs.setdefault((gateway.name, connections), []).append(point)
        print("| stack | c=1 req/s | c=1 p50 | c=16 req/s | c=16 p99 |")
        print("|---|---|---|---|---|")
        for gateway in gateways:
            one, sixteen = runs[(gateway.name, 1)], runs[(gateway.name, 16)]
            print(
                f"| {gateway.name} | {statistics.median(p['rps'] for p in one):,.0f} | "
                f"{statistics.median(p['p50_ms'] for p in one):.3f} ms | "
                f"{statistics.median(p['rps'] for p in sixteen):,.0f} | "
                f"{statistics.median(p['p99_ms'] for p in sixteen):.2f} ms |"
            )
    finally:
        for gateway in gateways:
            gateway.stop()
        nginx.stop()


if __name__ == "__main__":
    main()
