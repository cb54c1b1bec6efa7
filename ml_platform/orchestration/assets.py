"""The four assets: raw_data -> validated_data -> trained_model -> production_model.

Each asset is thin: it reads config and resources, calls into `ml_platform.core`, and
turns the result into Dagster outputs, metadata and check results.
"""

from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform.data.sources import DataSourceError, DatasetSpec, SourceData, fingerprint_frame
from ml_platform.monitoring.checks import REFERENCE_FILE, build_reference
from ml_platform.paths import platform_home
from ml_platform.model.gate import GatePolicy, decide_promotion
from ml_platform.model.provenance import code_version, library_versions
from ml_platform.model.registry import ModelRegistry, RegistryError
from ml_platform.model.training import TrainingSettings, evaluate, train_candidate
from ml_platform.data.validation import DataValidationError, ValidationPolicy, validate_frame
from ml_platform.orchestration.metadata import frame_table
from ml_platform.orchestration.resources import DataSourceResource, ModelRegistryResource

GROUP = "ml_pipeline"
ACCURACY_CHECK = "accuracy_above_threshold"
SCHEMA_CHECK = "pandera_schema"
# Checks on trained_model that a candidate must have passed to be promoted.
GATE_CHECKS = (ACCURACY_CHECK,)

# Transient read errors (OSError: network share, object store) are retried with backoff;
# a DataSourceError (missing, empty, unparseable) is permanent and fails at once.
EXTRACT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


class ValidationConfig(dg.Config):
    min_rows: int = 50
    max_invalid_fraction: float = 0.0  # 0: any invalid row fails the run; above: quarantine up to this share


class TrainingConfig(dg.Config):
    estimator: str = "logistic_regression"  # logistic_regression | random_forest | gradient_boosting
    params: dict[str, Any] = {}
    holdout_fraction: float = 0.2
    seed: int = 42
    min_accuracy: float = 0.70


class PromotionConfig(dg.Config):
    metric: str = "accuracy"
    tolerance: float = 0.0
    allow_feature_change: bool = False


@dataclass(frozen=True)
class CandidateModel:
    """What trained_model hands to production_model: the registered version and its holdout."""

    version: str
    metrics: dict[str, float]
    spec: DatasetSpec
    holdout: pd.DataFrame


@dg.asset(group_name=GROUP, retry_policy=EXTRACT_RETRY_POLICY, kinds={"pandas"})
def raw_data(context: dg.AssetExecutionContext, data_source: DataSourceResource) -> dg.Output[SourceData]:
    """The rows extracted from the configured data source, with its declared feature set."""
    try:
        source = data_source.load()
    except (DataSourceError, ValueError) as exc:
        raise dg.Failure(description=str(exc), allow_retries=False) from exc
    frame = source.frame
    fingerprint = fingerprint_frame(frame)
    context.log.info(f"extracted {len(frame)} rows x {frame.shape[1]} columns from {data_source.describe()}")
    return dg.Output(
        replace(source, fingerprint=fingerprint),
        data_version=dg.DataVersion(fingerprint),
        metadata={
            "source": data_source.describe(),
            "dagster/row_count": len(frame),
            "column_count": frame.shape[1],
            "fingerprint": fingerprint,
            "preview": frame_table(frame.head(5)),
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"pandera"},
    check_specs=[
        dg.AssetCheckSpec(
            SCHEMA_CHECK,
            asset="validated_data",
            blocking=True,
            description="Every row conforms to the Pandera schema; warns when rows were quarantined.",
        )
    ],
)
def validated_data(
    context: dg.AssetExecutionContext, config: ValidationConfig, raw_data: SourceData
) -> Any:
    """raw_data restricted to the declared features, with every Pandera check passed."""
    policy = ValidationPolicy(min_rows=config.min_rows, max_invalid_fraction=config.max_invalid_fraction)
    try:
        result = validate_frame(raw_data.frame, raw_data.spec, policy)
    except DataValidationError as exc:
        raise dg.Failure(
            description=str(exc),
            metadata={"failure_count": len(exc.failures), "failures": frame_table(exc.failures, limit=200)},
            allow_retries=False,
        ) from exc

    quarantine_metadata: dict[str, Any] = {}
    if len(result.quarantined):
        path = platform_home() / "quarantine" / f"{context.run.run_id}.csv"
        path.parent.mkdir(parents=True, exist_ok=True)
        result.quarantined.to_csv(path, index_label="row")
        quarantine_metadata = {
            "quarantine_path": dg.MetadataValue.path(str(path)),
            "quarantined": frame_table(result.quarantined, limit=50),
        }
        context.log.warning(f"quarantined {len(result.quarantined)} invalid rows to {path}")

    fingerprint = fingerprint_frame(result.valid)
    yield dg.Output(
        replace(raw_data, frame=result.valid, fingerprint=fingerprint),
        data_version=dg.DataVersion(fingerprint),
        metadata={
            "dagster/row_count": len(result.valid),
            "fingerprint": fingerprint,
            "quarantined_rows": len(result.quarantined),
            "dropped_columns": ", ".join(result.dropped_columns) or "none",
            "failures": frame_table(result.failures, limit=200),
            **quarantine_metadata,
        },
    )
    quarantined = len(result.quarantined)
    yield dg.AssetCheckResult(
        check_name=SCHEMA_CHECK,
        passed=quarantined == 0,
        severity=dg.AssetCheckSeverity.WARN,
        description=(
            "all rows passed the schema"
            if quarantined == 0
            else f"{quarantined} of {len(raw_data.frame)} rows failed the schema and were quarantined"
        ),
        metadata={
            "rows_checked": len(raw_data.frame),
            "quarantined_rows": quarantined,
            "failure_count": len(result.failures),
            "max_invalid_fraction": config.max_invalid_fraction,
            "recommended_action": "Inspect the quarantined rows and fix the source data",
        },
    )


@dg.asset(
    group_name=GROUP,
    kinds={"scikit-learn"},
    check_specs=[
        dg.AssetCheckSpec(
            ACCURACY_CHECK,
            asset="trained_model",
            blocking=True,
            description="Holdout accuracy of the candidate is at least TrainingConfig.min_accuracy (0.70).",
        )
    ],
)
def trained_model(
    context: dg.AssetExecutionContext,
    config: TrainingConfig,
    validated_data: SourceData,
    model_registry: ModelRegistryResource,
) -> Any:
    """A new immutable model version in the registry, with its holdout metrics."""
    settings = TrainingSettings(
        estimator=config.estimator, params=config.params, holdout_fraction=config.holdout_fraction, seed=config.seed
    )
    try:
        candidate = train_candidate(validated_data.frame, validated_data.spec, settings)
    except ValueError as exc:
        raise dg.Failure(description=f"trained_model: {exc}", allow_retries=False) from exc

    spec = validated_data.spec
    registry = model_registry.registry()
    version = registry.register(
        candidate.pipeline,
        {
            "params": candidate.params,
            "metrics": candidate.metrics,
            "data_fingerprint": validated_data.fingerprint or fingerprint_frame(validated_data.frame),
            "row_count": len(validated_data.frame),
            "train_rows": len(candidate.train),
            "holdout_rows": len(candidate.holdout),
            "features": spec.feature_names,
            "target": spec.target,
            "classes": [str(c) for c in spec.classes] if spec.classes else None,
            "code_version": code_version(),
            "library_versions": library_versions(),
            "run_id": context.run.run_id,
            "data_source": validated_data.description,
        },
        # So monitoring can compare new data with the training data without keeping it.
        attachments={REFERENCE_FILE: build_reference(candidate.train, spec, candidate.pipeline).to_json()},
    )
    context.log.info(f"registered {version.version}: {candidate.metrics}")
    pruned = registry.prune(model_registry.keep_last)
    if pruned:
        context.log.info(f"retention (keep_last={model_registry.keep_last}) deleted {', '.join(pruned)}")
    yield dg.Output(
        CandidateModel(version.version, candidate.metrics, spec, candidate.holdout),
        metadata={
            "model_version": version.version,
            **{f"holdout_{k}": v for k, v in candidate.metrics.items()},
            "params": dg.MetadataValue.json(candidate.params),
            "sha256": version.sha256,
            "model_card": dg.MetadataValue.md(registry.model_card(version.version)),
            "model_card_path": registry_link(registry, version.version),
        },
    )
    accuracy, threshold = candidate.metrics["accuracy"], config.min_accuracy
    passed = accuracy >= threshold
    yield dg.AssetCheckResult(
        check_name=ACCURACY_CHECK,
        passed=passed,
        severity=dg.AssetCheckSeverity.ERROR,
        description=(
            f"holdout accuracy {accuracy:.2%} meets the threshold {threshold:.2%}"
            if passed
            # The seed's alert wording.
            else f"Model accuracy dropped to {accuracy:.2%} (threshold: {threshold:.2%})"
        ),
        metadata={
            "accuracy": accuracy,
            "threshold": threshold,
            "model_version": version.version,
            "recommended_action": "Consider retraining model with more recent data",
        },
    )


def latest_check_result(instance: dg.DagsterInstance, check_name: str, model_version: str) -> bool | None:
    """Did `check_name` pass for this model version? None when it has no result for it."""
    record = instance.get_latest_asset_check_evaluation_record(
        dg.AssetCheckKey(dg.AssetKey("trained_model"), check_name)
    )
    if record is None or record.event is None or record.event.dagster_event is None:
        return None
    evaluation = record.event.dagster_event.event_specific_data
    if not isinstance(evaluation, dg.AssetCheckEvaluation):
        return None  # planned but never ran
    evaluated_version = evaluation.metadata.get("model_version")
    if evaluated_version is None or evaluated_version.value != model_version:
        return None  # the latest result belongs to another candidate
    return evaluation.passed


def registry_link(registry: ModelRegistry, version: str) -> dg.MetadataValue:
    location = registry.location(version)
    return dg.MetadataValue.path(location) if "://" not in location else dg.MetadataValue.url(location)


# Every writer of registry aliases runs in this Dagster concurrency pool, so promotions and
# rollbacks are serialised across runs even on object stores that have no file lock.
REGISTRY_POOL = "model_registry"


# The seed's schedule is daily: warn when a day's retrain was missed, fail after two.
PRODUCTION_FRESHNESS = dg.FreshnessPolicy.time_window(fail_window=timedelta(hours=49), warn_window=timedelta(hours=25))


@dg.asset(group_name=GROUP, kinds={"scikit-learn"}, pool=REGISTRY_POOL, freshness_policy=PRODUCTION_FRESHNESS)
def production_model(
    context: dg.AssetExecutionContext,
    config: PromotionConfig,
    trained_model: CandidateModel,
    model_registry: ModelRegistryResource,
) -> dg.Output[dict[str, Any]]:
    """The champion. The candidate replaces it only through the promotion gate."""
    registry = model_registry.registry()
    candidate = trained_model
    # The gate reads check results itself: a run that selects only this asset must not
    # promote a candidate whose checks failed or never ran.
    check_results = {name: latest_check_result(context.instance, name, candidate.version) for name in GATE_CHECKS}

    champion = registry.alias("production")
    champion_metrics: dict[str, float] | None = None
    features_match = True
    if champion is not None and champion != candidate.version:
        features_match = registry.get(champion).features == candidate.spec.feature_names
        if features_match:
            try:
                champion_metrics = evaluate(registry.load(champion), candidate.holdout, candidate.spec)
            except RegistryError as exc:
                context.log.warning(f"champion {champion} cannot be loaded, so cannot be compared: {exc}")

    decision = decide_promotion(
        candidate_version=candidate.version,
        check_results=check_results,
        candidate_metrics=candidate.metrics,
        champion_version=champion,
        champion_metrics_on_candidate_holdout=champion_metrics,
        features_match=features_match,
        policy=GatePolicy(config.metric, config.tolerance, config.allow_feature_change),
    )
    if decision.promote:
        registry.set_alias(
            "production", candidate.version, reason=decision.reason, run_id=context.run.run_id, metrics=candidate.metrics
        )
        context.log.info(f"promoted {candidate.version}: {decision.reason}")
    else:
        context.log.warning(f"kept {champion or 'no model'} in production: {decision.reason}")

    current = registry.alias("production")
    current_metrics = registry.get(current).metrics if current else {}
    card = {"model_card": registry_link(registry, current)} if current else {}
    return dg.Output(
        {
            "version": current,
            "candidate": candidate.version,
            "promoted": decision.promote,
            "reason": decision.reason,
            "decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        },
        metadata={
            "production_version": current or "none",
            "candidate_version": candidate.version,
            "promoted": decision.promote,
            "decision": decision.reason,
            "checks": dg.MetadataValue.json({k: v for k, v in check_results.items()}),
            "champion_on_candidate_holdout": dg.MetadataValue.json(champion_metrics or {}),
            **{f"production_{k}": v for k, v in current_metrics.items()},
            **card,
        },
    )


ASSETS = [raw_data, validated_data, trained_model, production_model]
