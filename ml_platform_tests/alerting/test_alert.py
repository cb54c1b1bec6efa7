from pathlib import Path

from ml_platform.alerting.alert import JsonlAlertFile, Severity, alert_for_failed_check


def make(check: str, event_id: int, dagster_severity: str = "ERROR", **metadata):
    return alert_for_failed_check(
        asset="trained_model", check=check, dagster_severity=dagster_severity, description=f"{check} failed",
        metadata=metadata, run_id="run-1", event_id=event_id,
    )


def test_severity_and_action_follow_the_seed_per_check() -> None:
    assert make("accuracy_above_threshold", 1).severity is Severity.HIGH
    assert make("accuracy_above_threshold", 1).recommended_action == "Consider retraining model with more recent data"
    assert make("data_drift", 1).severity is Severity.MEDIUM
    assert make("pipeline_run_time", 1).severity is Severity.LOW
    assert make("pipeline_run_time", 1).recommended_action == "Investigate performance bottlenecks"


def test_unknown_checks_fall_back_to_dagster_severity_and_metadata_action_wins() -> None:
    assert make("custom", 1, "ERROR").severity is Severity.HIGH
    assert make("custom", 1, "WARN").severity is Severity.MEDIUM
    assert make("custom", 1, recommended_action="Call Bob").recommended_action == "Call Bob"


def test_fingerprint_identifies_asset_check_and_model_version() -> None:
    a = make("accuracy_above_threshold", 1, model_version="v3")
    assert a.fingerprint == make("accuracy_above_threshold", 2, model_version="v3").fingerprint
    assert a.fingerprint != make("accuracy_above_threshold", 1, model_version="v4").fingerprint


def test_jsonl_file_appends_and_remembers_the_last_event(tmp_path: Path) -> None:
    channel = JsonlAlertFile(tmp_path / "alerts" / "alerts.jsonl")
    assert channel.read() == []
    channel.append([make("accuracy_above_threshold", 5, model_version="v1")])
    channel.append([make("data_drift", 9, payload="x" * 10_000)])  # longer than one read chunk
    records = channel.read()
    assert [r["source_event_id"] for r in records] == [5, 9]
    assert records[0]["severity"] == "HIGH" and records[0]["run_id"] == "run-1"
    assert records[0]["message"] == "accuracy_above_threshold failed"


def test_fingerprint_also_identifies_the_environment_and_ignores_state() -> None:
    from dataclasses import replace

    a = make("accuracy_above_threshold", 1, model_version="v3")
    assert a.environment == "production" and a.state.value == "firing" and a.run_url is None
    assert replace(a, environment="staging").fingerprint != a.fingerprint
    assert replace(a, state="resolved").fingerprint == a.fingerprint
    assert replace(a, severity="LOW").severity is Severity.LOW  # strings from config are accepted


def test_to_dict_is_json_and_round_trips() -> None:
    import json
    from datetime import datetime

    from ml_platform.alerting.alert import Alert, AlertState

    a = make("data_drift", 3, when=datetime(2024, 1, 1), score=float("inf"), nested={"k": (1, 2)})
    record = json.loads(json.dumps(a.to_dict(), allow_nan=False))
    assert record["state"] == "firing" and record["environment"] == "production" and record["fingerprint"] == a.fingerprint
    assert record["metadata"] == {"when": "2024-01-01 00:00:00", "score": "inf", "nested": {"k": [1, 2]}}
    back = Alert.from_dict(record)
    assert back.fingerprint == a.fingerprint and back.state is AlertState.FIRING and back.severity is Severity.MEDIUM


def test_run_url_and_environment_from_the_check_helper() -> None:
    from ml_platform.alerting.alert import run_url

    assert run_url("http://localhost:3000/", "abc-1") == "http://localhost:3000/runs/abc-1"
    assert run_url(None, "abc") is None and run_url("http://x", None) is None
    a = alert_for_failed_check(
        asset="trained_model", check="custom", dagster_severity="WARN", description=None, metadata={"alert_severity": "low"},
        run_id="r9", event_id=4, environment="staging", webserver_base_url="https://dagster.example.com",
    )
    assert a.severity is Severity.LOW and a.environment == "staging"
    assert a.run_url == "https://dagster.example.com/runs/r9"
    from dataclasses import replace

    assert replace(a, state="resolved").one_line().startswith("RESOLVED [LOW] trained_model/custom")
