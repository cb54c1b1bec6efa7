"""A sender killed mid-POST (kill -9 of the process delivering, as when the daemon dies): the
delivery goes first once its lease ends, the channel's later messages wait behind it, and the
receiver can drop the one resend by its Idempotency-Key. Real processes, a real HTTP server."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from ml_platform.alerting.alert import Alert, Severity
from ml_platform.alerting.channels import IDEMPOTENCY_HEADER, JsonWebhookChannel
from ml_platform.alerting.dispatch import AlertDispatcher
from ml_platform.alerting.outbox import AlertOutbox
from ml_platform_tests.alert_servers import RecordingHTTPServer

LEASE_SECONDS = 2.0  # the default is 30 s: short, but a test need not wait it out

SENDER = textwrap.dedent(
    """
    import sys
    from ml_platform.alerting.channels import JsonWebhookChannel
    from ml_platform.alerting.dispatch import AlertDispatcher
    from ml_platform.alerting.outbox import AlertOutbox

    outbox, url, lease = sys.argv[1], sys.argv[2], float(sys.argv[3])
    channel = JsonWebhookChannel(url, timeout_seconds=60)
    AlertDispatcher(AlertOutbox(outbox), [channel], {"HIGH": ["webhook"], "MEDIUM": [], "LOW": []},
                    lease_seconds=lease).deliver_due()
    """
)


def failed_run(n: int) -> Alert:
    return Alert(severity=Severity.HIGH, asset="churn_training", check="run_failure", message=f"failure {n}",
                 recommended_action="fix it", run_id=f"run-{n}", source_event_id=n, cause=f"step:{n}")


def dispatcher(outbox: Path, url: str) -> AlertDispatcher:
    return AlertDispatcher(AlertOutbox(outbox), [JsonWebhookChannel(url, timeout_seconds=10)],
                           {"HIGH": ["webhook"], "MEDIUM": [], "LOW": []}, lease_seconds=LEASE_SECONDS)


def test_a_delivery_killed_mid_post_is_sent_first_after_a_short_lease_and_once_by_its_key(tmp_path: Path) -> None:
    outbox = tmp_path / "alerts.db"
    with RecordingHTTPServer() as http:
        url = http.url("/hook")
        dispatcher(outbox, url).submit([failed_run(1)])
        http.hang(3.0)  # the first POST reaches the server, which holds it: the sender is mid-POST
        sender = subprocess.Popen([sys.executable, "-c", SENDER, str(outbox), url, str(LEASE_SECONDS)], start_new_session=True)
        deadline = time.monotonic() + 30
        with sqlite3.connect(outbox) as conn:
            while conn.execute("SELECT lease_owner FROM deliveries").fetchone()[0] is None:
                assert time.monotonic() < deadline, "the sender never claimed the delivery"
                time.sleep(0.05)
        time.sleep(0.5)  # the POST is on the wire
        os.killpg(sender.pid, signal.SIGKILL)
        sender.wait()
        killed_at = time.monotonic()

        restarted = dispatcher(outbox, url)
        restarted.submit([failed_run(n) for n in range(2, 7)])
        # While the killed delivery's lease runs, the channel's later messages wait behind it.
        assert restarted.deliver_due().delivered == 0
        while restarted.outbox.pending():
            assert time.monotonic() - killed_at < 60, "not delivered within a minute"
            restarted.deliver_due()
            time.sleep(0.2)
        finished = time.monotonic() - killed_at

        http.wait_for(7, timeout=10)  # the held first request is recorded once the server lets it go
        delivered = [r.json["alerts"][0]["message"] for r in http.delivered]
        assert delivered == [f"failure {n}" for n in range(1, 7)]  # in order, each once
        [held] = [r for r in http.requests if r.hung]
        resend = http.delivered[0]
        # The receiver saw failure 1 twice, under one key: it can drop the repeat.
        assert held.headers[IDEMPOTENCY_HEADER] == resend.headers[IDEMPOTENCY_HEADER]
        assert len({r.headers[IDEMPOTENCY_HEADER] for r in http.delivered}) == 6
        assert finished < LEASE_SECONDS + 5


def test_the_default_lease_is_well_under_a_minute(tmp_path: Path) -> None:
    assert AlertDispatcher(AlertOutbox(tmp_path / "a.db"), [], {"HIGH": [], "MEDIUM": [], "LOW": []}).lease_seconds <= 30


def test_an_email_resent_after_a_crash_has_the_same_message_id(tmp_path: Path) -> None:
    from ml_platform.alerting.channels import EmailChannel
    from ml_platform_tests.alert_servers import RecordingSMTPServer

    with RecordingSMTPServer() as smtp:
        channel = EmailChannel("127.0.0.1", port=smtp.port, to_addrs=["oncall@example.com"], starttls=False)
        for _ in range(2):
            channel.send([failed_run(1)], delivery_key="d41d8cd98f00b204")
        first, second = smtp.messages
        assert first.message["Message-ID"] == second.message["Message-ID"] == "<d41d8cd98f00b204@localhost>"


def test_an_outbox_of_the_previous_schema_is_upgraded_in_place_and_keeps_its_deliveries(tmp_path: Path) -> None:
    from ml_platform.alerting.outbox import SCHEMA

    path = tmp_path / "alerts.db"
    with sqlite3.connect(path) as conn:  # schema 1: no delivery_key column
        conn.executescript(SCHEMA.replace(",\n    delivery_key     TEXT                      -- stable across resends: receivers deduplicate on it", ""))
        conn.execute("INSERT INTO deliveries (channel, group_key, alerts, status, attempts, created_at, next_attempt_at)"
                     " VALUES ('webhook', 'g', '[]', 'pending', 0, 0, 0)")
        conn.execute("PRAGMA user_version = 1")
        assert "delivery_key" not in [row[1] for row in conn.execute("PRAGMA table_info(deliveries)")]
    [old] = AlertOutbox(path).pending()
    assert old.delivery_key == f"delivery-{old.id}"  # stable for a row written before the upgrade
