"""A run whose process is killed (kill -9) under `dagster dev`: marked failed within a minute,
alerted HIGH, and the run queue moves on. Once for a run launched from the UI's queue, once for
a run started by `dagster asset materialize` (which only run monitoring can notice)."""

import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import dagster as dg
import pytest

from dagster._core.launcher.base import WorkerStatus

from ml_platform.orchestration.names import WORKER_TAG
from ml_platform.orchestration.run_launcher import LocalRunLauncher, process_identity
from ml_platform_tests.alert_servers import RecordingHTTPServer
from ml_platform_tests.dagster_dev import BIN, DagsterDev, make_dagster_home
from ml_platform_tests.projects import make_project

# Slow enough to be killed mid-training on 2 cores (tens of seconds), small enough to load fast.
SLOW_MODEL = {
    "source": {"kind": "synthetic", "synthetic": {"rows": 200_000, "features": 10}},
    "training": {"estimator": "random_forest", "params": {"n_estimators": 400, "n_jobs": 1}},
}


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> float:
    """Seconds until `condition()` is truthy; fails naming `what` after `timeout`."""
    start = time.monotonic()
    while time.monotonic() - start < timeout:
        if condition():
            return time.monotonic() - start
        time.sleep(0.5)
    raise AssertionError(f"{what}: not within {timeout}s")


def step_started(instance: dg.DagsterInstance, run_id: str, step: str) -> bool:
    return any(e.step_key == step for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START))


def worker_pid(instance: dg.DagsterInstance, run_id: str) -> int:
    [start] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
    return int(start.dagster_event.pid)


def status(instance: dg.DagsterInstance, run_id: str) -> dg.DagsterRunStatus:
    return instance.get_run_by_id(run_id).status


def run_failure_alerts(webhook: RecordingHTTPServer, run_id: str) -> list[dict]:
    return [a for r in webhook.requests for a in r.json["alerts"] if a["check"] == "run_failure" and a["run_id"] == run_id]


@pytest.mark.slow
def test_a_killed_run_is_marked_failed_alerted_and_the_queue_moves_on(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    project = make_project(tmp_path / "project", {"slow": SLOW_MODEL})
    with RecordingHTTPServer() as webhook:
        env = {**project.env(), "ML_PLATFORM_ALERT_WEBHOOK_URL": webhook.url("/hook"), "ML_PLATFORM_ALERT_SENSOR_INTERVAL": "2"}
        dev = DagsterDev(home, env, tmp_path / "dagster_dev.log", module=project.module, cwd=project.root)
        with dev, dg.DagsterInstance.get() as instance:
            # 1. From the queue (as the UI and the schedules launch runs): one training run per model.
            first = dev.launch("slow_training")
            second = dev.launch("slow_training")
            wait_for(lambda: step_started(instance, first, "slow__trained_model"), 180, "the first run reaching training")
            assert status(instance, second) == dg.DagsterRunStatus.QUEUED  # waits, does not fail
            os.kill(worker_pid(instance, first), signal.SIGKILL)
            seconds = wait_for(lambda: status(instance, first) == dg.DagsterRunStatus.FAILURE, 60, "the killed run marked failed")
            wait_for(lambda: status(instance, second) in (dg.DagsterRunStatus.STARTING, dg.DagsterRunStatus.STARTED),
                     60, "the queued run starting")
            wait_for(lambda: run_failure_alerts(webhook, first), 60, "the run-failure alert")
            [alert] = run_failure_alerts(webhook, first)
            assert (alert["severity"], alert["model"], alert["asset"]) == ("HIGH", "slow", "slow_training")
            print(f"queued run killed: marked failed after {seconds:.1f}s")

            # 2. From the command line: the process is the run; only run monitoring can tell it died.
            cli = subprocess.Popen(
                [str(BIN / "dagster"), "asset", "materialize", "-m", project.module, "--select", "group:slow"],
                cwd=project.root, env=dev.env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
            )
            cli_run = wait_for_new_run(instance, {first, second})
            # (Its training would wait for the queued run's: one step at a time writes a model's registry.)
            wait_for(lambda: step_started(instance, cli_run, "slow__validated_data"), 180, "the CLI run reaching validation")
            assert worker_pid(instance, cli_run) == cli.pid
            cli.kill()
            cli.wait()
            seconds = wait_for(lambda: status(instance, cli_run) == dg.DagsterRunStatus.FAILURE, 60, "the killed CLI run marked failed")
            wait_for(lambda: run_failure_alerts(webhook, cli_run), 60, "the CLI run's failure alert")
            [failure] = instance.all_logs(cli_run, of_type=dg.DagsterEventType.RUN_FAILURE)
            assert "has exited" in failure.message, failure.message  # said by this launcher's health check
            print(f"CLI run killed: marked failed by run monitoring after {seconds:.1f}s")


def wait_for_new_run(instance: dg.DagsterInstance, known: set[str], job_name: str = "__ASSET_JOB") -> str:
    """The first run of `job_name` not in `known` (a CLI materialization's job is __ASSET_JOB; the
    batch run the daemon launches after a promotion is not it)."""
    found: list[str] = []

    def new_run() -> bool:
        found[:] = [r.run_id for r in instance.get_runs() if r.run_id not in known and r.job_name == job_name]
        return bool(found)

    wait_for(new_run, 120, "the CLI run appearing in the instance")
    return found[0]


@dg.asset
def tiny() -> int:
    return 1


def test_the_launchers_health_check_tells_a_live_worker_from_a_dead_one_on_this_host(
    instance: dg.DagsterInstance, dagster_home: Path
) -> None:
    sleeper = subprocess.Popen(["sleep", "60"])
    identity = process_identity(sleeper.pid)
    assert identity is not None and identity.startswith(f"{sleeper.pid}:") and identity == process_identity(sleeper.pid)
    sleeper.kill()
    sleeper.wait()
    assert process_identity(sleeper.pid) is None

    launcher = instance.run_launcher
    assert isinstance(launcher, LocalRunLauncher) and launcher.supports_check_run_worker_health
    alive = dg.materialize([tiny], instance=instance)  # its worker is this very process
    assert launcher.check_run_worker_health(instance.get_run_by_id(alive.run_id)).status == WorkerStatus.RUNNING
    # The same pid with another start time is another process (a recycled pid): the worker is gone.
    recycled = f"{socket.gethostname()}:{os.getpid()}:1"
    instance.add_run_tags(alive.run_id, {WORKER_TAG: recycled})
    assert launcher.check_run_worker_health(instance.get_run_by_id(alive.run_id)).status == WorkerStatus.FAILED
    code = f"import dagster as dg, {__name__} as t; print(dg.materialize([t.tiny], instance=dg.DagsterInstance.get()).run_id)"
    child = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True, env={**os.environ, "DAGSTER_HOME": str(dagster_home)})
    exited = instance.get_run_by_id(child.stdout.strip().splitlines()[-1])
    health = launcher.check_run_worker_health(exited)
    assert health.status == WorkerStatus.FAILED and "has exited" in health.msg
    instance.add_run_tags(exited.run_id, {WORKER_TAG: "another-host:123:456"})
    assert launcher.check_run_worker_health(instance.get_run_by_id(exited.run_id)).status == WorkerStatus.RUNNING
