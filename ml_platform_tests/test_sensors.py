"""The failed-check alert sensor against a real instance with real failed checks."""

from pathlib import Path

import dagster as dg

from ml_platform.core.alerts import JsonlAlertFile
from ml_platform.orchestration.resources import AlertFileResource
from ml_platform.orchestration.sensors import failed_check_alert_sensor
from ml_platform_tests.conftest import run_pipeline

STRICT_ACCURACY = {"ops": {"trained_model": {"config": {"min_accuracy": 0.999}}}}


def tick(instance: dg.DagsterInstance, cursor: str | None, alerts_path: Path) -> str:
    context = dg.build_sensor_context(
        instance=instance, cursor=cursor, resources={"alert_file": AlertFileResource(path=str(alerts_path))}
    )
    failed_check_alert_sensor(context)
    return context.cursor


def test_each_failed_check_is_alerted_exactly_once_across_ticks(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    alerts_path = tmp_path / "alerts.jsonl"
    assert run_pipeline(instance).success  # passing checks raise no alert
    failed_run = run_pipeline(instance, run_config=STRICT_ACCURACY)
    assert not failed_run.success

    cursor = tick(instance, None, alerts_path)
    records = JsonlAlertFile(alerts_path).read()
    assert len(records) == 1
    alert = records[0]
    assert (alert["asset"], alert["check"], alert["severity"]) == ("trained_model", "accuracy_above_threshold", "HIGH")
    assert alert["run_id"] == failed_run.run_id
    assert alert["message"].startswith("Model accuracy dropped to 98.25% (threshold: 99.90%)")
    assert alert["recommended_action"] == "Consider retraining model with more recent data"
    assert alert["model_version"] == "v2"

    # Second tick, nothing new: nothing written, cursor unchanged.
    assert tick(instance, cursor, alerts_path) == cursor
    assert len(JsonlAlertFile(alerts_path).read()) == 1

    # A new failure is picked up by the next tick, once.
    second_failure = run_pipeline(instance, run_config=STRICT_ACCURACY)
    new_cursor = tick(instance, cursor, alerts_path)
    assert int(new_cursor) > int(cursor)
    records = JsonlAlertFile(alerts_path).read()
    assert [r["run_id"] for r in records] == [failed_run.run_id, second_failure.run_id]

    # A tick whose cursor was lost (daemon died before saving it) re-reads but does not re-alert.
    tick(instance, cursor, alerts_path)
    tick(instance, None, alerts_path)
    assert len(JsonlAlertFile(alerts_path).read()) == 2


def test_warn_checks_are_alerted_with_their_configured_severity(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    import numpy as np
    import pandas as pd

    from ml_platform.orchestration.resources import DataSourceResource

    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=100), "label": np.arange(100) % 2})
    frame.loc[7, "a"] = np.inf
    frame.to_csv(tmp_path / "d.csv", index=False)
    source = DataSourceResource(kind="csv", path=str(tmp_path / "d.csv"), target_column="label")
    config = {"ops": {"validated_data": {"config": {"max_invalid_fraction": 0.05}}}}
    run_pipeline(instance, source=source, run_config=config)
    tick(instance, None, tmp_path / "alerts.jsonl")
    alerts = {r["check"]: r for r in JsonlAlertFile(tmp_path / "alerts.jsonl").read()}
    assert alerts["pandera_schema"]["severity"] == "MEDIUM"
    assert alerts["pandera_schema"]["message"] == "1 of 100 rows failed the schema and were quarantined"


def test_monitoring_check_alerts_carry_their_table_metadata_as_json(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from ml_platform.orchestration.resources import DataSourceResource
    from ml_platform_tests.conftest import run_job

    assert run_job(instance, "ml_pipeline", DataSourceResource(kind="synthetic", rows=2_000, seed=1)).success
    drifted = DataSourceResource(kind="synthetic", rows=2_000, seed=2, drift_features=["f3"], drift_shift=1.5)
    run_job(instance, "monitoring", drifted)
    tick(instance, None, tmp_path / "alerts.jsonl")
    alerts = {r["check"]: r for r in JsonlAlertFile(tmp_path / "alerts.jsonl").read()}
    drift = alerts["data_drift"]
    assert drift["severity"] == "MEDIUM" and drift["model_version"] == "v1"
    per_feature = {row["feature"]: row for row in drift["metadata"]["features"]}
    assert per_feature["f3"]["drifted"] is True and per_feature["f0"]["drifted"] is False
