"""The `<model>_rollback` Dagster job on a real instance."""

import dagster as dg

from ml_platform.model.registry import ModelRegistry
from ml_platform_tests.conftest import op_config, platform, promote_at_once, run_job, train

OTHER_PARAMS = promote_at_once(run_config=op_config("breast_cancer", "trained_model", params={"C": 0.5}))


def rollback(instance: dg.DagsterInstance, **config) -> dg.ExecuteInProcessResult:
    return run_job(instance, platform(), "breast_cancer_rollback",
                   {"ops": {"breast_cancer_rollback_production_model": {"config": config}}})


def test_rollback_job_restores_previous_and_records_it(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert train(instance).success and train(instance, run_config=OTHER_PARAMS).success
    assert registry.aliases() == {"production": "v2", "previous": "v1", "staging": "v2"}
    result = rollback(instance, reason="v2 misbehaves in serving")
    assert result.success
    assert registry.aliases() == {"production": "v1", "previous": "v2", "staging": "v2"}
    entry = registry.history()[-1]
    assert (entry["action"], entry["reason"], entry["run_id"]) == ("rollback", "v2 misbehaves in serving", result.run_id)
    event = instance.get_latest_materialization_event(dg.AssetKey(["breast_cancer", "production_model"]))
    assert event.run_id == result.run_id
    assert event.asset_materialization.metadata["production_version"].value == "v1"


def test_rollback_job_refuses_a_corrupt_version_and_changes_nothing(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert train(instance).success and train(instance, run_config=OTHER_PARAMS).success
    with open(registry.base + "/versions/v1/model.pkl", "ab") as f:
        f.write(b"x")
    result = rollback(instance, to_version="v1")
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure.description.startswith("rollback refused: model version v1: artifact integrity check failed")
    assert registry.alias("production") == "v2" and len(registry.history()) == 4  # staged and promoted, twice
