"""Monitoring a production model on new, schema-validated data: what each monitoring check
decides, in plain Python (the Dagster checks in orchestration/monitoring.py only wrap these).

The production model's drift reference (a compact summary of its training data and its
predicted class shares) is stored with its version, so monitoring never needs the training
data again. A check that cannot evaluate says why (`NotEvaluated`); it never passes by default.
"""

from __future__ import annotations

import json
from decimal import ROUND_CEILING, Decimal
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data.sources import DatasetSpec
from ml_platform.declaration import DataDriftCheck
from ml_platform.monitoring.drift import (
    CATEGORICAL_METHODS,
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
class ConfidenceCalibration:
    """How often the model is right at each confidence (max predicted probability), measured on
    data it was not fitted on: the rows in equal-count bins of confidence, each bin's mean
    confidence and observed accuracy, the accuracies made non-decreasing (isotonic, weighted by
    rows). Mapping a row's confidence through it (linear between bins, the end bins' values
    beyond them) gives the row's expected accuracy even when the model's probabilities are
    over- or under-confident."""

    confidence: tuple[float, ...]  # each bin's mean confidence, non-decreasing
    accuracy: tuple[float, ...]  # each bin's observed accuracy, made non-decreasing
    rows: int  # rows it was measured on
    measured_on: str  # holdout | training data

    def expected_accuracy(self, confidence: np.ndarray) -> np.ndarray:
        return np.interp(confidence, self.confidence, self.accuracy)  # clipped to the ends outside

    def to_dict(self) -> dict[str, Any]:
        return {"confidence": list(self.confidence), "accuracy": list(self.accuracy), "rows": self.rows,
                "measured_on": self.measured_on}

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ConfidenceCalibration:
        return cls(tuple(map(float, data["confidence"])), tuple(map(float, data["accuracy"])), int(data["rows"]),
                   str(data["measured_on"]))


# Rows per confidence bin: a plain isotonic fit on 800 holdout rows had end steps resting on a
# handful of rows (its lowest read 0.0 and 0.25 for a binary model, which is never below 0.5 in
# truth); 100 rows give a bin accuracy within about +-0.05 (one standard error).
CALIBRATION_ROWS_PER_BIN = 100
CALIBRATION_MAX_BINS = 20
# Fewer labelled rows (5 bins) and the estimate assumes calibrated probabilities instead.
MIN_CALIBRATION_ROWS = 500


def fit_confidence_calibration(model: Any, x: pd.DataFrame, labels: pd.Series, measured_on: str) -> ConfidenceCalibration | None:
    """The model's reliability on labelled data (None: it has no predict_proba, or fewer than
    MIN_CALIBRATION_ROWS labelled rows)."""
    from sklearn.isotonic import IsotonicRegression

    labelled = labels.notna().to_numpy()
    if not hasattr(model, "predict_proba") or labelled.sum() < MIN_CALIBRATION_ROWS:
        return None
    probabilities = np.asarray(model.predict_proba(x[labelled]))
    predicted = np.asarray(model.classes_)[probabilities.argmax(axis=1)]
    correct = (predicted == labels.to_numpy()[labelled]).astype(np.float64)
    confidence = probabilities.max(axis=1)
    n_bins = min(CALIBRATION_MAX_BINS, correct.size // CALIBRATION_ROWS_PER_BIN)
    bins = np.array_split(np.argsort(confidence, kind="stable"), n_bins)
    bin_confidence = np.array([confidence[b].mean() for b in bins])
    bin_accuracy = np.array([correct[b].mean() for b in bins])
    weights = np.array([b.size for b in bins], dtype=np.float64)
    monotone = IsotonicRegression(y_min=0.0, y_max=1.0).fit(bin_confidence, bin_accuracy, sample_weight=weights)
    return ConfidenceCalibration(tuple(bin_confidence.tolist()), tuple(monotone.predict(bin_confidence).tolist()),
                                 int(correct.size), measured_on)


@dataclass(frozen=True)
class ModelReference:
    """What monitoring needs to know about the training data, stored with the model version."""

    features: ReferenceSummary
    prediction_shares: dict[str, float]
    calibration: ConfidenceCalibration | None = None  # None: estimated accuracy assumes calibrated probabilities

    def to_json(self) -> bytes:
        document: dict[str, Any] = {"features": self.features.to_dict(), "prediction_shares": self.prediction_shares}
        if self.calibration is not None:
            document["calibration"] = self.calibration.to_dict()
        return json.dumps(document, separators=(",", ":")).encode()  # compact: the grids are most of it

    @classmethod
    def from_json(cls, raw: bytes) -> ModelReference:
        data = json.loads(raw)
        calibration = data.get("calibration")
        return cls(ReferenceSummary.from_dict(data["features"]), data["prediction_shares"],
                   ConfidenceCalibration.from_dict(calibration) if calibration else None)


REFERENCE_MAX_ROWS = 1_000_000


def bounded_sample(frame: pd.DataFrame, max_rows: int = REFERENCE_MAX_ROWS, seed: int = 0) -> pd.DataFrame:
    """`frame` itself up to max_rows rows, else a seeded uniform sample of max_rows of its rows
    (in their order)."""
    if len(frame) <= max_rows:
        return frame
    return frame.take(np.sort(np.random.default_rng(seed).choice(len(frame), max_rows, replace=False)))


def build_reference(train: pd.DataFrame, spec: DatasetSpec, model: Any, holdout: pd.DataFrame | None = None) -> ModelReference:
    """The training data's summary, the predicted class shares on it, and the model's reliability
    measured on `holdout` (rows it was not fitted on; the training rows when there is none, which
    flatters an overfitted model).

    Each is measured on at most REFERENCE_MAX_ROWS rows (a seeded uniform sample above that): at
    10,000,000 rows this took 6 s of a 68 s run (sorting every feature, predicting every training
    row), and a 1,000,000-row sample moves the KS statistic by at most 0.0014 (95%), the PSI and
    class shares by less, against drift thresholds of 0.1 and more."""
    train = bounded_sample(train, REFERENCE_MAX_ROWS)
    holdout = None if holdout is None else bounded_sample(holdout, REFERENCE_MAX_ROWS)
    x = train[spec.feature_names]
    measured, measured_on = (train, "training data") if holdout is None or holdout.empty else (holdout, "holdout")
    calibration = fit_confidence_calibration(model, measured[spec.feature_names], measured[spec.target], measured_on)
    return ModelReference(summarize_reference(x, categorical=spec.categorical_names), class_shares(model.predict(x)),
                          calibration)


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


THRESHOLD_FIELDS = ("psi_threshold", "ks_threshold", "wasserstein_threshold", "jensen_shannon_threshold")


def drift_rules(settings: DataDriftCheck, categorical: Sequence[str] = ()) -> tuple[DriftRule, dict[str, DriftRule]]:
    """The check's rule and each feature's: an override's unset fields are the check's; its
    `method` is the feature's kind's (`categorical`: the categorical features' names)."""
    rule = DriftRule(tuple(settings.method), settings.psi_threshold, settings.ks_threshold, settings.wasserstein_threshold,
                     tuple(settings.categorical_method), settings.jensen_shannon_threshold)
    overrides = {}
    for name, override in settings.features.items():
        changes: dict[str, Any] = {k: v for k in THRESHOLD_FIELDS if (v := getattr(override, k)) is not None}
        if override.method is not None:
            is_categorical = name in categorical
            allowed = CATEGORICAL_METHODS if is_categorical else DRIFT_METHODS
            wrong = [m for m in override.method if m not in allowed]
            if wrong:
                raise NotEvaluated(
                    f"checks.data_drift.features.{name}.method: {', '.join(wrong)} does not apply to a "
                    f"{'categorical' if is_categorical else 'numeric'} feature (use {', '.join(allowed)})"
                )
            changes["categorical_method" if is_categorical else "method"] = tuple(override.method)
        overrides[name] = replace(rule, **changes)
    return rule, overrides


METHOD_LABELS = {"psi": "PSI", "ks": "KS", "wasserstein": "Wasserstein", "jensen_shannon": "Jensen-Shannon"}
DRIFT_TABLE_COLUMNS = [
    "feature", "kind", "psi", "ks_statistic", "ks_precision", "ks_pvalue", "wasserstein", "wasserstein_precision",
    "chi2_statistic", "chi2_pvalue", "jensen_shannon", "unseen_categories",
    "method", *THRESHOLD_FIELDS, "fired", "drifted", "n_missing",
]


def precision(bound: float | None) -> str | None:
    """'exact', or 'within ±x' with x the bound rounded up to two significant digits (None: n/a)."""
    if bound is None or bound != bound:  # a categorical feature's (NaN once in a frame)
        return None
    if bound == 0:
        return "exact"
    value = Decimal(repr(bound))  # decimal digits: binary floats would round 5e-05 up to 5.1e-05
    rounded = value.quantize(Decimal(1).scaleb(value.adjusted() - 1), rounding=ROUND_CEILING)
    return f"within ±{rounded.normalize():f}"


def data_drift(
    reference: ModelReference, frame: pd.DataFrame, settings: DataDriftCheck
) -> tuple[CheckOutcome, pd.DataFrame]:
    """PSI, KS and Wasserstein of every numeric feature, PSI, chi-squared and Jensen-Shannon of every
    categorical one, against the training data, decided by the declared method(s); the
    per-feature table with it. Data that cannot be measured is NotEvaluated."""
    rule, feature_rules = drift_rules(settings, reference.features.categorical_names)
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
        f"max {METHOD_LABELS[m]} {value:.3f} (threshold: {rule.threshold(m):.2f})"
        for m in dict.fromkeys(m for f in report.features for m in f.methods)
        if (value := _max_value(report.features, m)) is not None
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
        "categorical_method": ", ".join(rule.categorical_method),
        **{f"{m}_threshold": rule.threshold(m) for m in (*DRIFT_METHODS, "jensen_shannon")},
        **{f"max_{m}": value for m in (*DRIFT_METHODS, "jensen_shannon")
           if (value := _max_value(report.features, m)) is not None},
    }
    return CheckOutcome(not report.dataset_drift, description, figures), table


def _max_value(features: Sequence[Any], method: str) -> float | None:
    values = [v for f in features if (v := f.value(method)) is not None]
    return max(values) if values else None


def missing_values(reference: ModelReference, frame: pd.DataFrame, max_increase: float) -> CheckOutcome:
    """Fails when a feature's share of missing values in `frame` exceeds its share in the training
    data by more than `max_increase` (absolute, e.g. 0.10 = ten points)."""
    if len(frame) == 0:
        raise NotEvaluated("the newest data has no rows")
    absent = [f.name for f in reference.features.features if f.name not in frame.columns]
    if absent:
        raise NotEvaluated(f"the newest data lacks feature(s) {', '.join(map(repr, absent))}")
    shares = {
        f.name: (f.n_missing / (f.count + f.n_missing), float(frame[f.name].isna().mean()))
        for f in reference.features.features
    }
    failing = {name: s for name, s in shares.items() if s[1] - s[0] > max_increase}
    changed = {name: {"training": round(t, 4), "current": round(c, 4)} for name, (t, c) in shares.items() if t or c}
    worst_name, (worst_training, worst_current) = max(shares.items(), key=lambda item: item[1][1] - item[1][0])
    figures: dict[str, Any] = {
        "failing_features": ", ".join(failing) or "none",
        "max_increase": max_increase,
        "largest_increase": worst_current - worst_training,
        "missing_shares": changed,  # features with any missing value, training vs current
    }
    if failing:
        named = "; ".join(f"{name} {c:.1%} (training {t:.1%})" for name, (t, c) in failing.items())
        return CheckOutcome(False, f"Missing values increased by more than {max_increase:.0%} in "
                                   f"{len(failing)} feature(s): {named}", figures)
    return CheckOutcome(True, f"missing values within {max_increase:.0%} of training; largest increase: {worst_name} "
                              f"{worst_current:.1%} (training {worst_training:.1%})", figures)


# Two-sided 95% normal quantile, for the estimate's interval.
Z_95 = 1.959963984540054


@dataclass(frozen=True)
class AccuracyEstimate:
    """CBPE (confidence-based performance estimation, as NannyML's): each row is right with
    probability equal to its (calibrated) confidence, so the expected accuracy is their mean.
    The interval is the normal approximation of the accuracy these rows will realize if the
    confidences are right: +- 1.96 sqrt(sum c (1 - c)) / n (the correct predictions are a sum of
    independent Bernoulli(c_i)). It does not cover a wrong calibration under concept drift: CBPE
    assumes the relation between features and label is unchanged (covariate shift only)."""

    accuracy: float
    lower: float
    upper: float
    rows: int


def estimate_accuracy(probabilities: np.ndarray, calibration: ConfidenceCalibration | None) -> AccuracyEstimate:
    confidence = np.asarray(probabilities, dtype=np.float64).max(axis=1)
    expected = confidence if calibration is None else calibration.expected_accuracy(confidence)
    accuracy = float(expected.mean())
    half_width = Z_95 * float(np.sqrt(np.sum(expected * (1.0 - expected)))) / expected.size
    return AccuracyEstimate(accuracy, max(0.0, accuracy - half_width), min(1.0, accuracy + half_width), int(expected.size))


def estimated_accuracy(model: Any, x: pd.DataFrame, labels: pd.Series, reference: ModelReference,
                       min_accuracy: float) -> CheckOutcome:
    """The production model's accuracy estimated from its predicted probabilities on the rows
    that have no label yet. When every row is labelled it is estimated on all of them (next to
    the realized production accuracy it shows whether the estimate can be trusted)."""
    if not hasattr(model, "predict_proba"):
        raise NotEvaluated("the production model gives no predicted probabilities (predict_proba)")
    if len(x) == 0:
        raise NotEvaluated("the newest data has no rows")
    unlabelled = labels.isna().to_numpy()
    rows = x[unlabelled] if unlabelled.any() else x
    estimate = estimate_accuracy(np.asarray(model.predict_proba(rows)), reference.calibration)
    calibration = reference.calibration
    figures: dict[str, Any] = {
        "estimated_accuracy": estimate.accuracy,
        "interval_95": f"[{estimate.lower:.4f}, {estimate.upper:.4f}]",
        "lower": estimate.lower,
        "upper": estimate.upper,
        "threshold": min_accuracy,
        "rows": estimate.rows,
        "estimated_on": "unlabelled rows" if unlabelled.any() else "all rows (every row is labelled)",
        "calibration": f"assumed (no reliability table stored: the holdout had fewer than {MIN_CALIBRATION_ROWS} "
                       "labelled rows, or the version predates it)" if calibration is None
        else f"reliability table measured on the {calibration.measured_on} ({calibration.rows} rows, "
             f"{len(calibration.confidence)} bins)",
    }
    interval = f"{estimate.accuracy:.2%} (95% interval {estimate.lower:.2%} to {estimate.upper:.2%}, {estimate.rows} rows)"
    passed = estimate.accuracy >= min_accuracy
    return CheckOutcome(
        passed,
        f"estimated accuracy {interval} meets {min_accuracy:.2%}" if passed
        else f"Estimated accuracy dropped to {interval} (threshold: {min_accuracy:.2%})",
        figures,
    )


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
        # Labels arrive late (weeks, for churn): expected, and estimated_accuracy covers it meanwhile.
        raise NotEvaluated("the newest data has no labelled rows yet (see estimated_accuracy)", expected=True)
    accuracy = float((predictions[labelled] == labels.to_numpy()[labelled]).mean())
    rows = int(labelled.sum())
    passed = accuracy >= min_accuracy
    return CheckOutcome(
        passed,
        f"production accuracy {accuracy:.2%} on {rows} labelled rows meets {min_accuracy:.2%}" if passed
        else f"Model accuracy dropped to {accuracy:.2%} (threshold: {min_accuracy:.2%})",
        {"accuracy": accuracy, "threshold": min_accuracy, "labelled_rows": rows},
    )
