"""Sensors that turn failed asset checks, stale assets and failed runs into delivered alerts, for
every declared model (one pair for the platform; each model's alert routing overrides apply).

Open-source Dagster has no alerting on failed checks, so both sensors read the instance's event
log themselves, each after a cursor of storage ids, in ascending order:
- `check_alert_sensor`: asset-check evaluations and freshness-state changes (the freshness
  daemon's FRESHNESS_STATE_CHANGE events), each stream with its own cursor;
- `run_failure_alert_sensor`: RUN_FAILURE events. Unlike Dagster's `run_failure_sensor`, which
  starts at "now" on its first tick, it starts after the last failure it alerted (found in the
  outbox), so a run that failed before its first tick or while the daemon was down is alerted
  when the daemon comes back.
Every alert is submitted under a key of its source event, so a tick that dies before saving its
cursor re-reads but never re-alerts. Each tick also delivers whatever is due (retries included),
and names any alert channel that is switched off by a configuration problem, in its tick, in the
log and in a HIGH alert on the channels that work.
"""

import json
import logging
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import dagster as dg
from dagster._core.definitions.freshness import FreshnessState
from dagster._core.events import DagsterEventType

from ml_platform.alerting.alert import Alert, Severity, alert_for_failed_check, run_url
from ml_platform.alerting.dispatch import AlertDispatcher, ResolvedCheck
from ml_platform.declaration import FreshnessCheck
from ml_platform.orchestration.alerting import AlertingResource, env_int
from ml_platform.orchestration.metadata import plain_metadata
from ml_platform.orchestration.names import MODEL_TAG, model_of_asset

# Model -> severity -> channels: the declarations' alert routing overrides.
ModelRoutes = Mapping[str, Mapping[str, Sequence[str]]]

MAX_EVENTS_PER_TICK = 1_000
# Problems in the sensors' own settings (named in every tick and alerted HIGH, never fatal).
SENSOR_PROBLEMS: list[str] = []
# Seconds between ticks; lower it (e.g. 5) for faster alerts at the cost of more daemon work.
ALERT_SENSOR_INTERVAL = env_int("ML_PLATFORM_ALERT_SENSOR_INTERVAL", 30, SENSOR_PROBLEMS, low=1, high=86_400)
# A run that failed only because a blocking check failed was already alerted by that check.
BLOCKING_CHECK_ERROR = "DagsterAssetCheckFailedError"
FRESHNESS_CHECK = "freshness"
CONFIGURATION_CHECK = "channel_configuration"

logger = logging.getLogger("ml_platform.alerts")


def _records(instance: dg.DagsterInstance, event_type: DagsterEventType, after: int, limit: int) -> list[dg.EventLogRecord]:
    return list(
        instance.event_log_storage.get_event_records(
            dg.EventRecordsFilter(event_type=event_type, after_cursor=after), limit=limit, ascending=True
        )
    )


def read_check_evaluations(
    instance: dg.DagsterInstance,
    after_storage_id: int,
    alerting: AlertingResource,
    limit: int = MAX_EVENTS_PER_TICK,
) -> tuple[list[Alert], list[ResolvedCheck], int]:
    """Alerts for failed evaluations, resolutions for passed ones, and the new cursor."""
    failed: list[Alert] = []
    passed: list[ResolvedCheck] = []
    cursor = after_storage_id
    for record in _records(instance, DagsterEventType.ASSET_CHECK_EVALUATION, after_storage_id, limit):
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
                    message=evaluation.description, metadata=metadata,
                )
            )
    return failed, passed, cursor


def read_freshness_changes(
    instance: dg.DagsterInstance,
    after_storage_id: int,
    alerting: AlertingResource,
    freshness: Mapping[str, FreshnessCheck],
    limit: int = MAX_EVENTS_PER_TICK,
) -> tuple[list[Alert], list[ResolvedCheck], int]:
    """A stale asset (its FreshnessPolicy failing, or warning) is alerted like a failed check;
    fresh again resolves it. Severity: the model's `checks.freshness.severity` on FAIL, LOW on WARN."""
    failed: list[Alert] = []
    passed: list[ResolvedCheck] = []
    cursor = after_storage_id
    for record in _records(instance, DagsterEventType.FRESHNESS_STATE_CHANGE, after_storage_id, limit):
        cursor = max(cursor, record.storage_id)
        change = record.event_log_entry.dagster_event.asset_freshness_state_change_data  # type: ignore[union-attr]
        asset = change.key.to_user_string()
        model = model_of_asset(change.key)
        declared = freshness.get(model or "", FreshnessCheck())
        common = {"asset": asset, "check": FRESHNESS_CHECK, "environment": alerting.environment, "source_event_id": record.storage_id}
        if change.new_state in (FreshnessState.FAIL, FreshnessState.WARN):
            fail = change.new_state is FreshnessState.FAIL
            hours = declared.fail_hours if fail else declared.warn_hours
            failed.append(
                Alert(
                    severity=Severity(declared.severity) if fail else Severity.LOW,
                    message=f"{asset} is stale: not materialized for more than {hours:g} h "
                    f"(freshness policy {change.new_state.value})",
                    recommended_action="Check that the model's training schedule runs and succeeds; run it by hand if not",
                    run_id=None,
                    metadata={"freshness_state": change.new_state.value, "previous_state": change.previous_state.value,
                              "warn_hours": declared.warn_hours, "fail_hours": declared.fail_hours},
                    model=model,
                    **common,
                )
            )
        elif change.new_state is FreshnessState.PASS:
            passed.append(ResolvedCheck(message=f"{asset} is fresh again", metadata={"freshness_state": "PASS"}, **common))
    return failed, passed, cursor


@dataclass(frozen=True)
class CheckSensorCursor:
    """Where each event stream the check sensor reads was left (storage ids)."""

    checks: int = 0
    freshness: int = 0

    @classmethod
    def parse(cls, text: str | None) -> "CheckSensorCursor":
        if not text:
            return cls()
        if text.isdigit():  # the cursor of earlier versions: check evaluations only
            return cls(checks=int(text))
        data = json.loads(text)
        return cls(checks=int(data.get("checks", 0)), freshness=int(data.get("freshness", 0)))

    def dump(self) -> str:
        return json.dumps({"checks": self.checks, "freshness": self.freshness})


def _deliver(context: dg.SensorEvaluationContext, dispatcher: AlertDispatcher) -> str:
    result = dispatcher.deliver_due()
    for delivery_id, channel, reason in result.errors:
        context.log.warning(f"alert delivery {delivery_id} via {channel} failed: {reason}")
    return f"delivered {result.delivered}, retrying {result.retrying}, dead-lettered {result.dead}"


def configuration_alerts(alerting: AlertingResource, dispatcher: AlertDispatcher, now: float) -> str:
    """A HIGH alert per alert channel (or sensor setting) that a configuration problem switched
    off, on the channels that work; resolved once it works. At most one per repeat interval."""
    _, broken = alerting.channels()
    problems = {**broken, **({"sensors": "; ".join(SENSOR_PROBLEMS)} if SENSOR_PROBLEMS else {})}
    window = int(now // max(dispatcher.repeat_interval_seconds, 1.0))
    for name, reason in problems.items():
        logger.error("alert channel %r is switched off: %s", name, reason)
        alert = Alert(
            severity=Severity.HIGH, asset=f"alerting/{name}", check=CONFIGURATION_CHECK,
            message=f"alert channel {name!r} is switched off: {reason}",
            recommended_action="Fix its settings (environment variables, see the README's Channels) and restart "
            "the code location; the other channels carry on meanwhile",
            run_id=None, environment=alerting.environment,
        )
        dispatcher.submit([alert], idempotency_key=f"configuration:{name}:{reason}:{window}")
    healthy = [name for name in alerting.channel_names() if name not in problems] + (["sensors"] if not SENSOR_PROBLEMS else [])
    dispatcher.resolve([
        ResolvedCheck(asset=f"alerting/{name}", check=CONFIGURATION_CHECK, environment=alerting.environment,
                      message=f"alert channel {name!r} works again")
        for name in healthy
    ])
    return "; ".join(f"{name} switched off: {reason}" for name, reason in problems.items())


def model_of_run(run: dg.DagsterRun) -> str | None:
    """The model a run belongs to: its tag (the model's jobs and schedules set it), else the
    common prefix of the assets it selected."""
    if run.tags.get(MODEL_TAG):
        return run.tags[MODEL_TAG]
    models = {model_of_asset(key) for key in run.asset_selection or ()}
    return models.pop() if len(models) == 1 else None


@dataclass(frozen=True)
class StepFailure:
    step: str
    error_class: str  # of the root cause: the user's exception, not Dagster's wrapper
    reason: str  # one line naming the culprit


def _root_cause(error: object) -> tuple[str, str]:
    """(class, first line of message) of the innermost exception in a SerializableErrorInfo chain."""
    while getattr(error, "cause", None) is not None:
        error = error.cause  # type: ignore[attr-defined]
    message = (getattr(error, "message", "") or "").strip()
    cls = getattr(error, "cls_name", None) or ""
    first = message.splitlines()[0] if message else cls or "unknown error"
    return cls, first


def step_failures(instance: dg.DagsterInstance, run_id: str) -> list[StepFailure]:
    """Each failed step of the run with its root cause: a `dg.Failure`'s description, else the
    user exception under Dagster's "Error occurred while executing op ..." wrapper."""
    failures = []
    for entry in instance.all_logs(run_id, of_type=DagsterEventType.STEP_FAILURE):
        event = entry.dagster_event
        data = event.step_failure_data
        step = event.step_key or "?"
        cls, reason = _root_cause(data.error) if data.error else ("", "unknown error")
        if data.user_failure_data and data.user_failure_data.description:
            reason = data.user_failure_data.description.strip().splitlines()[0]
        # Domain errors may start with the asset's own name ("validated_data: ..."): say it once.
        reason = reason.removeprefix(f"{step.rsplit('__', 1)[-1]}: ")
        failures.append(StepFailure(step, cls, reason))
    return failures


def alert_for_failed_run(
    run: dg.DagsterRun, failures: Sequence[StepFailure], fallback: str, alerting: AlertingResource, event_id: int
) -> Alert:
    model = model_of_run(run)
    # An ad-hoc run of assets (CLI, "Materialize" in the UI) has an internal job name: say whose it was.
    job = run.job_name if not run.job_name.startswith("__") else f"{model or 'an'} asset run"
    steps = "; ".join(f"{f.step}: {f.reason}" for f in failures) or fallback
    return Alert(
        severity=Severity.HIGH,
        asset=job,
        check="run_failure",
        message=f"Run of {job} failed: {steps}",
        recommended_action="Open the run in the Dagster UI, fix the cause and re-run it",
        run_id=run.run_id,
        source_event_id=event_id,
        environment=alerting.environment,
        run_url=run_url(alerting.webserver_base_url, run.run_id),
        model=model,
        # What failed is part of the identity: a different failure of the same job is a new alert.
        cause=",".join(f"{f.step}:{f.error_class}" for f in failures) or "run",
        metadata={"failed_steps": [{"step": f.step, "error": f.error_class, "reason": f.reason} for f in failures]},
    )


def last_alerted_run_failure(instance: dg.DagsterInstance, dispatcher: AlertDispatcher) -> int:
    """The RUN_FAILURE event id of the newest run failure already alerted (0: none): where a
    sensor with no cursor yet (first tick, or a new deployment) starts catching up."""
    newest = dispatcher.outbox.newest_source_event(check="run_failure")
    if newest is not None:
        return newest
    # Alerts of earlier versions carry no event id: start after the failure of the newest alerted run.
    run_id = dispatcher.outbox.newest_run_alerted(check="run_failure")
    if run_id is None:
        return 0
    records = instance.get_records_for_run(run_id, of_type=DagsterEventType.RUN_FAILURE).records
    return max((r.storage_id for r in records), default=0)


def build_alert_sensors(
    model_routes: ModelRoutes, freshness: Mapping[str, FreshnessCheck] | None = None
) -> list[dg.SensorDefinition]:
    """The platform's two alert sensors; `model_routes` are the declared models' routing overrides,
    `freshness` their freshness settings (severity, hours)."""
    freshness = dict(freshness or {})

    @dg.sensor(
        name="check_alert_sensor",
        minimum_interval_seconds=ALERT_SENSOR_INTERVAL,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Alerts on failed asset checks and stale assets (and resolves them when they pass again); "
        "delivers the outbox.",
    )
    def check_alert_sensor(context: dg.SensorEvaluationContext, alerting: AlertingResource) -> dg.SkipReason:
        dispatcher = alerting.dispatcher(model_routes)
        problems = configuration_alerts(alerting, dispatcher, time.time())
        after = CheckSensorCursor.parse(context.cursor)
        failed, passed, checks_cursor = read_check_evaluations(context.instance, after.checks, alerting)
        stale, fresh, freshness_cursor = read_freshness_changes(context.instance, after.freshness, alerting, freshness)
        submitted = dispatcher.submit([*failed, *stale])
        resolved = dispatcher.resolve([*passed, *fresh])
        context.update_cursor(CheckSensorCursor(checks_cursor, freshness_cursor).dump())
        delivered = _deliver(context, dispatcher)
        return dg.SkipReason(
            f"{submitted.notified} alert(s) and {resolved.notified} resolution(s) queued "
            f"({submitted.suppressed} within repeat interval, {submitted.duplicates} already seen); "
            f"{delivered}; cursor at events {checks_cursor} (checks), {freshness_cursor} (freshness)"
            + (f"; CONFIGURATION: {problems}" if problems else "")
        )

    @dg.sensor(
        name="run_failure_alert_sensor",
        minimum_interval_seconds=ALERT_SENSOR_INTERVAL,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="A HIGH alert for every failed run, with its root cause, unless only a blocking check "
        "(already alerted) failed; catches up on failures while the daemon was down.",
    )
    def run_failure_alert_sensor(context: dg.SensorEvaluationContext, alerting: AlertingResource) -> dg.SkipReason:
        dispatcher = alerting.dispatcher(model_routes)
        after = int(context.cursor) if context.cursor else last_alerted_run_failure(context.instance, dispatcher)
        cursor, alerted, skipped = after, 0, 0
        for record in _records(context.instance, DagsterEventType.RUN_FAILURE, after, MAX_EVENTS_PER_TICK):
            cursor = max(cursor, record.storage_id)
            run = context.instance.get_run_by_id(record.run_id)
            if run is None:
                continue  # deleted since
            failures = step_failures(context.instance, run.run_id)
            if failures and all(f.error_class == BLOCKING_CHECK_ERROR for f in failures):
                skipped += 1  # check_alert_sensor alerted the check
                continue
            message = (record.event_log_entry.dagster_event.message or "").strip()  # type: ignore[union-attr]
            alert = alert_for_failed_run(run, failures, message.splitlines()[0] if message else "", alerting, record.storage_id)
            # Keyed on the run: a replayed event (or an earlier version's alert of it) is never sent twice.
            alerted += dispatcher.submit([alert], idempotency_key=f"run-failure:{run.run_id}").notified
        context.update_cursor(str(cursor))
        delivered = _deliver(context, dispatcher)
        return dg.SkipReason(
            f"{alerted} failed run(s) alerted, {skipped} left to their blocking check's alert; {delivered}; "
            f"cursor at event {cursor}"
        )

    return [check_alert_sensor, run_failure_alert_sensor]
