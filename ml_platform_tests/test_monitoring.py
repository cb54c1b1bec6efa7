"""Monitoring checks and the report, on a real instance with synthetic data."""

import dagster as dg
import pytest

from ml_platform.monitoring.checks import REFERENCE_FILE, ModelReference
from ml_platform.model.registry import ModelRegistry
from ml_platform.orchestration.assets import production_model
from ml_platform.orchestration.monitoring import last_pipeline_run_seconds
from ml_platform.orchestration.resources import DataSourceResource
from ml_platform_tests.conftest import run_job

TRAINING = DataSourceResource(kind="synthetic", rows=4_000, features=8, seed=1)


def fresh(**drift) -> DataSourceResource:
    """A new sample of the same population (another seed), optionally drifted."""
    return DataSourceResource(kind="synthetic", rows=4_000, features=8, seed=2, **drift)


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


@pytest.fixture
def trained(instance: dg.DagsterInstance, registry: ModelRegistry) -> dg.DagsterInstance:
    result = run_job(instance, "ml_pipeline", TRAINING)
    assert result.success and registry.alias("production") == "v1"
    # Before any production model existed, the monitoring checks said so instead of guessing.
    assert "not evaluated: no production model" in checks(result)["data_drift"].description
    return instance


def test_training_stores_a_compact_drift_reference_with_the_version(trained, registry: ModelRegistry) -> None:
    raw = registry.attachment("v1", REFERENCE_FILE)
    reference = ModelReference.from_json(raw)
    assert list(reference.features.feature_names) == [f"f{i}" for i in range(8)]
    assert reference.features.n_rows == 3_200  # the training split, not the holdout
    assert set(reference.prediction_shares) == {"0", "1"}
    assert len(raw) < 400_000  # independent of the number of training rows


def test_no_drift_on_a_new_sample_of_the_same_population(trained) -> None:
    result = run_job(trained, "monitoring", fresh())
    assert result.success
    evaluations = checks(result)
    assert evaluations["data_drift"].passed, evaluations["data_drift"].description
    assert evaluations["data_drift"].metadata["drifted_features"].value == "none"
    assert evaluations["prediction_drift"].passed
    accuracy = evaluations["production_model_accuracy"]
    assert accuracy.passed and accuracy.metadata["labelled_rows"].value == 4_000
    # Monitoring never retrains: no new model version, production unchanged.
    assert [e.asset_key.to_user_string() for e in result.get_asset_materialization_events()] == ["raw_data", "monitoring_report"]


def test_drift_is_flagged_on_exactly_the_shifted_features(trained) -> None:
    result = run_job(trained, "monitoring", fresh(drift_features=["f2", "f5"], drift_shift=1.0))
    drift = checks(result)["data_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["drifted_features"].value == "f2, f5"
    rows = {r["feature"]: r for r in drift.metadata["drift"].value}
    assert set(rows) == {f"f{i}" for i in range(8)}
    assert all((rows[f]["psi"] > 0.2) == (f in ("f2", "f5")) for f in rows)
    assert all(0.0 <= rows[f]["ks_pvalue"] <= 1.0 for f in rows)
    assert drift.metadata["alert_severity"].value == "MEDIUM"
    assert drift.description.startswith("Data drift detected: 2 of 8 features drifted")


def test_shifted_inputs_move_predictions_and_hurt_accuracy(trained) -> None:
    result = run_job(trained, "monitoring", fresh(drift_features=["f0"], drift_shift=6.0))
    evaluations = checks(result)
    assert not evaluations["prediction_drift"].passed
    assert evaluations["prediction_drift"].metadata["psi"].value > 0.2
    accuracy = evaluations["production_model_accuracy"]
    assert not accuracy.passed and accuracy.metadata["alert_severity"].value == "HIGH"
    assert accuracy.description.startswith("Model accuracy dropped to")


def test_check_severities_and_thresholds_are_configurable(trained) -> None:
    config = {"ops": {"raw_data_data_drift": {"config": {"psi_threshold": 5.0, "alert_severity": "HIGH"}}}}
    result = run_job(trained, "monitoring", fresh(drift_features=["f2"], drift_shift=1.0), run_config=config)
    drift = checks(result)["data_drift"]
    assert drift.passed and drift.metadata["threshold"].value == 5.0 and drift.metadata["alert_severity"].value == "HIGH"


def test_run_time_check_reads_real_run_records(trained) -> None:
    run_id, seconds = last_pipeline_run_seconds(trained, exclude_run_id=None)
    pipeline_run = trained.get_run_by_id(run_id)
    assert pipeline_run.job_name == "ml_pipeline" and 0 < seconds < 120
    slow = {"ops": {"production_model_pipeline_run_time": {"config": {"max_seconds": seconds / 2}}}}
    result = run_job(trained, "monitoring", fresh(), run_config=slow)
    run_time = checks(result)["pipeline_run_time"]
    assert not run_time.passed
    assert run_time.metadata["measured_run_id"].value == run_id
    assert run_time.description == f"Pipeline took {seconds:.0f}s (threshold: {seconds / 2:.0f}s)"
    assert run_time.metadata["alert_severity"].value == "LOW"
    assert checks(run_job(trained, "monitoring", fresh()))["pipeline_run_time"].passed


def test_production_model_has_the_freshness_policy() -> None:
    policy = production_model.specs_by_key[dg.AssetKey("production_model")].freshness_policy
    assert policy.warn_window.to_timedelta().total_seconds() == 25 * 3600
    assert policy.fail_window.to_timedelta().total_seconds() == 49 * 3600


def test_monitoring_report_shows_failing_checks_drift_versions_and_charts(trained) -> None:
    result = run_job(trained, "monitoring", fresh(drift_features=["f2", "f5"], drift_shift=1.0))
    metadata = result.asset_materializations_for_node("monitoring_report")[0].metadata
    report = metadata["report"].value
    assert "# Monitoring report" in report and "Production model: **v1**" in report
    # Shifting two inputs by one standard deviation also moves predictions and costs accuracy.
    assert "Total failing: 3 (HIGH: 1, MEDIUM: 2, LOW: 0)" in report
    assert report.index("| HIGH | raw_data | production_model_accuracy") < report.index("| MEDIUM | raw_data | data_drift")
    assert "| MEDIUM | raw_data | data_drift | Data drift detected: 2 of 8 features drifted" in report
    assert report.count("| f") >= 8 and "| f2 |" in report
    assert "| v1 |" in report and "production" in report
    assert report.count("data:image/svg+xml;base64,") == 2
    assert metadata["failing_high"].value == 1 and metadata["failing_medium"].value == 2 and metadata["drifted_features"].value == 2
