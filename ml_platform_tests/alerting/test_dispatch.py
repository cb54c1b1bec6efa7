"""The dispatcher: routing, dedup, resolution, grouping, backoff and end-to-end delivery."""

from __future__ import annotations

import logging
import time
from collections import deque
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_platform.alerting.channels import (
    JsonWebhookChannel,
    LogChannel,
    PagerDutyChannel,
    PermanentDeliveryError,
    RetryableDeliveryError,
    SlackWebhookChannel,
)
from ml_platform.alerting.dispatch import AlertDispatcher, ResolvedCheck
from ml_platform.alerting.outbox import AlertOutbox
from ml_platform.alerting.alert import Alert, AlertState, Severity
from ml_platform_tests.alert_servers import RecordingHTTPServer

T0 = 1_700_000_000.0
SECRET_PATH = "/services/T0/B0/sEcReTwEbHoOkToKeN42"
ROUTING_KEY = "pdROUTINGkey0123456789abcdefSECRET"


class Clock:
    def __init__(self) -> None:
        self.now = T0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


class FakeChannel:
    def __init__(self, name: str, *failures: Exception) -> None:
        self.name = name
        self.failures = deque(failures)
        self.sent: list[list[Alert]] = []
        self.calls = 0

    def send(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        self.calls += 1
        if self.failures:
            raise self.failures.popleft()
        self.sent.append(list(alerts))


def alert(check: str = "accuracy_above_threshold", severity: Severity = Severity.HIGH, event: int | None = 1, **kw) -> Alert:
    fields = dict(
        severity=severity, asset="trained_model", check=check, message=f"{check} failed",
        recommended_action="retrain", run_id="run-1", source_event_id=event, model_version="v1",
    )
    fields.update(kw)
    return Alert(**fields)


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def channels() -> dict[str, FakeChannel]:
    return {name: FakeChannel(name) for name in ("pagerduty", "slack", "email", "log")}


def make(tmp_path: Path, clock: Clock, channels: dict, **kw) -> AlertDispatcher:
    routes = kw.pop("routes", {"HIGH": ["pagerduty", "slack", "email"], "MEDIUM": ["slack"], "LOW": ["log"]})
    # Routing tests see routes alone; record channels (everything goes there) have tests of their own.
    kw.setdefault("record_channels", [])
    return AlertDispatcher(AlertOutbox(tmp_path / "alerts.db"), channels, routes, clock=clock, **kw)


# ------------------------------------------------------------------------ routing


def test_routes_send_each_severity_to_its_channels(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels)
    d.submit([alert(event=1), alert("data_drift", Severity.MEDIUM, event=2), alert("pipeline_run_time", Severity.LOW, event=3)])
    result = d.deliver_due()
    assert result.delivered == 4 and result.errors == []  # 4 channels, one message each
    checks = {name: [[a.check for a in batch] for batch in c.sent] for name, c in channels.items()}
    assert checks == {
        "pagerduty": [["accuracy_above_threshold"]],
        "slack": [["accuracy_above_threshold", "data_drift"]],  # one run -> one message
        "email": [["accuracy_above_threshold"]],
        "log": [["pipeline_run_time"]],
    }


def test_record_channels_get_every_alert_suppressed_and_unrouted_ones_too_with_their_outcome(
    tmp_path: Path, clock: Clock, channels: dict
) -> None:
    d = make(tmp_path, clock, channels, routes={"HIGH": ["pagerduty"], "MEDIUM": [], "LOW": []}, record_channels=["log"])
    d.submit([alert(event=1), alert("data_drift", Severity.MEDIUM, event=2)])
    clock.advance(60)
    d.submit([alert(event=3, run_id="run-2")])  # the same failure again, within the repeat interval
    d.deliver_due()
    recorded = [(a.check, a.outcome) for batch in channels["log"].sent for a in batch]
    assert recorded == [("accuracy_above_threshold", "notified"), ("data_drift", "unrouted"),
                        ("accuracy_above_threshold", "suppressed")]
    assert [[a.check for a in batch] for batch in channels["pagerduty"].sent] == [["accuracy_above_threshold"]]
    assert [r.outcome for r in d.outbox.alerts()] == ["suppressed", "unrouted", "notified"]


def test_log_and_jsonl_are_the_default_record_channels(tmp_path: Path, clock: Clock) -> None:
    named = {name: FakeChannel(name) for name in ("jsonl", "log", "slack")}
    d = AlertDispatcher(AlertOutbox(tmp_path / "alerts.db"), named, {"HIGH": ["slack"], "MEDIUM": [], "LOW": []}, clock=clock)
    assert d.record_channels == ["log", "jsonl"]
    with pytest.raises(ValueError, match=r"record channel\(s\) \['file'\] are not configured"):
        AlertDispatcher(AlertOutbox(tmp_path / "alerts.db"), named, {"HIGH": [], "MEDIUM": [], "LOW": []}, record_channels=["file"])


def test_a_models_routes_override_some_severities_for_its_alerts_only(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels, model_routes={"churn": {"HIGH": ["log"]}})
    d.submit([alert(event=1, model="churn", asset="churn/trained_model"), alert(event=2, model="fraud", asset="fraud/trained_model"),
              alert("data_drift", Severity.MEDIUM, event=3, model="churn", asset="churn/validated_data")])
    d.deliver_due()
    sent = {name: sorted(a.asset for batch in c.sent for a in batch) for name, c in channels.items()}
    # churn's HIGH goes to the log only; its MEDIUM, and fraud's HIGH, follow the platform's routes.
    assert sent == {
        "pagerduty": ["fraud/trained_model"], "slack": ["churn/validated_data", "fraud/trained_model"],
        "email": ["fraud/trained_model"], "log": ["churn/trained_model"],
    }
    with pytest.raises(ValueError, match=r"alert routes: model 'churn': HIGH routes to unknown channel\(s\) \['pager'\]"):
        make(tmp_path, clock, channels, model_routes={"churn": {"HIGH": ["pager"]}})


def test_route_configuration_is_validated(tmp_path: Path, channels: dict) -> None:
    outbox = AlertOutbox(tmp_path / "a.db")
    with pytest.raises(ValueError, match=r"HIGH routes to unknown channel\(s\) \['pager'\]; configured channels: \['email', 'log', 'pagerduty', 'slack'\]"):
        AlertDispatcher(outbox, channels, {"HIGH": ["pager"], "MEDIUM": [], "LOW": []})
    with pytest.raises(ValueError, match=r"no route for severity \['LOW'\]"):
        AlertDispatcher(outbox, channels, {"HIGH": ["slack"], "MEDIUM": []})
    with pytest.raises(ValueError, match="unknown severity 'CRITICAL'"):
        AlertDispatcher(outbox, channels, {"CRITICAL": ["slack"], "HIGH": [], "MEDIUM": [], "LOW": []})
    with pytest.raises(ValueError, match="two alert channels are named 'log'"):
        AlertDispatcher(outbox, [LogChannel(), LogChannel()], {"HIGH": [], "MEDIUM": [], "LOW": []})
    d = AlertDispatcher(outbox, [LogChannel(), LogChannel("audit")], {Severity.HIGH: "log, audit", "medium": [], "LOW": []})
    assert d.routes[Severity.HIGH] == ["log", "audit"] and d.routes[Severity.MEDIUM] == []


def test_an_unrouted_severity_is_recorded_not_sent(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels, routes={"HIGH": ["slack"], "MEDIUM": [], "LOW": []})
    result = d.submit([alert("data_drift", Severity.MEDIUM)])
    assert result.unrouted == 1 and result.delivery_ids == []
    assert [r.outcome for r in d.outbox.alerts()] == ["unrouted"]


# ------------------------------------------------------------------------ dedup and idempotency


def test_a_firing_fingerprint_is_renotified_only_after_the_repeat_interval(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels, repeat_interval_seconds=4 * 3600)
    assert d.submit([alert(event=1)]).notified == 1
    clock.advance(3 * 3600)
    assert d.submit([alert(event=2, run_id="run-2")]).suppressed == 1
    clock.advance(3600 - 1)
    assert d.submit([alert(event=3, run_id="run-3")]).suppressed == 1
    clock.advance(1)  # 4 h after the last notification
    assert d.submit([alert(event=4, run_id="run-4")]).notified == 1
    d.deliver_due()
    assert [[a.run_id for a in b] for b in channels["slack"].sent] == [["run-1"], ["run-4"]]
    # another model version or environment is another fingerprint
    assert d.submit([alert(event=5, model_version="v2"), alert(event=6, environment="staging")]).notified == 2
    assert [r.outcome for r in d.outbox.alerts()] == ["notified", "notified", "notified", "suppressed", "suppressed", "notified"]


def test_a_rising_severity_is_notified_at_once(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels)
    d.submit([alert("data_drift", Severity.MEDIUM, event=1)])
    assert d.submit([alert("data_drift", Severity.LOW, event=2)]).suppressed == 1
    assert d.submit([alert("data_drift", Severity.HIGH, event=3)]).notified == 1
    assert d.outbox.firing()[0].channels == ["email", "pagerduty", "slack"]


def test_the_same_source_event_is_enqueued_once(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels, repeat_interval_seconds=0)  # even with no dedup window
    batch = [alert(event=11), alert("data_drift", Severity.MEDIUM, event=12)]
    first = d.submit(batch)
    again = d.submit(batch)  # a sensor tick re-reading after a crash before saving its cursor
    assert (first.notified, again.duplicates, again.notified, again.delivery_ids) == (2, 2, 0, [])
    # a caller key (e.g. a run-failure event) works the same for alerts without event ids
    assert d.submit([alert("run_failed", event=None)], idempotency_key="run-failure:run-1").notified == 1
    assert d.submit([alert("run_failed", event=None)], idempotency_key="run-failure:run-1").duplicates == 1
    assert len(d.outbox.alerts()) == 3
    d.deliver_due()
    assert len(channels["slack"].sent) == 1 and len(channels["slack"].sent[0]) == 3


# ------------------------------------------------------------------------ resolution


def test_resolution_goes_to_the_channels_that_were_told(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels, webserver_base_url="http://ui:3000/")
    d.submit([alert(event=1)])
    d.deliver_due()
    clock.advance(600)
    result = d.resolve([ResolvedCheck("trained_model", "accuracy_above_threshold", "v1", run_id="run-2", source_event_id=2)])
    assert result.notified == 1
    d.deliver_due()
    for name in ("pagerduty", "slack", "email"):
        notice = channels[name].sent[-1][0]
        assert notice.state is AlertState.RESOLVED and notice.severity is Severity.HIGH
        assert notice.message == "accuracy_above_threshold on trained_model passed again"
        assert notice.run_id == "run-2" and notice.run_url == "http://ui:3000/runs/run-2"
        assert notice.fingerprint == alert().fingerprint
    assert channels["log"].sent == []
    assert d.outbox.firing() == []
    # resolved already, or never firing: nothing is sent
    again = d.resolve([ResolvedCheck("trained_model", "accuracy_above_threshold", "v1", source_event_id=3)])
    never = d.resolve([ResolvedCheck("trained_model", "pandera_schema", None, source_event_id=4)])
    assert again.ignored == 1 and never.ignored == 1 and d.outbox.pending() == []
    # firing again after resolution notifies at once (no repeat-interval wait)
    assert d.submit([alert(event=5)]).notified == 1


def test_resolution_is_idempotent_and_ignores_stale_events(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels)
    d.submit([alert(event=10)])
    passed = ResolvedCheck("trained_model", "accuracy_above_threshold", "v1", source_event_id=9)
    assert d.resolve([passed]).ignored == 1  # an older pass replayed after a newer failure
    passed = ResolvedCheck("trained_model", "accuracy_above_threshold", "v1", source_event_id=12)
    assert d.resolve([passed]).notified == 1
    d.submit([alert(event=13)])
    assert d.resolve([passed]).duplicates == 1  # replayed: must not resolve the new firing
    assert len(d.outbox.firing()) == 1
    # an Alert with state=resolved works too, also through submit()
    assert d.submit([alert(event=14, state="resolved", message="back to normal")]).notified == 1
    assert d.outbox.alerts(1)[0].alert.message == "back to normal"


def test_resolving_across_model_versions_is_opt_in(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels)
    d.submit([alert(event=1, model_version="v3")])
    assert d.resolve([ResolvedCheck("trained_model", "accuracy_above_threshold", "v4")]).ignored == 1
    d2 = make(tmp_path, clock, channels, resolve_across_model_versions=True)
    result = d2.resolve([ResolvedCheck("trained_model", "accuracy_above_threshold", "v4")])
    assert result.notified == 1
    assert "model version v4 supersedes v3" in d2.outbox.alerts(1)[0].alert.message


# ------------------------------------------------------------------------ grouping


def test_alerts_are_grouped_per_run_environment_and_state(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels)
    d.submit([alert("a", event=1), alert("b", event=2), alert("c", event=3, run_id="run-2"), alert("d", event=4, environment="staging")])
    d.deliver_due()
    assert sorted(len(b) for b in channels["slack"].sent) == [1, 1, 2]


def test_a_waiting_group_absorbs_later_alerts_of_the_same_run(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels, group_wait_seconds=30)
    d.submit([alert("a", event=1)])
    clock.advance(10)
    assert d.deliver_due().delivered == 0  # waiting for more of run-1
    d.submit([alert("b", event=2)])
    clock.advance(20)
    d.deliver_due()
    assert [[a.check for a in b] for b in channels["slack"].sent] == [["a", "b"]]


# ------------------------------------------------------------------------ delivery and backoff


def test_backoff_schedule_and_retry_after(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels)
    assert [d.backoff_delay(n) for n in range(1, 10)] == [30, 60, 120, 240, 480, 960, 1920, 3600, 3600]
    assert d.backoff_delay(1, retry_after=10) == 30  # the backoff is longer
    assert d.backoff_delay(1, retry_after=120) == 120  # the server wants longer
    assert d.backoff_delay(1, retry_after=10 * 24 * 3600) == 6 * 3600  # but not absurdly long
    with pytest.raises(ValueError):
        make(tmp_path, clock, channels, backoff_base_seconds=0)


def test_retries_follow_the_backoff_and_the_server_retry_after(tmp_path: Path, clock: Clock) -> None:
    flaky = FakeChannel("slack", RetryableDeliveryError("HTTP 503"), RetryableDeliveryError("HTTP 429", retry_after=300))
    d = make(tmp_path, clock, {"slack": flaky}, routes={"HIGH": ["slack"], "MEDIUM": [], "LOW": []})
    d.submit([alert()])
    assert d.deliver_due().retrying == 1
    (row,) = d.outbox.pending()
    assert (row.attempts, row.next_attempt_at - T0, row.last_error) == (1, 30, "attempt 1: HTTP 503")
    clock.advance(29)
    assert d.deliver_due().delivered == 0 and flaky.calls == 1  # not due yet
    clock.advance(1)
    assert d.deliver_due().retrying == 1
    (row,) = d.outbox.pending()
    assert (row.attempts, row.next_attempt_at - clock.now) == (2, 300)  # Retry-After beats 60 s
    clock.advance(300)
    assert d.deliver_due().delivered == 1
    (done,) = d.outbox.deliveries("delivered")
    assert done.attempts == 3 and d.outbox.pending() == []


def test_permanent_failures_and_old_deliveries_become_dead_letters(tmp_path: Path, clock: Clock) -> None:
    bad = FakeChannel("slack", PermanentDeliveryError("HTTP 404 from https://hooks.slack.com: no_service"))
    down = FakeChannel("email", *[RetryableDeliveryError("timeout")] * 100)
    d = make(tmp_path, clock, {"slack": bad, "email": down}, routes={"HIGH": ["slack", "email"], "MEDIUM": [], "LOW": []}, give_up_after_seconds=3600)
    d.submit([alert()])
    result = d.deliver_due()
    assert (result.dead, result.retrying) == (1, 1)
    (dead,) = d.outbox.dead_letters()
    assert dead.channel == "slack" and dead.last_error == "attempt 1: HTTP 404 from https://hooks.slack.com: no_service"
    while not d.outbox.pending() == []:
        clock.advance(3600)
        d.deliver_due()
    email_dead = [x for x in d.outbox.dead_letters() if x.channel == "email"][0]
    assert email_dead.last_error.startswith("gave up after") and "timeout" in email_dead.last_error
    d.outbox.requeue(dead.id, now=clock.now)
    assert d.outbox.pending()[0].id == dead.id
    assert d.deliver_due().delivered == 1  # after fixing the configuration


def test_requeue_refuses_a_dead_trigger_whose_alert_has_been_resolved_since_unless_forced(tmp_path: Path, clock: Clock) -> None:
    bad = FakeChannel("slack", PermanentDeliveryError("HTTP 404 from https://hooks.slack.com: no_service"))
    d = make(tmp_path, clock, {"slack": bad}, routes={"HIGH": ["slack"], "MEDIUM": [], "LOW": []})
    d.submit([alert()])
    d.deliver_due()
    (dead,) = d.outbox.dead_letters()
    clock.advance(600)
    d.resolve([ResolvedCheck("trained_model", "accuracy_above_threshold", "v1", source_event_id=9)])
    with pytest.raises(ValueError, match=rf"delivery {dead.id} would fire trained_model/accuracy_above_threshold, resolved at "):
        d.outbox.requeue(dead.id, now=clock.now)
    assert [x.id for x in d.outbox.dead_letters()] == [dead.id]
    d.outbox.requeue(dead.id, now=clock.now, force=True)
    assert dead.id in [x.id for x in d.outbox.pending()]


def test_a_failing_channel_keeps_its_queue_in_order_and_does_not_block_others(tmp_path: Path, clock: Clock) -> None:
    down = FakeChannel("slack", RetryableDeliveryError("HTTP 503"), RetryableDeliveryError("HTTP 503"))
    log = FakeChannel("log")
    d = make(tmp_path, clock, {"slack": down, "log": log}, routes={"HIGH": ["slack", "log"], "MEDIUM": [], "LOW": []})
    d.submit([alert("a", event=1, run_id="r1")])
    d.submit([alert("b", event=2, run_id="r2")])
    result = d.deliver_due()
    assert (result.retrying, result.deferred, result.delivered) == (1, 1, 2)
    assert down.calls == 1  # one try per pass against a failing endpoint
    # a new message queues behind the channel's backlog, so resolve never overtakes its trigger
    d.resolve([ResolvedCheck("trained_model", "a", "v1", run_id="r1")])
    clock.advance(30)
    d.deliver_due()  # second 503
    clock.advance(60)
    d.deliver_due()
    assert [[(a.check, a.state.value) for a in batch] for batch in down.sent] == [
        [("a", "firing")], [("b", "firing")], [("a", "resolved")]
    ]


def test_a_channel_bug_is_retried_and_an_unconfigured_channel_is_a_dead_letter(tmp_path: Path, clock: Clock, caplog: pytest.LogCaptureFixture) -> None:
    buggy = FakeChannel("slack", KeyError("oops"))
    d = make(tmp_path, clock, {"slack": buggy}, routes={"HIGH": ["slack"], "MEDIUM": [], "LOW": []})
    d.submit([alert()])
    with caplog.at_level(logging.ERROR):
        result = d.deliver_due()
    assert result.retrying == 1 and "unexpected KeyError" in result.errors[0][2]
    # the channel is removed from the configuration while a delivery is pending
    d2 = make(tmp_path, clock, {"log": FakeChannel("log")}, routes={"HIGH": ["log"], "MEDIUM": [], "LOW": []})
    clock.advance(30)
    assert d2.deliver_due().dead == 1
    assert "channel 'slack' is not configured" in d2.outbox.dead_letters()[0].last_error


def test_counters(tmp_path: Path, clock: Clock, channels: dict) -> None:
    d = make(tmp_path, clock, channels)
    d.submit([alert(event=1), alert(event=1)])
    d.submit([alert(event=2)])
    d.deliver_due()
    c = d.counters
    assert (c["alerts_submitted"], c["alerts_notified"], c["alerts_duplicate"], c["alerts_suppressed"]) == (3, 1, 1, 1)
    assert c["deliveries_enqueued"] == 3 and c["deliveries_delivered"] == 3 and c["send_seconds"] >= 0
    assert d.stats()["outbox"] == {"pending": 0, "delivered": 3, "dead": 0, "alerts": 2, "firing": 1}


# ------------------------------------------------------------------------ against real servers


@pytest.fixture
def servers() -> Iterator[tuple[RecordingHTTPServer, RecordingHTTPServer]]:
    with RecordingHTTPServer() as a, RecordingHTTPServer() as b:
        yield a, b


def test_channel_down_then_back(tmp_path: Path, clock: Clock, servers: tuple[RecordingHTTPServer, RecordingHTTPServer]) -> None:
    slack_server, hook_server = servers
    slack_server.fail(2, status=503)
    d = AlertDispatcher(
        AlertOutbox(tmp_path / "alerts.db"),
        [SlackWebhookChannel(slack_server.url(SECRET_PATH), timeout_seconds=2), JsonWebhookChannel(hook_server.url("/hook"))],
        {"HIGH": ["slack", "webhook"], "MEDIUM": ["slack"], "LOW": []},
        clock=clock,
    )
    d.submit([alert(event=1), alert("data_drift", Severity.MEDIUM, event=2)])
    first = d.deliver_due()
    assert (first.delivered, first.retrying) == (1, 1)
    assert len(hook_server.delivered) == 1  # the healthy channel delivered on the first tick
    clock.advance(30)
    assert d.deliver_due().retrying == 1
    clock.advance(59)
    assert d.deliver_due().delivered == 0  # backing off: 60 s after the second failure
    clock.advance(1)
    assert d.deliver_due().delivered == 1
    assert [r.status for r in slack_server.requests] == [503, 503, 200]
    (delivered,) = slack_server.delivered
    assert delivered.path == SECRET_PATH and len(delivered.json["attachments"]) == 2
    assert len(hook_server.requests) == 1
    assert d.outbox.counts()["delivered"] == 2 and d.outbox.pending() == []


def test_a_404_is_a_dead_letter_with_the_status_and_no_secret(tmp_path: Path, clock: Clock, servers: tuple[RecordingHTTPServer, RecordingHTTPServer], caplog: pytest.LogCaptureFixture) -> None:
    slack_server, pd_server = servers
    slack_server.respond(404, "no_service for {path}")
    pd_server.respond(400, f'{{"status":"invalid event","errors":["bad routing_key {ROUTING_KEY}"]}}')
    db = tmp_path / "alerts.db"
    slack = SlackWebhookChannel(slack_server.url(SECRET_PATH))
    d = AlertDispatcher(
        AlertOutbox(db), [slack, PagerDutyChannel(ROUTING_KEY, events_url=pd_server.url("/v2/enqueue"))],
        {"HIGH": ["slack", "pagerduty"], "MEDIUM": [], "LOW": []}, clock=clock,
    )
    with caplog.at_level(logging.DEBUG):
        d.submit([alert()])
        result = d.deliver_due()
    assert result.dead == 2
    errors = {x.channel: x.last_error for x in d.outbox.dead_letters()}
    assert errors["slack"] == f"attempt 1: HTTP 404 from http://127.0.0.1:{slack_server.port}: no_service for ***"
    assert errors["pagerduty"].startswith(f"attempt 1: HTTP 400 from http://127.0.0.1:{pd_server.port}: ")
    stored = b"".join(p.read_bytes() for p in tmp_path.iterdir() if p.name.startswith("alerts.db"))
    visible = [caplog.text, repr(d), str(result), repr(d.outbox.dead_letters()), repr(slack)]
    for secret in ("sEcReTwEbHoOkToKeN42", SECRET_PATH, ROUTING_KEY):
        assert secret.encode() not in stored
        assert all(secret not in text for text in visible)


def test_a_hanging_channel_costs_one_timeout_per_tick(tmp_path: Path, clock: Clock, servers: tuple[RecordingHTTPServer, RecordingHTTPServer]) -> None:
    slow, fast = servers
    slow.hang(5.0, times=3)
    d = AlertDispatcher(
        AlertOutbox(tmp_path / "alerts.db"),
        [JsonWebhookChannel(slow.url("/slow"), name="slow", timeout_seconds=0.3), JsonWebhookChannel(fast.url("/fast"), name="fast")],
        {"HIGH": ["slow", "fast"], "MEDIUM": [], "LOW": []}, clock=clock,
    )
    d.submit([alert("a", event=1, run_id="r1"), alert("b", event=2, run_id="r2"), alert("c", event=3, run_id="r3")])
    started = time.monotonic()
    result = d.deliver_due()
    assert time.monotonic() - started < 1.5
    assert result.per_channel["fast"].delivered == 3
    assert (result.per_channel["slow"].retrying, result.per_channel["slow"].deferred) == (1, 2)
    assert "timeout after 0.3s" in d.outbox.pending()[0].last_error
