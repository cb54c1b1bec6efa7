"""Monitoring checks and the report, on a real instance with synthetic data."""

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.model.registry import ModelRegistry
from ml_platform.monitoring.checks import REFERENCE_FILE, ModelReference
from ml_platform.orchestration.monitoring import last_pipeline_run_seconds
from ml_platform.orchestration.names import MONITORING_CHECKS, ModelNames
from ml_platform.orchestration.pipeline import build_pipeline_assets
from ml_platform_tests.conftest import materialize, op_config, platform, registry_of, run_job, source_config, synthetic

MODEL = synthetic("synth", rows=4_000, seed=1)
DEFS = platform(MODEL)


def fresh(**drift) -> dict:
    """Run config: a new sample of the same population (another seed), optionally drifted."""
    return source_config("synth", synthetic={"seed": 2, **drift})


def checks(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def monitor(instance: dg.DagsterInstance, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return run_job(instance, DEFS, "synth_monitoring", run_config)


@pytest.fixture
def trained(instance: dg.DagsterInstance, dagster_home) -> dg.DagsterInstance:
    result = run_job(instance, DEFS, "synth_training")
    assert result.success and registry_of(dagster_home, "synth").alias("production") == "v1"
    return instance


def test_before_any_production_model_the_checks_say_so_and_do_not_pass(instance: dg.DagsterInstance) -> None:
    result = monitor(instance)
    assert result.success  # monitoring never fails a run for what it finds
    evaluations = checks(result)
    for name in MONITORING_CHECKS:
        assert not evaluations[name].passed and evaluations[name].severity == dg.AssetCheckSeverity.WARN
        assert evaluations[name].description == "not evaluated: no production model yet"
        assert evaluations[name].metadata["evaluated"].value is False
        assert evaluations[name].metadata["alert_severity"].value == "LOW"
    assert evaluations["pipeline_run_time"].description == "not evaluated: no finished pipeline run yet"


def test_training_stores_a_compact_drift_reference_with_the_version(trained, dagster_home) -> None:
    raw = registry_of(dagster_home, "synth").attachment("v1", REFERENCE_FILE)
    reference = ModelReference.from_json(raw)
    assert list(reference.features.feature_names) == [f"f{i}" for i in range(8)]
    assert reference.features.n_rows == 3_200  # the training split, not the holdout
    assert set(reference.prediction_shares) == {"0", "1"}
    # 3,200 distinct values a feature: all of them are kept (exact figures), about 30 bytes each;
    # past 10,000 (max_points) the grid stops growing with the training rows.
    assert all(f.complete for f in reference.features.features)
    assert len(raw) < 8 * 3_200 * 40
    # The model's reliability, measured on the 800 holdout rows it was not fitted on.
    calibration = reference.calibration
    assert calibration is not None and calibration.measured_on == "holdout" and calibration.rows == 800
    assert list(calibration.accuracy) == sorted(calibration.accuracy) and 0.5 <= calibration.accuracy[-1] <= 1.0


def test_missing_values_and_estimated_accuracy_evaluate_beside_the_realized_accuracy(trained) -> None:
    result = monitor(trained, fresh())
    evaluations = checks(result)
    missing = evaluations["missing_values"]
    assert missing.passed and missing.metadata["failing_features"].value == "none"
    assert missing.metadata["max_increase"].value == 0.10 and missing.metadata["alert_severity"].value == "MEDIUM"
    estimated, realized = evaluations["estimated_accuracy"], evaluations["production_model_accuracy"]
    assert estimated.passed and estimated.metadata["alert_severity"].value == "HIGH"
    # Every row of the new sample is labelled: estimated on all 4,000, next to the realized accuracy.
    assert estimated.metadata["rows"].value == 4_000 and estimated.metadata["estimated_on"].value.startswith("all rows")
    assert abs(estimated.metadata["estimated_accuracy"].value - realized.metadata["accuracy"].value) < 0.05
    lower, upper = estimated.metadata["lower"].value, estimated.metadata["upper"].value
    assert lower < estimated.metadata["estimated_accuracy"].value < upper
    assert "holdout (800 rows, 8 bins)" in estimated.metadata["calibration"].value
    report = result.asset_materializations_for_node("synth__monitoring_report")[0].metadata["report"].value
    section = report.split("## Production accuracy: estimated (before labels) and realized")[1].split("##")[0]
    assert "| estimated |" in section and "| realized |" in section and f"[{lower:.4f}, {upper:.4f}]" in section


def test_estimated_accuracy_fires_high_when_the_models_confidence_collapses(trained) -> None:
    # The synthetic knob squeezes every input towards 0, where the model is unsure: its expected
    # accuracy falls near 0.5. (The knob's labels still follow the undrifted inputs, a concept
    # change CBPE cannot see: here the estimate is only checked against the threshold.)
    result = monitor(trained, fresh(drift_features=[f"f{i}" for i in range(8)], drift_scale=0.05))
    estimated = checks(result)["estimated_accuracy"]
    assert not estimated.passed and estimated.metadata["estimated_accuracy"].value < 0.70
    assert estimated.description.startswith("Estimated accuracy dropped to ") and "(threshold: 70.00%)" in estimated.description
    assert estimated.metadata["alert_severity"].value == "HIGH"


def test_no_drift_on_a_new_sample_of_the_same_population(trained, dagster_home) -> None:
    result = monitor(trained, fresh())
    assert result.success
    evaluations = checks(result)
    assert evaluations["data_drift"].passed, evaluations["data_drift"].description
    assert evaluations["data_drift"].metadata["drifted_features"].value == "none"
    assert evaluations["prediction_drift"].passed
    accuracy = evaluations["production_model_accuracy"]
    assert accuracy.passed and accuracy.metadata["labelled_rows"].value == 4_000
    assert accuracy.metadata["model_version"].value == "v1"
    # Monitoring never retrains: no new model version, production unchanged.
    assert {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()} == {
        "synth/raw_data", "synth/validated_data", "synth/monitoring_report"
    }
    assert [v.version for v in registry_of(dagster_home, "synth").list_versions()] == ["v1"]


def test_drift_is_flagged_on_exactly_the_shifted_features(trained) -> None:
    result = monitor(trained, fresh(drift_features=["f2", "f5"], drift_shift=1.0))
    drift = checks(result)["data_drift"]
    assert not drift.passed and drift.severity == dg.AssetCheckSeverity.WARN
    assert drift.metadata["drifted_features"].value == "f2, f5"
    # The per-feature table travels once (issue 9: it was also sent as JSON), without a row index.
    assert "drift" not in drift.metadata
    rows = {r.data["feature"]: r.data for r in drift.metadata["features"].records}
    assert set(rows) == {f"f{i}" for i in range(8)} and "row" not in rows["f0"]
    assert all((rows[f]["fired"] == "psi, wasserstein") == (f in ("f2", "f5")) for f in rows)
    assert all(rows[f]["drifted"] == (f in ("f2", "f5")) and 0.0 <= rows[f]["ks_pvalue"] <= 1.0 for f in rows)
    assert {rows[f]["ks_precision"] for f in rows} == {"exact"}
    assert drift.metadata["alert_severity"].value == "MEDIUM"
    assert drift.description.startswith("Data drift detected: 2 of 8 features drifted (f2: PSI ")


def test_shifted_inputs_move_predictions_and_hurt_accuracy(trained) -> None:
    result = monitor(trained, fresh(drift_features=["f0"], drift_shift=6.0))
    evaluations = checks(result)
    assert not evaluations["prediction_drift"].passed
    assert evaluations["prediction_drift"].metadata["psi"].value > 0.2
    accuracy = evaluations["production_model_accuracy"]
    assert not accuracy.passed and accuracy.metadata["alert_severity"].value == "HIGH"
    assert accuracy.description.startswith("Model accuracy dropped to")


def test_declared_thresholds_and_severities_apply_and_run_config_overrides_them(instance, dagster_home) -> None:
    loose = synthetic("synth", rows=4_000, seed=1, checks={"data_drift": {
        "method": ["psi"], "psi_threshold": 5.0, "severity": "HIGH", "features": {"f3": {"method": ["ks"]}}}})
    defs = platform(loose)
    assert run_job(instance, defs, "synth_training").success
    drifted = fresh(drift_features=["f2"], drift_shift=1.0)
    drift = checks(run_job(instance, defs, "synth_monitoring", drifted))["data_drift"]
    assert drift.passed and drift.metadata["psi_threshold"].value == 5.0 and drift.metadata["alert_severity"].value == "HIGH"
    assert {r.data["feature"]: r.data["method"] for r in drift.metadata["features"].records}["f3"] == "ks"
    # The Launchpad's way: one run with a stricter threshold, the rest as declared.
    strict = {**drifted, "ops": {"synth_monitoring_checks": {"config": {"data_drift": {"psi_threshold": 0.2}}}}}
    drift = checks(run_job(instance, defs, "synth_monitoring", strict))["data_drift"]
    assert not drift.passed and drift.metadata["alert_severity"].value == "HIGH"
    # Per-feature rules from run config; a feature the model lacks is named, not ignored.
    per_feature = {**drifted, "ops": {"synth_monitoring_checks": {"config": {"data_drift": {
        "psi_threshold": 0.2, "features": {"f2": {"method": ["ks"], "ks_threshold": 0.9}}}}}}}
    assert checks(run_job(instance, defs, "synth_monitoring", per_feature))["data_drift"].passed
    typo = {**drifted, "ops": {"synth_monitoring_checks": {"config": {"data_drift": {"features": {"f22": {}}}}}}}
    drift = checks(run_job(instance, defs, "synth_monitoring", typo))["data_drift"]
    assert not drift.passed and drift.metadata["evaluated"].value is False
    assert drift.description == "not evaluated: checks.data_drift.features names feature(s) the model does not have: 'f22'"


def test_a_feature_set_change_is_reported_as_not_evaluated_not_as_a_pass(trained, tmp_path) -> None:
    frame = pd.DataFrame(np.random.default_rng(0).normal(size=(300, 3)), columns=["a", "b", "c"]).assign(target=[0, 1, 2] * 100)
    frame.to_csv(tmp_path / "other.csv", index=False)
    result = monitor(trained, {**source_config("synth", kind="csv", path=str(tmp_path / "other.csv")),
                               **op_config("synth", "validated_data", allow_new_classes=True)})
    assert result.success
    for name in MONITORING_CHECKS:
        evaluation = checks(result)[name]
        assert not evaluation.passed and evaluation.metadata["evaluated"].value is False
        assert evaluation.description.startswith("not evaluated: the data's feature set differs from production v1's")
        assert evaluation.metadata["alert_severity"].value != "LOW"  # unlike "no model yet", this needs a look


def test_a_broken_production_artifact_is_not_evaluated_with_its_reason(trained, dagster_home) -> None:
    registry: ModelRegistry = registry_of(dagster_home, "synth")
    with open(registry.base + "/versions/v1/model.pkl", "ab") as f:
        f.write(b"tampered")
    evaluation = checks(monitor(trained, fresh()))["data_drift"]
    assert not evaluation.passed
    assert "not evaluated: production v1 cannot be loaded: model version v1: artifact integrity check failed" in evaluation.description


def test_run_time_check_reads_real_run_records(trained) -> None:
    names = ModelNames("synth")
    run_id, seconds = last_pipeline_run_seconds(trained, names, exclude_run_id=None)
    assert trained.get_run_by_id(run_id).job_name == "synth_training" and 0 < seconds < 120
    slow = {"ops": {"synth__production_model_pipeline_run_time": {"config": {"max_seconds": seconds / 2}}}}
    run_time = checks(monitor(trained, slow))["pipeline_run_time"]
    assert not run_time.passed
    assert run_time.metadata["measured_run_id"].value == run_id
    assert run_time.description == f"Pipeline took {seconds:.0f}s (threshold: {seconds / 2:.0f}s)"
    assert run_time.metadata["alert_severity"].value == "LOW"
    assert checks(monitor(trained, fresh()))["pipeline_run_time"].passed


def test_production_model_has_the_declared_freshness_policy() -> None:
    model = synthetic("synth", checks={"freshness": {"warn_hours": 2, "fail_hours": 6}})
    production = build_pipeline_assets(model).production_model
    spec = production.specs_by_key[ModelNames("synth").production_model]
    assert spec.freshness_policy.warn_window.to_timedelta().total_seconds() == 2 * 3600
    assert spec.freshness_policy.fail_window.to_timedelta().total_seconds() == 6 * 3600


def test_monitoring_report_shows_failing_checks_drift_versions_and_charts(trained) -> None:
    result = monitor(trained, fresh(drift_features=["f2", "f5"], drift_shift=1.0))
    metadata = result.asset_materializations_for_node("synth__monitoring_report")[0].metadata
    report = metadata["report"].value
    assert "# Monitoring report: synth" in report and "Production model: **v1**" in report
    # Shifting two inputs by one standard deviation also moves predictions and costs accuracy.
    assert "Total failing: 3 (HIGH: 1, MEDIUM: 2, LOW: 0)" in report
    assert report.index("| HIGH | synth/validated_data | production_model_accuracy") < report.index("| MEDIUM | synth/validated_data | data_drift")
    assert "| MEDIUM | synth/validated_data | data_drift | Data drift detected: 2 of 8 features drifted" in report
    assert report.count("| f") >= 8 and "| f2 |" in report
    assert "| v1 |" in report and "production" in report
    assert report.count("data:image/svg+xml;base64,") == 2
    assert metadata["failing_high"].value == 1 and metadata["failing_medium"].value == 2 and metadata["drifted_features"].value == 2


def test_the_run_time_check_times_the_previous_run_of_everything(instance: dg.DagsterInstance) -> None:
    """`make run` twice, never the training job: the second run's check times the first run."""
    assert materialize(instance, DEFS, "*").success
    run_time = checks(materialize(instance, DEFS, "*"))["pipeline_run_time"]
    assert run_time.passed and run_time.metadata["evaluated"].value is True


def test_all_assets_at_once_run_monitoring_before_training_and_report_last(instance: dg.DagsterInstance) -> None:
    """`dagster asset materialize --select '*'`: monitoring judges the new data against the model
    in production before this run's candidate, never blocks it, and the report comes last."""
    assert run_job(instance, DEFS, "synth_training").success
    result = materialize(instance, DEFS, "*", run_config=fresh(drift_features=["f1"], drift_shift=2.0))
    assert result.success
    order = [e.step_key for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_START]
    assert order.index("synth_monitoring_checks") < order.index("synth__trained_model")
    assert [step for step in order if step != "synth__production_model_pipeline_run_time"][-2:] == [
        "synth__batch_predictions", "synth__monitoring_report"]
    assert not checks(result)["data_drift"].passed  # the drifted data still trained and went through the gate
    assert result.asset_materializations_for_node("synth__production_model")


@pytest.mark.parametrize("damage", ["corrupt-reference", "alias-to-a-missing-version"])
def test_a_damaged_production_model_never_stops_a_run_of_everything(instance: dg.DagsterInstance, dagster_home, damage: str) -> None:
    assert run_job(instance, DEFS, "synth_training").success
    registry = registry_of(dagster_home, "synth")
    if damage == "corrupt-reference":
        with open(registry.base + f"/versions/v1/{REFERENCE_FILE}", "w") as f:
            f.write("{not json")
        reason = "not evaluated: production v1's drift reference is unreadable: JSONDecodeError"
    else:
        import shutil

        shutil.rmtree(registry.base + "/versions/v1")
        reason = "not evaluated: production v1 cannot be read: model version 'v1' not found"
    result = materialize(instance, DEFS, "*", run_config=fresh())
    assert result.success, [e.step_key for e in result.get_step_failure_events()]
    for name in MONITORING_CHECKS:
        evaluation = checks(result)[name]
        assert not evaluation.passed and evaluation.description.startswith(reason), evaluation.description
        assert "\n" not in evaluation.description
    assert result.asset_materializations_for_node("synth__production_model")  # training went on to the gate


def test_monitoring_predicts_with_the_models_column_order_whatever_the_files(instance: dg.DagsterInstance, tmp_path) -> None:
    from ml_platform.data.sources import generate_synthetic

    frame = generate_synthetic(rows=2_000, features=4, seed=2).frame
    frame[["f3", "target", "f1", "f0", "f2"]].to_csv(tmp_path / "shuffled.csv", index=False)
    model = synthetic("synth", rows=4_000, seed=1, features=4)
    defs = platform(model)
    assert run_job(instance, defs, "synth_training").success
    result = run_job(instance, defs, "synth_monitoring", source_config("synth", kind="csv", path=str(tmp_path / "shuffled.csv")))
    evaluations = checks(result)
    assert evaluations["production_model_accuracy"].passed, evaluations["production_model_accuracy"].description
    assert evaluations["data_drift"].passed


def test_run_config_of_the_drift_check_takes_per_feature_rules_and_checks_them_as_declared() -> None:
    import pydantic

    from ml_platform.declaration import ChecksSection, DataDriftCheck
    from ml_platform.orchestration.config import config_class

    declared = ChecksSection(data_drift=DataDriftCheck(features={"f1": {"method": ["ks"]}}))
    MonitoringConfig = config_class("MonitoringConfig", declared, only=("data_drift",))
    # The Launchpad shows the declared rules as plain values; a run may replace them.
    assert MonitoringConfig().model_dump()["data_drift"]["features"] == {"f1": {"method": ["ks"]}}
    run = MonitoringConfig(data_drift={"features": {"f2": {"method": ["wasserstein"], "wasserstein_threshold": 0.3}}})
    settings = DataDriftCheck.model_validate(run.data_drift.model_dump())
    assert settings.features["f2"].wasserstein_threshold == 0.3 and "f1" not in settings.features
    for bad, where in (({"method": ["chi2"]}, "method.0"), ({"features": {"f2": {"ks_threshold": 2.0}}}, "features.f2.ks_threshold"),
                       ({"features": {"f2": {"methd": ["ks"]}}}, "features.f2.methd")):
        with pytest.raises(pydantic.ValidationError, match=where):
            MonitoringConfig(data_drift=bad)
