"""Monitoring: checks of the production model against the newest data, the run-time check,
the monitoring report asset, and the monitoring job with its schedules.

Every monitoring check is WARN in Dagster's terms so that none ever blocks the report or a
retrain; how loud it is lives in its alert severity (HIGH / MEDIUM / LOW, configurable per
check, defaults from the seed), which the alert sensor reads from the check's metadata.
Monitoring checks are `blocking=True` only so that, within a run, assets downstream of
`raw_data` (the report) wait for them.
"""

from datetime import datetime, timezone
from typing import Any, Literal

import dagster as dg
import pandas as pd

from ml_platform.alerting.outbox import AlertOutbox
from ml_platform.alerting.alert import DEFAULT_CHECK_RULES, alert_for_failed_check
from ml_platform.data.sources import SourceData
from ml_platform.monitoring.drift import compute_drift
from ml_platform.monitoring.checks import (
    MAX_EXECUTION_SECONDS,
    MAX_PSI,
    MIN_ACCURACY,
    REFERENCE_FILE,
    ModelReference,
    labelled_accuracy,
    numeric_features,
    prediction_drift,
)
from ml_platform.model.registry import ModelRegistry
from ml_platform.monitoring.report import FailedCheck, render_report
from ml_platform.orchestration.assets import ACCURACY_CHECK, SCHEMA_CHECK, production_model, raw_data
from ml_platform.orchestration.metadata import frame_table, plain_metadata
from ml_platform.orchestration.alerting import AlertingResource
from ml_platform.orchestration.resources import ModelRegistryResource

DATA_DRIFT = "data_drift"
PREDICTION_DRIFT = "prediction_drift"
PRODUCTION_ACCURACY = "production_model_accuracy"
RUN_TIME = "pipeline_run_time"
PIPELINE_JOB = "ml_pipeline"

ALL_CHECK_KEYS = [
    dg.AssetCheckKey(dg.AssetKey("validated_data"), SCHEMA_CHECK),
    dg.AssetCheckKey(dg.AssetKey("trained_model"), ACCURACY_CHECK),
    *(dg.AssetCheckKey(dg.AssetKey("raw_data"), n) for n in (DATA_DRIFT, PREDICTION_DRIFT, PRODUCTION_ACCURACY)),
    dg.AssetCheckKey(dg.AssetKey("production_model"), RUN_TIME),
]


AlertSeverity = Literal["HIGH", "MEDIUM", "LOW"]


class DriftCheckConfig(dg.Config):
    psi_threshold: float = MAX_PSI
    drift_share_threshold: float = 0.5  # dataset drifts when at least this share of features drift
    alert_severity: AlertSeverity = "MEDIUM"


class PredictionDriftCheckConfig(dg.Config):
    psi_threshold: float = MAX_PSI
    alert_severity: AlertSeverity = "MEDIUM"


class ProductionAccuracyCheckConfig(dg.Config):
    min_accuracy: float = MIN_ACCURACY
    alert_severity: AlertSeverity = "HIGH"


class RunTimeCheckConfig(dg.Config):
    max_seconds: float = MAX_EXECUTION_SECONDS
    alert_severity: AlertSeverity = "LOW"


def _production_reference(
    registry: ModelRegistry, raw_data: SourceData
) -> tuple[str, ModelReference, pd.DataFrame] | None:
    """The production version, its drift reference and the newest data's numeric features,
    or None when there is no production model with a reference."""
    version = registry.alias("production")
    if version is None:
        return None
    raw = registry.attachment(version, REFERENCE_FILE)
    if raw is None:
        return None  # trained before references were stored
    reference = ModelReference.from_json(raw)
    return version, reference, numeric_features(raw_data.frame, list(reference.features.feature_names))


def _skipped(reason: str, severity: str) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        passed=True, severity=dg.AssetCheckSeverity.WARN, description=f"not evaluated: {reason}",
        metadata={"evaluated": False, "alert_severity": severity},
    )


def _evaluated(check: str, passed: bool, description: str, alert_severity: str, **metadata: Any) -> dg.AssetCheckResult:
    """A monitoring check's result: WARN in Dagster, its alert severity and the seed's action in metadata."""
    return dg.AssetCheckResult(
        passed=passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=description,
        metadata={
            **metadata,
            "alert_severity": alert_severity,
            "recommended_action": DEFAULT_CHECK_RULES[check].recommended_action,
        },
    )


@dg.asset_check(asset=raw_data, name=DATA_DRIFT, blocking=True, description="PSI and KS of every feature of the newest data against the production model's training data.")
def data_drift_check(config: DriftCheckConfig, raw_data: SourceData, model_registry: ModelRegistryResource) -> dg.AssetCheckResult:
    production = _production_reference(model_registry.registry(), raw_data)
    if production is None:
        return _skipped("no production model with a drift reference yet", config.alert_severity)
    version, reference, current = production
    report = compute_drift(
        reference.features, current, psi_threshold=config.psi_threshold,
        dataset_psi_threshold=config.psi_threshold, drift_share_threshold=config.drift_share_threshold,
    )
    table = report.to_frame()[["feature", "psi", "ks_statistic", "ks_pvalue", "drifted", "n_missing"]]
    max_psi = float(table["psi"].max())
    drifted = list(report.drifted_features)
    return _evaluated(
        DATA_DRIFT,
        not report.dataset_drift,
        (
            f"Data drift detected: {len(drifted)} of {len(table)} features drifted, max PSI {max_psi:.2f} "
            f"(threshold: {config.psi_threshold:.2f}); drifted: {', '.join(drifted)}"
            if report.dataset_drift
            else f"no drift: max PSI {max_psi:.3f} <= {config.psi_threshold:.2f}"
        ),
        config.alert_severity,
        max_psi=max_psi,
        threshold=config.psi_threshold,
        share_drifted=report.share_drifted,
        drifted_features=", ".join(drifted) or "none",
        features=frame_table(table, limit=len(table)),
        drift=dg.MetadataValue.json(table.to_dict(orient="records")),
        model_version=version,
    )


@dg.asset_check(asset=raw_data, name=PREDICTION_DRIFT, blocking=True, description="Predicted class shares of the production model on the newest data against those at training time.")
def prediction_drift_check(config: PredictionDriftCheckConfig, raw_data: SourceData, model_registry: ModelRegistryResource) -> dg.AssetCheckResult:
    registry = model_registry.registry()
    production = _production_reference(registry, raw_data)
    if production is None:
        return _skipped("no production model with a drift reference yet", config.alert_severity)
    version, reference, current = production
    drift = prediction_drift(registry.load(version), current, reference)
    passed = drift.psi <= config.psi_threshold
    return _evaluated(
        PREDICTION_DRIFT,
        passed,
        f"prediction drift PSI {drift.psi:.3f} <= {config.psi_threshold:.2f}" if passed
        else f"Prediction drift detected: PSI {drift.psi:.2f} (threshold: {config.psi_threshold:.2f})",
        config.alert_severity,
        psi=drift.psi,
        threshold=config.psi_threshold,
        training_shares=dg.MetadataValue.json(drift.reference_shares),
        current_shares=dg.MetadataValue.json(drift.current_shares),
        model_version=version,
    )


@dg.asset_check(asset=raw_data, name=PRODUCTION_ACCURACY, blocking=True, description="Accuracy of the production model on the newest data, when it carries labels.")
def production_accuracy_check(config: ProductionAccuracyCheckConfig, raw_data: SourceData, model_registry: ModelRegistryResource) -> dg.AssetCheckResult:
    registry = model_registry.registry()
    version = registry.alias("production")
    if version is None:
        return _skipped("no production model yet", config.alert_severity)
    scored = labelled_accuracy(registry.load(version), raw_data.frame, raw_data.spec)
    if scored is None:
        return _skipped("the newest data has no labelled rows", config.alert_severity)
    accuracy, rows = scored
    passed = accuracy >= config.min_accuracy
    return _evaluated(
        PRODUCTION_ACCURACY,
        passed,
        f"production accuracy {accuracy:.2%} on {rows} labelled rows meets {config.min_accuracy:.2%}" if passed
        else f"Model accuracy dropped to {accuracy:.2%} (threshold: {config.min_accuracy:.2%})",
        config.alert_severity,
        accuracy=accuracy,
        threshold=config.min_accuracy,
        labelled_rows=rows,
        model_version=version,
    )


def last_pipeline_run_seconds(instance: dg.DagsterInstance, exclude_run_id: str | None) -> tuple[str, float] | None:
    """Duration of the newest finished run of the pipeline (the job, or an ad-hoc run of production_model)."""
    records = instance.get_run_records(
        dg.RunsFilter(statuses=[dg.DagsterRunStatus.SUCCESS, dg.DagsterRunStatus.FAILURE]), limit=100
    )
    for record in records:
        run = record.dagster_run
        selection = run.asset_selection or set()
        is_pipeline = run.job_name == PIPELINE_JOB or dg.AssetKey("production_model") in selection
        if run.run_id != exclude_run_id and is_pipeline and record.start_time and record.end_time:
            return run.run_id, record.end_time - record.start_time
    return None


@dg.asset_check(asset=production_model, name=RUN_TIME, blocking=False, description="The last pipeline run took at most max_seconds (from the instance's run records).")
def pipeline_run_time_check(context: dg.AssetCheckExecutionContext, config: RunTimeCheckConfig) -> dg.AssetCheckResult:
    last = last_pipeline_run_seconds(context.instance, context.run.run_id)
    if last is None:
        return _skipped("no finished pipeline run yet", config.alert_severity)
    run_id, seconds = last
    passed = seconds <= config.max_seconds
    return _evaluated(
        RUN_TIME,
        passed,
        f"last pipeline run took {seconds:.0f}s (threshold: {config.max_seconds:.0f}s)" if passed
        else f"Pipeline took {seconds:.0f}s (threshold: {config.max_seconds:.0f}s)",
        config.alert_severity,
        seconds=seconds,
        threshold=config.max_seconds,
        measured_run_id=run_id,
    )


def _latest_evaluations(instance: dg.DagsterInstance) -> dict[dg.AssetCheckKey, tuple[Any, Any]]:
    latest = {}
    for key in ALL_CHECK_KEYS:
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record and record.event and record.event.dagster_event:
            evaluation = record.event.dagster_event.event_specific_data
            if isinstance(evaluation, dg.AssetCheckEvaluation):
                latest[key] = (evaluation, record)
    return latest


@dg.asset(group_name="monitoring", deps=[raw_data], kinds={"markdown"})
def monitoring_report(
    context: dg.AssetExecutionContext, model_registry: ModelRegistryResource, alerting: AlertingResource
) -> dg.MaterializeResult:
    """The seed's monitoring report as a page: failing checks by severity, per-feature drift,
    the last model versions with a metrics trend, and the latest alerts."""
    latest = _latest_evaluations(context.instance)
    failed = []
    for key, (evaluation, record) in latest.items():
        if evaluation.passed:
            continue
        metadata = plain_metadata(evaluation.metadata)
        alert = alert_for_failed_check(
            asset=key.asset_key.to_user_string(), check=key.name, dagster_severity=evaluation.severity.value,
            description=evaluation.description, metadata=metadata, run_id=record.run_id, event_id=None,
        )
        at = datetime.fromtimestamp(record.event.timestamp, timezone.utc).isoformat(timespec="seconds")
        failed.append(FailedCheck(alert.severity.value, alert.asset, alert.check, alert.message, alert.recommended_action, at))

    drift_eval = latest.get(dg.AssetCheckKey(dg.AssetKey("raw_data"), DATA_DRIFT))
    drift_rows = list(drift_eval[0].metadata["drift"].value) if drift_eval and "drift" in drift_eval[0].metadata else []
    psi_threshold = float(drift_eval[0].metadata["threshold"].value) if drift_rows else MAX_PSI

    registry = model_registry.registry()
    aliases = registry.aliases_by_version()
    version_rows = [
        {"version": v.version, "created_at": v.created_at, "aliases": aliases.get(v.version, ""),
         "rows": v.metadata.get("row_count"), **v.metrics}
        for v in registry.list_versions()[-10:]
    ]
    recent_alerts = [
        {**record.alert.to_dict(), "state": record.alert.state.value}
        for record in AlertOutbox(alerting.resolved_outbox_path()).alerts(limit=10)
    ]
    markdown = render_report(
        failed_checks=failed, drift_rows=drift_rows, psi_threshold=psi_threshold, version_rows=version_rows,
        production_version=registry.alias("production"), recent_alerts=recent_alerts,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
    )
    counts = {s: sum(1 for f in failed if f.severity == s) for s in ("HIGH", "MEDIUM", "LOW")}
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(markdown),
            "failing_checks": len(failed),
            **{f"failing_{s.lower()}": n for s, n in counts.items()},
            "drifted_features": sum(1 for r in drift_rows if r.get("drifted")),
        }
    )


MONITORING_CHECKS = [data_drift_check, prediction_drift_check, production_accuracy_check, pipeline_run_time_check]

monitoring_job = dg.define_asset_job(
    "monitoring",
    selection=dg.AssetSelection.assets(raw_data, monitoring_report) | dg.AssetSelection.checks(pipeline_run_time_check),
    description="Extract the newest data and run the monitoring checks and report, without retraining.",
)

monitoring_hourly_schedule = dg.ScheduleDefinition(
    name="monitoring_hourly", job=monitoring_job, cron_schedule="0 * * * *",
    default_status=dg.DefaultScheduleStatus.RUNNING,
)
# The every-6-hours option: off by default; switch it on (and the hourly one off) in the UI.
monitoring_every_6_hours_schedule = dg.ScheduleDefinition(
    name="monitoring_every_6_hours", job=monitoring_job, cron_schedule="0 */6 * * *",
    default_status=dg.DefaultScheduleStatus.STOPPED,
)
