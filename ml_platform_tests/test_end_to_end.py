"""The whole loop under `dagster dev`: a run whose check fails, and its alert arriving at a
real webhook server, delivered by the daemon's sensor; then a daemon restart that loses and
repeats nothing."""

import json
import time
from pathlib import Path

import dagster as dg
import pytest

from ml_platform_tests.alert_servers import RecordingHTTPServer
from ml_platform_tests.dagster_dev import DagsterDev, make_dagster_home


@pytest.mark.slow
def test_failed_check_under_dagster_dev_reaches_the_webhook(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    home = make_dagster_home(tmp_path / "dagster_home")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    strict = {"ops": {"breast_cancer__trained_model": {"config": {"params": {"C": 0.9}, "accuracy_check": {"min_accuracy": 0.999}}}}}
    (tmp_path / "strict.json").write_text(json.dumps(strict))
    strict["ops"]["breast_cancer__trained_model"]["config"]["params"] = {"C": 0.8}  # another new candidate
    (tmp_path / "strict2.json").write_text(json.dumps(strict))
    missing = {"resources": {"breast_cancer_data_source": {"config": {"kind": "csv", "path": str(tmp_path / "missing.csv")}}}}
    (tmp_path / "missing.json").write_text(json.dumps(missing))
    with RecordingHTTPServer() as webhook:
        env = {
            "ML_PLATFORM_ALERT_WEBHOOK_URL": webhook.url("/alerts/secret-token"),
            "ML_PLATFORM_ALERT_SENSOR_INTERVAL": "2",
        }
        dev = DagsterDev(home, env, tmp_path / "dagster_dev.log")
        dev.env["ML_PLATFORM_WEBSERVER_URL"] = dev.url
        with dev:
            run = dev.materialize("--select", "*", "-c", str(tmp_path / "strict.json"))
            assert run.returncode != 0  # the blocking check failed the run
            requests = webhook.wait_for(1, timeout=90)
            assert len(requests) == 1, [a for r in requests for a in r.json["alerts"]]
            [request] = requests
        assert webhook.requests == [request]  # one message, and not also a run-failure alert

        # While the daemon is down, another check fails and a run fails on a missing file.
        assert dev.materialize("--select", "*", "-c", str(tmp_path / "strict2.json")).returncode != 0
        assert dev.materialize("--select", "*", "-c", str(tmp_path / "missing.json")).returncode != 0
        # After a restart both arrive, and nothing is sent twice.
        with DagsterDev(home, env, tmp_path / "dagster_dev_2.log"):
            webhook.wait_for(3, timeout=90)
            time.sleep(6)  # three more sensor intervals: room for any duplicate to show up
        after_restart = [a for r in webhook.requests[1:] for a in r.json["alerts"]]
        assert len(webhook.requests) == 3
        assert sorted(a["check"] for a in after_restart) == ["accuracy_above_threshold", "run_failure"]
        run_failure = next(a for a in after_restart if a["check"] == "run_failure")
        assert "missing.csv' could not be read: file not found" in run_failure["message"]
    alert, = request.json["alerts"]
    assert (alert["asset"], alert["check"], alert["severity"]) == ("breast_cancer/trained_model", "accuracy_above_threshold", "HIGH")
    assert alert["message"].startswith("Model accuracy dropped to")
    assert alert["run_url"] == f"{dev.url}/runs/{alert['run_id']}"
    with dg.DagsterInstance.get() as instance:
        record = instance.get_run_records()[-1]  # newest first: the last is the first run
        assert record.dagster_run.status == dg.DagsterRunStatus.FAILURE
        assert alert["run_id"] == record.dagster_run.run_id
        # Delivered by the daemon's sensor, from the event log: after the evaluation was stored.
        stored_at = min(
            e.timestamp for e in instance.all_logs(record.dagster_run.run_id, of_type=dg.DagsterEventType.ASSET_CHECK_EVALUATION)
            if getattr(e.dagster_event.event_specific_data, "check_name", None) == "accuracy_above_threshold"
        )
        assert request.received_at >= stored_at
    log = (tmp_path / "dagster_dev.log").read_text()
    assert "secret-token" not in log
