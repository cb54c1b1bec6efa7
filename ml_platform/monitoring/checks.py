"""Monitoring a production model on new data: its drift reference, prediction drift and
quality on labelled data. Thresholds default to the seed's monitor."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

import pandas as pd

from ml_platform.data.sources import DatasetSpec
from ml_platform.monitoring.drift import ReferenceSummary, class_share_psi, class_shares, summarize_reference

REFERENCE_FILE = "drift_reference.json"
MIN_ACCURACY = 0.70
MAX_PSI = 0.20
MAX_EXECUTION_SECONDS = 300.0


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


def numeric_features(frame: pd.DataFrame, features: list[str]) -> pd.DataFrame:
    """New data may be raw: text cells become NaN, which the drift statistics skip and count."""
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"new data lacks the model's feature(s) {missing}")
    return frame[features].apply(pd.to_numeric, errors="coerce")


@dataclass(frozen=True)
class PredictionDrift:
    psi: float
    reference_shares: dict[str, float]
    current_shares: dict[str, float]


def prediction_drift(model: Any, current: pd.DataFrame, reference: ModelReference) -> PredictionDrift:
    rows = current.dropna()
    if rows.empty:
        raise ValueError("new data has no row with every feature present; cannot compute prediction drift")
    shares = class_shares(model.predict(rows))
    return PredictionDrift(class_share_psi(reference.prediction_shares, shares), reference.prediction_shares, shares)


def labelled_accuracy(model: Any, frame: pd.DataFrame, spec: DatasetSpec) -> tuple[float, int] | None:
    """Accuracy of `model` on the rows of `frame` that carry a known label, or None if none do."""
    if spec.target not in frame.columns:
        return None
    x = numeric_features(frame, spec.feature_names)
    labelled = frame[spec.target].notna() & x.notna().all(axis=1)
    if spec.classes:
        labelled &= frame[spec.target].isin(list(spec.classes))
    if not labelled.any():
        return None
    predicted = model.predict(x[labelled])
    return float((predicted == frame.loc[labelled, spec.target].to_numpy()).mean()), int(labelled.sum())
