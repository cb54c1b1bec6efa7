"""One declared model's pipeline: <model>/raw_data -> validated_data -> trained_model, then the release
path (release.py): staging_model -> production_model.

Each asset is thin: it reads its config (defaults: the declaration) and resources, calls into the
domain packages, and turns the result into Dagster outputs, metadata and check results.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any

import dagster as dg

from ml_platform.data.sources import DataSourceError, SourceData, fingerprint_frame, with_declared_kinds
from ml_platform.data.validation import DataValidationError, ValidationPolicy, validate_frame, with_known_categories
from ml_platform.declaration import DeclaredModel
from ml_platform.model.provenance import code_digest, code_version, library_versions
from ml_platform.model.registry import ModelRegistry, RegistryError
from ml_platform.model.smoke import prestart as smoke_server_prestart
from ml_platform.model.training import (
    TrainingSettings,
    known_classes,
    labelled_rows,
    split_holdout,
    train_candidate,
    training_identity,
)
from ml_platform.monitoring.checks import REFERENCE_FILE, build_reference
from ml_platform.orchestration.config import check_run_config, config_class
from ml_platform.orchestration.metadata import frame_table
from ml_platform.orchestration.names import ACCURACY_CHECK, SCHEMA_CHECK, ModelNames
from ml_platform.orchestration.release import CandidateModel, build_release_assets, registry_link
from ml_platform.orchestration.resources import DataSourceResource, ModelRegistryResource
from ml_platform.paths import platform_home

# Transient read errors (OSError: network share, object store) are retried with backoff;
# a DataSourceError (missing, empty, unparseable) is permanent and fails at once.
EXTRACT_RETRY_POLICY = dg.RetryPolicy(
    max_retries=3, delay=2, backoff=dg.Backoff.EXPONENTIAL, jitter=dg.Jitter.PLUS_MINUS
)


def production_metadata(registry: ModelRegistry, log: Any) -> dict[str, Any]:
    """The production version's metadata: the classes and categories it was trained on (empty
    before the first model, or when the production version cannot be read: retraining is then
    the way out, so it goes on, unchecked)."""
    version = registry.alias("production")
    if version is None:
        return {}
    try:
        return registry.get(version).metadata
    except RegistryError as exc:
        log.warning(f"labels and categories not checked against the production model's: {exc}")
        return {}


@dataclass(frozen=True)
class PipelineAssets:
    raw_data: dg.AssetsDefinition
    validated_data: dg.AssetsDefinition
    trained_model: dg.AssetsDefinition
    staging_model: dg.AssetsDefinition
    production_model: dg.AssetsDefinition
    # Each op's config with the declaration's values (what a scheduled run carries).
    op_configs: dict[str, dg.Config]

    @property
    def assets(self) -> list[dg.AssetsDefinition]:
        return [self.raw_data, self.validated_data, self.trained_model, self.staging_model, self.production_model]


def build_pipeline_assets(
    model: DeclaredModel, run_config_classes: Mapping[str, type[dg.Config]] | None = None
) -> PipelineAssets:
    """`run_config_classes`: every op config class of the model (filled in once all its parts are
    built); the first step of a run checks the whole run's config against them."""
    names = ModelNames(model.name)

    def prestart_smoke_server(context: dg.AssetExecutionContext) -> None:
        """Fork the smoke test's server at the first step of a run that stages a candidate: before
        anything is trained, and before the run's writer thread stores anything (a fork in the
        middle of a write could inherit its locks). Later calls find it started."""
        if names.staging_model in context.job_def.asset_layer.selected_asset_keys:
            smoke_server_prestart()

    run_config_classes = run_config_classes if run_config_classes is not None else {}
    declaration = model.declaration
    ValidationConfig = config_class("ValidationConfig", declaration.validation)
    TrainingConfig = config_class("TrainingConfig", declaration.training, extra={"accuracy_check": declaration.checks.accuracy})
    source_key = names.data_source
    # Every asset of a model: under its key prefix, in its group.
    of_the_model: dict[str, Any] = {"key_prefix": [model.name], "group_name": model.name}

    @dg.asset(
        name="raw_data",
        **of_the_model,
        retry_policy=EXTRACT_RETRY_POLICY,
        kinds={"pandas"},
        required_resource_keys={source_key},
    )
    def raw_data(context: dg.AssetExecutionContext) -> dg.Output[SourceData]:
        """The rows extracted from the model's declared source, with its declared feature set."""
        check_run_config(context.run.run_config, run_config_classes)
        prestart_smoke_server(context)
        data_source: DataSourceResource = getattr(context.resources, source_key)
        try:
            source = with_declared_kinds(data_source.load(), data_source.categorical, data_source.impute)
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
        name="validated_data",
        **of_the_model,
        kinds={"pandera"},
        ins={"raw_data": dg.AssetIn(key=names.raw_data)},
        check_specs=[
            dg.AssetCheckSpec(
                SCHEMA_CHECK,
                asset=names.validated_data,
                blocking=True,
                description="Every row conforms to the Pandera schema; warns when rows were quarantined.",
            )
        ],
    )
    def validated_data(
        context: dg.AssetExecutionContext,
        config: ValidationConfig,  # type: ignore[valid-type]
        raw_data: SourceData,
        model_registry: ModelRegistryResource,
    ) -> Any:
        """raw_data restricted to the declared features, with every Pandera check passed and every
        label among the known classes."""
        check_run_config(context.run.run_config, run_config_classes)
        prestart_smoke_server(context)
        policy = ValidationPolicy(
            min_rows=config.min_rows,
            max_invalid_fraction=config.max_invalid_fraction,
            unseen_categories=config.unseen_categories,
        )
        production = production_metadata(model_registry.registry(model.name), context.log)
        known = None if config.allow_new_classes else production.get("classes")
        spec = with_known_categories(raw_data.spec, production.get("categories") or {})
        try:
            result = validate_frame(raw_data.frame, spec, policy, production_classes=known)
        except DataValidationError as exc:
            raise dg.Failure(
                description=str(exc),
                metadata={"failure_count": len(exc.failures), "failures": frame_table(exc.failures, limit=200)},
                allow_retries=False,
            ) from exc

        quarantine_metadata: dict[str, Any] = {}
        if len(result.quarantined):
            path = platform_home() / "quarantine" / model.name / f"{context.run.run_id}.csv"
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
                # Kept for monitoring (labels arrive late); training uses the labelled rows only.
                "unlabelled_rows": result.unlabelled_rows,
                "dropped_columns": ", ".join(result.dropped_columns) or "none",
                **(
                    {"remapped_categories": dg.MetadataValue.json(result.remapped)}
                    if policy.unseen_categories == "other" else {}
                ),
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
        name="trained_model",
        **of_the_model,
        kinds={"scikit-learn"},
        ins={"validated_data": dg.AssetIn(key=names.validated_data)},
        pool=names.registry_pool,
        check_specs=[
            dg.AssetCheckSpec(
                ACCURACY_CHECK,
                asset=names.trained_model,
                blocking=True,
                description=(
                    "Holdout accuracy of the candidate is at least checks.accuracy.min_accuracy "
                    f"({declaration.checks.accuracy.min_accuracy:.2f})."
                ),
            )
        ],
    )
    def trained_model(
        context: dg.AssetExecutionContext,
        config: TrainingConfig,  # type: ignore[valid-type]
        validated_data: SourceData,
        model_registry: ModelRegistryResource,
    ) -> Any:
        """A candidate version in the model's registry, with its holdout metrics. Data, params and
        code that an existing version was trained on register nothing new: that version is the candidate."""
        check_run_config(context.run.run_config, run_config_classes)
        prestart_smoke_server(context)
        settings = TrainingSettings(
            estimator=config.estimator, params=config.params, holdout_fraction=config.holdout_fraction, seed=config.seed
        )
        frame = labelled_rows(validated_data.frame, validated_data.spec)
        min_rows = declaration.validation.min_rows
        if len(frame) < min_rows:
            raise dg.Failure(
                description=f"trained_model: {len(frame)} labelled rows of {len(validated_data.frame)}, fewer than "
                f"the minimum of {min_rows} (validation.min_rows in the model's declaration)",
                allow_retries=False,
            )
        spec = replace(validated_data.spec, classes=known_classes(frame, validated_data.spec))
        fingerprint = validated_data.fingerprint or fingerprint_frame(validated_data.frame)
        identity = training_identity(fingerprint, spec, settings, code_digest(), library_versions())
        registry = model_registry.registry(model.name)

        existing = registry.find_version("training_identity", identity)
        if existing is not None:
            try:
                _, holdout = split_holdout(frame, spec.target, settings.holdout_fraction, settings.seed)
            except ValueError as exc:
                raise dg.Failure(description=f"trained_model: {exc}", allow_retries=False) from exc
            version, sha256, metrics = existing.version, existing.sha256, existing.metrics
            context.log.info(
                f"nothing new registered: {version} was trained on this very data (fingerprint {fingerprint}) "
                "with the same params and code"
            )
        else:
            try:
                candidate = train_candidate(frame, spec, settings)
            except ValueError as exc:
                raise dg.Failure(description=f"trained_model: {exc}", allow_retries=False) from exc
            registered = registry.register(
                candidate.pipeline,
                {
                    "model": model.name,
                    "params": candidate.params,
                    "metrics": candidate.metrics,
                    "data_fingerprint": fingerprint,
                    "row_count": len(frame),  # labelled rows
                    "train_rows": len(candidate.train),
                    "holdout_rows": len(candidate.holdout),
                    "features": spec.feature_names,
                    "feature_types": candidate.feature_types,
                    "categories": candidate.categories,
                    "imputation": candidate.imputation,
                    "target": spec.target,
                    "classes": list(spec.classes or ()),
                    "code_version": code_version(),
                    "code_digest": code_digest(),
                    "library_versions": library_versions(),
                    "training_identity": identity,
                    "run_id": context.run.run_id,
                    "data_source": validated_data.description,
                },
                # So monitoring can compare new data with the training data without keeping it.
                attachments={REFERENCE_FILE: build_reference(candidate.train, spec, candidate.pipeline, candidate.holdout).to_json()},
            )
            version, sha256, metrics, holdout = registered.version, registered.sha256, candidate.metrics, candidate.holdout
            context.log.info(f"registered {version}: {metrics}")
            pruned = registry.prune(declaration.registry.keep_last)
            if pruned:
                context.log.info(f"retention (keep_last={declaration.registry.keep_last}) deleted {', '.join(pruned)}")
        reused = existing is not None
        yield dg.Output(
            CandidateModel(version, metrics, spec, holdout, context.run.run_id, reused),
            metadata={
                "model_version": version,
                "registered": not reused,
                "training": (
                    f"nothing new registered: {version} was trained on the same data, params and code"
                    if reused else f"registered {version}"
                ),
                **{f"holdout_{k}": v for k, v in metrics.items()},
                "params": dg.MetadataValue.json(settings.params or {}),
                "sha256": sha256,
                "model_card": dg.MetadataValue.md(registry.model_card(version)),
                "model_card_path": registry_link(registry, version),
            },
        )
        check = config.accuracy_check
        accuracy, threshold = metrics["accuracy"], check.min_accuracy
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
                "model_version": version,
                "alert_severity": check.severity,
                "recommended_action": "Consider retraining model with more recent data",
            },
        )

    staging_model, production_model, release_configs = build_release_assets(model, run_config_classes)
    return PipelineAssets(
        raw_data, validated_data, trained_model, staging_model, production_model,
        op_configs={validated_data.op.name: ValidationConfig(), trained_model.op.name: TrainingConfig(), **release_configs},
    )
