"""Alert dispatch: routing, deduplication, resolution, grouping, and retried delivery.

    dispatcher = AlertDispatcher(
        outbox=AlertOutbox(platform_home() / "alerts.db"),
        channels=[SlackWebhookChannel(url), PagerDutyChannel(key), LogChannel()],
        routes={"HIGH": ["pagerduty", "slack"], "MEDIUM": ["slack"], "LOW": ["log"]},
    )
    dispatcher.submit(alerts)                     # failed checks -> outbox (idempotent)
    dispatcher.resolve([ResolvedCheck(asset, check, model_version)])   # passing again
    dispatcher.deliver_due()                      # send what is due; call on every tick

Policy, Alertmanager-style:
- routing: severity -> channel names, validated against the configured channels; a model may
  override the routes of some severities for its own alerts (`model_routes`);
- dedup: a firing fingerprint is notified once per `repeat_interval_seconds` (4 h), again
  sooner only if its severity rises;
- resolution: a fingerprint that was notified as firing and is reported passing sends a
  RESOLVED notice to the channels that were told it fires; otherwise nothing;
- record: the record channels (the log and the JSONL file) get every alert, suppressed and
  unrouted ones too, each marked with its outcome, whatever the routes say;
- grouping: the alerts of one run (and environment, and state) are ONE message per channel;
  a message that is still waiting (not attempted yet) absorbs later alerts of its group;
- delivery: each (channel, group) is an outbox row; failures back off exponentially
  (30 s, x2, cap 1 h, or the server's Retry-After when longer) and are retried on later
  calls; permanent failures and deliveries older than `give_up_after_seconds` become dead
  letters; channels are sent in parallel and a channel that fails stops its own queue for
  this pass only (so a hanging endpoint costs one timeout), keeping its messages in order;
- crash safety: a delivery being sent is leased for `lease_seconds` (30 s); a sender killed
  mid-send leaves it leased, and the channel's later messages wait behind it, so after the
  lease it goes first. Each delivery carries a stable key (`delivery_key`: the webhook's
  Idempotency-Key header, the email's Message-ID) so a receiver can drop the one resend.

Submissions are atomic (one SQLite transaction) and idempotent: each alert is keyed on
the caller's idempotency key, else on its source event id. No Dagster import.
"""

from __future__ import annotations

import logging
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from threading import Lock
from typing import Any

from ml_platform.alerting.channels import AlertChannel, DeliveryError, RetryableDeliveryError
from ml_platform.alerting.outbox import AlertOutbox, Delivery, OutboxTransaction
from ml_platform.alerting.alert import DEFAULT_ENVIRONMENT, Alert, AlertState, Severity, alert_fingerprint, run_url

logger = logging.getLogger("ml_platform.alerts.dispatch")

DEFAULT_REPEAT_INTERVAL_SECONDS = 4 * 3600.0


@dataclass(frozen=True)
class ResolvedCheck:
    """'check `check` on `asset` for `model_version` (in `environment`) passed'."""

    asset: str
    check: str
    model_version: str | None = None
    environment: str = DEFAULT_ENVIRONMENT
    run_id: str | None = None
    source_event_id: int | None = None
    message: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)  # the passing evaluation's figures

    @property
    def fingerprint(self) -> str:
        return alert_fingerprint(self.asset, self.check, self.model_version, self.environment)


@dataclass
class SubmitResult:
    notified: int = 0  # alerts (firing or resolved) that produced a notification
    suppressed: int = 0  # firing again within the repeat interval
    duplicates: int = 0  # idempotency key already seen: nothing done
    unrouted: int = 0  # recorded, but their severity routes to no channel
    ignored: int = 0  # resolutions of fingerprints that were not firing (or stale events)
    delivery_ids: list[int] = field(default_factory=list)  # outbox rows created or extended


@dataclass
class ChannelPass:
    delivered: int = 0
    retrying: int = 0
    dead: int = 0
    deferred: int = 0
    seconds: float = 0.0


@dataclass
class DeliveryResult:
    delivered: int = 0
    retrying: int = 0  # failed, will be retried
    dead: int = 0  # moved to dead letters in this pass
    deferred: int = 0  # not attempted: their channel failed earlier in this pass
    seconds: float = 0.0
    per_channel: dict[str, ChannelPass] = field(default_factory=dict)
    errors: list[tuple[int, str, str]] = field(default_factory=list)  # (delivery id, channel, reason)


def _utc_now_iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


def group_key(alert: Alert) -> str:
    return f"{alert.environment}/{alert.run_id or '-'}/{alert.state.value}"


class AlertDispatcher:
    def __init__(
        self,
        outbox: AlertOutbox,
        channels: Mapping[str, AlertChannel] | Sequence[AlertChannel],
        routes: Mapping[Severity | str, Sequence[str]],
        *,
        model_routes: Mapping[str, Mapping[Severity | str, Sequence[str]]] | None = None,
        repeat_interval_seconds: float = DEFAULT_REPEAT_INTERVAL_SECONDS,
        backoff_base_seconds: float = 30.0,
        backoff_factor: float = 2.0,
        backoff_max_seconds: float = 3600.0,
        max_retry_after_seconds: float = 6 * 3600.0,
        give_up_after_seconds: float | None = 24 * 3600.0,
        group_wait_seconds: float = 0.0,
        lease_seconds: float = 30.0,
        record_channels: Sequence[str] | None = None,
        max_parallel_channels: int = 8,
        webserver_base_url: str | None = None,
        resolve_across_model_versions: bool = False,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.outbox = outbox
        if isinstance(channels, Mapping):
            self.channels: dict[str, AlertChannel] = dict(channels)
        else:
            self.channels = {}
            for channel in channels:
                if channel.name in self.channels:
                    raise ValueError(f"two alert channels are named {channel.name!r}; give each a unique name")
                self.channels[channel.name] = channel
        self.routes = self._validated_routes(routes)
        # Where every alert is recorded, whatever its routing or suppression (README: "the log and
        # the JSONL file get everything").
        if record_channels is None:
            record_channels = [name for name in ("log", "jsonl") if name in self.channels]
        unknown = [name for name in record_channels if name not in self.channels]
        if unknown:
            raise ValueError(f"alert record channel(s) {unknown} are not configured: {sorted(self.channels)}")
        self.record_channels = list(record_channels)
        self.model_routes = {
            model: {**self.routes, **self._validated_routes(overrides, complete=False, scope=f"model {model!r}: ")}
            for model, overrides in (model_routes or {}).items()
        }
        if backoff_base_seconds <= 0 or backoff_factor < 1 or backoff_max_seconds < backoff_base_seconds:
            raise ValueError("backoff needs base > 0, factor >= 1 and max >= base")
        self.repeat_interval_seconds = float(repeat_interval_seconds)
        self.backoff_base_seconds = float(backoff_base_seconds)
        self.backoff_factor = float(backoff_factor)
        self.backoff_max_seconds = float(backoff_max_seconds)
        self.max_retry_after_seconds = float(max_retry_after_seconds)
        self.give_up_after_seconds = None if give_up_after_seconds is None else float(give_up_after_seconds)
        self.group_wait_seconds = float(group_wait_seconds)
        self.lease_seconds = float(lease_seconds)
        self.max_parallel_channels = max(1, int(max_parallel_channels))
        self.webserver_base_url = webserver_base_url or None
        self.resolve_across_model_versions = bool(resolve_across_model_versions)
        self.clock = clock
        self._counters: dict[str, float] = defaultdict(float)
        self._counter_lock = Lock()

    def _validated_routes(
        self, routes: Mapping[Severity | str, Sequence[str]], complete: bool = True, scope: str = ""
    ) -> dict[Severity, list[str]]:
        out: dict[Severity, list[str]] = {}
        for key, names in routes.items():
            try:
                severity = Severity(key.upper() if isinstance(key, str) else key)
            except ValueError:
                raise ValueError(
                    f"alert routes: {scope}unknown severity {key!r}; use one of {[s.value for s in Severity]}"
                ) from None
            if isinstance(names, str):
                names = [n.strip() for n in names.split(",") if n.strip()]
            unknown = [n for n in names if n not in self.channels]
            if unknown:
                raise ValueError(
                    f"alert routes: {scope}{severity.value} routes to unknown channel(s) {unknown}; "
                    f"configured channels: {sorted(self.channels)}"
                )
            out[severity] = list(dict.fromkeys(names))
        missing = [s.value for s in Severity if s not in out]
        if complete and missing:
            raise ValueError(
                f"alert routes: no route for severity {missing}; give each severity a list of channel names "
                "(an empty list records those alerts without notifying anyone)"
            )
        return out

    def routes_for(self, alert: Alert) -> list[str]:
        """The channels an alert goes to: its model's route for its severity, else the platform's."""
        routes = self.model_routes.get(alert.model, self.routes) if alert.model else self.routes
        return routes[alert.severity]

    def __repr__(self) -> str:
        routes = {s.value: names for s, names in self.routes.items()}
        return f"AlertDispatcher(outbox={self.outbox!r}, channels={list(self.channels.values())!r}, routes={routes!r})"

    # -- counters ---------------------------------------------------------------------

    def _count(self, name: str, n: float = 1) -> None:
        if n:
            with self._counter_lock:
                self._counters[name] += n

    @property
    def counters(self) -> dict[str, float]:
        """In-process counters since construction (alerts_*, deliveries_*, send_seconds)."""
        with self._counter_lock:
            return dict(self._counters)

    def stats(self) -> dict[str, Any]:
        """Counters plus the outbox's persisted totals (pending/delivered/dead/alerts/firing)."""
        return {"counters": self.counters, "outbox": self.outbox.counts()}

    # -- intake -----------------------------------------------------------------------

    @staticmethod
    def _key(alert: Alert | ResolvedCheck, batch_key: str | None, fingerprint: str, state: AlertState) -> str | None:
        if batch_key is not None:
            return f"{batch_key}:{fingerprint}:{state.value}"
        if alert.source_event_id is not None:
            return f"event:{alert.source_event_id}:{fingerprint}:{state.value}"
        return None

    def _with_run_url(self, alert: Alert) -> Alert:
        if alert.run_url is None and self.webserver_base_url and alert.run_id:
            return replace(alert, run_url=run_url(self.webserver_base_url, alert.run_id))
        return alert

    def _not_before(self, tx: OutboxTransaction, channel: str, now: float) -> float:
        # Keep a channel's messages in order: new ones queue behind a backlog that is backing off.
        backoff = tx.channel_backoff_until(channel)
        return max(now + self.group_wait_seconds, backoff or 0.0)

    def _enqueue(self, tx: OutboxTransaction, outgoing: dict[tuple[str, str], list[Alert]], now: float, result: SubmitResult) -> None:
        for (channel, key), alerts in outgoing.items():
            delivery_id = tx.enqueue(channel, key, alerts, now=now, not_before=self._not_before(tx, channel, now))
            if delivery_id not in result.delivery_ids:
                result.delivery_ids.append(delivery_id)
        self._count("deliveries_enqueued", len(outgoing))

    def submit(self, alerts: Iterable[Alert], idempotency_key: str | None = None) -> SubmitResult:
        """Record firing alerts; notify the ones not notified within the repeat interval.

        Idempotent per alert on `idempotency_key` (the batch's, e.g. a run-failure event) or,
        without one, on the alert's source_event_id. Resolved alerts are passed to resolve().
        """
        alerts = list(alerts)
        resolved = [a for a in alerts if not a.firing]
        result = self.resolve(resolved, idempotency_key) if resolved else SubmitResult()
        firing = [self._with_run_url(a) for a in alerts if a.firing]
        if not firing:
            return result
        now = self.clock()
        outgoing: dict[tuple[str, str], list[Alert]] = defaultdict(list)
        with self.outbox.transaction() as tx:
            for alert in firing:
                fp = alert.fingerprint
                key = self._key(alert, idempotency_key, fp, AlertState.FIRING)
                if key is not None and tx.has_key(key):
                    result.duplicates += 1
                    continue
                state = tx.fingerprint_state(fp)
                routes = self.routes_for(alert)
                was_firing = state is not None and state.state is AlertState.FIRING
                recently = (
                    was_firing
                    and state.last_notified_at is not None  # type: ignore[union-attr]
                    and now - state.last_notified_at < self.repeat_interval_seconds  # type: ignore[union-attr, operator]
                )
                escalated = was_firing and alert.severity.rank > state.severity.rank  # type: ignore[union-attr]
                if recently and not escalated:
                    suppressed = replace(alert, outcome="suppressed")
                    tx.record_alert(suppressed, idempotency_key=key, outcome="suppressed", channels=[], now=now)
                    for channel in self.record_channels:
                        outgoing[(channel, group_key(alert))].append(suppressed)
                    result.suppressed += 1
                    continue
                outcome = "notified" if routes else "unrouted"
                alert = replace(alert, outcome=outcome)
                tx.record_alert(alert, idempotency_key=key, outcome=outcome, channels=routes, now=now)
                told = set(routes) | (set(state.channels) if was_firing else set())  # type: ignore[union-attr]
                severity = max(alert.severity, state.severity, key=lambda s: s.rank) if was_firing else alert.severity  # type: ignore[union-attr]
                tx.save_fingerprint_state(
                    alert,
                    state=AlertState.FIRING,
                    severity=severity,
                    channels=sorted(told),
                    first_fired_at=state.first_fired_at if was_firing else now,  # type: ignore[union-attr]
                    last_notified_at=now,
                    last_event_id=_newest(alert.source_event_id, state.last_event_id if state else None),
                    now=now,
                )
                for channel in dict.fromkeys([*self.record_channels, *routes]):
                    outgoing[(channel, group_key(alert))].append(alert)
                if routes:
                    result.notified += 1
                else:
                    result.unrouted += 1
            self._enqueue(tx, outgoing, now, result)
        self._count("alerts_submitted", len(firing))
        self._count("alerts_notified", result.notified)
        self._count("alerts_suppressed", result.suppressed)
        self._count("alerts_duplicate", result.duplicates)
        self._count("alerts_unrouted", result.unrouted)
        return result

    def resolve(self, passed: Iterable[ResolvedCheck | Alert], idempotency_key: str | None = None) -> SubmitResult:
        """Report checks that passed. A fingerprint that was firing gets a RESOLVED notice, sent to
        the channels told it was firing; anything else is ignored (counted, not recorded).

        A resolution whose source_event_id is older than the firing event is stale and ignored.
        With `resolve_across_model_versions`, a pass also resolves the same asset/check/environment
        firing for other model versions (a new version supersedes the failed one).
        """
        passed = list(passed)
        if not passed:
            return SubmitResult()
        now = self.clock()
        result = SubmitResult()
        outgoing: dict[tuple[str, str], list[Alert]] = defaultdict(list)
        with self.outbox.transaction() as tx:
            for item in passed:
                targets = [item.fingerprint]
                if self.resolve_across_model_versions:
                    targets += [
                        s.fingerprint
                        for s in tx.firing_fingerprints(item.asset, item.check, item.environment)
                        if s.fingerprint != item.fingerprint
                    ]
                acted = False
                for fp in targets:
                    key = self._key(item, idempotency_key, fp, AlertState.RESOLVED)
                    if key is not None and tx.has_key(key):
                        result.duplicates += 1
                        acted = True
                        continue
                    state = tx.fingerprint_state(fp)
                    if state is None or state.state is not AlertState.FIRING:
                        continue
                    if (
                        item.source_event_id is not None
                        and state.last_event_id is not None
                        and item.source_event_id < state.last_event_id
                    ):
                        continue  # an older pass replayed after a newer failure
                    notice = self._resolution(state.alert, item, now)
                    channels = [c for c in state.channels if c in self.channels]
                    dropped = sorted(set(state.channels) - set(channels))
                    if dropped:
                        logger.warning("resolution of %s: channel(s) %s are no longer configured", fp, dropped)
                    tx.record_alert(notice, idempotency_key=key, outcome="notified" if channels else "unrouted", channels=channels, now=now)
                    tx.save_fingerprint_state(
                        state.alert,
                        state=AlertState.RESOLVED,
                        severity=state.severity,
                        channels=[],
                        first_fired_at=None,
                        last_notified_at=None,
                        last_event_id=_newest(item.source_event_id, state.last_event_id),
                        now=now,
                    )
                    for channel in dict.fromkeys([*self.record_channels, *channels]):
                        outgoing[(channel, group_key(notice))].append(notice)
                    result.notified += 1
                    acted = True
                if not acted:
                    result.ignored += 1
            self._enqueue(tx, outgoing, now, result)
        self._count("resolutions_sent", result.notified)
        self._count("resolutions_ignored", result.ignored)
        self._count("alerts_duplicate", result.duplicates)
        return result

    def _resolution(self, firing: Alert, item: ResolvedCheck | Alert, now: float) -> Alert:
        run_id = item.run_id or firing.run_id
        if isinstance(item, Alert):
            message = item.message
        else:
            message = item.message or f"{item.check} on {item.asset} passed again"
            if item.model_version != firing.model_version and item.model_version and firing.model_version:
                message += f" (model version {item.model_version or '-'} supersedes {firing.model_version or '-'})"
        link = item.run_url if isinstance(item, Alert) else None
        link = link or run_url(self.webserver_base_url, run_id) or (firing.run_url if run_id == firing.run_id else None)
        return replace(
            firing,
            state=AlertState.RESOLVED,
            outcome="notified",
            # The passing evaluation's figures, never the firing alert's (they contradict the message).
            metadata=dict(item.metadata),
            message=message,
            run_id=run_id,
            run_url=link,
            source_event_id=item.source_event_id,
            timestamp=_utc_now_iso(now),
        )

    # -- delivery ---------------------------------------------------------------------

    def backoff_delay(self, attempts: int, retry_after: float | None = None) -> float:
        """Seconds until the next try after `attempts` failed attempts (1 -> base, 2 -> base*factor, ...)."""
        exponent = max(0, attempts - 1)
        delay = min(self.backoff_max_seconds, self.backoff_base_seconds * self.backoff_factor ** min(exponent, 64))
        if retry_after is not None and retry_after > delay:
            delay = min(retry_after, self.max_retry_after_seconds)
        return delay

    def deliver_due(self, limit: int = 500) -> DeliveryResult:
        """Send every delivery due now, channels in parallel; record each outcome in the outbox."""
        started = time.monotonic()
        now = self.clock()
        owner = f"{uuid.uuid4().hex}"
        claimed = self.outbox.claim_due(now=now, owner=owner, lease_seconds=self.lease_seconds, limit=limit)
        result = DeliveryResult()
        if not claimed:
            return result
        by_channel: dict[str, list[Delivery]] = defaultdict(list)
        for delivery in claimed:
            by_channel[delivery.channel].append(delivery)
        workers = min(len(by_channel), self.max_parallel_channels)
        with ThreadPoolExecutor(max_workers=workers, thread_name_prefix="alert-channel") as pool:
            futures = {name: pool.submit(self._deliver_channel, name, rows, owner, now, result) for name, rows in by_channel.items()}
            for name, future in futures.items():
                result.per_channel[name] = future.result()
        for tally in result.per_channel.values():
            result.delivered += tally.delivered
            result.retrying += tally.retrying
            result.dead += tally.dead
            result.deferred += tally.deferred
        result.errors.sort()
        result.seconds = time.monotonic() - started
        self._count("deliveries_delivered", result.delivered)
        self._count("deliveries_retrying", result.retrying)
        self._count("deliveries_dead", result.dead)
        self._count("deliveries_deferred", result.deferred)
        self._count("delivery_passes")
        return result

    def _deliver_channel(self, name: str, rows: list[Delivery], owner: str, now: float, result: DeliveryResult) -> ChannelPass:
        tally = ChannelPass()
        channel = self.channels.get(name)
        started = time.monotonic()
        for index, delivery in enumerate(rows):
            if channel is None:
                reason = f"channel {name!r} is not configured (configured: {sorted(self.channels)})"
                self.outbox.mark_dead(delivery.id, owner=owner, now=now, error=reason, attempted=False)
                self._failed(result, delivery, reason)
                tally.dead += 1
                continue
            attempts = delivery.attempts + 1
            t0 = time.monotonic()
            try:
                channel.send(delivery.alerts, delivery_key=delivery.delivery_key)
            except DeliveryError as err:
                failure: DeliveryError = err
            except Exception as err:  # a bug in a channel must not stop the others
                logger.exception("alert channel %r raised unexpectedly", name)
                failure = RetryableDeliveryError(f"unexpected {type(err).__name__} in channel {name!r} (see logs)")
            else:
                self._count("send_seconds", time.monotonic() - t0)
                self.outbox.mark_delivered(delivery.id, owner=owner, now=now)
                tally.delivered += 1
                continue
            self._count("send_seconds", time.monotonic() - t0)
            reason = f"attempt {attempts}: {failure.reason}"
            self._failed(result, delivery, reason)
            too_old = self.give_up_after_seconds is not None and now - delivery.created_at >= self.give_up_after_seconds
            if not isinstance(failure, RetryableDeliveryError):
                logger.error("alert delivery %d to %r failed permanently: %s", delivery.id, name, failure.reason)
                self.outbox.mark_dead(delivery.id, owner=owner, now=now, error=reason)
                tally.dead += 1
                continue
            if too_old:
                reason = f"gave up after {attempts} attempts over {now - delivery.created_at:.0f}s; {reason}"
                logger.error("alert delivery %d to %r: %s", delivery.id, name, reason)
                self.outbox.mark_dead(delivery.id, owner=owner, now=now, error=reason)
                tally.dead += 1
                continue
            next_at = now + self.backoff_delay(attempts, failure.retry_after)
            logger.warning("alert delivery %d to %r will be retried at %s: %s", delivery.id, name, _utc_now_iso(next_at), reason)
            self.outbox.mark_retry(delivery.id, owner=owner, now=now, next_attempt_at=next_at, error=reason)
            tally.retrying += 1
            # The channel is failing: keep the rest of its queue, in order, for its next try.
            for later in rows[index + 1 :]:
                self.outbox.defer(later.id, owner=owner, next_attempt_at=next_at, note=f"deferred: {name} failing ({failure.reason})")
                tally.deferred += 1
            break
        tally.seconds = time.monotonic() - started
        return tally

    def _failed(self, result: DeliveryResult, delivery: Delivery, reason: str) -> None:
        with self._counter_lock:
            result.errors.append((delivery.id, delivery.channel, reason))


def _newest(a: int | None, b: int | None) -> int | None:
    values = [v for v in (a, b) if v is not None]
    return max(values) if values else None
