"""The report's plot, from bench/out/results.json: Q2's throughput, p99 latency and CPU per
request (server + PostgreSQL) against concurrency, one line per system.

    python -m bench.plot        # writes bench/out/latency.png (needs the bench extra: matplotlib)

bench.run calls it at the end of a run; run it alone to redraw the plot of the last run.
"""

from __future__ import annotations

import json
import statistics
from pathlib import Path

OUT = Path(__file__).resolve().parent / "out"


def plot(results: Path = OUT / "results.json", output: Path = OUT / "latency.png") -> bool:
    """Draw the plot; False (and nothing written) without matplotlib."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return False
    cells = json.loads(results.read_text())["cells"]
    by_key = {tuple(key.split("|")): runs for key, runs in cells.items()}
    systems = sorted({system for system, _, _ in by_key})
    levels = sorted({int(level) for _, _, level in by_key})

    def metric(system: str, c: int, *keys: str) -> float:
        runs = by_key.get((system, "Q2", str(c)))
        if not runs:
            return float("nan")
        return sum(statistics.median(run[key] for run in runs) for key in keys)

    panels = (
        ("Q2 throughput (req/s)", ("throughput",)),
        ("Q2 p99 latency (ms)", ("p99",)),
        ("Q2 CPU per request, server + DB (ms)", ("cpu_per_request_ms", "db_cpu_per_request_ms")),
    )
    figure, axes = plt.subplots(1, len(panels), figsize=(15, 4))
    for axis, (title, keys) in zip(axes, panels, strict=True):
        for system in systems:
            axis.plot(levels, [metric(system, c, *keys) for c in levels], marker="o", label=system)
        axis.set_xlabel("concurrency")
        axis.set_title(title)
        axis.set_xticks(levels)
        axis.grid(alpha=0.3)
        axis.legend(fontsize=8)
    figure.tight_layout()
    figure.savefig(output, dpi=110)
    return True


if __name__ == "__main__":
    if not plot():
        raise SystemExit("matplotlib is missing: install the bench extra")
    print(f"wrote {OUT / 'latency.png'}")
