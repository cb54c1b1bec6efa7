"""Two runs of one model at once, as two `dagster asset materialize` processes on one instance:
each run trains on its own data, registers its own version, and its gate judges its own candidate."""

import json
import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_platform_tests.conftest import registry_of
from ml_platform_tests.projects import make_project

BIN = Path(sys.executable).parent


def metadata_of(instance: dg.DagsterInstance, run_id: str, asset: str) -> dict:
    [event] = [
        e for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
        if e.dagster_event.asset_key.to_user_string() == f"synth/{asset}"
    ]
    return {k: v.value for k, v in event.dagster_event.materialization.metadata.items()}


@pytest.mark.slow
def test_two_concurrent_runs_of_one_model_keep_their_data_versions_and_gates_apart(
    instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path
) -> None:
    # The instance exists before the runs (as after `make run`): two processes creating a brand-new
    # SQLite instance at the same moment race in Dagster's schema migration, which is not the point here.
    instance.get_runs()
    instance.event_log_storage.get_event_records(dg.EventRecordsFilter(dg.DagsterEventType.RUN_START), limit=1)
    project = make_project(tmp_path / "project", {
        "synth": {"source": {"kind": "synthetic", "synthetic": {"rows": 150_000, "features": 10}},
                  "gate": {"tolerance": 1.0}},  # let every candidate through: the point is who judges whom
    })
    processes = []
    for seed in (11, 22):
        config = tmp_path / f"seed{seed}.json"
        config.write_text(json.dumps({"resources": {"synth_data_source": {"config": {"synthetic": {"seed": seed}}}}}))
        processes.append(subprocess.Popen(
            [str(BIN / "dagster"), "asset", "materialize", "-m", project.module, "--select", "group:synth", "-c", str(config)],
            cwd=project.root, env={**project.env(), "DAGSTER_HOME": str(dagster_home)},
            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True,
        ))
    outputs = [p.communicate(timeout=600)[0] for p in processes]
    assert all(p.returncode == 0 for p in processes), "\n".join(o[-3000:] for o in outputs)

    registry = registry_of(dagster_home, "synth")
    with dg.DagsterInstance.get() as instance:
        records = instance.get_run_records()
        assert len(records) == 2 and all(r.dagster_run.status == dg.DagsterRunStatus.SUCCESS for r in records)
        first, second = sorted(records, key=lambda r: r.start_time)
        assert second.start_time < first.end_time, "the two runs did not overlap; the test proved nothing"
        versions = set()
        for record in records:
            run_id = record.dagster_run.run_id
            validated = metadata_of(instance, run_id, "validated_data")
            trained = metadata_of(instance, run_id, "trained_model")
            gate = metadata_of(instance, run_id, "production_model")
            version = registry.get(trained["model_version"])
            # The version was trained by this run, on the data this run validated...
            assert version.metadata["run_id"] == run_id
            assert version.metadata["data_fingerprint"] == validated["fingerprint"]
            # ...and this run's gate judged exactly that candidate, with its check results.
            assert gate["candidate_version"] == version.version
            assert gate["checks"] == {"accuracy_above_threshold": True}, gate["decision"]
            versions.add(version.version)
    assert versions == {"v1", "v2"}
    promoted = [h["to_version"] for h in registry.history() if h["alias"] == "production"]
    # The first to pass the gate is promoted (no champion yet); the other starts a rollout or is refused.
    assert len(promoted) == 1 and promoted[0] in versions
    # Each run kept its intermediate outputs in a folder of its own.
    stored = {p.name for p in (dagster_home / "storage" / "runs").iterdir()}
    assert stored == {r.dagster_run.run_id for r in records}
    assert os.path.exists(dagster_home / "storage" / "runs" / first.dagster_run.run_id / "synth" / "validated_data")
