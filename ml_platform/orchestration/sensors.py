"""Sensors that turn failed asset checks and failed runs into delivered alerts, for every
declared model (one pair for the platform; each model's alert routing overrides apply).

Open-source Dagster has no alerting on failed checks, so `check_alert_sensor` reads the
instance's event log itself: the cursor is the storage id of the last evaluation handled
and each tick reads strictly after it, in ascending order. Every evaluation is submitted to
the outbox under its event id, so a tick that dies before saving its cursor re-reads but
never re-alerts. Each tick also delivers whatever is due (including retries).
"""

import os
from collections.abc import Mapping, Sequence

import dagster as dg
from dagster._core.events import DagsterEventType

from ml_platform.alerting.alert import Alert, Severity, alert_for_failed_check, run_url
from ml_platform.alerting.dispatch import AlertDispatcher, ResolvedCheck
from ml_platform.orchestration.alerting import AlertingResource
from ml_platform.orchestration.metadata import plain_metadata
from ml_platform.orchestration.names import MODEL_TAG, model_of_asset

# Model -> severity -> channels: the declarations' alert routing overrides.
ModelRoutes = Mapping[str, Mapping[str, Sequence[str]]]

MAX_EVALUATIONS_PER_TICK = 1_000
# Seconds between ticks; lower it (e.g. 5) for faster alerts at the cost of more daemon work.
ALERT_SENSOR_INTERVAL = int(os.environ.get("ML_PLATFORM_ALERT_SENSOR_INTERVAL", "30"))
# A run that failed only because a blocking check failed was already alerted by that check.
BLOCKING_CHECK_ERROR = "DagsterAssetCheckFailedError"


def read_check_evaluations(
    instance: dg.DagsterInstance,
    after_storage_id: int,
    alerting: AlertingResource,
    limit: int = MAX_EVALUATIONS_PER_TICK,
) -> tuple[list[Alert], list[ResolvedCheck], int]:
    """Alerts for failed evaluations, resolutions for passed ones, and the new cursor."""
    records = instance.event_log_storage.get_event_records(
        dg.EventRecordsFilter(event_type=DagsterEventType.ASSET_CHECK_EVALUATION, after_cursor=after_storage_id),
        limit=limit,
        ascending=True,
    )
    failed: list[Alert] = []
    passed: list[ResolvedCheck] = []
    cursor = after_storage_id
    for record in records:
        cursor = max(cursor, record.storage_id)
        evaluation = record.event_log_entry.dagster_event.event_specific_data  # type: ignore[union-attr]
        metadata = plain_metadata(evaluation.metadata)
        asset = evaluation.asset_key.to_user_string()
        model = model_of_asset(evaluation.asset_key)
        if not evaluation.passed:
            failed.append(
                alert_for_failed_check(
                    asset=asset, check=evaluation.check_name, dagster_severity=evaluation.severity.value,
                    description=evaluation.description, metadata=metadata, run_id=record.run_id,
                    event_id=record.storage_id, environment=alerting.environment,
                    webserver_base_url=alerting.webserver_base_url, model=model,
                )
            )
        elif metadata.get("evaluated", True):  # a check that could not evaluate resolves nothing
            passed.append(
                ResolvedCheck(
                    asset=asset, check=evaluation.check_name,
                    model_version=None if metadata.get("model_version") is None else str(metadata["model_version"]),
                    environment=alerting.environment, run_id=record.run_id, source_event_id=record.storage_id,
                    message=evaluation.description,
                )
            )
    return failed, passed, cursor


def _deliver(context: dg.SensorEvaluationContext, dispatcher: AlertDispatcher) -> str:
    result = dispatcher.deliver_due()
    for delivery_id, channel, reason in result.errors:
        context.log.warning(f"alert delivery {delivery_id} via {channel} failed: {reason}")
    return f"delivered {result.delivered}, retrying {result.retrying}, dead-lettered {result.dead}"


def model_of_run(run: dg.DagsterRun) -> str | None:
    """The model a run belongs to: its tag (the model's jobs and schedules set it), else the
    common prefix of the assets it selected."""
    if run.tags.get(MODEL_TAG):
        return run.tags[MODEL_TAG]
    models = {model_of_asset(key) for key in run.asset_selection or ()}
    return models.pop() if len(models) == 1 else None


def alert_for_failed_run(run: dg.DagsterRun, message: str, alerting: AlertingResource) -> Alert:
    model = model_of_run(run)
    # An ad-hoc run of assets (CLI, "Materialize" in the UI) has an internal job name: say whose it was.
    job = run.job_name if not run.job_name.startswith("__") else f"{model or 'an'} asset run"
    return Alert(
        severity=Severity.HIGH,
        asset=job,
        check="run_failure",
        message=f"Run of {job} failed: {message}",
        recommended_action="Open the run in the Dagster UI, fix the cause and re-run it",
        run_id=run.run_id,
        environment=alerting.environment,
        run_url=run_url(alerting.webserver_base_url, run.run_id),
        model=model,
    )


def _step_failures(instance: dg.DagsterInstance, run_id: str) -> list[tuple[str, str, str]]:
    """(step, error class, reason) for each failed step of the run."""
    failures = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        data = event.step_failure_data
        reason = (data.user_failure_data.description if data.user_failure_data else None) or (
            data.error.message.strip() if data.error else "unknown error"
        )
        failures.append((event.step_key or "?", data.error.cls_name if data.error else "", reason))
    return failures


def build_alert_sensors(model_routes: ModelRoutes) -> list[dg.SensorDefinition]:
    """The platform's two alert sensors; `model_routes` are the declared models' routing overrides."""

    @dg.sensor(
        name="check_alert_sensor",
        minimum_interval_seconds=ALERT_SENSOR_INTERVAL,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on failed asset checks (and resolves them when they pass again); delivers the outbox.",
    )
    def check_alert_sensor(context: dg.SensorEvaluationContext, alerting: AlertingResource) -> dg.SkipReason:
        dispatcher = alerting.dispatcher(model_routes)
        after = int(context.cursor) if context.cursor else 0
        failed, passed, cursor = read_check_evaluations(context.instance, after, alerting)
        submitted = dispatcher.submit(failed)
        resolved = dispatcher.resolve(passed)
        context.update_cursor(str(cursor))
        delivered = _deliver(context, dispatcher)
        return dg.SkipReason(
            f"{submitted.notified} alert(s) and {resolved.notified} resolution(s) queued "
            f"({submitted.suppressed} within repeat interval, {submitted.duplicates} already seen); "
            f"{delivered}; cursor at event {cursor}"
        )

    @dg.run_failure_sensor(
        name="run_failure_alert_sensor",
        minimum_interval_seconds=ALERT_SENSOR_INTERVAL,
        default_status=dg.DefaultSensorStatus.RUNNING,
        # Runs launched with `dagster asset materialize` carry no code-location origin, so only
        # this setting lets the sensor see them too.
        monitor_all_code_locations=True,
        description="A HIGH alert for every failed run, unless only a blocking check (already alerted) failed.",
    )
    def run_failure_alert_sensor(context: dg.RunFailureSensorContext, alerting: AlertingResource) -> None:
        run = context.dagster_run
        failures = _step_failures(context.instance, run.run_id)
        if failures and all(cls == BLOCKING_CHECK_ERROR for _, cls, _ in failures):
            context.log.info(f"run {run.run_id} failed on a blocking check; check_alert_sensor alerted it")
            return
        steps = "; ".join(f"{step}: {reason}" for step, _, reason in failures)
        dispatcher = alerting.dispatcher(model_routes)
        # Dagster's run-status cursor can replay a run after a daemon restart: key on the run id.
        dispatcher.submit([alert_for_failed_run(run, steps or context.failure_event.message or "", alerting)],
                          idempotency_key=f"run-failure:{run.run_id}")
        _deliver(context, dispatcher)

    return [check_alert_sensor, run_failure_alert_sensor]
