"""Dagster's DefaultRunLauncher, plus the worker health check its run monitoring needs.

Dagster's run monitoring marks a run failed when its launcher reports the run's worker gone,
but the DefaultRunLauncher has no such check: a run whose process was killed (kill -9, out of
memory, a closed laptop, a `dagster asset materialize` interrupted hard) stays STARTED forever
and keeps its run-queue slot. This launcher checks the process that started the run (the pid of
its RUN_START event) on this host, so the daemon marks such a run failed within a poll
interval, the run-failure sensor alerts it, and the queue moves on.

A run whose worker ran on another host (its IO manager records the host as a run tag) is left
alone: only a launcher that owns remote workers (Docker, Kubernetes) can judge those.
Configured in dagster_home/dagster.yaml.
"""

import os
import socket
from pathlib import Path

from dagster import DagsterEventType, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

from ml_platform.orchestration.names import WORKER_HOST_TAG

_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100


def _boot_time() -> float | None:
    try:
        for line in Path("/proc/stat").read_text().splitlines():
            if line.startswith("btime "):
                return float(line.split()[1])
    except OSError:
        pass
    return None


def process_started_at(pid: int) -> float | None:
    """When process `pid` started (unix seconds), or None if it is gone (or a zombie).
    Where /proc is missing, only whether the pid exists is known: then "now" is not claimed."""
    stat = Path(f"/proc/{pid}/stat")
    if stat.parent.parent.exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        if fields[0] == "Z":  # exited, not yet reaped
            return None
        boot = _boot_time()
        return boot + int(fields[19]) / _CLOCK_TICKS if boot is not None else 0.0
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return 0.0


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run monitoring notices a dead run worker on this host."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        host = run.tags.get(WORKER_HOST_TAG)
        if host is not None and host != socket.gethostname():
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker on host {host}; not checked from here")
        starts = self._instance.all_logs(run.run_id, of_type=DagsterEventType.RUN_START)
        pid = starts[-1].dagster_event.pid if starts and starts[-1].dagster_event else None
        if pid is None:
            return CheckRunHealthResult(WorkerStatus.RUNNING, "run not started yet")
        started_at = process_started_at(pid)
        # A process that started after the run did has reused the dead worker's pid.
        if started_at is None or started_at > starts[-1].timestamp + 1.0:
            return CheckRunHealthResult(
                WorkerStatus.FAILED, f"the run's worker process (pid {pid}) on {socket.gethostname()} has exited"
            )
        return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker pid {pid} is alive")
