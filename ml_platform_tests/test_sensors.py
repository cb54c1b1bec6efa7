"""The alert sensors on a real instance, delivering to real servers on 127.0.0.1."""

import time
from collections.abc import Iterator
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.alerting.outbox import AlertOutbox
from ml_platform.alerting.alert import JsonlAlertFile
from ml_platform.orchestration.alerting import (
    AlertingResource,
    EmailChannelResource,
    JsonlChannelResource,
    WebhookChannelResource,
    alerting_from_environment,
    alerting_resource,
)
from ml_platform.orchestration.sensors import build_alert_sensors
from ml_platform_tests.alert_servers import RecordingHTTPServer, RecordingSMTPServer
from ml_platform_tests.conftest import op_config, platform, run_job, source_config, synthetic, train

check_alert_sensor, run_failure_alert_sensor = build_alert_sensors({})
# A new candidate (other params) held to an accuracy it cannot reach.
STRICT_ACCURACY = op_config("breast_cancer", "trained_model", params={"C": 0.9}, accuracy_check={"min_accuracy": 0.999})
SYNTH = synthetic("synth", rows=2_000, seed=1)
SECRET_PATH = "/hooks/T000/B000/s3cr3t-t0ken"


def run_pipeline(instance: dg.DagsterInstance, run_config: dict | None = None) -> dg.ExecuteInProcessResult:
    return train(instance, run_config=run_config)


def monitor(instance: dg.DagsterInstance, **synthetic_source) -> dg.ExecuteInProcessResult:
    return run_job(instance, platform(SYNTH), "synth_monitoring", source_config("synth", synthetic=synthetic_source))


@pytest.fixture
def webhook() -> Iterator[RecordingHTTPServer]:
    with RecordingHTTPServer() as server:
        yield server


def alerting(tmp_path: Path, webhook: RecordingHTTPServer, **settings) -> AlertingResource:
    return alerting_resource(
        jsonl=JsonlChannelResource(path=str(tmp_path / "alerts.jsonl")),
        webhook=WebhookChannelResource(url=webhook.url(SECRET_PATH), timeout_seconds=2.0),
        outbox_path=str(tmp_path / "alerts.db"),
        routes={"HIGH": ["jsonl", "webhook"], "MEDIUM": ["jsonl", "webhook"], "LOW": ["jsonl"]},
        **settings,
    )


def tick(instance: dg.DagsterInstance, cursor: str | None, resource: AlertingResource) -> str:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerting": resource}) as context:
        check_alert_sensor(context)
        return context.cursor


def webhook_alerts(server: RecordingHTTPServer) -> list[dict]:
    return [alert for request in server.delivered for alert in request.json["alerts"]]


def test_each_failed_check_is_alerted_exactly_once_across_ticks(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    resource = alerting(tmp_path, webhook, webserver_base_url="http://dagster.example:3000")
    assert run_pipeline(instance).success  # passing checks raise no alert
    failed_run = run_pipeline(instance, run_config=STRICT_ACCURACY)
    assert not failed_run.success

    cursor = tick(instance, None, resource)
    [alert] = webhook_alerts(webhook)
    assert (alert["asset"], alert["check"], alert["severity"], alert["state"], alert["model"]) == (
        "breast_cancer/trained_model", "accuracy_above_threshold", "HIGH", "firing", "breast_cancer",
    )
    assert alert["run_id"] == failed_run.run_id
    assert alert["run_url"] == f"http://dagster.example:3000/runs/{failed_run.run_id}"
    assert alert["message"] == "Model accuracy dropped to 98.25% (threshold: 99.90%)"
    assert alert["recommended_action"] == "Consider retraining model with more recent data"
    assert alert["model_version"] == "v2"
    assert [r["check"] for r in JsonlAlertFile(tmp_path / "alerts.jsonl").read()] == ["accuracy_above_threshold"]

    # A tick with nothing new sends nothing and keeps the cursor.
    assert tick(instance, cursor, resource) == cursor
    assert len(webhook.requests) == 1

    # A new failure (a new model version, so a new fingerprint) is sent by the next tick, once.
    second_failure = run_pipeline(instance, run_config=op_config(
        "breast_cancer", "trained_model", params={"C": 0.8}, accuracy_check={"min_accuracy": 0.999}))
    new_cursor = tick(instance, cursor, resource)
    assert int(new_cursor) > int(cursor)
    assert [a["run_id"] for a in webhook_alerts(webhook)] == [failed_run.run_id, second_failure.run_id]

    # Ticks whose cursor was lost (the daemon died before saving it) re-read but never re-send.
    tick(instance, cursor, resource)
    tick(instance, None, resource)
    assert len(webhook.requests) == 2 and len(JsonlAlertFile(tmp_path / "alerts.jsonl").read()) == 2


def test_a_channel_that_is_down_gets_the_alert_once_it_is_back(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    resource = alerting(tmp_path, webhook, backoff_base_seconds=0.05, backoff_max_seconds=0.1)
    run_pipeline(instance, run_config=STRICT_ACCURACY)
    webhook.fail(2, status=503)
    cursor = tick(instance, None, resource)
    # The JSONL channel is not held up by the failing webhook.
    assert len(JsonlAlertFile(tmp_path / "alerts.jsonl").read()) == 1
    outbox = AlertOutbox(tmp_path / "alerts.db")
    [pending] = outbox.pending()
    assert pending.channel == "webhook" and "503" in pending.last_error and SECRET_PATH not in pending.last_error
    for _ in range(3):
        time.sleep(0.15)
        tick(instance, cursor, resource)
    assert [r.status for r in webhook.requests] == [503, 503, 200]
    assert len(webhook_alerts(webhook)) == 1 and outbox.pending() == []


def test_a_refusing_channel_dead_letters_without_leaking_the_secret(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    run_pipeline(instance, run_config=STRICT_ACCURACY)
    webhook.respond(404, body="no such hook {path}")
    tick(instance, None, alerting(tmp_path, webhook))
    [dead] = AlertOutbox(tmp_path / "alerts.db").dead_letters()
    assert dead.channel == "webhook" and "404" in dead.last_error
    stored = b"".join(p.read_bytes() for p in tmp_path.glob("alerts.db*"))
    assert SECRET_PATH.encode() not in stored and b"s3cr3t" not in stored


def test_a_passing_check_resolves_the_alert(instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer) -> None:
    resource = alerting(tmp_path, webhook)
    assert run_job(instance, platform(SYNTH), "synth_training").success
    monitor(instance, seed=2, drift_features=["f3"], drift_shift=1.5)
    cursor = tick(instance, None, resource)
    firing = {a["check"]: a for a in webhook_alerts(webhook)}
    assert firing["data_drift"]["severity"] == "MEDIUM" and firing["data_drift"]["state"] == "firing"
    per_feature = {row["feature"]: row for row in firing["data_drift"]["metadata"]["features"]}
    assert per_feature["f3"]["drifted"] is True and per_feature["f0"]["drifted"] is False

    monitor(instance, seed=3)
    tick(instance, cursor, resource)
    resolved = [a for a in webhook_alerts(webhook) if a["state"] == "resolved"]
    assert {a["check"] for a in resolved} >= {"data_drift"}
    assert all(a["model_version"] == "v1" for a in resolved)


def test_alerts_of_one_run_are_grouped_into_one_message_per_channel(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    assert run_job(instance, platform(SYNTH), "synth_training").success
    result = monitor(instance, seed=2, drift_features=["f0"], drift_shift=6.0)
    tick(instance, None, alerting(tmp_path, webhook))
    [request] = webhook.delivered
    checks = {a["check"] for a in request.json["alerts"]}
    assert checks == {"data_drift", "prediction_drift", "production_model_accuracy"}
    assert {a["run_id"] for a in request.json["alerts"]} == {result.run_id}


def test_email_channel_delivers_through_a_real_smtp_server(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    with RecordingSMTPServer() as smtp:
        resource = alerting_resource(
            email=EmailChannelResource(host="127.0.0.1", port=smtp.port, to_addresses=["oncall@example.com"], starttls=False),
            outbox_path=str(tmp_path / "alerts.db"),
            routes={"HIGH": ["email"], "MEDIUM": [], "LOW": []},
        )
        run_pipeline(instance, run_config=STRICT_ACCURACY)
        tick(instance, None, resource)
        [message] = smtp.messages
        assert message.message["To"] == "oncall@example.com"
        assert "[HIGH]" in message.message["Subject"]
        assert "Model accuracy dropped to 98.25%" in message.message.get_body().get_content()


def run_failure_tick(instance: dg.DagsterInstance, run_id: str, resource: AlertingResource) -> None:
    run = instance.get_run_by_id(run_id)
    failure = [e for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.RUN_FAILURE)][0].dagster_event
    with dg.build_run_status_sensor_context(
        sensor_name="run_failure_alert_sensor", dagster_instance=instance, dagster_run=run, dagster_event=failure,
        resources={"alerting": resource},
    ) as context:
        run_failure_alert_sensor(context.for_run_failure())


def test_a_failed_run_raises_one_high_alert(instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer) -> None:
    resource = alerting(tmp_path, webhook)
    failed = run_pipeline(instance, source_config("breast_cancer", kind="csv", path=str(tmp_path / "missing.csv")))
    run_failure_tick(instance, failed.run_id, resource)
    run_failure_tick(instance, failed.run_id, resource)  # replayed after a daemon restart: no duplicate
    [alert] = webhook_alerts(webhook)
    assert (alert["check"], alert["severity"], alert["run_id"], alert["model"]) == ("run_failure", "HIGH", failed.run_id, "breast_cancer")
    assert "missing.csv' could not be read: file not found" in alert["message"]


def test_a_run_failed_by_a_blocking_check_is_alerted_once_by_the_check(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    resource = alerting(tmp_path, webhook)
    failed = run_pipeline(instance, run_config=STRICT_ACCURACY)
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
    run_failure_tick(instance, failed.run_id, resource)
    tick(instance, None, resource)
    assert [a["check"] for a in webhook_alerts(webhook)] == ["accuracy_above_threshold"]


def test_channels_are_switched_on_by_environment_variables_as_env_vars(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PLATFORM_SLACK_WEBHOOK_URL", "https://hooks.slack.test/services/SECRET")
    monkeypatch.delenv("ML_PLATFORM_PAGERDUTY_ROUTING_KEY", raising=False)
    resource = alerting_from_environment()
    assert isinstance(resource.slack.webhook_url, dg.EnvVar)  # resolved at run time, not baked in
    assert "SECRET" not in repr(resource)


def test_default_routes_leave_out_channels_that_are_off_and_explicit_routes_must_name_real_ones(tmp_path: Path) -> None:
    from ml_platform.alerting.alert import Severity
    from ml_platform.orchestration.alerting import SlackChannelResource

    slack = SlackChannelResource(webhook_url="https://hooks.slack.test/x")
    routes = alerting_resource(slack=slack, outbox_path=str(tmp_path / "a.db")).dispatcher().routes
    assert routes == {
        Severity.HIGH: ["log", "jsonl", "slack"], Severity.MEDIUM: ["log", "jsonl", "slack"], Severity.LOW: ["log", "jsonl"],
    }
    explicit = alerting_resource(outbox_path=str(tmp_path / "a.db"), routes={"HIGH": ["pagerduty"], "MEDIUM": [], "LOW": []})
    with pytest.raises(ValueError, match=r"HIGH routes to unknown channel\(s\) \['pagerduty'\]"):
        explicit.dispatcher()


def test_a_models_declared_routes_override_the_platform_routes_for_its_alerts_only(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    quiet = synthetic("quiet", rows=2_000, seed=1, alerts={"routes": {"HIGH": ["jsonl"]}})
    loud = synthetic("loud", rows=2_000, seed=1)
    defs = platform(quiet, loud, alerting=alerting(tmp_path, webhook))
    strict = {"min_accuracy": 0.999}
    for name in ("quiet", "loud"):
        assert not run_job(instance, defs, f"{name}_training", op_config(name, "trained_model", accuracy_check=strict)).success
    sensor = defs.resolve_sensor_def("check_alert_sensor")
    with dg.build_sensor_context(instance=instance, resources={"alerting": alerting(tmp_path, webhook)}) as context:
        sensor(context)
    # Both are in the JSONL file; only the model without an override reached the webhook.
    assert sorted(r["model"] for r in JsonlAlertFile(tmp_path / "alerts.jsonl").read()) == ["loud", "quiet"]
    assert [a["model"] for a in webhook_alerts(webhook)] == ["loud"]


def test_a_declared_route_to_a_channel_that_is_off_is_refused_when_the_code_loads() -> None:
    from ml_platform.declaration import DeclarationError

    paging = synthetic("paging", alerts={"routes": {"HIGH": ["pagerduty"]}})
    with pytest.raises(DeclarationError, match=r"model 'paging': alerts.routes.HIGH names channel\(s\) \['pagerduty'\] that are off"):
        platform(paging)
