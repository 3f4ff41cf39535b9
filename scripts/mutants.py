#!/usr/bin/env python3
"""Mutation testing of the guards: does breaking a guard make a test fail?

Two parts (docs/TESTING.md has the commands, the timings and the last scores):

* ``scripts/mutants.py mutmut [MUTANT ...]`` runs mutmut 3 (the ``mutation`` extra) on the
  Python guards named in ``[tool.mutmut]`` of pyproject.toml, against one PostgreSQL cluster this
  script starts for the whole run (``TEST_DATABASE_URL``), one mutant at a time. mutmut switches
  mutants inside functions at call time; it cannot reach what runs at import (the policy table's
  data, module constants) nor SQL.
* ``scripts/mutants.py run [--only ID ...] [--area AREA ...]`` applies each hand-made mutant of
  ``MUTANTS`` (scripts/mutant_catalog.py: file, exact old text, new text, why) to a scratch copy
  of the work tree, runs the mutant's tests there (``PYTHONPATH`` = the copy's src and root, so
  each test session migrates a fresh database from the copy's SQL), and records killed /
  survived / timed out in ``docs/mutants/hand-made.json`` (committed). ``scripts/mutants.py
  list`` prints the mutants. After a mutmut run, ``docs/mutants/mutmut.json`` (committed) holds
  every mutmut mutant's outcome and the commit it was measured at.

Every mutant must be killed by a test, or be listed in docs/TESTING.md as equivalent or
unreachable with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from pathlib import Path

from mutant_catalog import MUTANTS, ROOT, Mutant, declaration_errors

# The results, committed: docs/TESTING.md quotes them, and anyone can check them here.
RESULTS = ROOT / "docs" / "mutants" / "hand-made.json"
MUTMUT_RESULTS = ROOT / "docs" / "mutants" / "mutmut.json"


def _copy_tree(destination: Path) -> None:
    """The work tree as it is now (tracked and untracked files, not ignored ones)."""
    listed = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        check=True,
    ).stdout.split(b"\0")
    for name in listed:
        if not name:
            continue
        source = ROOT / name.decode()
        if not source.is_file():
            continue
        target = destination / name.decode()
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(source, target)


@contextmanager
def _database() -> Iterator[str]:
    """A superuser URL: TEST_DATABASE_URL, or a cluster started for this run and removed after."""
    configured = os.environ.get("TEST_DATABASE_URL")
    if configured:
        yield configured
        return
    sys.path.insert(0, str(ROOT / "src"))
    from gateway.dev.embedded import EmbeddedPostgres

    directory = Path(tempfile.mkdtemp(prefix="gateway-mutants-pg-"))
    cluster = EmbeddedPostgres(directory, fast=True)
    url = cluster.start()
    try:
        yield url
    finally:
        cluster.stop()
        shutil.rmtree(directory, ignore_errors=True)


def _drop_test_databases(url: str) -> None:
    import asyncpg

    async def drop() -> None:
        connection = await asyncpg.connect(url)
        try:
            names = await connection.fetch(
                "select datname from pg_database where datname like 'gateway_test_%'"
            )
            for row in names:
                await connection.execute(f'drop database if exists "{row[0]}" with (force)')
        finally:
            await connection.close()

    asyncio.run(drop())


def _pytest(copy: Path, url: str, tests: tuple[str, ...], timeout: float) -> tuple[str, float]:
    environment = {
        **os.environ,
        "PYTHONPATH": f"{copy / 'src'}{os.pathsep}{copy}",
        "TEST_DATABASE_URL": url,
    }
    command = [sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests]
    started = time.monotonic()
    try:
        completed = subprocess.run(  # noqa: S603
            command,
            cwd=copy,
            env=environment,
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired:
        return "timed out", time.monotonic() - started
    finally:
        _drop_test_databases(url)
    elapsed = time.monotonic() - started
    if completed.returncode == 0:
        return "survived", elapsed
    if completed.returncode == 1:
        failed = [
            line.split()[1]
            for line in completed.stdout.splitlines()
            if line.startswith(("FAILED tests/", "ERROR tests/"))
        ]
        return f"killed by {failed[0] if failed else '?'}", elapsed
    tail = "\n".join((completed.stdout + completed.stderr).splitlines()[-15:])
    return f"error (pytest exit {completed.returncode}): {tail}", elapsed


def _apply(copy: Path, item: Mutant) -> str:
    path = copy / item.path
    original = path.read_text(encoding="utf-8")
    found = original.count(item.old)
    if found != 1:
        raise SystemExit(f"{item.id}: the old text occurs {found} times in {item.path}")
    path.write_text(original.replace(item.old, item.new), encoding="utf-8")
    return original


def _selected(ids: list[str] | None, areas: list[str] | None) -> list[Mutant]:
    chosen = [m for m in MUTANTS if (not ids or m.id in ids) and (not areas or m.area in areas)]
    unknown = set(ids or ()) - {m.id for m in MUTANTS}
    if unknown:
        raise SystemExit(f"unknown mutants: {', '.join(sorted(unknown))}")
    return chosen


def run(ids: list[str] | None, areas: list[str] | None, timeout: float) -> int:
    chosen = _selected(ids, areas)
    errors = [error for item in chosen for error in declaration_errors(item)]
    if errors:  # every declaration applies, to what runs, before anything runs
        raise SystemExit("\n".join(errors))
    head = _head()  # the work tree is copied now: its commit is the one measured
    if _dirty():
        print("warning: uncommitted changes are measured under HEAD's name", file=sys.stderr)
    previous = json.loads(RESULTS.read_text()) if RESULTS.exists() else {}
    results: dict[str, dict] = previous.get("mutants", {})
    started = time.monotonic()
    with tempfile.TemporaryDirectory(prefix="gateway-mutants-") as scratch, _database() as url:
        copy = Path(scratch)
        _copy_tree(copy)
        baseline = tuple(sorted({test for item in chosen for test in item.tests}))
        outcome, elapsed = _pytest(copy, url, baseline, timeout * 4)
        print(f"baseline ({len(baseline)} test files): {outcome} in {elapsed:.0f} s", flush=True)
        if outcome != "survived":
            print("the unmutated tree must pass its tests first", file=sys.stderr)
            return 2
        for number, item in enumerate(chosen, 1):
            original = _apply(copy, item)
            try:
                outcome, elapsed = _pytest(copy, url, item.tests, timeout)
            finally:
                (copy / item.path).write_text(original, encoding="utf-8")
            results[item.id] = {**asdict(item), "outcome": outcome, "seconds": round(elapsed, 1)}
            print(f"[{number}/{len(chosen)}] {item.id}: {outcome} ({elapsed:.0f} s)", flush=True)
    # Which commit each run measured: the earlier runs' entries stay, this run's is added.
    commits = previous.get("commits") or (
        {previous["commit"]: "earlier runs"} if previous.get("commit") else {}
    )
    every = len(chosen) == len(MUTANTS)
    commits[head] = "every mutant" if every else ", ".join(item.id for item in chosen)
    RESULTS.parent.mkdir(exist_ok=True)
    RESULTS.write_text(
        json.dumps({"commit": head, "commits": commits, "mutants": results}, indent=2),
        encoding="utf-8",
    )
    print(f"\n{len(chosen)} mutants in {time.monotonic() - started:.0f} s")
    report(results)
    return 0


def report(results: dict[str, dict]) -> None:
    by_area: dict[str, Counter] = {}
    for item in MUTANTS:
        if item.id in results:
            outcome = results[item.id]["outcome"]
            kind = "killed" if outcome.startswith("killed") else outcome.split(" (")[0]
            by_area.setdefault(item.area, Counter())[kind] += 1
    print("\n| area | killed / total | survived | timed out |\n|---|---|---|---|")
    for area, counts in by_area.items():
        total = sum(counts.values())
        print(
            f"| {area} | {counts['killed']} / {total} | {counts['survived']} | "
            f"{counts['timed out']} |"
        )
    for item in MUTANTS:
        outcome = results.get(item.id, {}).get("outcome")
        if outcome and not outcome.startswith("killed"):
            print(f"- {item.id} ({item.area}): {outcome}: {item.why}")


def _without_verdict(mutmut: Path) -> list[str]:
    """The mutants docs/mutants/mutmut.json holds no verdict for (or "no tests"): those a run
    stopped before, and every mutant of a function changed since (its hash differs), as mutmut
    made them from the code as it is now (``mutants/`` generated first)."""
    if not MUTMUT_RESULTS.exists():
        raise SystemExit(f"--unchecked: {MUTMUT_RESULTS.relative_to(ROOT)} does not exist yet")
    saved = json.loads(MUTMUT_RESULTS.read_text(encoding="utf-8"))
    verdicts = saved["mutants"]
    hashes = saved.get("function_hashes", {})
    now = _function_hashes()
    names = []
    for name in _mutmut_outcomes(mutmut):
        function = name.rsplit("__mutmut_", 1)[0]
        changed = now.get(function) != hashes.get(function)
        # "no tests" too: tests written since may reach the function now.
        if changed or verdicts.get(name, "not checked") in ("not checked", "no tests"):
            names.append(name)
    return names


def _mutmut_environment(url: str) -> dict[str, str]:
    # mutmut puts mutants/src first on its own sys.path; the tests that run the gateway command
    # in a process of their own need it too, else they import the editable install.
    (ROOT / "mutants" / "src").mkdir(parents=True, exist_ok=True)
    copy = ROOT / "mutants"
    return {
        **os.environ,
        "TEST_DATABASE_URL": url,
        "PYTHONPATH": f"{copy / 'src'}{os.pathsep}{copy}",
    }


def _survivors() -> list[str]:
    """The mutants that survived the last export (to run again once tests were added)."""
    saved = json.loads(MUTMUT_RESULTS.read_text(encoding="utf-8"))
    return [name for name, status in saved["mutants"].items() if status == "survived"]


_GENERATE = """
import os, sys
import mutmut.__main__ as m
from mutmut.utils.file_utils import copy_also_copy_files, copy_src_dir, setup_source_paths
m.set_mutant_under_test("mutant_generation")
os.makedirs("mutants", exist_ok=True)
copy_src_dir()
copy_also_copy_files()
setup_source_paths()
m.store_lines_covered_by_tests()
m.create_mutants(int(sys.argv[1]))
m.collect_or_load_stats(m.get_mutant_runner(int(sys.argv[1])))
"""


def run_mutmut(
    names: list[str], children: int = 1, unchecked: bool = False, survivors: bool = False
) -> int:
    mutmut = Path(sys.executable).parent / "mutmut"
    if not mutmut.exists():
        raise SystemExit(
            "mutmut is not installed: "
            ".tools/uv/bin/uv sync --frozen --inexact --extra dev --extra mutation"
        )
    started = time.monotonic()
    head = _head()
    with _database() as url:
        environment = _mutmut_environment(url)
        if unchecked or survivors:
            # Generate the mutants and the test map of the code as it is, running none (what
            # ``mutmut run`` does first; ``print-time-estimates`` alone copies no tests).
            subprocess.run(  # noqa: S603
                [sys.executable, "-c", _GENERATE, str(children)],
                cwd=ROOT,
                env=environment,
                check=True,
            )
            if unchecked:
                names = [*names, *_without_verdict(mutmut)]
            if survivors:
                known = _mutmut_outcomes(mutmut)
                names = [*names, *(name for name in _survivors() if name in known)]
            names = sorted(set(names))
            print(f"{len(names)} mutants to run", flush=True)
            if not names:
                return 0
        command = [str(mutmut), "run", "--max-children", str(children), *names]
        code = subprocess.run(command, cwd=ROOT, env=environment, check=False).returncode  # noqa: S603
    print(f"\nmutmut run: exit {code} in {time.monotonic() - started:.0f} s")
    export_mutmut(mutmut, head)
    return code


def kill_mutmut(names: list[str], tests: list[str], timeout: float) -> int:
    """Run each named mutmut mutant against ``tests`` only (mutmut's own switch,
    ``MUTANT_UNDER_TEST``, over the mutants of ``mutants/`` and today's tests) and record in
    mutmut's state each one they kill, then export. Quicker than ``mutmut NAME`` after writing
    a test for a survivor: mutmut would run every test that calls the function. A mutant these
    tests leave alive keeps the verdict it had: only the whole selection can show it alive."""
    if not (ROOT / "mutants" / "src").exists():
        raise SystemExit("no mutants/ here: run `scripts/mutants.py mutmut` first")
    killed: dict[str, list[str]] = {}
    with _database() as url:
        environment = {
            **os.environ,
            "TEST_DATABASE_URL": url,
            "PYTHONPATH": f"{ROOT / 'mutants' / 'src'}{os.pathsep}{ROOT}",
        }
        for name in names:
            command = [sys.executable, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider"]
            try:
                code = subprocess.run(  # noqa: S603
                    [*command, *tests],
                    cwd=ROOT,
                    env={**environment, "MUTANT_UNDER_TEST": name},
                    capture_output=True,
                    timeout=timeout,
                    check=False,
                ).returncode
            except subprocess.TimeoutExpired:
                code = None
            verdict = "killed" if code == 1 else "not killed here" if code == 0 else f"exit {code}"
            print(f"{name}: {verdict}", flush=True)
            if code == 1:
                module = name.split(".x")[0]
                killed.setdefault(module, []).append(name)
    for module, killed_names in killed.items():
        meta = ROOT / "mutants" / "src" / (module.replace(".", "/") + ".py.meta")
        data = json.loads(meta.read_text(encoding="utf-8"))
        for name in killed_names:
            data["exit_code_by_key"][name] = 1
        meta.write_text(json.dumps(data, indent=4), encoding="utf-8")
    export_mutmut(Path(sys.executable).parent / "mutmut", _head())  # the tests' commit
    return 0


def _head() -> str:
    return subprocess.run(
        ["git", "rev-parse", "--short=7", "HEAD"],  # noqa: S607
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout.strip()


def _dirty() -> bool:
    return bool(
        subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],  # noqa: S607
            cwd=ROOT,
            capture_output=True,
            text=True,
            check=False,
        ).stdout.strip()
    )


def _mutmut_outcomes(mutmut: Path) -> dict[str, str]:
    """Every mutant mutmut knows now, with its status ("not checked" before it ran)."""
    listed = subprocess.run(  # noqa: S603
        [str(mutmut), "results", "--all", "true"],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    outcomes: dict[str, str] = {}
    for line in listed.splitlines():
        name, _, status = line.strip().rpartition(": ")
        if name and status:
            outcomes[name] = status
    return outcomes


def _function_hashes() -> dict[str, str]:
    """Each mutated function's hash, as mutmut keeps it beside its mutants (module.function)."""
    hashes: dict[str, str] = {}
    for meta in (ROOT / "mutants" / "src").rglob("*.py.meta"):
        module = ".".join(
            meta.relative_to(ROOT / "mutants" / "src").with_suffix("").with_suffix("").parts
        )
        data = json.loads(meta.read_text(encoding="utf-8"))
        for function, digest in data.get("hash_by_function_name", {}).items():
            hashes[f"{module}.{function}"] = digest
    return hashes


def export_mutmut(mutmut: Path, commit: str | None = None) -> None:
    """Every mutmut mutant's outcome, by module, to docs/mutants/mutmut.json.

    A verdict from an earlier export is kept for a mutant this run did not check when its
    function is unchanged (same hash), so a long measurement can be resumed elsewhere
    (``mutmut --unchecked``); ``commit`` is the commit mutmut copied the code and tests from,
    ``commits`` every commit the verdicts were measured at.
    """
    outcomes = _mutmut_outcomes(mutmut)
    hashes = _function_hashes()
    # The commit the run copied the code and tests from (HEAD when it started), else the one
    # mutmut's first run recorded; never HEAD at export.
    if commit is None:
        stats = json.loads((ROOT / "mutants" / "mutmut-stats.json").read_text(encoding="utf-8"))
        commit = str(stats.get("git_commit") or "")[:7]
    commits = [commit]
    if MUTMUT_RESULTS.exists():
        saved = json.loads(MUTMUT_RESULTS.read_text(encoding="utf-8"))
        kept = 0
        for name, status in saved.get("mutants", {}).items():
            function = name.rsplit("__mutmut_", 1)[0]
            same = hashes.get(function) == saved.get("function_hashes", {}).get(function)
            if outcomes.get(name) == "not checked" and status != "not checked" and same:
                outcomes[name] = status
                kept += 1
        # mutmut keeps its own verdicts of unchanged functions too: the file names every run.
        commits = [*saved.get("commits", [saved.get("commit")]), commit]
        if kept:
            print(f"{kept} verdicts kept from the last export (their functions are unchanged)")
    by_module: dict[str, Counter] = {}
    for name, status in outcomes.items():
        by_module.setdefault(name.split(".x")[0], Counter())[status] += 1
    MUTMUT_RESULTS.parent.mkdir(parents=True, exist_ok=True)
    MUTMUT_RESULTS.write_text(
        json.dumps(
            {
                "commit": commit,
                "commits": sorted(set(commits), key=commits.index),
                "modules": {module: dict(counts) for module, counts in sorted(by_module.items())},
                "mutants": dict(sorted(outcomes.items())),
                "function_hashes": {
                    function: hashes[function]
                    for function in sorted({name.rsplit("__mutmut_", 1)[0] for name in outcomes})
                    if function in hashes
                },
            },
            indent=1,
        ),
        encoding="utf-8",
    )
    for module, counts in sorted(by_module.items()):
        print(f"{module}: {dict(counts)}")


def mutmut_table() -> str:
    """docs/TESTING.md's table of the mutmut verdicts in docs/mutants/mutmut.json, by module,
    and the survivors by function (what the text there explains one by one)."""
    saved = json.loads(MUTMUT_RESULTS.read_text(encoding="utf-8"))
    columns = ("killed", "survived", "no tests", "not checked")
    lines = [
        "| module | killed | survived | no tests | not yet run |",
        "|---|---|---|---|---|",
    ]
    total: Counter = Counter()
    for module, counts in saved["modules"].items():
        total.update(counts)
        cells = " | ".join(str(counts.get(column, 0)) for column in columns)
        lines.append(f"| `{module.removeprefix('gateway.')}` | {cells} |")
    cells = " | ".join(f"**{total.get(column, 0)}**" for column in columns)
    lines.append(f"| **all** | {cells} |")
    survivors: dict[str, list[str]] = {}
    for name, status in saved["mutants"].items():
        if status == "survived":
            function, number = name.rsplit("__mutmut_", 1)
            survivors.setdefault(function, []).append(number)
    lines.append("")
    for function, numbers in sorted(survivors.items()):
        ordered = ", ".join(sorted(numbers, key=int))
        lines.append(f"- `{function.removeprefix('gateway.')}` (survived: {ordered})")
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("list", help="print the hand-made mutants")
    running = commands.add_parser("run", help="run the hand-made mutants")
    running.add_argument("--only", nargs="+", metavar="ID")
    running.add_argument("--area", nargs="+")
    running.add_argument("--timeout", type=float, default=300, help="seconds per mutant")
    commands.add_parser("report", help="print the last results of the hand-made mutants")
    using = commands.add_parser("mutmut", help="run mutmut 3 on the Python guards")
    using.add_argument("names", nargs="*", help="mutant names (default: all)")
    using.add_argument("--children", type=int, default=1, help="mutants run at once")
    using.add_argument(
        "--unchecked",
        action="store_true",
        help="also every mutant docs/mutants/mutmut.json has no verdict for, or whose function "
        "changed since (resume a run elsewhere)",
    )
    using.add_argument(
        "--survivors", action="store_true", help="also every mutant that survived (tests added)"
    )
    killing = commands.add_parser(
        "mutmut-kill", help="run named mutmut mutants against chosen tests; record the kills"
    )
    killing.add_argument("names", nargs="+", help="mutant names")
    killing.add_argument(
        "--tests", nargs="+", required=True, help="test files or node IDs (tests/x.py::test_y)"
    )
    killing.add_argument("--timeout", type=float, default=600, help="seconds per mutant")
    commands.add_parser("export", help="write docs/mutants/mutmut.json from mutmut's last results")
    commands.add_parser("mutmut-table", help="docs/TESTING.md's table of docs/mutants/mutmut.json")
    arguments = parser.parse_args()
    if arguments.command == "list":
        for item in MUTANTS:
            print(f"{item.id:40} {item.area:24} {item.path}\n    {item.why}")
        return 0
    if arguments.command == "report":
        report(json.loads(RESULTS.read_text())["mutants"])
        return 0
    if arguments.command == "mutmut":
        return run_mutmut(
            arguments.names, arguments.children, arguments.unchecked, arguments.survivors
        )
    if arguments.command == "mutmut-kill":
        return kill_mutmut(arguments.names, arguments.tests, arguments.timeout)
    if arguments.command == "mutmut-table":
        print(mutmut_table())
        return 0
    if arguments.command == "export":
        export_mutmut(Path(sys.executable).parent / "mutmut")
        return 0
    return run(arguments.only, arguments.area, arguments.timeout)


if __name__ == "__main__":
    sys.exit(main())
