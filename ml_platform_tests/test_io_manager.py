"""The run-scoped IO manager: a re-execution reads its parent run's outputs, and old run folders
are pruned except those holding an asset's latest output."""

import os
import time
from pathlib import Path

import dagster as dg

from ml_platform.orchestration.io_manager import RunScopedIOManager
from ml_platform_tests.conftest import platform, registry_of, run_job, source_config, synthetic

MODEL = synthetic("reexec", rows=1_500, seed=1)
BAD_PARAMS = {"ops": {"reexec__trained_model": {"config": {"params": {"C": -1.0}}}}}


def training_job() -> dg.JobDefinition:
    """Module-level, so Dagster can reconstruct the job for a re-execution."""
    return platform(MODEL).resolve_job_def("reexec_training")


def fingerprint(instance: dg.DagsterInstance, run_id: str, asset: str) -> str:
    [event] = [e for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
               if e.dagster_event.asset_key.to_user_string() == f"reexec/{asset}"]
    return event.dagster_event.materialization.metadata["fingerprint"].value


def test_re_execution_from_failure_reads_the_parent_runs_data_not_a_newer_runs(instance: dg.DagsterInstance, dagster_home: Path) -> None:
    with dg.execute_job(dg.reconstructable(training_job), instance, run_config=BAD_PARAMS) as failed:
        assert not failed.success  # trained_model refused C=-1; validated_data was stored by this run
        parent = failed.run_id
    # Meanwhile the hourly monitoring validates newer data.
    newer = run_job(instance, platform(MODEL), "reexec_monitoring", source_config("reexec", synthetic={"seed": 2}))
    assert newer.success and fingerprint(instance, newer.run_id, "validated_data") != fingerprint(instance, parent, "validated_data")

    options = dg.ReexecutionOptions.from_failure(parent, instance)
    fixed = {"ops": {"reexec__trained_model": {"config": {"params": {"C": 1.0}}}}}
    with dg.execute_job(dg.reconstructable(training_job), instance, run_config=fixed, reexecution_options=options) as retried:
        assert retried.success
    version = registry_of(dagster_home, "reexec").get("v1")
    assert version.metadata["data_fingerprint"] == fingerprint(instance, parent, "validated_data")


def test_prune_removes_old_run_folders_but_keeps_each_assets_latest_output(instance: dg.DagsterInstance, dagster_home: Path) -> None:
    defs = platform(MODEL)
    first = run_job(instance, defs, "reexec_training")
    second = run_job(instance, defs, "reexec_monitoring")  # re-materializes raw_data and validated_data
    assert first.success and second.success
    root = Path(instance.storage_directory()) / "runs"
    old = time.time() - 48 * 3600
    for run in (first.run_id, second.run_id):
        os.utime(root / run, (old, old))
    stray = root / "an-old-run"
    (stray / "reexec").mkdir(parents=True)
    (stray / "reexec" / "raw_data").write_bytes(b"")
    os.utime(stray, (old, old))

    removed = RunScopedIOManager().prune(instance, root, keep_run_id="none")
    # The first run still holds the latest trained_model and production_model; the second the latest data.
    assert removed == ["an-old-run"]
    assert {p.name for p in root.iterdir()} == {first.run_id, second.run_id}
    run_job(instance, defs, "reexec_training")  # now newer outputs of every asset exist
    removed = RunScopedIOManager().prune(instance, root, keep_run_id="none")
    assert sorted(removed) == sorted([first.run_id, second.run_id])
