"""Dagster's DefaultRunLauncher, plus the worker health check its run monitoring needs.

Dagster's run monitoring marks a run failed when its launcher reports the run's worker gone,
but the DefaultRunLauncher has no such check: a run whose process was killed (kill -9, out of
memory, a closed laptop, a `dagster asset materialize` interrupted hard) stays STARTED forever
and keeps its run-queue slot. This launcher checks the process that started the run (the pid
of its RUN_START event) on this host, so the daemon marks such a run failed within a poll
interval, the run-failure sensor alerts it, and the queue moves on.

The run's IO manager records the worker as a run tag (`host:pid:start`, the start in clock
ticks since boot from /proc), so a recycled pid is told apart without comparing wall clocks.
A run whose worker ran on another host is left alone: only a launcher that owns remote workers
(Docker, Kubernetes) can judge those. Configured in dagster_home/dagster.yaml.
"""

import os
import socket
from pathlib import Path

from dagster import DagsterEventType, DagsterInstance, DefaultRunLauncher
from dagster._core.launcher.base import CheckRunHealthResult, WorkerStatus
from dagster._core.storage.dagster_run import DagsterRun

from ml_platform.orchestration.names import WORKER_TAG


def process_identity(pid: int) -> str | None:
    """`pid:start` of a live process (start: clock ticks after boot; empty where /proc is
    missing), or None if it has exited (zombies included)."""
    stat = Path(f"/proc/{pid}/stat")
    if Path("/proc/self/stat").exists():
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            return None
        return None if fields[0] == "Z" else f"{pid}:{fields[19]}"
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return None
    except PermissionError:
        pass
    return f"{pid}:"


def run_worker_pid(instance: DagsterInstance, run_id: str) -> int | None:
    """The pid of the process that started the run (its RUN_START event), if it has started."""
    starts = instance.all_logs(run_id, of_type=DagsterEventType.RUN_START)
    event = starts[-1].dagster_event if starts else None
    return event.pid if event is not None else None


def worker_tag_value(instance: DagsterInstance, run_id: str) -> str | None:
    """`host:pid:start` of the run's worker, for the WORKER_TAG (None before RUN_START)."""
    pid = run_worker_pid(instance, run_id)
    identity = process_identity(pid) if pid is not None else None
    return f"{socket.gethostname()}:{identity}" if identity else None


class LocalRunLauncher(DefaultRunLauncher):
    """DefaultRunLauncher whose run monitoring notices a dead run worker on this host."""

    @property
    def supports_check_run_worker_health(self) -> bool:
        return True

    def check_run_worker_health(self, run: DagsterRun) -> CheckRunHealthResult:
        recorded = run.tags.get(WORKER_TAG)
        if recorded:
            host, _, identity = recorded.partition(":")
            if host != socket.gethostname():
                return CheckRunHealthResult(WorkerStatus.RUNNING, f"run worker on host {host}; not checked from here")
            pid = int(identity.split(":", 1)[0])
            alive = process_identity(pid) == identity
        else:
            # Killed before its IO manager started: the pid alone (a recycled one looks alive).
            pid = run_worker_pid(self._instance, run.run_id)
            if pid is None:
                return CheckRunHealthResult(WorkerStatus.RUNNING, "run not started yet")
            alive = process_identity(pid) is not None
        if alive:
            return CheckRunHealthResult(WorkerStatus.RUNNING, f"worker pid {pid} is alive")
        return CheckRunHealthResult(
            WorkerStatus.FAILED, f"the run's worker process (pid {pid}) on {socket.gethostname()} has exited"
        )
