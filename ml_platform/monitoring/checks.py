"""Monitoring a production model on new, schema-validated data: what each monitoring check
decides, in plain Python (the Dagster checks in orchestration/monitoring.py only wrap these).

The production model's drift reference (a compact summary of its training data and its
predicted class shares) is stored with its version, so monitoring never needs the training
data again. A check that cannot evaluate says why (`NotEvaluated`); it never passes by default.
"""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data.sources import DatasetSpec
from ml_platform.declaration import DataDriftCheck
from ml_platform.monitoring.drift import (
    DRIFT_METHODS,
    DriftInputError,
    DriftRule,
    ReferenceSummary,
    class_share_psi,
    class_shares,
    compute_drift,
    summarize_reference,
)

REFERENCE_FILE = "drift_reference.json"


class NotEvaluated(Exception):
    """A check could not evaluate; the message says why, in the project's words. `expected`:
    the normal state of things (no production model before the first training), not a problem."""

    def __init__(self, reason: str, expected: bool = False) -> None:
        super().__init__(reason)
        self.expected = expected


@dataclass(frozen=True)
class ModelReference:
    """What monitoring needs to know about the training data, stored with the model version."""

    features: ReferenceSummary
    prediction_shares: dict[str, float]

    def to_json(self) -> bytes:
        document = {"features": self.features.to_dict(), "prediction_shares": self.prediction_shares}
        return json.dumps(document, separators=(",", ":")).encode()  # compact: the grids are most of it

    @classmethod
    def from_json(cls, raw: bytes) -> ModelReference:
        data = json.loads(raw)
        return cls(ReferenceSummary.from_dict(data["features"]), data["prediction_shares"])


def build_reference(train: pd.DataFrame, spec: DatasetSpec, model: Any) -> ModelReference:
    x = train[spec.feature_names]
    # Numeric features only until categorical drift (category counts) lands on the monitor branch.
    numeric = [f.name for f in spec.features if f.kind == "numeric"]
    return ModelReference(summarize_reference(x, numeric), class_shares(model.predict(x)))


@dataclass(frozen=True)
class CheckOutcome:
    passed: bool
    description: str
    figures: dict[str, Any] = field(default_factory=dict)  # what the check measured, for its metadata


def require_same_features(version: str, model_features: Sequence[str], spec: DatasetSpec) -> None:
    """Monitoring compares like with like: the data must carry the production model's features."""
    missing = [f for f in model_features if f not in spec.feature_names]
    new = [f for f in spec.feature_names if f not in model_features]
    if missing or new:
        raise NotEvaluated(
            f"the data's feature set differs from production {version}'s (missing {missing}, new {new}); "
            "monitoring resumes once a model of this feature set is in production"
        )


def drift_rules(settings: DataDriftCheck) -> tuple[DriftRule, dict[str, DriftRule]]:
    """The check's rule and each feature's: an override's unset fields are the check's."""
    rule = DriftRule(tuple(settings.method), settings.psi_threshold, settings.ks_threshold, settings.wasserstein_threshold)
    overrides = {
        name: replace(rule, **{k: tuple(v) if k == "method" else v
                               for k in ("method", "psi_threshold", "ks_threshold", "wasserstein_threshold")
                               if (v := getattr(override, k)) is not None})
        for name, override in settings.features.items()
    }
    return rule, overrides


METHOD_LABELS = {"psi": "PSI", "ks": "KS", "wasserstein": "Wasserstein"}
DRIFT_TABLE_COLUMNS = [
    "feature", "psi", "ks_statistic", "ks_precision", "ks_pvalue", "wasserstein", "wasserstein_precision",
    "method", "psi_threshold", "ks_threshold", "wasserstein_threshold", "fired", "drifted", "n_missing",
]


def precision(bound: float) -> str:
    """'exact', or 'within ±x' with x the bound rounded up to two significant digits."""
    if bound == 0:
        return "exact"
    value = Decimal(repr(bound))  # decimal digits: binary floats would round 5e-05 up to 5.1e-05
    rounded = value.quantize(Decimal(1).scaleb(value.adjusted() - 1), rounding=ROUND_CEILING)
    return f"within ±{rounded.normalize():f}"


def data_drift(
    reference: ModelReference, frame: pd.DataFrame, settings: DataDriftCheck
) -> tuple[CheckOutcome, pd.DataFrame]:
    """PSI, KS and Wasserstein of every feature against the training data, decided by the declared
    method(s); the per-feature table with it. Data that cannot be measured is NotEvaluated."""
    rule, feature_rules = drift_rules(settings)
    unknown = [name for name in feature_rules if name not in reference.features.feature_names]
    if unknown:
        raise NotEvaluated(
            f"checks.data_drift.features names feature(s) the model does not have: {', '.join(map(repr, unknown))}"
        )
    try:
        report = compute_drift(reference.features, frame, rule=rule, feature_rules=feature_rules,
                               drift_share=settings.drift_share)
    except DriftInputError as exc:
        raise NotEvaluated(str(exc)) from exc
    table = report.to_frame().assign(
        ks_precision=lambda t: t["ks_bound"].map(precision),
        wasserstein_precision=lambda t: t["wasserstein_bound"].map(precision),
    )[DRIFT_TABLE_COLUMNS]
    drifted = [f for f in report.features if f.drifted]
    why = "; ".join(
        f"{f.feature}: " + ", ".join(
            f"{METHOD_LABELS[m]} {f.value(m):.2f} > {f.rule.threshold(m):.2f}" for m in f.fired
        )
        for f in drifted
    )
    counted = f"{len(drifted)} of {len(report.features)} features drifted"
    maxima = ", ".join(
        f"max {METHOD_LABELS[m]} {max(f.value(m) for f in report.features):.3f} (threshold: {rule.threshold(m):.2f})"
        for m in rule.method
    )
    if report.dataset_drift:
        description = f"Data drift detected: {counted} ({why})"
    elif drifted:
        description = f"no dataset drift: {counted}, below the drift share {settings.drift_share:.2f} ({why})"
    else:
        description = f"no drift: {counted}; {maxima}"
    figures: dict[str, Any] = {
        "drifted_features": ", ".join(f.feature for f in drifted) or "none",
        "share_drifted": report.share_drifted,
        "dataset_rule": "any feature drifts" if settings.drift_share is None
        else f"at least {settings.drift_share:.0%} of the features drift",
        "method": ", ".join(rule.method),
        **{f"{m}_threshold": rule.threshold(m) for m in DRIFT_METHODS},
        **{f"max_{m}": max(f.value(m) for f in report.features) for m in DRIFT_METHODS},
    }
    return CheckOutcome(not report.dataset_drift, description, figures), table


def prediction_drift(predictions: np.ndarray, reference: ModelReference, psi_threshold: float) -> CheckOutcome:
    """PSI of the predicted class shares on new data against those on the training data."""
    shares = class_shares(predictions)
    psi = class_share_psi(reference.prediction_shares, shares)
    passed = psi <= psi_threshold
    return CheckOutcome(
        passed,
        f"prediction drift PSI {psi:.3f} <= {psi_threshold:.2f}" if passed
        else f"Prediction drift detected: PSI {psi:.2f} (threshold: {psi_threshold:.2f})",
        {"psi": psi, "threshold": psi_threshold, "training_shares": reference.prediction_shares, "current_shares": shares},
    )


def production_accuracy(predictions: np.ndarray, labels: pd.Series, min_accuracy: float) -> CheckOutcome:
    """Accuracy of the production model on the rows that carry a label."""
    labelled = labels.notna().to_numpy()
    if not labelled.any():
        raise NotEvaluated("the newest data has no labelled rows")
    accuracy = float((predictions[labelled] == labels.to_numpy()[labelled]).mean())
    rows = int(labelled.sum())
    passed = accuracy >= min_accuracy
    return CheckOutcome(
        passed,
        f"production accuracy {accuracy:.2%} on {rows} labelled rows meets {min_accuracy:.2%}" if passed
        else f"Model accuracy dropped to {accuracy:.2%} (threshold: {min_accuracy:.2%})",
        {"accuracy": accuracy, "threshold": min_accuracy, "labelled_rows": rows},
    )
