"""CPU seconds and memory of the measured processes, read from /proc, and core pinning.

A server's CPU is its process and its children (uvicorn workers); the database's is the
postmaster and every backend it forked, so a request's cost counts the SQL it caused as well as
the Python or Node that sent it.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import subprocess
from pathlib import Path

__all__ = ["cpu_seconds", "pin", "postmaster_pid", "rss_mb", "tree"]


def tree(pid: int) -> list[int]:
    """``pid`` and its descendants."""
    found, pending = [], [pid]
    while pending:
        current = pending.pop()
        found.append(current)
        with contextlib.suppress(OSError):
            children = Path(f"/proc/{current}/task/{current}/children").read_text().split()
            pending += [int(child) for child in children]
    return found


def cpu_seconds(pid: int) -> float:
    """User + system CPU of a process tree (finished children included)."""
    total = 0.0
    ticks = os.sysconf("SC_CLK_TCK")
    for each in tree(pid):
        with contextlib.suppress(OSError):
            fields = Path(f"/proc/{each}/stat").read_text().rsplit(")", 1)[1].split()
            total += sum(int(fields[i]) for i in (11, 12, 13, 14)) / ticks
    return total


def rss_mb(pid: int) -> float:
    total = 0
    for each in tree(pid):
        with contextlib.suppress(OSError):
            for line in Path(f"/proc/{each}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
    return total / 1024


def postmaster_pid(data_directory: Path) -> int:
    return int((data_directory / "postmaster.pid").read_text().splitlines()[0])


def pin(pid: int, cores: str) -> bool:
    """Pin a process tree (and what it forks later) to ``cores``; False without taskset."""
    if not shutil.which("taskset"):
        return False
    for each in tree(pid):
        subprocess.run(
            ["taskset", "-a", "-p", "-c", cores, str(each)],
            capture_output=True,
            check=False,
        )
    return True
