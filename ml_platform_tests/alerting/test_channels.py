"""Alert channels against real servers on 127.0.0.1: payloads, outcome classification, secrets."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Iterator
from email.utils import formatdate
from pathlib import Path

import pytest

from ml_platform.alerting.channels import (
    EmailChannel,
    JsonlFileChannel,
    JsonWebhookChannel,
    LogChannel,
    PagerDutyChannel,
    PermanentDeliveryError,
    RetryableDeliveryError,
    Secret,
    SlackWebhookChannel,
    parse_retry_after,
)
from ml_platform.alerting.alert import Alert, AlertState, JsonlAlertFile, Severity
from ml_platform_tests.alert_servers import (
    RecordingHTTPServer,
    RecordingSMTPServer,
    free_port,
    make_self_signed_cert,
)

SLACK_PATH = "/services/T0SECRET/B0SECRET/xoxbWebhookSecret123"
ROUTING_KEY = "R0UTINGKEYsecret0123456789abcdef"
PASSWORD = "hunter2-smtp-Passw0rd"
TOKEN = "bearer-T0KEN-secret-value"


def alert(severity: Severity = Severity.HIGH, check: str = "accuracy_above_threshold", **kw) -> Alert:
    base = dict(
        severity=severity, asset="trained_model", check=check, message=f"{check} failed: 0.61 < 0.70",
        recommended_action="Consider retraining model with more recent data", run_id="run-abc12345",
        source_event_id=7, model_version="v3", run_url="http://dagster.local:3000/runs/run-abc12345",
    )
    base.update(kw)
    return Alert(**base)


@pytest.fixture
def http() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


@pytest.fixture
def smtp_lib() -> None:
    pytest.importorskip("aiosmtpd")  # the SMTP test server; a test extra


@pytest.fixture(scope="module")
def cert(tmp_path_factory: pytest.TempPathFactory) -> tuple[str, str]:
    made = make_self_signed_cert(tmp_path_factory.mktemp("tls"))
    if made is None:
        pytest.skip("openssl CLI not available to make a test certificate")
    return made


# ------------------------------------------------------------------------ payloads


def test_slack_sends_one_block_kit_message_per_batch_coloured_by_severity(http: RecordingHTTPServer) -> None:
    channel = SlackWebhookChannel(http.url(SLACK_PATH), timeout_seconds=2)
    batch = [
        alert(),
        alert(Severity.MEDIUM, "data_drift", recommended_action="Review data pipeline"),
        alert(Severity.LOW, "pipeline_run_time", state=AlertState.RESOLVED, message="pipeline_run_time passed again"),
    ]
    channel.send(batch)
    (request,) = http.requests
    assert request.method == "POST" and request.path == SLACK_PATH
    assert request.headers["Content-Type"] == "application/json"
    body = request.json
    assert body["blocks"][0]["type"] == "header"
    assert body["blocks"][0]["text"]["text"] == "[HIGH] 2 alerts from ml_platform, 1 resolved"
    colors = [a["color"] for a in body["attachments"]]
    assert colors == ["#E01E5A", "#ECB22E", "#2EB67D"]  # red, amber, green for resolved
    first = body["attachments"][0]["blocks"]
    assert first[0]["type"] == "section"
    text = first[0]["text"]["text"]
    assert "*[HIGH]*" in text and "`trained_model` / `accuracy_above_threshold`" in text
    assert "0.61 &lt; 0.70" in text  # mrkdwn-escaped
    assert "*Recommended action:* Consider retraining" in text
    assert "<http://dagster.local:3000/runs/run-abc12345|run run-abc1 in Dagster>" in first[1]["elements"][0]["text"]
    resolved = body["attachments"][2]["blocks"][0]["text"]["text"]
    assert resolved.startswith(":white_check_mark: *RESOLVED [LOW]*") and "Recommended action" not in resolved
    assert body["text"].startswith(":rotating_light: [HIGH]")


def test_slack_low_is_grey_and_an_all_resolved_batch_says_resolved(http: RecordingHTTPServer) -> None:
    channel = SlackWebhookChannel(http.url(SLACK_PATH))
    payload = channel.payload([alert(Severity.LOW, "pipeline_run_time")])
    assert payload["attachments"][0]["color"] == "#9E9E9E"
    payload = channel.payload([alert(state="resolved"), alert(check="x", state="resolved")])
    assert payload["blocks"][0]["text"]["text"] == "[RESOLVED] 2 alerts from ml_platform"
    many = channel.payload([alert(check=f"c{i}") for i in range(30)])
    assert len(many["attachments"]) == 20 and "10 more" in json.dumps(many["blocks"])
    staging = channel.payload([alert(environment="staging")])
    assert staging["blocks"][0]["text"]["text"] == "[HIGH] 1 alert from ml_platform (staging)"


def test_json_webhook_posts_the_alert_dicts_with_an_optional_bearer_token(http: RecordingHTTPServer) -> None:
    batch = [alert(), alert(Severity.MEDIUM, "data_drift")]
    JsonWebhookChannel(http.url("/hook"), bearer_token=TOKEN).send(batch)
    (request,) = http.requests
    assert request.headers["Authorization"] == f"Bearer {TOKEN}"
    body = request.json
    assert body["alerts"] == [a.to_dict() for a in batch]
    assert body["status"] == "firing" and body["source"] == "ml_platform" and body["version"] == 1
    JsonWebhookChannel(http.url("/hook")).send([alert(state="resolved")])
    assert "Authorization" not in http.requests[1].headers and http.requests[1].json["status"] == "resolved"


def test_pagerduty_sends_one_event_per_alert_keyed_by_fingerprint(http: RecordingHTTPServer) -> None:
    http.respond(202, '{"status":"success","dedup_key":"x"}', times=3)
    channel = PagerDutyChannel(ROUTING_KEY, events_url=http.url("/v2/enqueue"))
    high, medium = alert(), alert(Severity.MEDIUM, "data_drift")
    low_resolved = alert(Severity.LOW, "pipeline_run_time", state=AlertState.RESOLVED)
    channel.send([high, medium, low_resolved])
    events = [r.json for r in http.requests]
    assert [r.path for r in http.requests] == ["/v2/enqueue"] * 3
    assert [e["event_action"] for e in events] == ["trigger", "trigger", "resolve"]
    assert [e["dedup_key"] for e in events] == [high.fingerprint, medium.fingerprint, low_resolved.fingerprint]
    assert all(e["routing_key"] == ROUTING_KEY for e in events)
    payload = events[0]["payload"]
    assert payload["severity"] == "critical" and events[1]["payload"]["severity"] == "warning"
    assert payload["component"] == "trained_model" and payload["source"] == "ml_platform/production"
    assert payload["summary"].startswith("[HIGH] trained_model/accuracy_above_threshold:")
    assert payload["custom_details"]["recommended_action"].startswith("Consider retraining")
    assert payload["custom_details"]["model_version"] == "v3"
    assert events[0]["links"] == [{"href": high.run_url, "text": "Dagster run"}]
    assert PagerDutyChannel(ROUTING_KEY).event(alert(Severity.LOW))["payload"]["severity"] == "info"


def test_log_and_jsonl_channels(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO, logger="ml_platform.alerts"):
        LogChannel().send([alert(), alert(Severity.MEDIUM, "data_drift")])
        LogChannel().send([alert(state="resolved")])
    assert [r.levelno for r in caplog.records] == [logging.ERROR, logging.INFO]
    assert "[HIGH] 2 alerts from ml_platform" in caplog.records[0].getMessage()
    assert "RESOLVED [HIGH] trained_model/accuracy_above_threshold" in caplog.records[1].getMessage()
    channel = JsonlFileChannel(tmp_path / "a.jsonl")
    channel.send([alert(), alert(state="resolved")])
    records = JsonlAlertFile(tmp_path / "a.jsonl").read()
    assert [r["state"] for r in records] == ["firing", "resolved"]
    blocked = tmp_path / "dir"
    blocked.mkdir()
    with pytest.raises(RetryableDeliveryError):
        JsonlFileChannel(blocked).send([alert()])  # a directory: cannot append


# ------------------------------------------------------------------------ HTTP outcomes


@pytest.mark.parametrize("status", [500, 502, 503, 408])
def test_5xx_and_408_are_retryable(http: RecordingHTTPServer, status: int) -> None:
    http.fail(1, status=status)
    with pytest.raises(RetryableDeliveryError) as err:
        JsonWebhookChannel(http.url("/hook")).send([alert()])
    assert f"HTTP {status} from http://127.0.0.1:{http.port}" in str(err.value)
    assert err.value.retry_after is None


def test_429_honours_retry_after_in_seconds_and_as_http_date(http: RecordingHTTPServer) -> None:
    channel = JsonWebhookChannel(http.url("/hook"))
    http.rate_limit(120)
    with pytest.raises(RetryableDeliveryError) as err:
        channel.send([alert()])
    assert err.value.retry_after == 120.0 and "HTTP 429" in err.value.reason
    http.rate_limit(formatdate(time.time() + 300, usegmt=True))
    with pytest.raises(RetryableDeliveryError) as err:
        channel.send([alert()])
    assert 295 <= (err.value.retry_after or 0) <= 301
    http.respond(503, "maintenance", {"Retry-After": "45"})
    with pytest.raises(RetryableDeliveryError) as err:
        channel.send([alert()])
    assert err.value.retry_after == 45.0


def test_parse_retry_after() -> None:
    now = 1_700_000_000.0
    assert parse_retry_after("30", now) == 30.0
    assert parse_retry_after(formatdate(now + 90, usegmt=True), now) == 90.0
    assert parse_retry_after(formatdate(now - 90, usegmt=True), now) == 0.0
    assert parse_retry_after("soon", now) is None and parse_retry_after(None) is None
    assert parse_retry_after("-5", now) == 0.0


@pytest.mark.parametrize("status", [400, 403, 404, 410])
def test_other_4xx_are_permanent_with_status_and_a_redacted_excerpt(http: RecordingHTTPServer, status: int) -> None:
    http.respond(status, "no_service: hook {path} does not exist")  # the server echoes the secret path
    with pytest.raises(PermanentDeliveryError) as err:
        SlackWebhookChannel(http.url(SLACK_PATH)).send([alert()])
    reason = str(err.value)
    assert f"HTTP {status} from http://127.0.0.1:{http.port}: no_service: hook *** does not exist" == reason
    assert "SECRET" not in reason and "xoxb" not in reason


def test_redirects_are_not_followed(http: RecordingHTTPServer) -> None:
    http.respond(302, "", {"Location": "/elsewhere"})
    with pytest.raises(PermanentDeliveryError, match="HTTP 302"):
        JsonWebhookChannel(http.url("/hook")).send([alert()])
    assert len(http.requests) == 1


def test_a_hanging_server_costs_at_most_the_timeout(http: RecordingHTTPServer) -> None:
    http.hang(5.0)
    started = time.monotonic()
    with pytest.raises(RetryableDeliveryError, match="timeout after 0.3s"):
        JsonWebhookChannel(http.url("/hook"), timeout_seconds=0.3).send([alert()])
    assert time.monotonic() - started < 1.5


def test_connection_refused_is_retryable() -> None:
    with pytest.raises(RetryableDeliveryError, match="cannot connect to http://127.0.0.1"):
        JsonWebhookChannel(f"http://127.0.0.1:{free_port()}/hook", timeout_seconds=1).send([alert()])


def test_pagerduty_group_fails_as_one_attempt(http: RecordingHTTPServer) -> None:
    http.respond(202, times=1)
    http.fail(1, status=500)
    with pytest.raises(RetryableDeliveryError):
        PagerDutyChannel(ROUTING_KEY, events_url=http.url("/v2/enqueue")).send([alert(), alert(check="b"), alert(check="c")])
    assert len(http.requests) == 2  # stopped at the first failure; PD dedups the resend of the first


# ------------------------------------------------------------------------ email


def test_email_over_plain_smtp_one_message_per_batch(smtp_lib: None) -> None:
    with RecordingSMTPServer() as smtp:
        channel = EmailChannel(
            "127.0.0.1", smtp.port, from_addr="alerts@example.com", to_addrs="a@example.com, b@example.com",
            starttls=False, timeout_seconds=5,
        )
        channel.send([alert(), alert(Severity.MEDIUM, "data_drift")])
    (mail,) = smtp.messages
    assert mail.mail_from == "alerts@example.com" and mail.rcpt_tos == ["a@example.com", "b@example.com"]
    assert not mail.tls and mail.login is None
    message = mail.message
    assert message["Subject"] == "[HIGH] 2 alerts from ml_platform"
    assert message["To"] == "a@example.com, b@example.com"
    assert message.get_content_type() == "text/plain"
    body = message.get_content()
    assert "[HIGH] trained_model / accuracy_above_threshold" in body
    assert "Recommended action: Consider retraining model with more recent data" in body
    assert "Run in Dagster: http://dagster.local:3000/runs/run-abc12345" in body
    assert "[MEDIUM] trained_model / data_drift" in body


def test_email_with_starttls_and_login(smtp_lib: None, cert: tuple[str, str]) -> None:
    with RecordingSMTPServer(tls=cert, require_starttls=True, users={"bot": PASSWORD}) as smtp:
        channel = EmailChannel(
            "127.0.0.1", smtp.port, to_addrs=["ops@example.com"], username="bot", password=PASSWORD,
            starttls=True, tls_ca_file=cert[0], timeout_seconds=5,
        )
        channel.send([alert(state="resolved", message="accuracy_above_threshold passed again")])
        (mail,) = smtp.messages
        assert mail.tls and mail.login == "bot"
        assert mail.message["Subject"] == "[RESOLVED] 1 alert from ml_platform"
        # wrong password: 535 is permanent, and the password is nowhere in the error
        wrong = EmailChannel(
            "127.0.0.1", smtp.port, to_addrs=["ops@example.com"], username="bot", password=PASSWORD + "x",
            tls_ca_file=cert[0], timeout_seconds=5,
        )
        with pytest.raises(PermanentDeliveryError, match="SMTP 535") as err:
            wrong.send([alert()])
        assert PASSWORD not in str(err.value) and PASSWORD not in repr(wrong)
        # a certificate the client does not trust is a configuration error
        with pytest.raises(PermanentDeliveryError, match="TLS certificate of smtp://127.0.0.1"):
            EmailChannel("127.0.0.1", smtp.port, to_addrs=["ops@example.com"], timeout_seconds=5).send([alert()])
        # plain text to a server that requires STARTTLS: refused permanently (530)
        with pytest.raises(PermanentDeliveryError, match="SMTP 530"):
            EmailChannel("127.0.0.1", smtp.port, to_addrs=["ops@example.com"], starttls=False).send([alert()])


def test_smtp_4xx_is_retryable_5xx_permanent_and_down_is_retryable(smtp_lib: None) -> None:
    with RecordingSMTPServer() as smtp:
        channel = EmailChannel("127.0.0.1", smtp.port, to_addrs=["ops@example.com"], starttls=False, timeout_seconds=5)
        smtp.fail(1, "451 4.3.0 Try again later")
        with pytest.raises(RetryableDeliveryError, match="SMTP 451"):
            channel.send([alert()])
        smtp.fail(1, "554 5.6.0 Message rejected")
        with pytest.raises(PermanentDeliveryError, match="SMTP 554"):
            channel.send([alert()])
        channel.send([alert()])
        assert len(smtp.messages) == 1
    down = EmailChannel("127.0.0.1", free_port(), to_addrs=["ops@example.com"], starttls=False, timeout_seconds=1)
    with pytest.raises(RetryableDeliveryError, match="ConnectionRefusedError"):
        down.send([alert()])


def test_email_refuses_a_password_without_tls_unless_allowed() -> None:
    with pytest.raises(ValueError, match="STARTTLS"):
        EmailChannel("smtp.example.com", to_addrs=["a@b"], username="u", password="p", starttls=False)
    with pytest.raises(ValueError, match="recipient"):
        EmailChannel("smtp.example.com", to_addrs=[])


# ------------------------------------------------------------------------ secrets


def test_secrets_never_appear_in_repr_logs_or_errors(http: RecordingHTTPServer, caplog: pytest.LogCaptureFixture) -> None:
    secrets = [SLACK_PATH, "xoxbWebhookSecret123", ROUTING_KEY, PASSWORD, TOKEN]
    # each channel with the secret a misbehaving server might echo back to it
    channels_and_echo = [
        (SlackWebhookChannel(http.url(SLACK_PATH), timeout_seconds=0.3), "xoxbWebhookSecret123"),
        (JsonWebhookChannel(http.url(SLACK_PATH), bearer_token=TOKEN, timeout_seconds=0.3), TOKEN),
        (PagerDutyChannel(ROUTING_KEY, events_url=http.url("/v2/enqueue"), timeout_seconds=0.3), ROUTING_KEY),
    ]
    channels = [c for c, _ in channels_and_echo]
    errors: list[str] = []
    with caplog.at_level(logging.DEBUG):
        for channel, echo in channels_and_echo:
            # 404 echoing the path, 400 echoing the credential, 500, 429, a hang
            http.respond(404, "unknown hook {path}")
            http.respond(400, f"invalid key {echo} at {{path}}")
            http.fail(1, 500, body="boom at {path}")
            http.rate_limit(5)
            http.hang(2.0)
            for _ in range(5):
                with pytest.raises((PermanentDeliveryError, RetryableDeliveryError)) as err:
                    channel.send([alert()])
                errors += [str(err.value), repr(err.value), err.value.reason]
        smtp_down = EmailChannel(
            "127.0.0.1", free_port(), to_addrs=["a@example.com"], username="bot", password=PASSWORD, timeout_seconds=1
        )
        with pytest.raises(RetryableDeliveryError) as err:
            smtp_down.send([alert()])
        errors += [str(err.value), repr(err.value)]
        channels.append(smtp_down)  # type: ignore[arg-type]
    shown = errors + [repr(c) for c in channels] + [str(c) for c in channels] + [caplog.text]
    shown += [repr(vars(c)) for c in channels]
    for text in shown:
        for secret in secrets:
            assert secret not in text, (secret, text)
    assert "HTTP 404" in errors[0] and "***" in errors[0]
    assert repr(Secret("x")) == "Secret('***')"
