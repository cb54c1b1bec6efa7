"""The rollout's state lives in the registry: `dagster dev` stopped and started again between two
scheduled batch runs, the rollout goes on from where it stood."""

from pathlib import Path

import dagster as dg
import pytest

from ml_platform.data.sources import load_bundled_source
from ml_platform.model.registry import ModelRegistry
from ml_platform.model.rollout import RolloutPolicy, new_rollout
from ml_platform.model.training import TrainingSettings, train_candidate
from ml_platform_tests.dagster_dev import DagsterDev, make_dagster_home
from ml_platform_tests.test_run_crash import wait_for

FINISHED = (dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE, dg.DagsterRunStatus.CANCELED)


@pytest.mark.slow
def test_the_rollout_survives_a_restart_of_dagster_dev(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("ML_PLATFORM_REGISTRY", raising=False)
    registry = ModelRegistry(home / "ml_platform" / "registry" / "breast_cancer")
    source = load_bundled_source("breast_cancer")
    for c in (1.0, 0.5):
        candidate = train_candidate(source.frame, source.spec, TrainingSettings(params={"C": c}))
        registry.register(candidate.pipeline, {"features": source.spec.feature_names, "metrics": candidate.metrics})
    registry.set_alias("production", "v1", reason="first")
    registry.start_rollout(new_rollout("v2", "v1", RolloutPolicy(min_runs_per_step=1, min_rows_per_step=1)))

    seen: list[dict] = []
    for restart in (1, 2):
        with DagsterDev(home, {}, tmp_path / f"dagster_dev_{restart}.log") as dev, dg.DagsterInstance.get() as instance:
            run_id = dev.launch("breast_cancer_batch")
            wait_for(lambda r=run_id: instance.get_run_by_id(r).status in FINISHED, 240, f"batch run {run_id}")
            assert instance.get_run_by_id(run_id).status == dg.DagsterRunStatus.SUCCESS
            [materialization] = [
                e.asset_materialization for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
                if e.asset_materialization and e.asset_materialization.asset_key.path[-1] == "batch_predictions"
            ]
            shown = materialization.metadata["rollout"].value  # what the UI shows
        rollout = ModelRegistry(registry.url).rollout()
        assert rollout is not None
        decisions = [d for d in rollout["decisions"] if d["run_id"] == run_id]
        assert [d["action"] for d in decisions] == ["advance"]
        assert shown.startswith(f"v2 vs v1: step {rollout['step'] + 1} of 4")
        seen.append(rollout)
    # The second dagster dev went on from the first one's step, with its history kept.
    first, second = seen
    assert second["decisions"][: len(first["decisions"])] == first["decisions"]
    assert second["step"] > first["step"] >= 1
    assert [s["share"] for s in second["steps_history"]][:3] == [0, 10, 50]
