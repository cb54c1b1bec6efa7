"""The Definitions object, the job and the schedule."""

from datetime import datetime
from zoneinfo import ZoneInfo

import dagster as dg
import pytest
from dagster._utils.schedules import cron_string_iterator

from ml_platform.orchestration.jobs import daily_retrain_schedule


def test_definitions_load_and_validate() -> None:
    from ml_platform import defs

    dg.Definitions.validate_loadable(defs)
    repo = defs.get_repository_def()
    assert {k.to_user_string() for k in repo.asset_graph.get_all_asset_keys()} == {
        "raw_data", "validated_data", "trained_model", "production_model", "monitoring_report",
    }
    assert set(defs.resources) == {"data_source", "model_registry", "alerting"}
    assert {s.name: s.cron_schedule for s in repo.schedule_defs} == {
        "daily_retrain": "0 2 * * *", "monitoring_hourly": "0 * * * *", "monitoring_every_6_hours": "0 */6 * * *",
    }
    assert {j.name for j in repo.get_all_jobs()} >= {"ml_pipeline", "rollback_production_model", "monitoring"}
    assert {s.name for s in repo.sensor_defs} == {"check_alert_sensor", "run_failure_alert_sensor"}
    upstream = repo.asset_graph.get(dg.AssetKey("production_model")).parent_keys
    assert upstream == {dg.AssetKey("trained_model")}


def test_ml_platform_module_exposes_exactly_one_definitions_for_the_cli() -> None:
    import inspect

    import ml_platform

    found = [name for name, value in inspect.getmembers(ml_platform) if isinstance(value, dg.Definitions)]
    assert found == ["defs"]


@pytest.mark.parametrize("timezone", ["UTC", "Europe/Berlin", "America/New_York"])
def test_schedule_fires_at_two_in_the_configured_timezone(timezone: str) -> None:
    schedule = daily_retrain_schedule(timezone)
    assert schedule.execution_timezone == timezone
    start = datetime(2026, 3, 27, 12, 0, tzinfo=ZoneInfo("UTC")).timestamp()  # spans Europe's DST change
    ticks = cron_string_iterator(start, schedule.cron_schedule, schedule.execution_timezone)
    for _ in range(4):
        fire = next(ticks).astimezone(ZoneInfo(timezone))
        assert (fire.hour, fire.minute) == (2, 0) or (timezone == "Europe/Berlin" and fire.day == 29 and fire.hour == 3)

    scheduled_at = datetime(2026, 11, 28, 2, 0, tzinfo=ZoneInfo(timezone))
    with dg.build_schedule_context(scheduled_execution_time=scheduled_at) as context:
        run_requests = schedule.evaluate_tick(context).run_requests
    assert len(run_requests) == 1 and schedule.job_name == "ml_pipeline"


def test_schedule_timezone_defaults_to_utc_and_follows_the_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ML_PLATFORM_TIMEZONE", raising=False)
    assert daily_retrain_schedule().execution_timezone == "UTC"
    monkeypatch.setenv("ML_PLATFORM_TIMEZONE", "Asia/Tokyo")
    assert daily_retrain_schedule().execution_timezone == "Asia/Tokyo"


@pytest.mark.slow
@pytest.mark.parametrize("args", [["-w", "workspace.yaml"], []], ids=["workspace.yaml", "pyproject"])
def test_the_code_location_loads_from_workspace_yaml_and_from_pyproject(args: list[str], dagster_home) -> None:
    """What `dagster dev -w workspace.yaml` and plain `dagster dev` from the repo root load."""
    import subprocess
    import sys
    from pathlib import Path

    root = Path(__file__).resolve().parents[1]
    result = subprocess.run(
        [str(Path(sys.executable).with_name("dagster")), "definitions", "validate", *args],
        cwd=root, capture_output=True, text=True, timeout=120,
    )
    assert result.returncode == 0, result.stderr[-2000:]
    assert "Validation successful for code location ml_platform." in result.stdout + result.stderr
