"""The platform on a Dagster instance stored in a real PostgreSQL: DAGSTER_HOME/dagster.yaml is
deploy/dagster-postgres.yaml, unchanged, its connection from the environment, each test on a
fresh database of the session's server (ml_platform_tests/postgres.py; skipped, naming the
reason, where the server binaries are missing). What lands in PostgreSQL is read back with SQL,
not only through Dagster.

The deployment tests launch runs as the daemon does in the compose set-up: the code location
served by `deploy/entrypoint.sh grpc`, runs submitted to the instance's queue, dequeued by the
daemon's own queue logic into the instance's run launcher, and judged by the run monitoring
daemon's own iteration."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import subprocess
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
from dagster._cli.job import _create_run  # the run `dagster job launch` (and the Launchpad) creates
from dagster._core.workspace.context import WorkspaceProcessContext
from dagster._core.workspace.load_target import GrpcServerTarget
from dagster._daemon.monitoring.run_monitoring import execute_run_monitoring_iteration
from dagster._daemon.run_coordinator.queued_run_coordinator_daemon import QueuedRunCoordinatorDaemon
from dagster._grpc.client import DagsterGrpcClient

from ml_platform.alerting.alert import JsonlAlertFile
from ml_platform.orchestration.alerting import AlertingResource, JsonlChannelResource, alerting_resource
from ml_platform.orchestration.run_launcher import process_identity
from ml_platform.orchestration.sensors import CheckSensorCursor, build_alert_sensors
from ml_platform_tests.conftest import (
    BREAST_CANCER,
    REPO_ROOT,
    materialize,
    op_config,
    platform,
    registry_of,
    source_config,
    synthetic,
    train,
)
from ml_platform_tests.dagster_dev import BIN, free_port, interruptible
from ml_platform_tests.postgres import PostgresServer

INSTANCE_CONFIG = REPO_ROOT / "deploy" / "dagster-postgres.yaml"
ENTRYPOINT = REPO_ROOT / "deploy" / "entrypoint.sh"
LOCATION = "ml_platform"
SYNTH = synthetic("synth", rows=600, seed=3, features=4)
check_alert_sensor, run_failure_alert_sensor = build_alert_sensors({})
# A new candidate (other params) held to an accuracy it cannot reach: its blocking check fails.
STRICT_ACCURACY = op_config("breast_cancer", "trained_model", params={"C": 0.9}, accuracy_check={"min_accuracy": 0.999})
# Churn training that takes tens of seconds on 2 cores: long enough to kill its worker mid-step.
SLOW_CHURN = op_config("churn", "trained_model", estimator="random_forest", params={"n_estimators": 4000, "n_jobs": 1})


@dataclass(frozen=True)
class PostgresHome:
    """A DAGSTER_HOME whose instance lives in `database` on `server`."""

    home: Path
    server: PostgresServer
    database: str

    def env(self) -> dict[str, str]:
        """What deploy/dagster-postgres.yaml reads, set as a deployment sets it."""
        return {
            "DAGSTER_HOME": str(self.home), "DAGSTER_POSTGRES_USER": self.server.user,
            "DAGSTER_POSTGRES_PASSWORD": self.server.password, "DAGSTER_POSTGRES_HOST": self.server.host,
            "DAGSTER_POSTGRES_PORT": str(self.server.port), "DAGSTER_POSTGRES_DB": self.database,
        }

    def rows(self, statement: str) -> list[list[str]]:
        """The statement's rows, read with psql (columns split on '|')."""
        return [line.split("|") for line in self.server.sql(statement, self.database).splitlines() if line]


@contextlib.contextmanager
def postgres_home(server: PostgresServer, root: Path) -> Iterator[PostgresHome]:
    """A fresh database and a DAGSTER_HOME on it, set in this process's environment meanwhile."""
    database = f"dagster_{uuid.uuid4().hex[:10]}"
    server.create_database(database)
    home = root / "dagster_home"
    home.mkdir(parents=True)
    shutil.copy(INSTANCE_CONFIG, home / "dagster.yaml")
    pg = PostgresHome(home, server, database)
    with pytest.MonkeyPatch.context() as patch:
        for name, value in pg.env().items():
            patch.setenv(name, value)
        patch.delenv("ML_PLATFORM_REGISTRY", raising=False)
        yield pg


@pytest.fixture
def pg(postgres_server: PostgresServer, tmp_path: Path) -> Iterator[PostgresHome]:
    with postgres_home(postgres_server, tmp_path) as home:
        yield home


@pytest.fixture
def pg_instance(pg: PostgresHome) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as instance:
        yield instance


def jsonl_alerting(path: Path) -> AlertingResource:
    return alerting_resource(jsonl=JsonlChannelResource(path=str(path / "alerts.jsonl")), outbox_path=str(path / "alerts.db"),
                             routes={"HIGH": ["jsonl"], "MEDIUM": ["jsonl"], "LOW": ["jsonl"]})


def fired(path: Path) -> list[dict[str, Any]]:
    """The alerts the JSONL channel was sent (not resolutions, not suppressed repeats)."""
    return [a for a in JsonlAlertFile(path / "alerts.jsonl").read() if a["state"] == "firing" and a["outcome"] == "notified"]


def tick(sensor: dg.SensorDefinition, instance: dg.DagsterInstance, cursor: str | None, resource: AlertingResource) -> str:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerting": resource}) as context:
        sensor(context)
        return context.cursor or ""


def test_runs_materializations_and_check_results_are_stored_in_postgres(pg: PostgresHome, pg_instance: dg.DagsterInstance) -> None:
    assert type(pg_instance.run_storage).__name__ == "PostgresRunStorage"
    assert type(pg_instance.event_log_storage).__name__ == "PostgresEventLogStorage"
    assert type(pg_instance.schedule_storage).__name__ == "PostgresScheduleStorage"
    result = materialize(pg_instance, platform(BREAST_CANCER, SYNTH), "*")
    assert result.success

    [[status]] = pg.rows(f"SELECT status FROM runs WHERE run_id = '{result.run_id}'")
    assert status == "SUCCESS"
    materialized = {
        "/".join(json.loads(key)) for [key] in pg.rows(
            f"SELECT DISTINCT asset_key FROM event_logs WHERE run_id = '{result.run_id}' "
            "AND dagster_event_type = 'ASSET_MATERIALIZATION'")
    }
    assets = ("raw_data", "validated_data", "trained_model", "staging_model", "production_model", "batch_predictions",
              "monitoring_report")
    assert materialized == {f"{m}/{a}" for m in ("breast_cancer", "synth") for a in assets}
    checks = {(tuple(json.loads(key)), name): state for key, name, state in pg.rows(
        f"SELECT asset_key, check_name, execution_status FROM asset_check_executions WHERE run_id = '{result.run_id}'")}
    assert checks[(("breast_cancer", "trained_model"), "accuracy_above_threshold")] == "SUCCEEDED"
    assert checks[(("synth", "trained_model"), "accuracy_above_threshold")] == "SUCCEEDED"
    assert checks[(("breast_cancer", "validated_data"), "pandera_schema")] == "SUCCEEDED"
    # Nothing of the instance went to SQLite files; the registries are beside it as on SQLite.
    assert not (pg.home / "history").exists() and not (pg.home / "schedules").exists()
    assert registry_of(pg.home, "breast_cancer").alias("production") and registry_of(pg.home, "synth").alias("production")


def test_the_alert_sensors_cursors_alert_a_failed_check_and_a_failed_run_once_across_runs(
    pg: PostgresHome, pg_instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    resource = jsonl_alerting(tmp_path)
    assert train(pg_instance).success
    cursor = tick(check_alert_sensor, pg_instance, None, resource)
    assert fired(tmp_path) == []

    failed = train(pg_instance, run_config=STRICT_ACCURACY)  # run 2: its blocking check fails
    assert not failed.success
    after_failure = tick(check_alert_sensor, pg_instance, cursor, resource)
    [alert] = fired(tmp_path)
    assert (alert["check"], alert["run_id"], alert["severity"]) == ("accuracy_above_threshold", failed.run_id, "HIGH")
    # The cursor is the event log's own id in PostgreSQL.
    [[newest]] = pg.rows("SELECT max(id) FROM event_logs WHERE dagster_event_type = 'ASSET_CHECK_EVALUATION'")
    assert CheckSensorCursor.parse(after_failure).checks == int(newest) > CheckSensorCursor.parse(cursor).checks

    assert train(pg_instance).success  # run 3 passes; later ticks re-alert nothing
    later = tick(check_alert_sensor, pg_instance, after_failure, resource)
    assert tick(check_alert_sensor, pg_instance, later, resource) == later
    assert [a["run_id"] for a in fired(tmp_path)] == [failed.run_id]

    # The run-failure sensor leaves run 2 to its check's alert, alerts run 4 once.
    broken = train(pg_instance, run_config=source_config("breast_cancer", kind="csv", path=str(tmp_path / "missing.csv")))
    run_cursor = tick(run_failure_alert_sensor, pg_instance, None, resource)
    assert tick(run_failure_alert_sensor, pg_instance, run_cursor, resource) == run_cursor
    tick(run_failure_alert_sensor, pg_instance, None, resource)  # a lost cursor re-reads, never re-sends
    assert [(a["check"], a["run_id"]) for a in fired(tmp_path)] == [
        ("accuracy_above_threshold", failed.run_id), ("run_failure", broken.run_id)]
    [[failure_id]] = pg.rows(f"SELECT id FROM event_logs WHERE run_id = '{broken.run_id}' AND dagster_event_type = 'PIPELINE_FAILURE'")
    assert int(run_cursor) == int(failure_id)


@dataclass(frozen=True)
class Deployment:
    """The compose set-up's parts in this process: the instance, and a workspace that loads the
    code location from the gRPC server the image's entrypoint started."""

    pg: PostgresHome
    instance: dg.DagsterInstance
    workspace: WorkspaceProcessContext
    code_server: subprocess.Popen[bytes]

    def submit(self, job_name: str, run_config: dict[str, Any] | None = None) -> str:
        """Queue a run of the job as the UI does; its id."""
        request = self.workspace.create_request_context()
        location = request.get_code_location(LOCATION)
        [repository] = location.get_repositories().values()
        run = _create_run(instance=self.instance, code_location=location, remote_repo=repository,
                          remote_job=repository.get_full_job(job_name), run_config=run_config or {}, tags=None,
                          op_selection=None, run_id=None)
        return self.instance.submit_run(run.run_id, request).run_id

    def dequeue(self) -> None:
        """One iteration of the daemon's run queue: launches what the concurrency limits admit."""
        with QueuedRunCoordinatorDaemon(interval_seconds=1) as daemon:
            list(daemon.run_iteration(self.workspace))

    def status(self, run_id: str) -> dg.DagsterRunStatus:
        return self.instance.get_run_by_id(run_id).status


def wait_for(condition: Callable[[], object], timeout: float, what: str) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(0.25)
    raise AssertionError(f"{what}: not within {timeout}s")


@contextlib.contextmanager
def code_server(pg: PostgresHome, log_path: Path) -> Iterator[tuple[int, subprocess.Popen[bytes]]]:
    """`deploy/entrypoint.sh grpc` on 127.0.0.1 and a free port (the port and the process); stopped after."""
    port = free_port()
    env = {**os.environ, **pg.env(), "DAGSTER_GRPC_HOST": "127.0.0.1", "DAGSTER_GRPC_PORT": str(port),
           "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"}
    with log_path.open("wb") as log:
        server = subprocess.Popen([str(ENTRYPOINT), "grpc"], cwd=REPO_ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
                                  start_new_session=True, preexec_fn=interruptible)

    def listening() -> bool:
        if server.poll() is not None:
            raise AssertionError(f"the code server exited {server.returncode}: {log_path.read_text()[-2000:]}")
        with socket.socket() as probe:
            return probe.connect_ex(("127.0.0.1", port)) == 0

    try:
        wait_for(listening, 120, "the code server listening")
        assert DagsterGrpcClient(port=port, host="127.0.0.1").health_check_query() == "SERVING"
        yield port, server
    finally:
        stop_group(server)


def stop_group(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM to the process's group (the server and any run worker it started), SIGKILL after 2 s."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        with contextlib.suppress(ProcessLookupError):
            os.killpg(process.pid, sig)
        with contextlib.suppress(subprocess.TimeoutExpired):
            process.wait(timeout=2)
            return


@pytest.fixture(scope="module")
def deployment(postgres_server: PostgresServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Deployment]:
    root = tmp_path_factory.mktemp("pg_deployment")
    with postgres_home(postgres_server, root) as pg, code_server(pg, root / "code_server.log") as (port, server), \
            dg.DagsterInstance.get() as instance, \
            WorkspaceProcessContext(instance, GrpcServerTarget(host="127.0.0.1", port=port, socket=None, location_name=LOCATION)) as workspace:
        yield Deployment(pg, instance, workspace, server)


@pytest.mark.slow
def test_two_models_queued_together_run_at_once_each_registering_its_own_version(deployment: Deployment) -> None:
    runs = {model: deployment.submit(f"{model}_training") for model in ("breast_cancer", "churn")}
    assert {deployment.status(r) for r in runs.values()} == {dg.DagsterRunStatus.QUEUED}
    deployment.dequeue()
    # One training run per model at a time: two models do not wait for each other.
    assert dg.DagsterRunStatus.QUEUED not in {deployment.status(r) for r in runs.values()}
    wait_for(lambda: all(deployment.instance.get_run_by_id(r).is_finished for r in runs.values()), 300, "both runs finishing")
    assert {m: deployment.status(r) for m, r in runs.items()} == {m: dg.DagsterRunStatus.SUCCESS for m in runs}
    for model, run_id in runs.items():
        registry = registry_of(deployment.pg.home, model)
        [version] = registry.list_versions()
        assert version.metadata["run_id"] == run_id and registry.alias("production") == version.version
    in_postgres = dict(deployment.pg.rows(
        "SELECT run_id, status FROM runs WHERE run_id IN (" + ",".join(f"'{r}'" for r in runs.values()) + ")"))
    assert in_postgres == {r: "SUCCESS" for r in runs.values()}


@pytest.mark.slow
def test_run_monitoring_marks_a_run_whose_worker_was_killed_failed(deployment: Deployment, tmp_path: Path) -> None:
    instance = deployment.instance
    assert instance.run_monitoring_enabled and instance.run_monitoring_max_resume_run_attempts == 0
    run_id = deployment.submit("churn_training", SLOW_CHURN)
    deployment.dequeue()
    wait_for(lambda: any(e.step_key == "churn__trained_model"
                         for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)), 180, "training starting")
    [start] = instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_START)
    worker = int(start.dagster_event.pid)
    # The code server reaps its own run processes every 0.5 s and fails their runs; run monitoring
    # is what notices when it cannot (its container gone or restarted, a CLI run). Frozen here, so
    # that only the monitor can notice.
    os.kill(deployment.code_server.pid, signal.SIGSTOP)
    try:
        os.kill(worker, signal.SIGKILL)
        wait_for(lambda: process_identity(worker) is None, 30, "the worker gone")
        time.sleep(1.0)
        assert deployment.status(run_id) == dg.DagsterRunStatus.STARTED  # nothing else notices
        list(execute_run_monitoring_iteration(deployment.workspace, logging.getLogger("run_monitoring")))
        assert deployment.status(run_id) == dg.DagsterRunStatus.FAILURE
    finally:
        os.kill(deployment.code_server.pid, signal.SIGCONT)
    failures = [e.message for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)]
    assert any(f"the run's worker process (pid {worker})" in m and "has exited" in m for m in failures), failures
    assert deployment.pg.rows(f"SELECT status FROM runs WHERE run_id = '{run_id}'") == [["FAILURE"]]
    # ... and the run-failure sensor alerts it.
    resource = jsonl_alerting(tmp_path)
    tick(run_failure_alert_sensor, instance, None, resource)
    [alert] = fired(tmp_path)
    assert (alert["check"], alert["run_id"], alert["model"]) == ("run_failure", run_id, "churn")
