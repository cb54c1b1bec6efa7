"""Assembling Definitions: one declared model's (what the ModelPipeline component builds), and the
platform's own (shared resources, the alert sensors, the executor), which serve every model."""

import os
from collections.abc import Mapping
from typing import Any

import dagster as dg

from ml_platform.declaration import DeclarationError, DeclaredModel, ModelDeclaration
from ml_platform.orchestration.alerting import AlertingResource, alerting_from_environment
from ml_platform.orchestration.io_manager import RunScopedIOManager
from ml_platform.orchestration.jobs import build_jobs
from ml_platform.orchestration.monitoring import build_monitoring
from ml_platform.orchestration.names import ModelNames
from ml_platform.orchestration.pipeline import build_pipeline_assets
from ml_platform.orchestration.release import DECLARATION_METADATA
from ml_platform.orchestration.resources import DataSourceResource, ModelRegistryResource
from ml_platform.orchestration.rollback import build_rollback_job
from ml_platform.orchestration.serving import build_batch_predictions
from ml_platform.orchestration.sensors import build_alert_sensors


def build_model_definitions(model: DeclaredModel) -> dg.Definitions:
    """Everything one declared model is: its assets and their checks, its training, monitoring,
    batch and rollback jobs, their schedules, the batch run after a promotion, and its data source."""
    run_config_classes: dict[str, type[dg.Config]] = {}
    pipeline = build_pipeline_assets(model, run_config_classes)
    monitoring = build_monitoring(model)
    run_config_classes.update({op: type(config) for op, config in {**pipeline.op_configs, **monitoring.op_configs}.items()})
    batch = build_batch_predictions(model)
    jobs = build_jobs(model, pipeline, monitoring, batch)
    return dg.Definitions(
        assets=[*pipeline.assets, batch, monitoring.report],
        asset_checks=monitoring.checks,
        jobs=[*jobs.jobs, build_rollback_job(model)],
        schedules=jobs.schedules,
        sensors=jobs.sensors,
        resources={ModelNames(model.name).data_source: DataSourceResource.for_model(model)},
    )


def declared_models(models: dg.Definitions) -> dict[str, ModelDeclaration]:
    """The declarations behind a set of model Definitions (each model's production_model carries its own)."""
    found = {}
    for assets_def in models.assets or []:
        if not isinstance(assets_def, dg.AssetsDefinition):
            continue
        for key, spec_metadata in assets_def.metadata_by_key.items():
            if DECLARATION_METADATA in spec_metadata:
                found[key.path[0]] = ModelDeclaration.model_validate(spec_metadata[DECLARATION_METADATA].value)
    return found


def check_model_routes(declarations: Mapping[str, ModelDeclaration], alerting: AlertingResource) -> dict[str, Any]:
    """Each model's routing overrides, refused at load time if they name a channel that is off."""
    channels = set(alerting.channel_names())
    routes = {}
    for name, declaration in declarations.items():
        for severity, names in declaration.alerts.routes.items():
            off = sorted(set(names) - channels)
            if off:
                raise DeclarationError(
                    f"model {name!r}: alerts.routes.{severity} names channel(s) {off} that are off "
                    f"(on: {sorted(channels)}); set their environment variables or remove them"
                )
        if declaration.alerts.routes:
            routes[name] = dict(declaration.alerts.routes)
    return routes


EXECUTOR_ENV = "ML_PLATFORM_EXECUTOR"
EXECUTORS = ("in_process", "multiprocess", "k8s")
# Where runs store their intermediate outputs (default: the instance's storage folder). Steps in
# separate pods (the k8s executor) need it on a volume they all mount.
OUTPUTS_DIR_ENV = "ML_PLATFORM_OUTPUTS_DIR"


def executor_from_environment() -> dg.ExecutorDefinition:
    """How a run executes its steps, chosen by the deployment (ML_PLATFORM_EXECUTOR), not the code:
    `in_process` (default: small sequential steps, no 3-6.5 s of process start-up per step, see
    docs/scaling.md), `multiprocess` (parallel steps on one machine) or `k8s` (each step a Kubernetes
    Job of its own, for large models on the Helm deployment; needs the `k8s` extra)."""
    choice = os.environ.get(EXECUTOR_ENV, "").strip() or "in_process"
    if choice == "in_process":
        return dg.in_process_executor
    if choice == "multiprocess":
        return dg.multiprocess_executor
    if choice == "k8s":
        try:
            from dagster_k8s import k8s_job_executor  # only where the k8s extra is installed
        except ImportError:
            raise ValueError(f"{EXECUTOR_ENV}=k8s needs dagster-k8s: pip install 'ml_platform[k8s]'") from None
        return k8s_job_executor
    raise ValueError(f"{EXECUTOR_ENV}={choice!r} is not one of {', '.join(EXECUTORS)}")


def build_platform_definitions(models: dg.Definitions, resources: Mapping[str, Any] | None = None) -> dg.Definitions:
    """`models` plus what serves them all; `resources` replaces any shared resource (tests, demos)."""
    shared: dict[str, Any] = {
        "model_registry": ModelRegistryResource(),
        "alerting": alerting_from_environment(),
        "io_manager": RunScopedIOManager(base_dir=os.environ.get(OUTPUTS_DIR_ENV, "").strip()),
        **(resources or {}),
    }
    declarations = declared_models(models)
    model_routes = check_model_routes(declarations, shared["alerting"])
    platform = dg.Definitions(
        sensors=build_alert_sensors(model_routes, {name: d.checks.freshness for name, d in declarations.items()}),
        resources=shared,
        executor=executor_from_environment(),
    )
    return dg.Definitions.merge(models, platform)
