"""One declared model's monitoring: the drift, missing-values, prediction-drift, production-accuracy
and estimated-accuracy checks on <model>/validated_data, the run-time check on <model>/production_model, and
<model>/monitoring_report.

Monitoring is off the training path: these checks belong to the model's monitoring job, never
to its training job. They evaluate schema-validated data, so bad data fails at validation first,
with its table. They are WARN in Dagster's terms and never raise, so they can't stop anything;
how loud they are lives in their alert severity (from the declaration), which the alert sensor
reads from their metadata. They are `blocking=True` so that, within a run, the assets
downstream of validated_data wait for them: the report, and in a run of everything also
trained_model (so they judge the new data against the model in production before this run's
candidate). Since they never raise and only ever fail as WARN, that wait never stops anything.

A check that cannot evaluate fails (WARN) with "not evaluated: <why>": it never shows as a
green pass. Before the first production model that is expected, and alerted LOW only.
"""

import traceback
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import dagster as dg

from ml_platform.alerting.alert import DEFAULT_CHECK_RULES, alert_for_failed_check
from ml_platform.alerting.outbox import AlertOutbox
from ml_platform.data.sources import SourceData
from ml_platform.declaration import DataDriftCheck, DeclaredModel
from ml_platform.model.registry import ModelRegistry, RegistryError
from ml_platform.model.rollout import describe, is_open
from ml_platform.monitoring.checks import (
    REFERENCE_FILE,
    CheckOutcome,
    ModelReference,
    NotEvaluated,
    data_drift,
    estimated_accuracy,
    missing_values,
    prediction_drift,
    production_accuracy,
    require_same_features,
)
from ml_platform.monitoring.report import FailedCheck, accuracy_row, render_report
from ml_platform.orchestration.alerting import AlertingResource
from ml_platform.orchestration.config import config_class
from ml_platform.orchestration.metadata import frame_table, plain_metadata
from ml_platform.orchestration.names import (
    DATA_DRIFT,
    ESTIMATED_ACCURACY,
    MISSING_VALUES,
    MONITORING_CHECKS,
    PREDICTION_DRIFT,
    PRODUCTION_ACCURACY,
    RUN_TIME,
    ModelNames,
)
from ml_platform.orchestration.resources import ModelRegistryResource

# "No production model yet" is the normal state before the first training: log it, page nobody.
EXPECTED_SEVERITY = "LOW"


def _result(check: str, asset: dg.AssetKey, outcome: CheckOutcome, severity: str, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=outcome.passed,
        severity=dg.AssetCheckSeverity.WARN,
        description=outcome.description,
        metadata={
            # Dicts (class shares, missing shares) as JSON: Dagster's metadata takes no plain dict.
            **{k: dg.MetadataValue.json(v) if isinstance(v, dict) else v for k, v in outcome.figures.items()},
            **metadata,
            "evaluated": True,
            "alert_severity": severity,
            "recommended_action": DEFAULT_CHECK_RULES[check].recommended_action,
        },
    )


def _not_evaluated(check: str, asset: dg.AssetKey, reason: str, severity: str, **metadata: Any) -> dg.AssetCheckResult:
    return dg.AssetCheckResult(
        asset_key=asset,
        check_name=check,
        passed=False,
        severity=dg.AssetCheckSeverity.WARN,
        description=f"not evaluated: {reason}",
        metadata={
            **metadata,
            "evaluated": False,
            "alert_severity": severity,
            "recommended_action": "Read why the check could not evaluate and fix that (see the description)",
        },
    )


@dataclass(frozen=True)
class ProductionModel:
    version: str
    features: list[str]  # in the order the model was fitted on
    reference: ModelReference
    model: Any


def _one_line(exc: BaseException) -> str:
    lines = str(exc).strip().splitlines()
    return f"{type(exc).__name__}: {lines[0] if lines else ''}"


def load_production(registry: ModelRegistry, data: SourceData) -> ProductionModel:
    """The production model and its drift reference, or NotEvaluated saying why not."""
    version = registry.alias("production")
    if version is None:
        raise NotEvaluated("no production model yet", expected=True)
    try:
        features = registry.get(version).features
    except RegistryError as exc:
        raise NotEvaluated(f"production {version} cannot be read: {exc}") from exc
    require_same_features(version, features, data.spec)
    raw = registry.attachment(version, REFERENCE_FILE)
    if raw is None:
        raise NotEvaluated(f"production {version} has no drift reference (it was trained before references were stored)")
    try:
        return ProductionModel(version, features, ModelReference.from_json(raw), registry.load(version))
    except RegistryError as exc:
        raise NotEvaluated(f"production {version} cannot be loaded: {exc}") from exc
    except (ValueError, KeyError, TypeError) as exc:  # a damaged drift reference
        raise NotEvaluated(f"production {version}'s drift reference is unreadable: {_one_line(exc)}") from exc


@dataclass(frozen=True)
class MonitoringDefinitions:
    checks: list[dg.AssetChecksDefinition]
    report: dg.AssetsDefinition
    op_configs: dict[str, dg.Config]


def build_monitoring(model: DeclaredModel) -> MonitoringDefinitions:
    names = ModelNames(model.name)
    checks = model.declaration.checks
    MonitoringConfig = config_class(
        "MonitoringConfig", checks,
        only=("data_drift", "missing_values", "prediction_drift", "production_accuracy", "estimated_accuracy"),
    )
    RunTimeConfig = config_class("RunTimeConfig", checks.run_time)
    asset = names.validated_data
    descriptions = {
        DATA_DRIFT: "PSI, KS statistic and normalized Wasserstein distance of every numeric feature, PSI, chi-squared and "
                    "Jensen-Shannon distance of every categorical one, of the newest validated data against the production "
                    "model's training data, decided by the declared method(s).",
        MISSING_VALUES: "Each feature's share of missing values in the newest data against its share in the training data.",
        ESTIMATED_ACCURACY: "Accuracy of the production model estimated from its calibrated predicted probabilities on the "
                            "rows without a label (CBPE); on all rows when every row is labelled.",
        PREDICTION_DRIFT: "Predicted class shares of the production model on the newest data against those at training time.",
        PRODUCTION_ACCURACY: "Accuracy of the production model on the newest labelled data.",
    }

    @dg.multi_asset_check(
        name=f"{model.name}_monitoring_checks",
        specs=[dg.AssetCheckSpec(name, asset=asset, blocking=True, description=descriptions[name]) for name in MONITORING_CHECKS],
        ins={"validated_data": dg.AssetIn(key=asset)},
    )
    def monitoring_checks(
        context: dg.AssetCheckExecutionContext,
        config: MonitoringConfig,  # type: ignore[valid-type]
        validated_data: SourceData,
        model_registry: ModelRegistryResource,
    ) -> Iterator[dg.AssetCheckResult]:
        severities = {
            DATA_DRIFT: config.data_drift.severity,
            PREDICTION_DRIFT: config.prediction_drift.severity,
            PRODUCTION_ACCURACY: config.production_accuracy.severity,
            MISSING_VALUES: config.missing_values.severity,
            ESTIMATED_ACCURACY: config.estimated_accuracy.severity,
        }
        try:
            production = load_production(model_registry.registry(model.name), validated_data)
        except Exception as exc:  # noqa: BLE001 - a monitoring check reports its failure, it never raises
            expected = isinstance(exc, NotEvaluated) and exc.expected
            reason = str(exc) if isinstance(exc, NotEvaluated) else _one_line(exc)
            if not isinstance(exc, NotEvaluated):
                context.log.warning(f"monitoring could not load the production model:\n{traceback.format_exc()}")
            for check in MONITORING_CHECKS:
                yield _not_evaluated(check, asset, reason, EXPECTED_SEVERITY if expected else severities[check])
            return

        frame, spec = validated_data.frame, validated_data.spec
        version = production.version
        x = frame[production.features]  # the model's own column order, whatever the file's
        predictions = None

        def predicted() -> Any:
            nonlocal predictions
            if predictions is None:
                predictions = production.model.predict(x)
            return predictions

        def data_drift_result() -> dg.AssetCheckResult:
            # Back to the declaration's class: per-feature rules are plain dicts in run config.
            settings = DataDriftCheck.model_validate(config.data_drift.model_dump())
            outcome, table = data_drift(production.reference, x, settings)
            # The per-feature table once (the report reads it too): it travels with every alert.
            return _result(DATA_DRIFT, asset, outcome, severities[DATA_DRIFT], model_version=version,
                           features=frame_table(table, limit=len(table), index=False))

        def missing_values_result() -> dg.AssetCheckResult:
            outcome = missing_values(production.reference, x, config.missing_values.max_increase)
            return _result(MISSING_VALUES, asset, outcome, severities[MISSING_VALUES], model_version=version)

        def estimated_accuracy_result() -> dg.AssetCheckResult:
            outcome = estimated_accuracy(production.model, x, frame[spec.target], production.reference,
                                         config.estimated_accuracy.min_accuracy)
            return _result(ESTIMATED_ACCURACY, asset, outcome, severities[ESTIMATED_ACCURACY], model_version=version)

        def prediction_drift_result() -> dg.AssetCheckResult:
            outcome = prediction_drift(predicted(), production.reference, config.prediction_drift.psi_threshold)
            return _result(PREDICTION_DRIFT, asset, outcome, severities[PREDICTION_DRIFT], model_version=version)

        def accuracy_result() -> dg.AssetCheckResult:
            outcome = production_accuracy(predicted(), frame[spec.target], config.production_accuracy.min_accuracy)
            return _result(PRODUCTION_ACCURACY, asset, outcome, severities[PRODUCTION_ACCURACY], model_version=version)

        evaluations = {DATA_DRIFT: data_drift_result, MISSING_VALUES: missing_values_result,
                       PREDICTION_DRIFT: prediction_drift_result, PRODUCTION_ACCURACY: accuracy_result,
                       ESTIMATED_ACCURACY: estimated_accuracy_result}
        for check, evaluate in evaluations.items():
            try:
                yield evaluate()
            except NotEvaluated as exc:
                severity = EXPECTED_SEVERITY if exc.expected else severities[check]
                yield _not_evaluated(check, asset, str(exc), severity, model_version=version)
            except Exception as exc:  # noqa: BLE001 - a monitoring check reports its failure, it never raises
                context.log.warning(f"{check} could not evaluate:\n{traceback.format_exc()}")
                yield _not_evaluated(check, asset, _one_line(exc), severities[check], model_version=version)

    @dg.asset_check(
        asset=names.production_model,
        name=RUN_TIME,
        blocking=False,
        description="The model's last pipeline run took at most checks.run_time.max_seconds (from the instance's run records).",
    )
    def pipeline_run_time(context: dg.AssetCheckExecutionContext, config: RunTimeConfig) -> dg.AssetCheckResult:  # type: ignore[valid-type]
        last = last_pipeline_run_seconds(context.instance, names, context.run.run_id)
        if last is None:
            return _not_evaluated(RUN_TIME, names.production_model, "no finished pipeline run yet", EXPECTED_SEVERITY)
        run_id, seconds = last
        passed = seconds <= config.max_seconds
        outcome = CheckOutcome(
            passed,
            f"last pipeline run took {seconds:.0f}s (threshold: {config.max_seconds:.0f}s)" if passed
            else f"Pipeline took {seconds:.0f}s (threshold: {config.max_seconds:.0f}s)",
            {"seconds": seconds, "threshold": config.max_seconds, "measured_run_id": run_id},
        )
        return _result(RUN_TIME, names.production_model, outcome, config.severity)

    @dg.asset(
        name="monitoring_report",
        key_prefix=[model.name],
        group_name=model.name,
        # After batch_predictions too, in a run of everything: the report shows the rollout it stepped.
        deps=[names.validated_data, names.production_model, names.batch_predictions],
        kinds={"markdown"},
    )
    def monitoring_report(
        context: dg.AssetExecutionContext, model_registry: ModelRegistryResource, alerting: AlertingResource
    ) -> dg.MaterializeResult:
        """The seed's monitoring report as a page: failing checks by severity, per-feature drift,
        the last model versions with a metrics trend, and the latest alerts."""
        return report_result(context.instance, names, model_registry.registry(model.name), alerting)

    return MonitoringDefinitions(
        checks=[monitoring_checks, pipeline_run_time],
        report=monitoring_report,
        op_configs={monitoring_checks.op.name: MonitoringConfig(), pipeline_run_time.op.name: RunTimeConfig()},
    )


def last_pipeline_run_seconds(instance: dg.DagsterInstance, names: ModelNames, exclude_run_id: str | None) -> tuple[str, float] | None:
    """Duration of the model's newest successful pipeline run: a run of its training job, or the
    run (of any job but the rollback) that last materialized its production_model."""
    succeeded = [dg.DagsterRunStatus.SUCCESS]
    records = list(instance.get_run_records(dg.RunsFilter(job_name=names.training_job, statuses=succeeded), limit=2))
    # The newest materializations but this run's (in a run of everything, the newest is this run's own).
    for event in instance.fetch_materializations(names.production_model, limit=3).records:
        if event.run_id == exclude_run_id or (record := instance.get_run_record_by_id(event.run_id)) is None:
            continue
        if record.dagster_run.job_name != names.rollback_job and record.dagster_run.status in succeeded:
            records.append(record)
            break
    finished = [r for r in records if r.dagster_run.run_id != exclude_run_id and r.start_time and r.end_time]
    if not finished:
        return None
    newest = max(finished, key=lambda r: r.end_time or 0.0)
    return newest.dagster_run.run_id, (newest.end_time or 0.0) - (newest.start_time or 0.0)


def _latest_evaluations(instance: dg.DagsterInstance, names: ModelNames) -> dict[dg.AssetCheckKey, tuple[Any, Any]]:
    latest = {}
    for key in names.all_check_keys:
        record = instance.get_latest_asset_check_evaluation_record(key)
        if record and record.event and record.event.dagster_event:
            evaluation = record.event.dagster_event.event_specific_data
            if isinstance(evaluation, dg.AssetCheckEvaluation):
                latest[key] = (evaluation, record)
    return latest


def report_result(
    instance: dg.DagsterInstance, names: ModelNames, registry: ModelRegistry, alerting: AlertingResource
) -> dg.MaterializeResult:
    latest = _latest_evaluations(instance, names)
    failed = []
    for key, (evaluation, record) in latest.items():
        if evaluation.passed:
            continue
        alert = alert_for_failed_check(
            asset=key.asset_key.to_user_string(), check=key.name, dagster_severity=evaluation.severity.value,
            description=evaluation.description, metadata=plain_metadata(evaluation.metadata), run_id=record.run_id,
            event_id=None,
        )
        at = datetime.fromtimestamp(record.event.timestamp, timezone.utc).isoformat(timespec="seconds")
        failed.append(FailedCheck(alert.severity.value, alert.asset, alert.check, alert.message, alert.recommended_action, at))

    drift_eval = latest.get(dg.AssetCheckKey(names.validated_data, DATA_DRIFT))
    drift_rows = plain_metadata(drift_eval[0].metadata).get("features", []) if drift_eval else []
    accuracy_rows = []
    for what, check in (("estimated", ESTIMATED_ACCURACY), ("realized", PRODUCTION_ACCURACY)):
        if found := latest.get(dg.AssetCheckKey(names.validated_data, check)):
            metadata = plain_metadata(found[0].metadata)
            if metadata.get("evaluated"):
                at = datetime.fromtimestamp(found[1].event.timestamp, timezone.utc).isoformat(timespec="seconds")
                accuracy_rows.append(accuracy_row(what, metadata, at))

    aliases = registry.aliases_by_version()
    version_rows = [
        {"version": v.version, "created_at": v.created_at, "aliases": aliases.get(v.version, ""),
         "rows": v.metadata.get("row_count"), **v.metrics}
        for v in registry.list_versions()[-10:]
    ]
    recent_alerts = [
        {**record.alert.to_dict(), "state": record.alert.state.value}
        for record in AlertOutbox(alerting.resolved_outbox_path()).alerts(limit=10, model=names.model)
    ]
    markdown = render_report(
        model=names.model, failed_checks=failed, drift_rows=drift_rows,
        version_rows=version_rows, production_version=registry.alias("production"), accuracy_rows=accuracy_rows,
        recent_alerts=recent_alerts,
        generated_at=datetime.now(timezone.utc).isoformat(timespec="seconds"),
        rollout=(rollout := registry.rollout()),
    )
    counts = {s: sum(1 for f in failed if f.severity == s) for s in ("HIGH", "MEDIUM", "LOW")}
    return dg.MaterializeResult(
        metadata={
            "report": dg.MetadataValue.md(markdown),
            "failing_checks": len(failed),
            **{f"failing_{s.lower()}": n for s, n in counts.items()},
            "drifted_features": sum(1 for r in drift_rows if r.get("drifted")),
            "rollout": describe(rollout) if rollout is not None and is_open(rollout) else "none in progress",
        }
    )
