"""Draws ``bench/out/compare.json`` (written by ``bench/compare.py``) as a PNG and prints
its tables in Markdown, as ``bench/RESULTS.md`` shows them.

    .venv/bin/python bench/chart.py [RESULTS_JSON] [OUT_PNG]

Panels: requests per second by gateway and concurrency (JSON and streamed answers, log
scale), p50 latency added over the direct upstream at c=1, latency by request body size,
and throughput by keys and models in the snapshot (when the run had ``--curves``).
"""

from __future__ import annotations

import json
import pathlib
import sys
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

ROOT = pathlib.Path(__file__).resolve().parent
DIRECT = "nginx upstream, direct"


def _points(entry: dict[str, Any], stream: bool) -> dict[int, dict[str, Any]]:
    return {p["connections"]: p for p in entry["points"] if p["stream"] == stream}


def print_tables(results: dict[str, Any]) -> None:
    """The side-by-side tables (JSON and streamed) in Markdown."""
    table = results["table"]
    direct = table.get(DIRECT)
    for stream in (False, True):
        print(f"\n{'Streamed (50 SSE chunks)' if stream else 'JSON'} chat completions:\n")
        print(
            "| gateway | c=1 req/s | c=1 p50 | p50 added | c=16 req/s | c=16 p99 | "
            "c=64 req/s | c=64 p99 | RSS after |"
        )
        print("|---|---|---|---|---|---|---|---|---|")
        base = _points(direct, stream) if direct else {}
        for name, entry in table.items():
            points = _points(entry, stream)
            if not points:
                print(f"| {name} | failed: {'; '.join(entry.get('failures', []))[:120]} |")
                continue

            def cell(c: int, key: str, unit: str = "", points: dict = points) -> str:  # type: ignore[type-arg]
                if c not in points:
                    return "—"
                value = points[c][key]
                return f"{value:,.0f}" if key == "rps" else f"{value:.3f}{unit}"

            added = (
                f"{points[1]['p50_ms'] - base[1]['p50_ms']:.3f} ms"
                if 1 in points and 1 in base and name != DIRECT
                else "—"
            )
            rss = f"{entry['rss_mb']:.0f} MB" if "rss_mb" in entry else "—"
            print(
                f"| {name} | {cell(1, 'rps')} | {cell(1, 'p50_ms', ' ms')} | {added} | "
                f"{cell(16, 'rps')} | {cell(16, 'p99_ms', ' ms')} | {cell(64, 'rps')} | "
                f"{cell(64, 'p99_ms', ' ms')} | {rss} |"
            )
    if "body_curve" in results:
        print("\nRequest body size, c=1, p50 added over direct:\n")
        print("| body | kind | bare forwarder | relaygate |")
        print("|---|---|---|---|")
        for row in results["body_curve"]:
            d = row[DIRECT]["p50_ms"]
            print(
                f"| {row['bytes']:,} B | {'stream' if row['stream'] else 'JSON'} | "
                f"{row['bare forwarder']['p50_ms'] - d:.3f} ms | "
                f"{row['relaygate']['p50_ms'] - d:.3f} ms |"
            )
    if "scale_curve" in results:
        print("\nKeys and models in the snapshot (JSON):\n")
        print("| keys | models | c=1 p50 | c=16 req/s | c=16 p99 | RSS |")
        print("|---|---|---|---|---|---|")
        for row in results["scale_curve"]:
            print(
                f"| {row['keys']:,} | {row['models']:,} | {row['c1']['p50_ms']:.3f} ms | "
                f"{row['c16']['rps']:,.0f} | {row['c16']['p99_ms']:.2f} ms | "
                f"{row['rss_mb']:.0f} MB |"
            )
    for store in ("sqlite", "postgresql"):
        samples = results.get(f"soak_{store}")
        if samples:
            print(
                f"\nRSS over requests ({store}): "
                + ", ".join(f"{n:,}: {mb:.1f} MB" for n, mb in samples)
            )


def main() -> None:
    source = pathlib.Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "out" / "compare.json"
    target = pathlib.Path(sys.argv[2]) if len(sys.argv) > 2 else ROOT / "compare.png"
    results = json.loads(source.read_text())
    print_tables(results)
    table: dict[str, Any] = results["table"]
    curves = "body_curve" in results and "scale_curve" in results
    fig, axes = plt.subplots(2 if curves else 1, 2, figsize=(13, 9 if curves else 4.8))
    axes = axes.flatten()
    gateways = [name for name in table if name != DIRECT]
    for ax, stream in zip(axes[:2], (False, True), strict=True):
        width = 0.8 / max(1, len(table))
        for index, name in enumerate(table):
            points = _points(table[name], stream)
            xs = [i + index * width for i, c in enumerate((1, 16, 64)) if c in points]
            ys = [points[c]["rps"] for c in (1, 16, 64) if c in points]
            ax.bar(xs, ys, width, label=name)
        ax.set_xticks([i + 0.4 - width / 2 for i in range(3)], ["c=1", "c=16", "c=64"])
        ax.set_yscale("log")
        ax.set_ylabel("requests per second (log)")
        ax.set_title(("streamed (50 SSE chunks)" if stream else "JSON") + " chat completions")
        ax.grid(axis="y", alpha=0.3)
    axes[0].legend(fontsize=8)
    if curves:
        ax = axes[2]
        for name in ("bare forwarder", "relaygate"):
            for stream, style in ((False, "-o"), (True, "--s")):
                rows = [r for r in results["body_curve"] if r["stream"] == stream]
                xs = [r["bytes"] / 1000 for r in rows]
                ys = [r[name]["p50_ms"] - r[DIRECT]["p50_ms"] for r in rows]
                ax.plot(xs, ys, style, label=f"{name}, {'stream' if stream else 'JSON'}")
        ax.axhline(2.0, color="red", lw=0.8, ls=":", label="target for 1 MB (2 ms)")
        ax.set_xscale("log")
        ax.set_xlabel("request body (kB, log)")
        ax.set_ylabel("p50 added over direct at c=1 (ms)")
        ax.set_title("Cost as the request body grows")
        ax.legend(fontsize=8)
        ax.grid(alpha=0.3)
        ax = axes[3]
        rows = results["scale_curve"]
        labels = [f"{r['keys']:,} keys\n{r['models']:,} models" for r in rows]
        ax.bar(range(len(rows)), [r["c16"]["rps"] for r in rows], color="tab:green")
        ax.set_xticks(range(len(rows)), labels, fontsize=8)
        ax.set_ylabel("relaygate requests per second, c=16")
        ax.set_title("Throughput as keys and models grow")
        ax.grid(axis="y", alpha=0.3)
    fig.suptitle(
        f"relaygate and peers, one process each, {results['date']} ({', '.join(gateways)})",
        fontsize=10,
    )
    fig.tight_layout()
    fig.savefig(target, dpi=110)
    print(f"chart: {target}")


if __name__ == "__main__":
    main()
