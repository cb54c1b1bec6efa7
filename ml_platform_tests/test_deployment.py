"""The deployment recipe (Dockerfile, docker-compose.yaml, deploy/): no Docker daemon or
Kubernetes here, so the files are checked for what they must say, the compose file by a compose
client where one is installed (`docker compose` or docker-compose; .ci/run installs one), and the
image's entrypoint is run for real: its `grpc` role serves the code location."""

from __future__ import annotations

import os
import re
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import dagster as dg
import pytest
import yaml

from ml_platform.data.stored_outputs import read_output
from ml_platform.orchestration.platform import (
    EXECUTOR_ENV,
    OUTPUTS_DIR_ENV,
    build_platform_definitions,
    executor_from_environment,
)
from ml_platform_tests.conftest import BREAST_CANCER, REPO_ROOT, platform, run_job, synthetic
from ml_platform_tests.dagster_dev import BIN, free_port, interruptible

DEPLOY = REPO_ROOT / "deploy"
ENTRYPOINT = DEPLOY / "entrypoint.sh"
SECRET_NAMES = ("PASSWORD", "TOKEN", "ROUTING_KEY", "WEBHOOK_URL")


def load(path: Path) -> Any:
    return yaml.safe_load(path.read_text())


def entrypoint_roles() -> set[str]:
    """The roles the entrypoint's `case` names (grpc, webserver, daemon)."""
    return set(re.findall(r"^\s+([a-z]+)\)$", ENTRYPOINT.read_text(), flags=re.MULTILINE))


def test_compose_runs_postgres_and_the_three_dagster_parts_from_one_image_with_secrets_from_the_environment() -> None:
    compose = load(REPO_ROOT / "docker-compose.yaml")
    services = compose["services"]
    assert set(services) == {"postgres", "code", "webserver", "daemon"}
    assert entrypoint_roles() == {"grpc", "webserver", "daemon"}
    dagster_parts = {name: services[name] for name in ("code", "webserver", "daemon")}
    assert {name: s["command"] for name, s in dagster_parts.items()} == {"code": ["grpc"], "webserver": ["webserver"], "daemon": ["daemon"]}
    assert services["code"]["build"] == "." and len({s["image"] for s in dagster_parts.values()}) == 1
    assert services["webserver"]["ports"] == ["${DAGSTER_WEBSERVER_PUBLISHED_PORT:-3000}:3000"]
    assert services["code"]["expose"] == ["4000"]
    # Nothing starts before PostgreSQL answers its health check (and the UI waits for the code server's).
    assert "pg_isready" in " ".join(services["postgres"]["healthcheck"]["test"])
    assert "grpc-health-check" in services["code"]["healthcheck"]["test"]
    for name, service in dagster_parts.items():
        assert service["depends_on"]["postgres"] == {"condition": "service_healthy"}, name
    for name in ("webserver", "daemon"):
        assert services[name]["depends_on"]["code"] == {"condition": "service_healthy"}
    # Every secret is a reference to the environment (or .env), never a value in the file.
    for name, service in services.items():
        for variable, value in service["environment"].items():
            if any(secret in variable for secret in SECRET_NAMES):
                assert re.fullmatch(r"\$\{[A-Z_]+(:[-?][^}]*)?\}", str(value)), f"{name}: {variable} is inlined"
    assert services["code"]["environment"]["DAGSTER_POSTGRES_HOST"] == "postgres"


def compose_client() -> list[str] | None:
    """`docker compose` (the plugin) or docker-compose, whichever works without a daemon."""
    if shutil.which("docker") and subprocess.run(["docker", "compose", "version"], capture_output=True).returncode == 0:
        return ["docker", "compose"]
    return [found] if (found := shutil.which("docker-compose")) else None


def test_the_compose_file_passes_the_compose_clients_own_check() -> None:
    client = compose_client()
    if client is None:
        pytest.skip("no compose client (`docker compose` plugin or docker-compose) installed; `apt-get install docker-compose`")
    command = [*client, "-f", str(REPO_ROOT / "docker-compose.yaml"), "config"]
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_POSTGRES", "ML_PLATFORM"))}
    # Without the password the file refuses to start, naming the variable.
    refused = subprocess.run(command, capture_output=True, text=True, env=env, cwd=REPO_ROOT)
    assert refused.returncode != 0 and "set DAGSTER_POSTGRES_PASSWORD" in refused.stderr
    checked = subprocess.run(command, capture_output=True, text=True, env={**env, "DAGSTER_POSTGRES_PASSWORD": "s3cret"},
                             cwd=REPO_ROOT, check=True)
    resolved = yaml.safe_load(checked.stdout)["services"]
    assert resolved["daemon"]["environment"]["DAGSTER_POSTGRES_PASSWORD"] == "s3cret"
    assert resolved["code"]["environment"]["DAGSTER_POSTGRES_PORT"] == "5432"


def test_the_image_serves_the_postgres_instance_config_as_a_non_root_user_through_the_entrypoint() -> None:
    dockerfile = (REPO_ROOT / "Dockerfile").read_text()
    assert "pip install '.[postgres]'" in dockerfile
    assert "cp deploy/dagster-postgres.yaml ${DAGSTER_HOME}/dagster.yaml" in dockerfile
    [user] = re.findall(r"^USER (\S+)$", dockerfile, flags=re.MULTILINE)
    assert user not in ("root", "0")
    assert re.search(r'^ENTRYPOINT \["/opt/dagster/app/deploy/entrypoint.sh"\]$', dockerfile, flags=re.MULTILINE)
    # The compose workspace loads the code location from the `code` service's gRPC port.
    [location] = load(DEPLOY / "workspace.yaml")["load_from"]
    assert location["grpc_server"] == {"host": "code", "port": 4000, "location_name": "ml_platform"}
    assert "DAGSTER_GRPC_PORT:-4000" in ENTRYPOINT.read_text()


def test_the_postgres_instance_config_keeps_every_local_setting_but_the_storage() -> None:
    local, deployed = load(REPO_ROOT / "dagster_home" / "dagster.yaml"), load(DEPLOY / "dagster-postgres.yaml")
    assert {k: v for k, v in local.items() if k != "event_log_storage"} == {k: v for k, v in deployed.items() if k != "storage"}
    connection = deployed["storage"]["postgres"]["postgres_db"]
    assert all(connection[field] == {"env": f"DAGSTER_POSTGRES_{name}"}
               for field, name in (("username", "USER"), ("password", "PASSWORD"), ("hostname", "HOST"),
                                   ("db_name", "DB"), ("port", "PORT")))


def test_the_helm_values_deploy_the_image_with_postgres_the_queue_and_the_k8s_run_launcher() -> None:
    values = load(DEPLOY / "helm" / "values.yaml")
    [deployment] = values["dagster-user-deployments"]["deployments"]
    assert deployment["image"]["repository"].endswith("/ml-platform") and deployment["dagsterApiGrpcArgs"] == ["-m", "ml_platform"]
    assert values["runLauncher"]["type"] == "K8sRunLauncher"
    assert values["postgresql"]["enabled"] is True and "postgresqlPassword" not in values["postgresql"]
    daemon = values["dagsterDaemon"]
    local = load(DEPLOY / "dagster-postgres.yaml")
    queue = daemon["runCoordinator"]["config"]["queuedRunCoordinator"]
    assert queue["maxConcurrentRuns"] == local["concurrency"]["runs"]["max_concurrent_runs"]
    assert queue["tagConcurrencyLimits"] == local["concurrency"]["runs"]["tag_concurrency_limits"]
    assert daemon["runMonitoring"]["enabled"] is True and daemon["runMonitoring"]["maxResumeRunAttempts"] == 0


def entrypoint_argv(role: str, stubs: Path) -> list[str]:
    """The command line `entrypoint.sh <role>` executes (the Dagster tools replaced by stubs that print it)."""
    stubs.mkdir(exist_ok=True)
    for tool in ("dagster", "dagster-webserver", "dagster-daemon"):
        (stubs / tool).write_text('#!/bin/sh\nprintf "%s\\n" "$(basename "$0")" "$@"\n')
        (stubs / tool).chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DAGSTER_GRPC", "DAGSTER_WEBSERVER", "DAGSTER_WORKSPACE"))}
    env["PATH"] = f"{stubs}{os.pathsep}{env.get('PATH', '')}"
    return subprocess.run([str(ENTRYPOINT), role], env=env, capture_output=True, text=True, check=True).stdout.splitlines()


def test_the_entrypoint_runs_the_three_dagster_commands_and_refuses_no_role(tmp_path: Path) -> None:
    from dagster._cli.api import grpc_command
    from dagster._daemon.cli import run_command
    from dagster_webserver.cli import dagster_webserver

    commands = {role: entrypoint_argv(role, tmp_path) for role in ("grpc", "webserver", "daemon")}
    assert commands == {
        "grpc": ["dagster", "api", "grpc", "-m", "ml_platform", "-h", "0.0.0.0", "-p", "4000"],
        "webserver": ["dagster-webserver", "-w", "deploy/workspace.yaml", "-h", "0.0.0.0", "-p", "3000"],
        "daemon": ["dagster-daemon", "run", "-w", "deploy/workspace.yaml"],
    }
    # Each is a command line the installed Dagster accepts (parsed by its own CLI, not run).
    assert grpc_command.make_context("grpc", commands["grpc"][3:]).params["module_name"] == "ml_platform"
    assert dagster_webserver.make_context("dagster-webserver", commands["webserver"][1:]).params["port"] == 3000
    assert run_command.make_context("run", commands["daemon"][2:]).params["workspace"] == ("deploy/workspace.yaml",)
    # Any other first argument runs as a command (what the Helm chart's `dagster api grpc ...` args do).
    assert entrypoint_argv("dagster", tmp_path) == ["dagster"]
    bare = subprocess.run([str(ENTRYPOINT)], capture_output=True, text=True)
    assert bare.returncode == 2 and "name a role: grpc, webserver or daemon" in bare.stderr


@pytest.mark.slow
def test_the_entrypoint_serves_the_code_location_over_grpc(tmp_path: Path) -> None:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    port = free_port()
    env = {**os.environ, "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}", "DAGSTER_HOME": str(home),
           "DAGSTER_GRPC_HOST": "127.0.0.1", "DAGSTER_GRPC_PORT": str(port)}
    server = subprocess.Popen([str(ENTRYPOINT), "grpc"], cwd=REPO_ROOT, env=env, stdout=subprocess.DEVNULL,
                              stderr=subprocess.PIPE, start_new_session=True, preexec_fn=interruptible)
    try:
        deadline = time.monotonic() + 120
        while not listening(port):
            if server.poll() is not None:
                raise AssertionError(f"entrypoint.sh grpc exited {server.returncode}: {server.stderr.read().decode()[-2000:]}")
            assert time.monotonic() < deadline, "entrypoint.sh grpc: not listening within 120 s"
            time.sleep(0.2)
        # The check the compose file's healthcheck (and the Helm chart's probe) runs.
        health = subprocess.run(["dagster", "api", "grpc-health-check", "-p", str(port), "--host", "127.0.0.1"],
                                env=env, capture_output=True, text=True)
        assert health.returncode == 0, health.stdout + health.stderr
    finally:
        os.killpg(server.pid, signal.SIGTERM)
        server.wait(timeout=30)


def listening(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) == 0


def test_the_executor_is_chosen_by_the_environment_and_a_wrong_choice_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    assert platform(BREAST_CANCER).resolve_job_def("breast_cancer_training").executor_def is dg.in_process_executor
    monkeypatch.setenv(EXECUTOR_ENV, "multiprocess")
    assert executor_from_environment() is dg.multiprocess_executor
    monkeypatch.setenv(EXECUTOR_ENV, "k8s")
    from dagster_k8s import k8s_job_executor

    defs = platform(BREAST_CANCER)
    assert defs.resolve_job_def("breast_cancer_training").executor_def is k8s_job_executor
    monkeypatch.setenv(EXECUTOR_ENV, "kubernetes")
    with pytest.raises(ValueError, match=r"^ML_PLATFORM_EXECUTOR='kubernetes' is not one of in_process, multiprocess, k8s$"):
        build_platform_definitions(dg.Definitions())
    monkeypatch.setitem(sys.modules, "dagster_k8s", None)  # as where the k8s extra is not installed
    monkeypatch.setenv(EXECUTOR_ENV, "k8s")
    with pytest.raises(ValueError, match=r"ML_PLATFORM_EXECUTOR=k8s needs dagster-k8s: pip install 'ml_platform\[k8s\]'"):
        executor_from_environment()


def test_runs_store_their_outputs_where_the_deployment_says(
    monkeypatch: pytest.MonkeyPatch, instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    """ML_PLATFORM_OUTPUTS_DIR: the volume every step pod mounts when steps run apart (k8s executor)."""
    shared = tmp_path / "shared-volume"
    monkeypatch.setenv(OUTPUTS_DIR_ENV, str(shared))
    model = synthetic("outputs", rows=500)
    result = run_job(instance, platform(model), "outputs_monitoring")
    assert result.success
    stored = read_output(shared / "runs" / result.run_id / "outputs" / "validated_data")
    assert len(stored.frame) == 500
    assert not (Path(instance.storage_directory()) / "runs" / result.run_id).exists()
