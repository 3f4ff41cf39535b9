"""The tables of docs/PERFORMANCE.md from one run's results: ``python -m bench.tables
[bench/out/results.json]`` prints, as Markdown, every system's row at c=16 (medians of the
rounds, min-max of throughput), the Q2 row of each system at every concurrency, and the targets
as the run judged them. Nothing here measures; it only formats what ``bench.run`` recorded.
"""

from __future__ import annotations

import json
import math
import statistics
import sys
from pathlib import Path

DEFAULT = Path(__file__).resolve().parent / "out" / "results.json"
ORDER = ("floor", "postgraphile", "postgraphile-roles", "gateway", "nochecks", "gateway2w")


def _cells(results: dict) -> dict[tuple[str, str, int], list[dict]]:
    cells = {}
    for key, runs in results["cells"].items():
        system, query, level = key.split("|")
        cells[(system, query, int(level))] = runs
    return cells


def _row(system: str, query: str, level: int, runs: list[dict]) -> str:
    def median(key: str) -> float:
        return statistics.median(run[key] for run in runs)

    low = min(run["throughput"] for run in runs)
    high = max(run["throughput"] for run in runs)
    app, database = median("cpu_per_request_ms"), median("db_cpu_per_request_ms")
    statements = median("statements")  # NaN where the system does not count them
    cells = [
        system,
        query,
        str(level),
        f"{median('throughput'):,.0f} ({low:,.0f}-{high:,.0f})",
        f"{median('p50'):.1f}",
        f"{median('p99'):.1f}",
        f"{app:.2f}",
        f"{database:.2f}",
        f"{app + database:.2f}",
        "" if math.isnan(statements) else f"{statements:.1f}",
        str(sum(run["errors"] for run in runs)),
        f"{sum(run['wrong'] for run in runs)}/{sum(run['verified'] for run in runs)}",
    ]
    return "| " + " | ".join(cells) + " |"


HEADER = (
    "| system | query | c | req/s (min-max) | p50 ms | p99 ms | app CPU ms | DB CPU ms "
    "| total CPU ms | SQL/req | non-200 | wrong/verified |\n"
    "|---|---|---|---|---|---|---|---|---|---|---|---|"
)


def _rank(system: str) -> int:
    return ORDER.index(system) if system in ORDER else len(ORDER)


def tables(results: dict) -> str:
    cells = _cells(results)
    systems = sorted({s for s, _, _ in cells}, key=lambda s: (_rank(s), s))
    levels = sorted({c for _, _, c in cells})
    queries = sorted({q for _, q, _ in cells})
    c16 = 16 if 16 in levels else levels[-1]
    at16 = [
        _row(s, q, c16, cells[(s, q, c16)])
        for q in queries
        for s in systems
        if (s, q, c16) in cells
    ]
    q2 = [
        _row(s, "Q2", c, cells[(s, "Q2", c)])
        for s in systems
        for c in levels
        if (s, "Q2", c) in cells
    ]
    targets = [
        f"| {t['target']} | {t['value']} | {'met' if t['met'] else '**not met**'} |"
        for t in results.get("targets", [])
    ]
    return "\n".join(
        [
            f"### Every system at c={c16}",
            "",
            HEADER,
            *at16,
            "",
            "### Q2 at every concurrency",
            "",
            HEADER,
            *q2,
            "",
            "### Targets",
            "",
            "| target | figure | |",
            "|---|---|---|",
            *targets,
        ]
    )


def main(argv: list[str]) -> None:
    path = Path(argv[0]) if argv else DEFAULT
    print(tables(json.loads(path.read_text())))


if __name__ == "__main__":
    main(sys.argv[1:])
