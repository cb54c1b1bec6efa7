"""The README's way of running the pipeline: the Dagster CLI (and dg) on a persistent instance."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.data.stored_outputs import read_output
from ml_platform_tests.conftest import REPO_ROOT, registry_of

BIN = Path(sys.executable).parent


def cli(dagster_home: Path, *args: str, tool: str = "dagster", **env_vars: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home), **env_vars}
    return subprocess.run([str(BIN / tool), *args], capture_output=True, text=True, env=env, timeout=300, cwd=REPO_ROOT)


def materialize(dagster_home: Path, select: str, *extra: str, **env_vars: str) -> subprocess.CompletedProcess:
    return cli(dagster_home, "asset", "materialize", "-m", "ml_platform", "--select", select, *extra, **env_vars)


@pytest.mark.slow
def test_cli_runs_land_in_the_persistent_instance_reuse_stored_outputs_and_print_info(dagster_home: Path) -> None:
    first = materialize(dagster_home, "*")
    assert first.returncode == 0, first.stderr[-3000:]
    log_lines = [line for line in first.stderr.splitlines() if " - dagster - " in line]
    assert log_lines and not [line for line in log_lines if " - DEBUG - " in line]  # INFO by default
    assert any("promoted v1" in line for line in log_lines)
    # A second process runs only the gate: it loads trained_model as the first run stored it.
    second = materialize(dagster_home, "breast_cancer/production_model")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "kept v1 in production: v1 is already in production" in second.stderr

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
        # Every check ran in the run of everything; the monitoring ones found no production model yet.
        first_run = runs[-1].run_id
        evaluations = {
            e.dagster_event.event_specific_data.check_name: e.dagster_event.event_specific_data
            for e in instance.all_logs(first_run, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
        }
        assert set(evaluations) == {"pandera_schema", "accuracy_above_threshold", "data_drift", "missing_values",
                                    "prediction_drift", "production_model_accuracy", "estimated_accuracy",
                                    "pipeline_run_time", "smoke_test", "prediction_outputs", "canary_rollout"}
        assert evaluations["data_drift"].description == "not evaluated: no production model yet"
    assert registry_of(dagster_home).alias("production") == "v1"


@pytest.mark.slow
def test_dg_launch_runs_the_same_assets(dagster_home: Path) -> None:
    launched = cli(dagster_home, "launch", "--assets", "breast_cancer/raw_data,breast_cancer/validated_data", tool="dg")
    assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-2000:]
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        assert instance.get_latest_materialization_event(dg.AssetKey(["breast_cancer", "validated_data"])) is not None


@pytest.mark.slow
def test_cli_exits_non_zero_and_names_the_source_when_it_cannot_be_read(dagster_home: Path, tmp_path: Path) -> None:
    config = tmp_path / "run.json"
    config.write_text(json.dumps({"resources": {"breast_cancer_data_source": {"config": {"kind": "csv", "path": str(tmp_path / "missing.csv")}}}}))
    result = materialize(dagster_home, "group:breast_cancer", "-c", str(config))
    assert result.returncode != 0
    assert "missing.csv' could not be read: file not found" in result.stderr


@pytest.mark.slow
def test_with_the_multiprocess_executor_each_step_reads_what_another_process_stored(dagster_home: Path) -> None:
    """The scale-out switch (ML_PLATFORM_EXECUTOR): every step in a process of its own, so each
    input is read from the stored output of a step that ran (and wrote it) elsewhere."""
    # (Each step process imports the code location again, ~3 s here: two steps and the checks suffice.)
    done = materialize(dagster_home, '+key:"breast_cancer/validated_data"', ML_PLATFORM_EXECUTOR="multiprocess")
    assert done.returncode == 0, done.stderr[-3000:]
    with dg.DagsterInstance.get() as instance:
        [run] = instance.get_runs()
        assert run.status == dg.DagsterRunStatus.SUCCESS
        starts = instance.all_logs(run.run_id, of_type=dg.DagsterEventType.STEP_START)
        pids = {e.step_key: e.dagster_event.pid for e in starts}
        # validated_data reads raw_data, the monitoring checks read validated_data: each from another process.
        assert set(pids) == {"breast_cancer__raw_data", "breast_cancer__validated_data", "breast_cancer_monitoring_checks"}
        assert len(set(pids.values())) == len(pids)  # one process per step
        run_dir = Path(instance.storage_directory()) / "runs" / run.run_id / "breast_cancer"
    stored = read_output(run_dir / "validated_data")
    assert len(stored.frame) == 569 and stored.fingerprint
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]
