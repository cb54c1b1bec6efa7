"""Measuring benchmark children from the outside: the code load_benchmark.py and pipeline_benchmark.py share.

Every measurement is one child process started by the parent and timed from outside. Its wall
time includes interpreter start-up. The parent reaps it with os.wait4(pid), whose rusage covers
that child and the descendants it waited for, and nothing else. So ru_maxrss is the peak RSS of
this one measurement. getrusage(RUSAGE_CHILDREN) would instead give the maximum over every child
so far. A child that outlives its timeout is killed (SIGKILL) and reaped like any other, and its
exit code is then negative.

What differs between the scripts stays in the scripts: what runs, in which folder, the
environment each child gets, how precisely it is rounded, how its output is checked, and what a
Measurement carries besides the five common fields (a subclass adds it; asdict puts it last).

The scripts run as `python benchmarks/<script>.py` and import this file as the top-level module
`measure`, after putting the benchmarks folder on sys.path.
"""

from __future__ import annotations

import os
import platform
import statistics
import subprocess
import time
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

if TYPE_CHECKING:
    from resource import struct_rusage

M = TypeVar("M", bound="Measurement")


@dataclass(frozen=True)
class Reaped:
    """A child that ran to its end (or was killed at its timeout), as run_child saw it."""

    pid: int
    exit_code: int  # os.waitstatus_to_exitcode: negative when a signal ended it (-9 after a timeout)
    wall_s: float  # perf_counter from just before the spawn until the child was reaped, unrounded
    usage: struct_rusage  # from os.wait4: this child (and its waited-for descendants) only
    spawned_at: float  # time.time() just before the spawn
    reaped_at: float  # time.time() just after the reap


@dataclass
class Measurement:
    """One timed child: wall time, peak RSS and CPU time. A script subclasses this to add a field of its own."""

    label: str
    wall_s: float
    max_rss_mb: float
    user_s: float
    sys_s: float

    @classmethod
    def of(cls: type[M], label: str, run: Reaped, *, wall_digits: int, cpu_digits: int) -> M:
        """The measurement of `run`. Peak RSS is given in MiB to one decimal; Linux reports ru_maxrss in KiB."""
        return cls(label, round(run.wall_s, wall_digits), round(run.usage.ru_maxrss / 1024, 1),
                   round(run.usage.ru_utime, cpu_digits), round(run.usage.ru_stime, cpu_digits))


def run_child(cmd: Sequence[str], *, cwd: Path, env: Mapping[str, str], log: Path, timeout: float,
              poll_s: float) -> Reaped:
    """Run `cmd` in `cwd` and send its stdout and stderr to `log`. The parent times it and polls
    os.wait4 every `poll_s` seconds; after `timeout` seconds the child is killed. Never raises
    on a failed child: the caller checks exit_code."""
    with log.open("wb") as out:
        spawned_at = time.time()
        start = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT)
        deadline = start + timeout
        while True:
            pid, status, usage = os.wait4(proc.pid, os.WNOHANG)
            if pid:
                break
            if time.perf_counter() > deadline:
                proc.kill()
                pid, status, usage = os.wait4(proc.pid, 0)
                break
            time.sleep(poll_s)
        wall = time.perf_counter() - start
        reaped_at = time.time()
    code = os.waitstatus_to_exitcode(status)
    proc.returncode = code  # reaped by wait4; keep Popen from waiting again
    return Reaped(proc.pid, code, wall, usage, spawned_at, reaped_at)


def clean_env(*drop: str, **extra: str) -> dict[str, str]:
    """The caller's environment without ML_PLATFORM_* variables, DAGSTER_HOME or the names in
    `drop`, with `extra` then set on top."""
    env = {k: v for k, v in os.environ.items()
           if not k.startswith("ML_PLATFORM_") and k != "DAGSTER_HOME" and k not in drop}
    env.update(extra)
    return env


def cpu_model() -> str:
    """The CPU's 'model name' from /proc/cpuinfo (else platform.processor())."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


SIMD_FLAGS = ("sse4_2", "avx", "avx2", "avx512f")


def cpu_simd_flags() -> list[str]:
    """Which of SIMD_FLAGS /proc/cpuinfo lists (numpy's sort speed depends on them)."""
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                present = set(line.split(":", 1)[1].split())
                return [flag for flag in SIMD_FLAGS if flag in present]
    except OSError:
        pass
    return []


def loadavg() -> list[float]:
    """The 1, 5 and 15 minute load averages, to two decimals."""
    return [round(x, 2) for x in os.getloadavg()]


def machine(**versions: str) -> dict[str, Any]:
    """The machine block of a results file. `versions` (e.g. dagster=...) go after "python"."""
    return {"cpu_model": cpu_model(), "cpus": os.cpu_count(), "python": platform.python_version(), **versions,
            "platform": platform.platform(),
            # Set: no .pyc is written, so every child compiles what it imports from source.
            "PYTHONDONTWRITEBYTECODE": os.environ.get("PYTHONDONTWRITEBYTECODE", ""),
            "loadavg_start": loadavg()}


def summary(ms: Sequence[Measurement], extra: Mapping[str, Any] | None = None) -> dict[str, Any]:
    """Count, median/min/max wall time and median peak RSS of `ms`. `extra` comes next, and
    every run (asdict) comes last."""
    walls = [m.wall_s for m in ms]
    return {
        "n": len(ms),
        "median_s": round(statistics.median(walls), 3),
        "min_s": round(min(walls), 3),
        "max_s": round(max(walls), 3),
        "median_max_rss_mb": round(statistics.median(m.max_rss_mb for m in ms), 1),
        **(extra or {}),
        "runs": [asdict(m) for m in ms],
    }
