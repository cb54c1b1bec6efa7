"""One declared model's jobs and schedules: training (retrain daily by default) and monitoring
(hourly by default), as the declaration's `schedules` section sets them."""

from dataclasses import dataclass
from typing import Any

import dagster as dg

from ml_platform.declaration import DeclaredModel, ScheduleSection
from ml_platform.orchestration.config import run_config
from ml_platform.orchestration.monitoring import MonitoringDefinitions
from ml_platform.orchestration.names import MODEL_TAG, TRAINING_TAG, ModelNames
from ml_platform.orchestration.pipeline import PipelineAssets


# What dg.define_asset_job returns (a job resolved when the Definitions are built).
AssetJob = Any


@dataclass(frozen=True)
class ModelJobs:
    jobs: list[AssetJob]
    schedules: list[dg.ScheduleDefinition]
    sensors: list[dg.SensorDefinition]


def _schedule(
    name: str, job: AssetJob, settings: ScheduleSection, timezone: str,
    config: dict[str, dg.Config], tags: dict[str, str], description: str,
) -> dg.ScheduleDefinition:
    @dg.schedule(
        name=name,
        job=job,
        cron_schedule=settings.cron,
        execution_timezone=timezone,
        default_status=dg.DefaultScheduleStatus.RUNNING if settings.enabled else dg.DefaultScheduleStatus.STOPPED,
        description=description,
    )
    def declared_schedule(context: dg.ScheduleEvaluationContext) -> dg.RunRequest:
        # The run carries the declaration's config explicitly, so the run's page shows what it ran with.
        return dg.RunRequest(run_config=run_config(config), tags=tags)

    return declared_schedule


def _batch_after_promotion(model: str, production_model: dg.AssetKey, batch_job: AssetJob) -> dg.SensorDefinition:
    """A batch_predictions run after each promotion (or rollback), so the new production model serves at once."""

    @dg.asset_sensor(
        name=f"{model}_batch_after_promotion",
        asset_key=production_model,
        job=batch_job,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description=f"Score {model}'s newest data with a newly promoted production model.",
    )
    def batch_after_promotion(context: dg.SensorEvaluationContext, asset_event: dg.EventLogEntry) -> Any:
        metadata = asset_event.asset_materialization.metadata if asset_event.asset_materialization else {}
        promoted = metadata.get("promoted")
        if not (getattr(promoted, "value", False) or "rolled_back_from" in metadata):
            return dg.SkipReason(f"{production_model.to_user_string()} materialized without a change of production model")
        return dg.RunRequest(run_key=f"promotion-{asset_event.run_id}", tags={MODEL_TAG: model})

    return batch_after_promotion


def build_jobs(
    model: DeclaredModel, pipeline: PipelineAssets, monitoring: MonitoringDefinitions, batch: dg.AssetsDefinition
) -> ModelJobs:
    names = ModelNames(model.name)
    schedules = model.declaration.schedules
    tags = {MODEL_TAG: model.name}
    monitoring_checks = dg.AssetSelection.checks(*monitoring.checks)
    training_job = dg.define_asset_job(
        names.training_job,
        selection=dg.AssetSelection.assets(*pipeline.assets) - monitoring_checks,
        # The run queue admits one run per value of TRAINING_TAG at a time (dagster_home/dagster.yaml).
        tags={**tags, TRAINING_TAG: model.name},
        description=f"{model.name}: extract, validate, train a candidate and promote it through the gate.",
    )
    monitoring_job = dg.define_asset_job(
        names.monitoring_job,
        selection=dg.AssetSelection.assets(names.raw_data, names.validated_data, monitoring.report) | monitoring_checks,
        tags=tags,
        description=f"{model.name}: check the production model against the newest validated data, and report; never retrains.",
    )
    batch_job = dg.define_asset_job(
        names.batch_job,
        selection=dg.AssetSelection.assets(names.raw_data, names.validated_data, batch) - monitoring_checks,
        tags=tags,
        description=f"{model.name}: score the newest validated data with the serving model(s) and step a canary rollout.",
    )
    validation_op = pipeline.validated_data.op.name
    return ModelJobs(
        jobs=[training_job, monitoring_job, batch_job],
        sensors=[_batch_after_promotion(model.name, names.production_model, batch_job)],
        schedules=[
            _schedule(
                f"{model.name}_retrain_schedule", training_job, schedules.retrain, schedules.timezone,
                pipeline.op_configs, {**tags, TRAINING_TAG: model.name},
                f"Retrain {model.name} and promote through the gate ({schedules.retrain.cron}, {schedules.timezone}).",
            ),
            _schedule(
                f"{model.name}_monitoring_schedule", monitoring_job, schedules.monitoring, schedules.timezone,
                {validation_op: pipeline.op_configs[validation_op], **monitoring.op_configs}, tags,
                f"Monitor {model.name} ({schedules.monitoring.cron}, {schedules.timezone}).",
            ),
            _schedule(
                f"{model.name}_batch_schedule", batch_job, schedules.batch, schedules.timezone,
                {validation_op: pipeline.op_configs[validation_op]}, tags,
                f"Score {model.name}'s newest data and step its rollout ({schedules.batch.cron}, {schedules.timezone}).",
            ),
        ],
    )
