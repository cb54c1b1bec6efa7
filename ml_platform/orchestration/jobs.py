"""The pipeline job and its daily schedule."""

import os

import dagster as dg

from ml_platform.orchestration.assets import ASSETS

ml_pipeline_job = dg.define_asset_job(
    "ml_pipeline",
    selection=dg.AssetSelection.assets(*ASSETS),  # with the checks defined on these assets
    description="Extract, validate, train a candidate and promote it through the gate.",
)


def daily_retrain_schedule(timezone: str | None = None) -> dg.ScheduleDefinition:
    """Daily at 02:00 in `timezone` (default $ML_PLATFORM_TIMEZONE, else UTC); DST-aware."""
    return dg.ScheduleDefinition(
        name="daily_retrain",
        job=ml_pipeline_job,
        cron_schedule="0 2 * * *",
        execution_timezone=timezone or os.environ.get("ML_PLATFORM_TIMEZONE", "UTC"),
        default_status=dg.DefaultScheduleStatus.RUNNING,
        description="Retrain and (if the gate allows) promote, every day at 02:00.",
    )
