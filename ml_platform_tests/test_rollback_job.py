"""The `rollback_production_model` Dagster job on a real instance."""

import dagster as dg

from ml_platform.model.registry import ModelRegistry
from ml_platform.orchestration.rollback import rollback_production_model
from ml_platform_tests.conftest import pipeline_resources, run_pipeline


def rollback(instance: dg.DagsterInstance, **config) -> dg.ExecuteInProcessResult:
    return rollback_production_model.execute_in_process(
        instance=instance,
        resources=pipeline_resources(),
        run_config={"ops": {"rollback_production_model_op": {"config": config}}},
        raise_on_error=False,
    )


def test_rollback_job_restores_previous_and_records_it(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert run_pipeline(instance).success and run_pipeline(instance).success
    assert registry.aliases() == {"production": "v2", "previous": "v1"}
    result = rollback(instance, reason="v2 misbehaves in serving")
    assert result.success
    assert registry.aliases() == {"production": "v1", "previous": "v2"}
    entry = registry.history()[-1]
    assert (entry["action"], entry["reason"], entry["run_id"]) == ("rollback", "v2 misbehaves in serving", result.run_id)
    event = instance.get_latest_materialization_event(dg.AssetKey("production_model"))
    assert event.run_id == result.run_id
    assert event.asset_materialization.metadata["production_version"].value == "v1"


def test_rollback_job_refuses_a_corrupt_version_and_changes_nothing(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert run_pipeline(instance).success and run_pipeline(instance).success
    artifact = registry.base + "/versions/v1/model.pkl"
    with open(artifact, "ab") as f:
        f.write(b"x")
    result = rollback(instance, to_version="v1")
    assert not result.success
    failure = result.get_step_failure_events()[0].step_failure_data.user_failure_data
    assert failure.description.startswith("rollback refused: model version v1: artifact integrity check failed")
    assert registry.alias("production") == "v2" and len(registry.history()) == 2
