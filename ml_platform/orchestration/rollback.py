"""One declared model's `<model>_rollback` job: put an earlier version back in production."""

import dagster as dg

from ml_platform.data.sources import DataSourceError
from ml_platform.declaration import DeclaredModel
from ml_platform.model.registry import RegistryError
from ml_platform.orchestration.names import MODEL_TAG, ModelNames
from ml_platform.orchestration.release import registry_link
from ml_platform.orchestration.resources import DataSourceResource


class RollbackConfig(dg.Config):
    to_version: str | None = None  # default: the `previous` alias
    reason: str = ""


def build_rollback_job(model: DeclaredModel) -> dg.JobDefinition:
    names = ModelNames(model.name)

    @dg.op(
        name=f"{model.name}_rollback_production_model",
        pool=names.registry_pool,
        out=dg.Out(dict),
        required_resource_keys={names.data_source, "model_registry"},
    )
    def rollback_production_model(context: dg.OpExecutionContext, config: RollbackConfig):  # type: ignore[no-untyped-def]
        """Atomic, recorded in the history, and refused for a version that fails its integrity
        check or whose features differ from the data source's declared feature set."""
        registry = context.resources.model_registry.registry(model.name)
        data_source: DataSourceResource = getattr(context.resources, names.data_source)
        try:
            expected = data_source.load().spec.feature_names
        except (DataSourceError, ValueError, OSError) as exc:
            # An outage of the source must not block an emergency rollback: fall back to the
            # feature list of the model being replaced.
            context.log.warning(f"data source unavailable ({exc}); checking features against production instead")
            expected = None
        try:
            entry = registry.rollback(
                config.to_version, reason=config.reason or None, run_id=context.run.run_id, expected_features=expected
            )
        except RegistryError as exc:
            raise dg.Failure(description=f"rollback refused: {exc}", allow_retries=False) from exc
        context.log.info(f"production rolled back: {entry['from_version']} -> {entry['to_version']}")
        yield dg.AssetMaterialization(
            asset_key=names.production_model,
            description=entry["reason"],
            metadata={
                "production_version": entry["to_version"],
                "rolled_back_from": entry["from_version"] or "none",
                "decision": entry["reason"],
                "model_card": registry_link(registry, entry["to_version"]),
                **{f"production_{k}": v for k, v in entry["metrics"].items()},
            },
        )
        yield dg.Output(entry)

    @dg.job(
        name=names.rollback_job,
        tags={MODEL_TAG: model.name},
        description=f"Put the previous (or a chosen) {model.name} version back in production.",
    )
    def rollback_job() -> None:
        rollback_production_model()

    return rollback_job
