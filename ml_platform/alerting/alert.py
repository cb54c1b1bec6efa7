"""Alerts: what a failed check becomes, and the JSONL file channel.

Severity follows the seed's monitor: HIGH (model quality), MEDIUM (data drift),
LOW (pipeline run time). Checks map to a severity by name; unknown checks fall back
to their Dagster severity (ERROR -> HIGH, WARN -> MEDIUM).

An alert is FIRING (a check failed) or RESOLVED (a check that was firing passed again).
Its fingerprint (asset, check, model version, environment, and for a failed run what failed:
the step and the error class) is its identity for deduplication and for matching a
resolution to what fired: two different failures are two alerts, never one suppressed. Delivery lives in
channels (where to), outbox (persisted queue) and dispatch (policy), beside this module.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import math
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from enum import Enum
from pathlib import Path
from typing import Any
from urllib.parse import quote

DEFAULT_ENVIRONMENT = "production"


class Severity(str, Enum):
    HIGH = "HIGH"
    MEDIUM = "MEDIUM"
    LOW = "LOW"

    @property
    def rank(self) -> int:
        """Higher is more severe (HIGH=3)."""
        return {"HIGH": 3, "MEDIUM": 2, "LOW": 1}[self.value]


class AlertState(str, Enum):
    FIRING = "firing"
    RESOLVED = "resolved"


def run_url(webserver_base_url: str | None, run_id: str | None) -> str | None:
    """Link to a run in the Dagster UI: <base>/runs/<run_id>; None without a base URL or run."""
    if not webserver_base_url or not run_id:
        return None
    return f"{webserver_base_url.rstrip('/')}/runs/{quote(run_id, safe='')}"


def alert_fingerprint(
    asset: str, check: str, model_version: str | None, environment: str, cause: str | None = None
) -> str:
    """Stable identity of an alert: the same check on the same asset, model version and
    environment, failing for the same cause (when one is given, e.g. a run's step and error class)."""
    key = "|".join([asset, check, model_version or "", environment, *([cause] if cause else [])])
    return hashlib.sha256(key.encode()).hexdigest()[:16]


@dataclass(frozen=True)
class CheckRule:
    severity: Severity
    recommended_action: str


# The seed's wording, per check. A check's `alert_severity` metadata (its config) overrides the severity.
DEFAULT_CHECK_RULES: dict[str, CheckRule] = {
    "accuracy_above_threshold": CheckRule(Severity.HIGH, "Consider retraining model with more recent data"),
    "pandera_schema": CheckRule(Severity.MEDIUM, "Inspect the quarantined rows and fix the source data"),
    "production_model_accuracy": CheckRule(Severity.HIGH, "Consider retraining model with more recent data"),
    "data_drift": CheckRule(Severity.MEDIUM, "Review data pipeline and consider model retraining"),
    "prediction_drift": CheckRule(Severity.MEDIUM, "Review data pipeline and consider model retraining"),
    "missing_values": CheckRule(Severity.MEDIUM, "Find which upstream change emptied the named columns and fix the source"),
    "estimated_accuracy": CheckRule(
        Severity.HIGH, "Expect lower accuracy once labels arrive: review the drifted features and consider retraining"
    ),
    "pipeline_run_time": CheckRule(Severity.LOW, "Investigate performance bottlenecks"),
    "smoke_test": CheckRule(Severity.HIGH, "Do not release this version: read the failures, fix the model or its data, retrain"),
    "prediction_outputs": CheckRule(Severity.HIGH, "Inspect the serving model(s) named in the description; roll back if needed"),
    "canary_rollout": CheckRule(
        Severity.HIGH, "The champion serves every row again: compare the candidate with it, fix the model or its data, retrain"
    ),
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
    environment: str = DEFAULT_ENVIRONMENT
    run_url: str | None = None
    state: AlertState = AlertState.FIRING
    model: str | None = None  # the declared model it concerns (its routes apply), if any
    # What failed, when the check alone does not say (a run: "<step>:<error class>"); part of the fingerprint.
    cause: str | None = None
    # What the dispatcher did with it: notified | suppressed (repeat within the interval) | unrouted.
    outcome: str = "notified"

    def __post_init__(self) -> None:
        # Accept plain strings ("HIGH", "resolved") from config and JSON.
        object.__setattr__(self, "severity", Severity(self.severity))
        object.__setattr__(self, "state", AlertState(self.state))

    @property
    def fingerprint(self) -> str:
        """Identity for deduplication: the same check on the same asset, model version and environment."""
        return alert_fingerprint(self.asset, self.check, self.model_version, self.environment, self.cause)

    @property
    def firing(self) -> bool:
        return self.state is AlertState.FIRING

    def to_dict(self) -> dict[str, Any]:
        record = {k: getattr(self, k) for k in self.__dataclass_fields__}
        record["metadata"] = _jsonable(self.metadata)
        record["severity"] = self.severity.value
        record["state"] = self.state.value
        record["fingerprint"] = self.fingerprint
        return record

    @classmethod
    def from_dict(cls, record: dict[str, Any]) -> "Alert":
        """Inverse of to_dict (unknown keys such as "fingerprint" are ignored)."""
        return cls(**{k: v for k, v in record.items() if k in cls.__dataclass_fields__})

    def one_line(self) -> str:
        prefix = "RESOLVED " if self.state is AlertState.RESOLVED else ""
        if self.outcome != "notified":
            prefix = f"({self.outcome}) {prefix}"
        return (
            f"{prefix}[{self.severity.value}] {self.asset}/{self.check}: {self.message}"
            f" -- Action: {self.recommended_action}"
        )


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
    environment: str = DEFAULT_ENVIRONMENT,
    webserver_base_url: str | None = None,
    model: str | None = None,
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
        environment=environment,
        run_url=run_url(webserver_base_url, run_id),
        model=model,
    )


def _as_str(value: Any) -> str | None:
    return None if value is None else str(value)


def _jsonable(value: Any) -> Any:
    """A JSON-serializable copy: containers kept, other leaves as str (as json.dumps(default=str))."""
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # NaN/inf are not JSON
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    if isinstance(value, Enum):
        return _jsonable(value.value)
    if isinstance(value, dict):
        return {str(k): _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [_jsonable(v) for v in value]
    return str(value)


class JsonlAlertFile:
    """Appends alerts, one JSON object per line; safe for concurrent writers (flock)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)

    def append(self, alerts: list[Alert], delivery_key: str | None = None) -> None:
        """Append `alerts`; `delivery_key` (the same on a resend after a crash) goes on each line,
        so a reader can drop the repeat."""
        if not alerts:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        extra = {"delivery_key": delivery_key} if delivery_key else {}
        payload = "".join(json.dumps({**a.to_dict(), **extra}, default=str) + "\n" for a in alerts)
        with self.path.open("a", encoding="utf-8") as f:
            fcntl.flock(f, fcntl.LOCK_EX)
            f.write(payload)
            f.flush()
            os.fsync(f.fileno())
            fcntl.flock(f, fcntl.LOCK_UN)

    def read(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        with self.path.open(encoding="utf-8") as f:
            return [json.loads(line) for line in f if line.strip()]
