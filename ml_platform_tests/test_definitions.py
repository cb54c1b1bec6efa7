"""The shipped project's Definitions, and each declared model's schedules."""

import inspect
import subprocess
import sys
from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from ml_platform.orchestration.names import MODEL_TAG, TRAINING_TAG
from ml_platform_tests.conftest import REPO_ROOT, declared, platform, registry_of, synthetic

BIN = sys.executable.rsplit("/", 1)[0]


def test_the_shipped_project_declares_two_models_each_with_its_assets_jobs_schedules_and_sensors() -> None:
    from ml_platform.definitions import defs

    models = ("breast_cancer", "churn")
    definitions = defs()
    dg.Definitions.validate_loadable(definitions)
    repo = definitions.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == {
        f"{m}/{a}" for m in models for a in (
            "raw_data", "validated_data", "trained_model", "staging_model", "production_model", "batch_predictions",
            "monitoring_report",
        )
    }
    assert {repo.asset_graph.get(k).group_name for k in repo.asset_graph.get_all_asset_keys()} == set(models)
    assert set(definitions.resources) == {"breast_cancer_data_source", "churn_data_source", "model_registry", "alerting", "io_manager"}
    assert {(s.name, s.cron_schedule, s.execution_timezone) for s in repo.schedule_defs} == {
        (f"{m}_{s}_schedule", cron, "UTC") for m in models
        for s, cron in (("retrain", "0 2 * * *"), ("monitoring", "0 * * * *"), ("batch", "30 * * * *"))
    }
    assert {j.name for j in repo.get_all_jobs()} >= {
        f"breast_cancer_{j}" for j in ("training", "monitoring", "batch", "rollback")
    }
    assert {s.name for s in repo.sensor_defs} == {
        "check_alert_sensor", "run_failure_alert_sensor", *(f"{m}_batch_after_promotion" for m in models)
    }
    production = repo.asset_graph.get(dg.AssetKey(["breast_cancer", "production_model"]))
    assert production.parent_keys == {dg.AssetKey(["breast_cancer", "staging_model"])}
    batch = repo.asset_graph.get(dg.AssetKey(["breast_cancer", "batch_predictions"]))
    assert batch.parent_keys == {dg.AssetKey(["breast_cancer", a]) for a in ("raw_data", "validated_data", "production_model")}


def test_the_training_job_holds_no_monitoring_check_and_the_monitoring_job_never_trains() -> None:
    defs = platform()
    graph = defs.resolve_asset_graph()
    jobs = {job.name: job for job in defs.jobs}
    training, monitoring = jobs["breast_cancer_training"], jobs["breast_cancer_monitoring"]
    assert {k.name for k in training.selection.resolve_checks(graph)} == {"pandera_schema", "accuracy_above_threshold", "smoke_test"}
    assert {k.to_user_string() for k in training.selection.resolve(graph)} == {
        f"breast_cancer/{a}" for a in ("raw_data", "validated_data", "trained_model", "staging_model", "production_model")
    }
    batch = jobs["breast_cancer_batch"]
    assert {k.to_user_string() for k in batch.selection.resolve(graph)} == {
        f"breast_cancer/{a}" for a in ("raw_data", "validated_data", "batch_predictions")
    }
    assert {k.name for k in batch.selection.resolve_checks(graph)} == {"pandera_schema", "prediction_outputs", "canary_rollout"}
    assert {k.to_user_string() for k in monitoring.selection.resolve(graph)} == {
        "breast_cancer/raw_data", "breast_cancer/validated_data", "breast_cancer/monitoring_report",
    }
    assert {k.name for k in monitoring.selection.resolve_checks(graph)} == {
        "pandera_schema", "data_drift", "missing_values", "prediction_drift", "production_model_accuracy",
        "estimated_accuracy", "pipeline_run_time",
    }
    assert training.tags[TRAINING_TAG] == "breast_cancer" and training.tags[MODEL_TAG] == "breast_cancer"


def test_ml_platform_module_exposes_exactly_one_definitions_for_the_cli() -> None:
    import ml_platform

    found = [name for name, value in inspect.getmembers(ml_platform) if isinstance(value, dg.Definitions | type(ml_platform.platform))]
    assert found == ["platform"]


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_the_retrain_schedule_fires_at_the_declared_time_in_the_declared_timezone(timezone: str) -> None:
    model = synthetic("synth", schedules={"timezone": timezone})
    schedule = platform(model).resolve_schedule_def("synth_retrain_schedule")
    assert schedule.execution_timezone == timezone
    start = datetime(2026, 3, 27, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # spans Europe's DST change
    ticks = cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone)
    for _ in range(4):
        fire = next(ticks).astimezone(ZoneInfo(timezone))
        assert (fire.hour, fire.minute) == (2, 0) or (timezone == "Europe/Berlin" and fire.day == 29 and fire.hour == 3)


def test_a_schedule_tick_carries_the_models_declaration_and_its_run_trains_exactly_that(
    instance: dg.DagsterInstance, dagster_home
) -> None:
    model = declared(
        "synth",
        source={"kind": "synthetic", "synthetic": {"rows": 777, "features": 5, "seed": 9}},
        training={"estimator": "random_forest", "params": {"n_estimators": 7}},
        schedules={"timezone": "Asia/Tokyo", "retrain": {"cron": "30 3 * * 1"}},
    )
    defs = platform(model)
    schedule = defs.resolve_schedule_def("synth_retrain_schedule")
    assert (schedule.cron_schedule, schedule.execution_timezone) == ("30 3 * * 1", "Asia/Tokyo")
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime(2026, 11, 30, 3, 30, tzinfo=ZoneInfo("Asia/Tokyo"))) as context:
        [request] = schedule.evaluate_tick(context).run_requests
    assert request.tags[MODEL_TAG] == "synth" and request.tags[TRAINING_TAG] == "synth"
    trained_config = request.run_config["ops"]["synth__trained_model"]["config"]
    assert trained_config["estimator"] == "random_forest" and trained_config["params"] == {"n_estimators": 7}
    # What the daemon would launch: the schedule's job with the request's config and tags.
    result = defs.resolve_job_def(schedule.job_name).execute_in_process(
        instance=instance, run_config=request.run_config, tags=request.tags
    )
    assert result.success
    version = registry_of(dagster_home, "synth").get("v1")
    assert version.metadata["row_count"] == 777 and len(version.features) == 5
    assert version.metadata["params"]["estimator"] == "random_forest" and version.metadata["params"]["n_estimators"] == 7


def test_schedules_can_be_declared_off_and_the_monitoring_cadence_changed() -> None:
    model = synthetic("synth", schedules={"retrain": {"cron": "0 2 * * *", "enabled": False}, "monitoring": {"cron": "0 */6 * * *"}})
    defs = platform(model)
    assert defs.resolve_schedule_def("synth_retrain_schedule").default_status == dg.DefaultScheduleStatus.STOPPED
    monitoring = defs.resolve_schedule_def("synth_monitoring_schedule")
    assert monitoring.cron_schedule == "0 */6 * * *" and monitoring.default_status == dg.DefaultScheduleStatus.RUNNING


@pytest.mark.slow
def test_dg_dev_serves_the_code_location_with_its_jobs_and_schedules(tmp_path, monkeypatch: pytest.MonkeyPatch) -> None:
    from ml_platform_tests.dagster_dev import DagsterDev, make_dagster_home

    home = make_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    with DagsterDev(home, {}, tmp_path / "dg_dev.log", tool="dg") as dev:
        data = dev.graphql(
            "{ workspaceOrError { ... on Workspace { locationEntries { name loadStatus locationOrLoadError {"
            " __typename ... on RepositoryLocation { repositories { jobs { name } schedules { name } } } } } } } }"
        )
    [entry] = data["workspaceOrError"]["locationEntries"]
    assert (entry["name"], entry["loadStatus"]) == ("ml_platform", "LOADED")
    [repository] = entry["locationOrLoadError"]["repositories"]
    assert {j["name"] for j in repository["jobs"]} >= {"breast_cancer_training", "breast_cancer_monitoring", "breast_cancer_rollback"}
    assert {s["name"] for s in repository["schedules"]} >= {"breast_cancer_retrain_schedule", "breast_cancer_monitoring_schedule"}


@pytest.mark.slow
@pytest.mark.parametrize(
    "command",
    [["dagster", "definitions", "validate", "-w", "workspace.yaml"], ["dagster", "definitions", "validate"], ["dg", "check", "defs"]],
    ids=["workspace.yaml", "pyproject", "dg"],
)
def test_the_code_location_loads_from_workspace_yaml_pyproject_and_dg(command: list[str], dagster_home) -> None:
    """What `dagster dev -w workspace.yaml`, plain `dagster dev` and `dg dev` from the repo root load."""
    result = subprocess.run([f"{BIN}/{command[0]}", *command[1:]], cwd=REPO_ROOT, capture_output=True, text=True, timeout=180)
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    assert "successful" in (result.stdout + result.stderr).lower() or "All definitions loaded successfully." in result.stdout
