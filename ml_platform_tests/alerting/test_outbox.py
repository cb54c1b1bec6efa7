"""The SQLite outbox: schema, leases, queries, persistence, and two processes at once."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from ml_platform.alerting.outbox import SCHEMA_VERSION, AlertOutbox
from ml_platform.alerting.alert import Alert, AlertState, JsonlAlertFile, Severity

T0 = 1_700_000_000.0


def alert(check: str = "accuracy_above_threshold", run_id: str = "run-1", **kw) -> Alert:
    return Alert(Severity.HIGH, "trained_model", check, f"{check} failed", "retrain", run_id, **kw)


def test_schema_wal_and_reopen(tmp_path: Path) -> None:
    path = tmp_path / "nested" / "alerts.db"
    outbox = AlertOutbox(path)
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert conn.execute("PRAGMA user_version").fetchone()[0] == SCHEMA_VERSION
        tables = {r[0] for r in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert {"alerts", "fingerprints", "deliveries"} <= tables
    with outbox.transaction() as tx:
        tx.record_alert(alert(), idempotency_key="k1", outcome="notified", channels=["slack"], now=T0)
        tx.enqueue("slack", "production/run-1/firing", [alert()], now=T0, not_before=T0)
    again = AlertOutbox(path)  # reopening keeps everything
    assert [r.idempotency_key for r in again.alerts()] == ["k1"]
    (row,) = again.pending()
    assert (row.channel, row.status, row.attempts, row.alerts) == ("slack", "pending", 0, [alert()])
    json.dumps(row.to_dict()), json.dumps(again.alerts()[0].to_dict())  # JSON-able for the CLI


def test_a_failed_transaction_leaves_nothing(tmp_path: Path) -> None:
    outbox = AlertOutbox(tmp_path / "a.db")
    try:
        with outbox.transaction() as tx:
            tx.record_alert(alert(), idempotency_key="k1", outcome="notified", channels=[], now=T0)
            raise RuntimeError("crash mid-submit")
    except RuntimeError:
        pass
    assert outbox.alerts() == []


def test_leases_owners_and_lifecycle(tmp_path: Path) -> None:
    outbox = AlertOutbox(tmp_path / "a.db")
    with outbox.transaction() as tx:
        first = tx.enqueue("slack", "g1", [alert("a")], now=T0, not_before=T0)
        merged = tx.enqueue("slack", "g1", [alert("b")], now=T0, not_before=T0)  # still waiting: same message
        later = tx.enqueue("slack", "g2", [alert("c")], now=T0, not_before=T0 + 60)
    assert first == merged != later
    claimed = outbox.claim_due(now=T0, owner="A", lease_seconds=100)
    assert [d.id for d in claimed] == [first] and [a.check for a in claimed[0].alerts] == ["a", "b"]
    assert outbox.claim_due(now=T0 + 59, owner="B", lease_seconds=100) == []  # leased to A; g2 not due
    with outbox.transaction() as tx:  # a leased message is not extended: a new one is made
        assert tx.enqueue("slack", "g1", [alert("d")], now=T0, not_before=T0) not in (first, later)
    assert not outbox.mark_delivered(first, owner="B", now=T0)  # not B's
    assert outbox.mark_retry(first, owner="A", now=T0, next_attempt_at=T0 + 30, error="attempt 1: HTTP 503")
    row = outbox.deliveries(channel="slack")[0]
    assert (row.attempts, row.next_attempt_at, row.last_error) == (1, T0 + 30, "attempt 1: HTTP 503")
    # A crashed holding a lease: after it expires someone else may send
    claimed = outbox.claim_due(now=T0 + 200, owner="C", lease_seconds=100)
    assert sorted(d.id for d in claimed) == sorted([first, later, later + 1])
    assert outbox.mark_dead(first, owner="C", now=T0 + 200, error="attempt 2: HTTP 404")
    assert outbox.mark_delivered(later, owner="C", now=T0 + 200)
    assert outbox.counts() == {"pending": 1, "delivered": 1, "dead": 1, "alerts": 0, "firing": 0}
    assert [d.id for d in outbox.dead_letters()] == [first]
    outbox.requeue(first, now=T0 + 300)
    with pytest.raises(ValueError, match=rf"delivery {later} is not a dead letter \(it is delivered\)"):
        outbox.requeue(later, now=T0 + 300)
    assert {d.id for d in outbox.pending()} == {first, later + 1}


def test_alerts_are_listed_newest_first(tmp_path: Path) -> None:
    outbox = AlertOutbox(tmp_path / "a.db")
    with outbox.transaction() as tx:
        for i in range(5):
            tx.record_alert(alert(f"c{i}", metadata={"nan": float("nan")}), idempotency_key=None, outcome="notified", channels=["log"], now=T0 + i)
        tx.record_alert(alert("r", state=AlertState.RESOLVED), idempotency_key=None, outcome="notified", channels=["log"], now=T0 + 9)
    records = outbox.alerts(limit=3)
    assert [r.alert.check for r in records] == ["r", "c4", "c3"]
    assert records[0].alert.state is AlertState.RESOLVED and records[1].alert.metadata == {"nan": "nan"}


WORKER = textwrap.dedent(
    """
    import sys, time
    from ml_platform.alerting.channels import JsonlFileChannel
    from ml_platform.alerting.dispatch import AlertDispatcher
    from ml_platform.alerting.outbox import SCHEMA_VERSION, AlertOutbox
    from ml_platform.alerting.alert import Alert, Severity

    db, out, start = sys.argv[1], sys.argv[2], float(sys.argv[3])
    d = AlertDispatcher(AlertOutbox(db), [JsonlFileChannel(out)], {"HIGH": ["jsonl"], "MEDIUM": [], "LOW": []})
    time.sleep(max(0.0, start - time.time()))
    for chunk in range(0, 120, 10):
        batch = [
            Alert(Severity.HIGH, "asset", f"check{i}", "failed", "act", f"run-{i}", source_event_id=i)
            for i in range(chunk, chunk + 10)
        ]
        d.submit(batch)
        d.deliver_due()
    """
)


def test_two_processes_submit_and_deliver_the_same_events_once(tmp_path: Path) -> None:
    db, out = tmp_path / "alerts.db", tmp_path / "sent.jsonl"
    AlertOutbox(db)
    start = str(time.time() + 1.0)
    procs = [
        subprocess.Popen([sys.executable, "-c", WORKER, str(db), str(out), start], stderr=subprocess.PIPE, text=True)
        for _ in range(2)
    ]
    for p in procs:
        _, err = p.communicate(timeout=60)
        assert p.returncode == 0, err
    outbox = AlertOutbox(db)
    assert outbox.counts() == {"pending": 0, "delivered": 120, "dead": 0, "alerts": 120, "firing": 120}
    sent = [r["source_event_id"] for r in JsonlAlertFile(out).read()]
    assert sorted(sent) == list(range(120))  # each exactly once


def test_alerts_of_one_model_are_its_newest_whatever_the_others_raised_since(tmp_path: Path) -> None:
    outbox = AlertOutbox(tmp_path / "alerts.db")
    with outbox.transaction() as tx:
        for i, model in enumerate(["churn", "churn", "fraud", "fraud", "fraud", None]):
            tx.record_alert(alert(run_id=f"run-{i}", model=model), idempotency_key=f"k{i}", outcome="notified", channels=[], now=T0 + i)
    assert [r.alert.run_id for r in outbox.alerts(limit=1, model="churn")] == ["run-1"]
    assert [r.alert.run_id for r in outbox.alerts(limit=5, model="churn")] == ["run-1", "run-0"]
    assert [r.alert.run_id for r in outbox.alerts(limit=2)] == ["run-5", "run-4"]
    assert outbox.alerts(model="nope") == []
