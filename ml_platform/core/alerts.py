"""Alerts: what a failed check becomes, and the JSONL file channel.

Severity follows the seed's monitor: HIGH (model quality), MEDIUM (data drift),
LOW (pipeline run time). Checks map to a severity by name; unknown checks fall back
to their Dagster severity (ERROR -> HIGH, WARN -> MEDIUM).
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any


class Severity(str, Enum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"


@dataclass(frozen=True)
class CheckRule:
    severity: Severity
    recommended_action: str


# The seed's wording, per check. Config may override severities (see AlertRules).
DEFAULT_CHECK_RULES: dict[str, CheckRule] = {
    "accuracy_above_threshold": CheckRule(Severity.HIGH, "Consider retraining model with more recent data"),
    "pandera_schema": CheckRule(Severity.MEDIUM, "Inspect the quarantined rows and fix the source data"),
    "production_model_accuracy": CheckRule(Severity.HIGH, "Consider retraining model with more recent data"),
    "data_drift": CheckRule(Severity.MEDIUM, "Review data pipeline and consider model retraining"),
    "prediction_drift": CheckRule(Severity.MEDIUM, "Review data pipeline and consider model retraining"),
    "pipeline_run_time": CheckRule(Severity.LOW, "Investigate performance bottlenecks"),
}


@dataclass(frozen=True)
class Alert:
    severity: Severity
    asset: str
    check: str
    message: str
    recommended_action: str
    run_id: str | None
    source_event_id: int | None = None
    model_version: str | None = None
    metadata: dict[str, Any] = field(default_factory=dict)
    timestamp: str = field(default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds"))

    @property
    def fingerprint(self) -> str:
        """Identity for deduplication: the same check on the same asset and model version."""
        key = "|".join([self.asset, self.check, self.model_version or ""])
        return hashlib.sha256(key.encode()).hexdigest()[:16]

    def to_dict(self) -> dict[str, Any]:
        record = asdict(self)
        record["severity"] = self.severity.value
        record["fingerprint"] = self.fingerprint
        return record

    def one_line(self) -> str:
        return f"[{self.severity.value}] {self.asset}/{self.check}: {self.message} -- Action: {self.recommended_action}"


def alert_for_failed_check(
    *,
    asset: str,
    check: str,
    dagster_severity: str,
    description: str | None,
    metadata: dict[str, Any],
    run_id: str | None,
    event_id: int | None,
    rules: dict[str, CheckRule] | None = None,
) -> Alert:
    rules = DEFAULT_CHECK_RULES if rules is None else rules
    rule = rules.get(check)
    if rule is None:
        severity = Severity.HIGH if dagster_severity.upper() == "ERROR" else Severity.MEDIUM
        rule = CheckRule(severity, "Open the run in the Dagster UI and inspect the check's metadata")
    action = str(metadata.get("recommended_action") or rule.recommended_action)
    # A check may carry its configured alert severity in its metadata; it wins over the default.
    configured = str(metadata.get("alert_severity", "")).upper()
    return Alert(
        severity=Severity(configured) if configured in Severity.__members__ else rule.severity,
        asset=asset,
        check=check,
        message=description or f"check {check} on {asset} failed",
        recommended_action=action,
        run_id=run_id,
        source_event_id=event_id,
        model_version=_as_str(metadata.get("model_version")),
        metadata=metadata,
    )


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


class JsonlAlertFile:
    """Appends alerts, one JSON object per line; safe for concurrent writers (flock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, alerts: list[Alert]) -> None:
        if not alerts:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        payload = "".join(json.dumps(a.to_dict(), default=str) + "\n" for a in alerts)
        with self.path.open("a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
            fcntl.flock(f, fcntl.LOCK_UN)

    def last_event_id(self) -> int | None:
        """The source event id of the last alert written (alerts are appended in event order)."""
        if not self.path.exists():
            return None
        with self.path.open("rb") as f:
            f.seek(0, os.SEEK_END)
            # Read back just far enough to hold the last complete line.
            size, chunk = f.tell(), 4096
            while True:
                start = max(0, size - chunk)
                f.seek(start)
                lines = f.read().splitlines()
                if len(lines) > 1 or start == 0:
                    break
                chunk *= 2
        for line in reversed(lines):
            if line.strip():
                return json.loads(line).get("source_event_id")
        return None

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
