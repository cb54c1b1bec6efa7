"""The alert sensors on a real instance, delivering to real servers on 127.0.0.1."""

import json
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
from ml_platform.orchestration.sensors import CheckSensorCursor, build_alert_sensors
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
    assert CheckSensorCursor.parse(new_cursor).checks > CheckSensorCursor.parse(cursor).checks
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


def run_failure_tick(instance: dg.DagsterInstance, cursor: str | None, resource: AlertingResource) -> str | None:
    with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerting": resource}) as context:
        run_failure_alert_sensor(context)
        return context.cursor


def test_a_failed_run_raises_one_high_alert_with_its_cause(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    resource = alerting(tmp_path, webhook)
    failed = run_pipeline(instance, source_config("breast_cancer", kind="csv", path=str(tmp_path / "missing.csv")))
    cursor = run_failure_tick(instance, None, resource)  # the failure happened before the sensor's first tick
    run_failure_tick(instance, None, resource)  # replayed (cursor lost after a daemon restart): no duplicate
    run_failure_tick(instance, '{"record_id": 3, "update_timestamp": "x"}', resource)  # Dagster's own cursor format
    run_failure_tick(instance, cursor, resource)
    [alert] = webhook_alerts(webhook)
    assert (alert["check"], alert["severity"], alert["run_id"], alert["model"]) == ("run_failure", "HIGH", failed.run_id, "breast_cancer")
    assert "missing.csv' could not be read: file not found" in alert["message"]
    assert alert["cause"] == "breast_cancer__raw_data:DataSourceError"


def test_a_different_failure_of_the_same_job_is_a_new_alert_and_a_repeat_is_recorded_as_suppressed(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    resource = alerting(tmp_path, webhook)
    missing = source_config("breast_cancer", kind="csv", path=str(tmp_path / "missing.csv"))
    bad = tmp_path / "bad.csv"
    bad.write_text("a,target\n1,0\n")  # fails validation: too few rows, missing features
    runs = [run_pipeline(instance, missing), run_pipeline(instance, source_config("breast_cancer", kind="csv", path=str(bad))),
            run_pipeline(instance, missing)]
    cursor = run_failure_tick(instance, None, resource)
    assert [a["run_id"] for a in webhook_alerts(webhook)] == [runs[0].run_id, runs[1].run_id]
    # The log and the JSONL file get every alert, the suppressed repeat too, with its outcome.
    recorded = [(r["run_id"], r["outcome"]) for r in JsonlAlertFile(tmp_path / "alerts.jsonl").read()]
    assert recorded == [(runs[0].run_id, "notified"), (runs[1].run_id, "notified"), (runs[2].run_id, "suppressed")]
    validation = webhook_alerts(webhook)[1]["message"]
    assert "breast_cancer__validated_data: 1 rows, fewer than the minimum of 50" in validation
    assert "validated_data: validated_data" not in validation
    assert run_failure_tick(instance, cursor, resource) == cursor


def test_an_unexpected_exception_is_alerted_with_the_users_message_not_dagsters_wrapper(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    model = synthetic("flaky", rows=500, seed=1)

    @dg.asset(key=["flaky", "extra"], deps=[dg.AssetKey(["flaky", "validated_data"])])
    def extra() -> None:
        raise KeyError("new data lacks the model's feature(s) ['mean area']")

    defs = dg.Definitions.merge(platform(model), dg.Definitions(assets=[extra]))
    job = defs.resolve_implicit_global_asset_job_def()
    failed = job.execute_in_process(instance=instance, asset_selection=[dg.AssetKey(["flaky", "extra"])], raise_on_error=False)
    assert not failed.success
    run_failure_tick(instance, None, alerting(tmp_path, webhook))
    [alert] = webhook_alerts(webhook)
    assert alert["message"] == (
        "Run of flaky asset run failed: flaky__extra: KeyError: \"new data lacks the model's feature(s) ['mean area']\""
    )
    assert alert["cause"] == "flaky__extra:KeyError"


def test_a_run_failed_by_a_blocking_check_is_alerted_once_by_the_check(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    resource = alerting(tmp_path, webhook)
    failed = run_pipeline(instance, run_config=STRICT_ACCURACY)
    assert instance.get_run_by_id(failed.run_id).status == dg.DagsterRunStatus.FAILURE
    run_failure_tick(instance, None, resource)
    tick(instance, None, resource)
    assert [a["check"] for a in webhook_alerts(webhook)] == ["accuracy_above_threshold"]


def test_a_stale_production_model_is_alerted_and_resolved_when_fresh_again(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    from dagster._core.definitions.freshness import FreshnessState, FreshnessStateChange

    key = dg.AssetKey(["breast_cancer", "production_model"])
    sensor = platform().resolve_sensor_def("check_alert_sensor")
    resource = alerting(tmp_path, webhook)

    def change(new: FreshnessState, old: FreshnessState) -> None:
        # What the freshness daemon records when a FreshnessPolicy's state changes.
        instance.report_runless_asset_event(FreshnessStateChange(key=key, new_state=new, previous_state=old, state_change_timestamp=time.time()))

    def sensor_tick(cursor: str | None) -> str | None:
        with dg.build_sensor_context(instance=instance, cursor=cursor, resources={"alerting": resource}) as context:
            sensor(context)
            return context.cursor

    change(FreshnessState.FAIL, FreshnessState.PASS)
    cursor = sensor_tick(None)
    [stale] = webhook_alerts(webhook)
    assert (stale["check"], stale["severity"], stale["state"], stale["model"]) == ("freshness", "MEDIUM", "firing", "breast_cancer")
    assert stale["message"] == "breast_cancer/production_model is stale: not materialized for more than 49 h (freshness policy FAIL)"
    change(FreshnessState.PASS, FreshnessState.FAIL)
    sensor_tick(cursor)
    assert [(a["check"], a["state"]) for a in webhook_alerts(webhook)] == [("freshness", "firing"), ("freshness", "resolved")]


def test_a_resolved_notice_carries_the_passing_evaluations_figures(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer
) -> None:
    assert run_job(instance, platform(SYNTH), "synth_training").success
    resource = alerting(tmp_path, webhook)
    monitor(instance, seed=2, drift_features=["f0"], drift_shift=6.0)
    cursor = tick(instance, None, resource)
    monitor(instance, seed=3)
    tick(instance, cursor, resource)
    [firing] = [a for a in webhook_alerts(webhook) if a["check"] == "data_drift" and a["state"] == "firing"]
    [resolved] = [a for a in webhook_alerts(webhook) if a["check"] == "data_drift" and a["state"] == "resolved"]
    assert firing["metadata"]["max_psi"] > 1.0
    assert resolved["metadata"]["max_psi"] < 0.2
    # The per-feature table is sent once (as `features`), not also as a JSON copy.
    assert len(firing["metadata"]["features"]) == 8 and "drift" not in firing["metadata"]
    assert f"{resolved['metadata']['max_psi']:.3f}" in resolved["message"]


def test_a_broken_channel_is_switched_off_alone_and_alerted_on_the_channels_that_work(
    instance: dg.DagsterInstance, tmp_path: Path, webhook: RecordingHTTPServer, monkeypatch: pytest.MonkeyPatch,
    caplog: pytest.LogCaptureFixture,
) -> None:
    # A password without STARTTLS is refused by the email channel: before, no channel sent anything.
    email = EmailChannelResource(host="127.0.0.1", port=25, to_addresses=["oncall@example.com"], username="ops",
                                 password="hunter2-not-logged", starttls=False)
    resource = alerting(tmp_path, webhook, email=email)
    run_pipeline(instance, run_config=STRICT_ACCURACY)
    with dg.build_sensor_context(instance=instance, resources={"alerting": resource}) as context:
        reason = check_alert_sensor(context).skip_message
    assert "email switched off: EmailChannel: refusing to send a password without STARTTLS" in reason
    alerts = webhook_alerts(webhook)
    assert {(a["asset"], a["check"], a["severity"]) for a in alerts} == {
        ("alerting/email", "channel_configuration", "HIGH"), ("breast_cancer/trained_model", "accuracy_above_threshold", "HIGH"),
    }
    assert "alert channel 'email' is switched off" in caplog.text
    assert "hunter2" not in caplog.text + json.dumps(alerts) + (tmp_path / "alerts.jsonl").read_text()
    # Allowed explicitly (ML_PLATFORM_SMTP_ALLOW_PLAIN_AUTH=true), the channel logs in and delivers.
    with RecordingSMTPServer(users={"ops": "hunter2-not-logged"}) as smtp:
        for name, value in {"HOST": "127.0.0.1", "PORT": str(smtp.port), "TO": "oncall@example.com", "USERNAME": "ops",
                            "PASSWORD": "hunter2-not-logged", "STARTTLS": "false", "ALLOW_PLAIN_AUTH": "true"}.items():
            monkeypatch.setenv(f"ML_PLATFORM_SMTP_{name}", value)
        from_environment = alerting_from_environment()
        run_pipeline(instance, run_config=op_config(
            "breast_cancer", "trained_model", params={"C": 0.7}, accuracy_check={"min_accuracy": 0.999}))
        with dg.build_sensor_context(instance=instance, resources={"alerting": from_environment}) as context:
            check_alert_sensor(context)
        assert any("Model accuracy dropped" in m.message.get_body().get_content() for m in smtp.messages)


@pytest.mark.parametrize(
    ("variable", "value", "reason"),
    [
        ("ML_PLATFORM_SMTP_PORT", "abc", "ML_PLATFORM_SMTP_PORT='abc' is not a whole number in 1..65535"),
        ("ML_PLATFORM_SMTP_STARTTLS", "maybe", "ML_PLATFORM_SMTP_STARTTLS='maybe' is not true or false"),
        ("ML_PLATFORM_SMTP_ALLOW_PLAIN_AUTH", "2", "ML_PLATFORM_SMTP_ALLOW_PLAIN_AUTH='2' is not true or false"),
    ],
)
def test_an_unreadable_environment_variable_switches_its_channel_off_naming_the_variable(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, reason: str
) -> None:
    monkeypatch.setenv("ML_PLATFORM_SMTP_HOST", "127.0.0.1")
    monkeypatch.setenv("ML_PLATFORM_SMTP_TO", "oncall@example.com")
    monkeypatch.setenv(variable, value)
    channels, broken = alerting_from_environment().channels()
    assert broken == {"email": reason}
    assert set(channels) == {"log", "jsonl"}


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
