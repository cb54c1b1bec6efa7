"""Sensors that turn failed asset checks into alerts.

Open-source Dagster has no alerting on failed checks, so this sensor reads the instance's
event log itself. The cursor is the storage id of the last evaluation handled: each tick
reads strictly after it, in ascending order, so nothing is emitted twice or skipped.
"""


import dagster as dg
from dagster._core.events import DagsterEventType

from ml_platform.core.alerts import Alert, alert_for_failed_check
from ml_platform.orchestration.metadata import plain_metadata
from ml_platform.orchestration.resources import AlertFileResource

MAX_EVALUATIONS_PER_TICK = 1_000


def read_failed_check_alerts(
    instance: dg.DagsterInstance, after_storage_id: int, limit: int = MAX_EVALUATIONS_PER_TICK
) -> tuple[list[Alert], int]:
    """Alerts for failed check evaluations after `after_storage_id`, and the new cursor."""
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(
            event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after_storage_id
        ),
        limit=limit,
        ascending=True,
    )
    alerts: list[Alert] = []
    cursor = after_storage_id
    for record in records:
        cursor = max(cursor, record.storage_id)
        evaluation = record.event_log_entry.dagster_event.event_specific_data  # type: ignore[union-attr]
        if evaluation.passed:
            continue
        alerts.append(
            alert_for_failed_check(
                asset=evaluation.asset_key.to_user_string(),
                check=evaluation.check_name,
                dagster_severity=evaluation.severity.value,
                description=evaluation.description,
                metadata=plain_metadata(evaluation.metadata),
                run_id=record.run_id,
                event_id=record.storage_id,
            )
        )
    return alerts, cursor


@dg.sensor(
    name="failed_check_alert_sensor",
    minimum_interval_seconds=30,
    default_status=dg.DefaultSensorStatus.RUNNING,
    description="Writes an alert (log + JSONL file) for every failed asset check evaluation.",
)
def failed_check_alert_sensor(context: dg.SensorEvaluationContext, alert_file: AlertFileResource) -> dg.SkipReason:
    after = int(context.cursor) if context.cursor else 0
    alerts, cursor = read_failed_check_alerts(context.instance, after)
    channel = alert_file.channel()
    # If a tick died after writing but before its cursor was saved, the next tick re-reads
    # those evaluations: skip the ones the file already holds.
    delivered_up_to = channel.last_event_id() or 0
    fresh = [a for a in alerts if (a.source_event_id or 0) > delivered_up_to]
    for alert in fresh:
        log = context.log.error if alert.severity.value == "HIGH" else context.log.warning
        log(alert.one_line())
    channel.append(fresh)
    context.update_cursor(str(cursor))
    return dg.SkipReason(f"{len(fresh)} alert(s) written to {channel.path}; cursor at event {cursor}")
