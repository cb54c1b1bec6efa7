"""Monitoring a production model on new, schema-validated data: what each monitoring check
decides, in plain Python (the Dagster checks in orchestration/monitoring.py only wrap these).

The production model's drift reference (a compact summary of its training data and its
predicted class shares) is stored with its version, so monitoring never needs the training
data again. A check that cannot evaluate says why (`NotEvaluated`); it never passes by default.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data.sources import DatasetSpec
from ml_platform.monitoring.drift import ReferenceSummary, class_share_psi, class_shares, compute_drift, summarize_reference

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
        return json.dumps({"features": self.features.to_dict(), "prediction_shares": self.prediction_shares}).encode()

    @classmethod
    def from_json(cls, raw: bytes) -> ModelReference:
        data = json.loads(raw)
        return cls(ReferenceSummary.from_dict(data["features"]), data["prediction_shares"])


def build_reference(train: pd.DataFrame, spec: DatasetSpec, model: Any) -> ModelReference:
    x = train[spec.feature_names]
    return ModelReference(summarize_reference(x), class_shares(model.predict(x)))


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


def data_drift(
    reference: ModelReference, frame: pd.DataFrame, psi_threshold: float, drift_share: float
) -> tuple[CheckOutcome, pd.DataFrame]:
    """PSI and KS of every feature against the training data; the per-feature table with it."""
    report = compute_drift(
        reference.features, frame, psi_threshold=psi_threshold, dataset_psi_threshold=psi_threshold,
        drift_share_threshold=drift_share,
    )
    table = report.to_frame()[["feature", "psi", "ks_statistic", "ks_pvalue", "drifted", "n_missing"]]
    max_psi = float(table["psi"].max())
    drifted = list(report.drifted_features)
    description = (
        f"Data drift detected: {len(drifted)} of {len(table)} features drifted, max PSI {max_psi:.2f} "
        f"(threshold: {psi_threshold:.2f}); drifted: {', '.join(drifted)}"
        if report.dataset_drift
        else f"no drift: max PSI {max_psi:.3f} <= {psi_threshold:.2f}"
    )
    figures = {"max_psi": max_psi, "threshold": psi_threshold, "share_drifted": report.share_drifted,
               "drifted_features": ", ".join(drifted) or "none"}
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
