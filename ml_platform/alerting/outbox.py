"""The alert outbox: a SQLite file that makes alert delivery durable and at-least-once.

Three tables (schema below):
- `alerts`: every alert and resolution ever submitted (with its outcome: notified, suppressed,
  unrouted), keyed by an idempotency key so a re-submitted source event is recognised;
- `fingerprints`: the notification state per fingerprint (firing/resolved, when last
  notified, which channels were told) that deduplication and resolution need;
- `deliveries`: one row per (channel, group of alerts) with status pending/delivered/dead,
  attempts, next_attempt_at, last_error, and a lease so two processes never send the same
  row at the same time.

WAL mode, a busy timeout and `BEGIN IMMEDIATE` write transactions make it safe for several
processes (the sensor daemon, a CLI) to open it at once. A connection is opened per
operation, so one AlertOutbox may be used from several threads. Policy (routing, dedup,
backoff) lives in dispatch; this module only stores. No Dagster import.
"""

from __future__ import annotations

import json
import sqlite3
import uuid
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

from ml_platform.alerting.alert import Alert, AlertState, Severity

SCHEMA_VERSION = 2
# Schema upgrades, by the version they upgrade from (CREATE ... IF NOT EXISTS covers new tables).
MIGRATIONS = {
    1: ["ALTER TABLE deliveries ADD COLUMN delivery_key TEXT"],
}
TABLES = ("alerts", "fingerprints", "deliveries")

SCHEMA = """
CREATE TABLE IF NOT EXISTS alerts (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    idempotency_key  TEXT UNIQUE,              -- NULL: the caller gave no key (never deduplicated by key)
    fingerprint      TEXT NOT NULL,
    state            TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    severity         TEXT NOT NULL,
    asset            TEXT NOT NULL,
    check_name       TEXT NOT NULL,
    model_version    TEXT,
    environment      TEXT NOT NULL,
    run_id           TEXT,
    source_event_id  INTEGER,
    outcome          TEXT NOT NULL,            -- notified | suppressed | unrouted
    channels         TEXT NOT NULL,            -- JSON list of channel names notified
    submitted_at     REAL NOT NULL,            -- unix seconds (dispatcher clock)
    alert            TEXT NOT NULL             -- Alert.to_dict() as JSON
);
CREATE INDEX IF NOT EXISTS alerts_by_fingerprint ON alerts (fingerprint, id);

CREATE TABLE IF NOT EXISTS fingerprints (
    fingerprint      TEXT PRIMARY KEY,
    state            TEXT NOT NULL CHECK (state IN ('firing', 'resolved')),
    severity         TEXT NOT NULL,            -- highest severity notified while firing
    asset            TEXT NOT NULL,
    check_name       TEXT NOT NULL,
    model_version    TEXT,
    environment      TEXT NOT NULL,
    channels         TEXT NOT NULL,            -- JSON list: who was told it fires (resolution goes there)
    first_fired_at   REAL,
    last_notified_at REAL,
    last_event_id    INTEGER,                  -- newest source event applied (stale events are ignored)
    updated_at       REAL NOT NULL,
    alert            TEXT NOT NULL             -- the last firing Alert.to_dict() (template of the resolution)
);
CREATE INDEX IF NOT EXISTS fingerprints_by_check ON fingerprints (asset, check_name, environment, state);

CREATE TABLE IF NOT EXISTS deliveries (
    id               INTEGER PRIMARY KEY AUTOINCREMENT,
    channel          TEXT NOT NULL,
    group_key        TEXT NOT NULL,            -- environment/run_id/state
    alerts           TEXT NOT NULL,            -- JSON list of Alert.to_dict(): one message
    status           TEXT NOT NULL CHECK (status IN ('pending', 'delivered', 'dead')),
    attempts         INTEGER NOT NULL DEFAULT 0,
    created_at       REAL NOT NULL,
    next_attempt_at  REAL NOT NULL,
    last_attempt_at  REAL,
    delivered_at     REAL,
    last_error       TEXT,                     -- secret-free reason of the last failure
    lease_owner      TEXT,                     -- who is sending it right now
    lease_until      REAL,
    delivery_key     TEXT                      -- stable across resends: receivers deduplicate on it
);
CREATE INDEX IF NOT EXISTS deliveries_due ON deliveries (status, next_attempt_at, id);
CREATE INDEX IF NOT EXISTS deliveries_by_channel ON deliveries (channel, status, attempts);
-- enqueue looks up the channel's still-open message for a group: keep that off a backlog scan.
CREATE INDEX IF NOT EXISTS deliveries_by_group ON deliveries (channel, group_key, status);
"""


def _iso(ts: float | None) -> str | None:
    return None if ts is None else datetime.fromtimestamp(ts, timezone.utc).isoformat(timespec="seconds")


@dataclass(frozen=True)
class Delivery:
    id: int
    channel: str
    group_key: str
    alerts: list[Alert]
    status: str
    attempts: int
    created_at: float
    next_attempt_at: float
    last_attempt_at: float | None
    delivered_at: float | None
    last_error: str | None
    delivery_key: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "delivery_key": self.delivery_key,
            "channel": self.channel,
            "group_key": self.group_key,
            "status": self.status,
            "attempts": self.attempts,
            "alerts": [a.to_dict() for a in self.alerts],
            "created_at": _iso(self.created_at),
            "next_attempt_at": _iso(self.next_attempt_at),
            "last_attempt_at": _iso(self.last_attempt_at),
            "delivered_at": _iso(self.delivered_at),
            "last_error": self.last_error,
        }


@dataclass(frozen=True)
class AlertRecord:
    id: int
    idempotency_key: str | None
    outcome: str
    channels: list[str]
    submitted_at: float
    alert: Alert

    def to_dict(self) -> dict[str, Any]:
        return {
            "id": self.id,
            "idempotency_key": self.idempotency_key,
            "outcome": self.outcome,
            "channels": self.channels,
            "submitted_at": _iso(self.submitted_at),
            **self.alert.to_dict(),
        }


@dataclass(frozen=True)
class FingerprintState:
    fingerprint: str
    state: AlertState
    severity: Severity
    channels: list[str]
    first_fired_at: float | None
    last_notified_at: float | None
    last_event_id: int | None
    alert: Alert  # the last firing alert


def _delivery(row: sqlite3.Row) -> Delivery:
    return Delivery(
        id=row["id"],
        channel=row["channel"],
        group_key=row["group_key"],
        alerts=[Alert.from_dict(d) for d in json.loads(row["alerts"])],
        status=row["status"],
        attempts=row["attempts"],
        created_at=row["created_at"],
        next_attempt_at=row["next_attempt_at"],
        last_attempt_at=row["last_attempt_at"],
        delivered_at=row["delivered_at"],
        last_error=row["last_error"],
        # Rows written before schema 2 had none: derive a stable one from the row id.
        # (A schema-1 outbox opened read-only, so not upgraded, has no such column.)
        delivery_key=(row["delivery_key"] if "delivery_key" in row.keys() else None) or f"delivery-{row['id']}",
    )


def _dumps(value: Any) -> str:
    return json.dumps(value, default=str, sort_keys=True)


class OutboxTransaction:
    """The primitives the dispatcher composes inside one atomic write transaction."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self._conn = conn

    def has_key(self, idempotency_key: str) -> bool:
        return self._conn.execute("SELECT 1 FROM alerts WHERE idempotency_key = ?", (idempotency_key,)).fetchone() is not None

    def record_alert(
        self, alert: Alert, *, idempotency_key: str | None, outcome: str, channels: Sequence[str], now: float
    ) -> int:
        cur = self._conn.execute(
            "INSERT INTO alerts (idempotency_key, fingerprint, state, severity, asset, check_name, model_version,"
            " environment, run_id, source_event_id, outcome, channels, submitted_at, alert)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
            (
                idempotency_key, alert.fingerprint, alert.state.value, alert.severity.value, alert.asset, alert.check,
                alert.model_version, alert.environment, alert.run_id, alert.source_event_id, outcome,
                json.dumps(list(channels)), now, _dumps(alert.to_dict()),
            ),
        )
        return int(cur.lastrowid or 0)

    def fingerprint_state(self, fingerprint: str) -> FingerprintState | None:
        row = self._conn.execute("SELECT * FROM fingerprints WHERE fingerprint = ?", (fingerprint,)).fetchone()
        return None if row is None else self._state(row)

    def firing_fingerprints(self, asset: str, check: str, environment: str) -> list[FingerprintState]:
        rows = self._conn.execute(
            "SELECT * FROM fingerprints WHERE asset = ? AND check_name = ? AND environment = ? AND state = 'firing'",
            (asset, check, environment),
        ).fetchall()
        return [self._state(r) for r in rows]

    @staticmethod
    def _state(row: sqlite3.Row) -> FingerprintState:
        return FingerprintState(
            fingerprint=row["fingerprint"],
            state=AlertState(row["state"]),
            severity=Severity(row["severity"]),
            channels=json.loads(row["channels"]),
            first_fired_at=row["first_fired_at"],
            last_notified_at=row["last_notified_at"],
            last_event_id=row["last_event_id"],
            alert=Alert.from_dict(json.loads(row["alert"])),
        )

    def save_fingerprint_state(
        self,
        alert: Alert,
        *,
        state: AlertState,
        severity: Severity,
        channels: Sequence[str],
        first_fired_at: float | None,
        last_notified_at: float | None,
        last_event_id: int | None,
        now: float,
    ) -> None:
        self._conn.execute(
            "INSERT INTO fingerprints (fingerprint, state, severity, asset, check_name, model_version, environment,"
            " channels, first_fired_at, last_notified_at, last_event_id, updated_at, alert)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
            " ON CONFLICT (fingerprint) DO UPDATE SET state = excluded.state, severity = excluded.severity,"
            " channels = excluded.channels, first_fired_at = excluded.first_fired_at,"
            " last_notified_at = excluded.last_notified_at, last_event_id = excluded.last_event_id,"
            " updated_at = excluded.updated_at, alert = excluded.alert",
            (
                alert.fingerprint, state.value, severity.value, alert.asset, alert.check, alert.model_version,
                alert.environment, json.dumps(sorted(set(channels))), first_fired_at, last_notified_at,
                last_event_id, now, _dumps(alert.to_dict()),
            ),
        )

    def channel_backoff_until(self, channel: str) -> float | None:
        """When the channel's backlog is next retried (pending rows that already failed), if any."""
        row = self._conn.execute(
            "SELECT MAX(next_attempt_at) FROM deliveries WHERE channel = ? AND status = 'pending' AND attempts > 0",
            (channel,),
        ).fetchone()
        return row[0]

    def enqueue(self, channel: str, group_key: str, alerts: Sequence[Alert], *, now: float, not_before: float) -> int:
        """Add `alerts` to the channel's pending, never-attempted, unleased message for `group_key`
        (so a group that is still waiting grows), or create one. Returns the delivery id."""
        row = self._conn.execute(
            "SELECT id, alerts FROM deliveries WHERE channel = ? AND group_key = ? AND status = 'pending'"
            " AND attempts = 0 AND lease_owner IS NULL ORDER BY id DESC LIMIT 1",
            (channel, group_key),
        ).fetchone()
        new = [a.to_dict() for a in alerts]
        if row is not None:
            merged = [d for d in json.loads(row["alerts"]) if d["fingerprint"] not in {n["fingerprint"] for n in new}]
            self._conn.execute("UPDATE deliveries SET alerts = ? WHERE id = ?", (_dumps(merged + new), row["id"]))
            return int(row["id"])
        cur = self._conn.execute(
            "INSERT INTO deliveries (channel, group_key, alerts, status, attempts, created_at, next_attempt_at, delivery_key)"
            " VALUES (?, ?, ?, 'pending', 0, ?, ?, ?)",
            (channel, group_key, _dumps(new), now, not_before, uuid.uuid4().hex),
        )
        return int(cur.lastrowid or 0)


class NotAnOutboxError(ValueError):
    """A path opened read-only is missing, a folder, or a file that is not an alert outbox."""


class AlertOutbox:
    """The persisted alert store and delivery queue at `path` (created with its parent directory).

    `read_only=True` opens an existing outbox for queries only (SQLite mode=ro): nothing is
    created or changed, and a path that is not an outbox is refused with NotAnOutboxError.
    """

    def __init__(self, path: str | Path, busy_timeout_seconds: float = 30.0, *, read_only: bool = False) -> None:
        self.path = Path(path)
        self.busy_timeout_seconds = float(busy_timeout_seconds)
        self.read_only = read_only
        if read_only:
            self._check_is_outbox()
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with self._connect() as conn:
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            try:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                if version > SCHEMA_VERSION:
                    raise RuntimeError(f"{self.path} has outbox schema {version}, newer than this code ({SCHEMA_VERSION})")
                has_deliveries = conn.execute("SELECT 1 FROM sqlite_master WHERE name = 'deliveries'").fetchone()
                for old_version in range(version, SCHEMA_VERSION):
                    for statement in MIGRATIONS.get(old_version, []) if has_deliveries else []:
                        conn.execute(statement)
                for statement in SCHEMA.split(";"):
                    if statement.strip():
                        conn.execute(statement)
                if version != SCHEMA_VERSION:  # unconditionally, it would rewrite the file at every open
                    conn.execute(f"PRAGMA user_version = {SCHEMA_VERSION}")
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise

    def __repr__(self) -> str:
        return f"AlertOutbox({str(self.path)!r})"

    def _check_is_outbox(self) -> None:
        if self.path.is_dir():
            raise NotAnOutboxError(f"{self.path} is a folder, not an alert outbox")
        if not self.path.exists():
            raise NotAnOutboxError(f"no alert outbox at {self.path}")
        try:
            with self._connect() as conn:
                version = conn.execute("PRAGMA user_version").fetchone()[0]
                tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
        except sqlite3.DatabaseError as exc:
            raise NotAnOutboxError(f"{self.path} is not an alert outbox ({exc})") from exc
        missing = [t for t in TABLES if t not in tables]
        if missing:
            raise NotAnOutboxError(
                f"{self.path} is not an alert outbox (a SQLite file without the table(s) {', '.join(missing)})"
            )
        if version > SCHEMA_VERSION:
            raise NotAnOutboxError(f"{self.path} has outbox schema {version}, newer than this code ({SCHEMA_VERSION})")

    @contextmanager
    def _connect(self) -> Iterator[sqlite3.Connection]:
        if self.read_only:
            # mode=ro on a WAL database creates its -wal and -shm files when no writer has them
            # open. Then nothing is in a -wal file (the last writer to close checkpointed it):
            # read the file as immutable, which creates nothing and takes no lock. (A writer
            # checkpointing in the middle of such a read can make it fail: read again.)
            writer_open = all(Path(f"{self.path}{suffix}").exists() for suffix in ("-wal", "-shm"))
            query = "mode=ro" if writer_open else "mode=ro&immutable=1"
            uri = f"{self.path.resolve().as_uri()}?{query}"
            conn = sqlite3.connect(uri, uri=True, timeout=self.busy_timeout_seconds, isolation_level=None)
        else:
            conn = sqlite3.connect(self.path, timeout=self.busy_timeout_seconds, isolation_level=None)
        try:
            conn.row_factory = sqlite3.Row
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_seconds * 1000)}")
            conn.execute("PRAGMA synchronous = FULL")
            yield conn
        finally:
            conn.close()

    @contextmanager
    def transaction(self) -> Iterator[OutboxTransaction]:
        """One atomic write transaction (BEGIN IMMEDIATE: writers queue up, readers go on)."""
        with self._connect() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield OutboxTransaction(conn)
            except BaseException:
                conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")

    # -- delivery lifecycle ------------------------------------------------------------

    def claim_due(self, *, now: float, owner: str, lease_seconds: float, limit: int = 500) -> list[Delivery]:
        """Lease the pending deliveries due at `now` (oldest first) to `owner`.

        A channel with a delivery still leased by another sender (sending now, or killed mid-send
        and waiting out its lease) gets nothing newer claimed: its messages stay in order."""
        with self.transaction() as tx:
            rows = tx._conn.execute(
                "SELECT * FROM deliveries AS d WHERE status = 'pending' AND next_attempt_at <= ?"
                " AND (lease_until IS NULL OR lease_until <= ?)"
                " AND NOT EXISTS (SELECT 1 FROM deliveries AS busy WHERE busy.channel = d.channel"
                "   AND busy.status = 'pending' AND busy.id < d.id AND busy.lease_until > ?)"
                " ORDER BY id LIMIT ?",
                (now, now, now, limit),
            ).fetchall()
            tx._conn.executemany(
                "UPDATE deliveries SET lease_owner = ?, lease_until = ? WHERE id = ?",
                [(owner, now + lease_seconds, r["id"]) for r in rows],
            )
        return [_delivery(r) for r in rows]

    def _finish(self, delivery_id: int, owner: str, sql: str, params: tuple[Any, ...]) -> bool:
        with self._connect() as conn:
            cur = conn.execute(
                f"UPDATE deliveries SET {sql}, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ? AND lease_owner = ? AND status = 'pending'",
                (*params, delivery_id, owner),
            )
            return cur.rowcount == 1

    def mark_delivered(self, delivery_id: int, *, owner: str, now: float) -> bool:
        return self._finish(
            delivery_id, owner,
            "status = 'delivered', attempts = attempts + 1, last_attempt_at = ?, delivered_at = ?", (now, now),
        )

    def mark_retry(self, delivery_id: int, *, owner: str, now: float, next_attempt_at: float, error: str) -> bool:
        return self._finish(
            delivery_id, owner,
            "attempts = attempts + 1, last_attempt_at = ?, next_attempt_at = ?, last_error = ?",
            (now, next_attempt_at, error),
        )

    def mark_dead(self, delivery_id: int, *, owner: str, now: float, error: str, attempted: bool = True) -> bool:
        return self._finish(
            delivery_id, owner,
            f"status = 'dead', attempts = attempts + {1 if attempted else 0}, last_attempt_at = ?, last_error = ?",
            (now, error),
        )

    def defer(self, delivery_id: int, *, owner: str, next_attempt_at: float, note: str) -> bool:
        """Release a claimed delivery without an attempt (its channel failed earlier in this pass)."""
        return self._finish(delivery_id, owner, "next_attempt_at = MAX(next_attempt_at, ?), last_error = ?", (next_attempt_at, note))

    def requeue(self, delivery_id: int, *, now: float, force: bool = False) -> None:
        """Send a dead letter again at the next pass (e.g. after fixing a channel's configuration).

        Refused, with the reason (ValueError), for a delivery that is not a dead letter, and for a
        trigger whose alerts have all been resolved since (it would page for a problem that is
        over) unless `force`."""
        with self.transaction() as tx:
            row = tx._conn.execute("SELECT * FROM deliveries WHERE id = ?", (delivery_id,)).fetchone()
            if row is None or row["status"] != "dead":
                raise ValueError(f"delivery {delivery_id} is not a dead letter" + (f" (it is {row['status']})" if row else ""))
            firing = [a for a in _delivery(row).alerts if a.firing]
            resolved_at = {
                a.fingerprint: r["updated_at"]
                for a in firing
                if (r := tx._conn.execute("SELECT state, updated_at FROM fingerprints WHERE fingerprint = ?",
                                          (a.fingerprint,)).fetchone()) is not None and r["state"] == AlertState.RESOLVED.value
            }
            if firing and len(resolved_at) == len(firing) and not force:
                alert = firing[0]
                raise ValueError(
                    f"delivery {delivery_id} would fire {alert.asset}/{alert.check}, resolved at "
                    f"{_iso(resolved_at[alert.fingerprint])}; pass --force to send it anyway"
                )
            tx._conn.execute(
                "UPDATE deliveries SET status = 'pending', next_attempt_at = ?, lease_owner = NULL, lease_until = NULL"
                " WHERE id = ?",
                (now, delivery_id),
            )

    # -- queries (for the CLI and tests) -------------------------------------------------

    def deliveries(self, status: str | None = None, channel: str | None = None, limit: int = 1000) -> list[Delivery]:
        clauses, params = [], []
        if status is not None:
            clauses.append("status = ?")
            params.append(status)
        if channel is not None:
            clauses.append("channel = ?")
            params.append(channel)
        where = f"WHERE {' AND '.join(clauses)}" if clauses else ""
        with self._connect() as conn:
            rows = conn.execute(f"SELECT * FROM deliveries {where} ORDER BY id LIMIT ?", (*params, limit)).fetchall()
        return [_delivery(r) for r in rows]

    def pending(self, limit: int = 1000) -> list[Delivery]:
        return self.deliveries("pending", limit=limit)

    def dead_letters(self, limit: int = 1000) -> list[Delivery]:
        return self.deliveries("dead", limit=limit)

    def alerts(self, limit: int = 100, model: str | None = None) -> list[AlertRecord]:
        """The most recent `limit` alerts and resolutions submitted (of one model, if given), newest first."""
        with self._connect() as conn:
            if model is None:
                rows = conn.execute("SELECT * FROM alerts ORDER BY id DESC LIMIT ?", (limit,)).fetchall()
            else:
                rows = conn.execute(
                    "SELECT * FROM alerts WHERE json_extract(alert, '$.model') = ? ORDER BY id DESC LIMIT ?", (model, limit)
                ).fetchall()
        return [
            AlertRecord(
                id=r["id"],
                idempotency_key=r["idempotency_key"],
                outcome=r["outcome"],
                channels=json.loads(r["channels"]),
                submitted_at=r["submitted_at"],
                alert=Alert.from_dict(json.loads(r["alert"])),
            )
            for r in rows
        ]

    def newest_source_event(self, check: str) -> int | None:
        """The newest source event id among the alerts recorded for `check` (None: none has one)."""
        with self._connect() as conn:
            return conn.execute("SELECT MAX(source_event_id) FROM alerts WHERE check_name = ?", (check,)).fetchone()[0]

    def newest_run_alerted(self, check: str) -> str | None:
        """The run of the newest alert recorded for `check` (None: none)."""
        with self._connect() as conn:
            row = conn.execute(
                "SELECT run_id FROM alerts WHERE check_name = ? AND run_id IS NOT NULL ORDER BY id DESC LIMIT 1", (check,)
            ).fetchone()
        return row[0] if row else None

    def firing(self) -> list[FingerprintState]:
        """Fingerprints currently firing (notified and not resolved)."""
        with self._connect() as conn:
            rows = conn.execute("SELECT * FROM fingerprints WHERE state = 'firing' ORDER BY updated_at DESC").fetchall()
        return [OutboxTransaction._state(r) for r in rows]

    def counts(self) -> dict[str, int]:
        """Deliveries by status, plus the number of alerts recorded: for dashboards and benchmarks."""
        with self._connect() as conn:
            out = {"pending": 0, "delivered": 0, "dead": 0}
            out.update({s: n for s, n in conn.execute("SELECT status, COUNT(*) FROM deliveries GROUP BY status")})
            out["alerts"] = conn.execute("SELECT COUNT(*) FROM alerts").fetchone()[0]
            out["firing"] = conn.execute("SELECT COUNT(*) FROM fingerprints WHERE state = 'firing'").fetchone()[0]
        return out
