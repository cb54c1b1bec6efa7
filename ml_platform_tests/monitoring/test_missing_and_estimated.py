"""The missing_values and estimated_accuracy checks, and the drift table of a mixed-type model, without Dagster."""

from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import Pipeline, make_pipeline
from sklearn.preprocessing import StandardScaler

from ml_platform.data.sources import DatasetSpec, FeatureSpec
from ml_platform.declaration import DataDriftCheck, FeatureDriftOverride
from ml_platform.monitoring.checks import (
    DRIFT_TABLE_COLUMNS,
    MIN_CALIBRATION_ROWS,
    ModelReference,
    NotEvaluated,
    build_reference,
    data_drift,
    estimate_accuracy,
    estimated_accuracy,
    missing_values,
)
from ml_platform.monitoring.drift import summarize_reference

# Labels follow a logistic model of the features, the same at training and later: a shift of the
# features (covariate shift) then changes the accuracy, and calibrated probabilities still hold.
WEIGHTS = np.array([2.4, -1.6, 1.2, 0.0, 0.0])
FEATURES = [f"f{i}" for i in range(len(WEIGHTS))]
SPEC = DatasetSpec(features=tuple(FeatureSpec(f) for f in FEATURES), target="y", classes=(0, 1))
# Covariate shifts: name -> (scale, shift) of the features. Shrinking them towards the boundary
# lowers the accuracy below 0.70; a shift of a feature the label ignores leaves it alone.
SHIFTS = {
    "none": (1.0, np.zeros(5)),
    "f3 +2 sd (ignored by the label)": (1.0, np.array([0, 0, 0, 2.0, 0])),
    "f0 +1 sd": (1.0, np.array([1.0, 0, 0, 0, 0])),
    "scale x2": (2.0, np.zeros(5)),
    "scale x0.5": (0.5, np.zeros(5)),
    "scale x0.3": (0.3, np.zeros(5)),
    "scale x0.2": (0.2, np.zeros(5)),
}


def logistic_sample(rows: int, seed: int, scale: float = 1.0, shift: np.ndarray = np.zeros(5)) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, len(WEIGHTS))) * scale + shift
    y = (rng.random(rows) < 1.0 / (1.0 + np.exp(-(x @ WEIGHTS)))).astype(np.int64)
    return pd.DataFrame(x, columns=FEATURES).assign(y=y)


@pytest.fixture(scope="module")
def fitted() -> tuple[Pipeline, ModelReference]:
    train, holdout = logistic_sample(5_000, 0), logistic_sample(2_000, 1)
    model = make_pipeline(StandardScaler(), LogisticRegression()).fit(train[FEATURES], train["y"])
    return model, build_reference(train, SPEC, model, holdout)


def realized_accuracy(model: Pipeline, frame: pd.DataFrame) -> float:
    return float((model.predict(frame[FEATURES]) == frame["y"]).mean())


@pytest.mark.parametrize("shift", SHIFTS)
def test_the_estimate_lands_within_005_of_the_realized_accuracy_under_covariate_shift(fitted, shift: str) -> None:
    model, reference = fitted
    scale, offset = SHIFTS[shift]
    current = logistic_sample(20_000, 7, scale, offset)
    estimate = estimate_accuracy(model.predict_proba(current[FEATURES]), reference.calibration)
    realized = realized_accuracy(model, current)
    assert abs(estimate.accuracy - realized) < 0.05
    assert estimate.lower < estimate.accuracy < estimate.upper and estimate.upper - estimate.lower < 0.02
    assert estimate.rows == 20_000


def test_the_check_fires_below_070_on_the_unlabelled_rows_only(fitted) -> None:
    model, reference = fitted
    good, bad = logistic_sample(4_000, 8), logistic_sample(4_000, 9, scale=0.2)
    # Labels arrived for the good rows only; the bad rows have none yet.
    frame = pd.concat([good, bad.assign(y=np.nan)], ignore_index=True)
    outcome = estimated_accuracy(model, frame[FEATURES], frame["y"], reference, 0.70)
    assert not outcome.passed and outcome.figures["rows"] == 4_000 and outcome.figures["estimated_on"] == "unlabelled rows"
    assert outcome.figures["estimated_accuracy"] < 0.70
    assert abs(outcome.figures["estimated_accuracy"] - realized_accuracy(model, bad)) < 0.05
    assert outcome.description.startswith("Estimated accuracy dropped to ") and "(threshold: 70.00%)" in outcome.description
    assert "holdout (2000 rows, 20 bins)" in outcome.figures["calibration"]
    # Every row labelled: estimated on all of them, to sit beside the realized accuracy.
    outcome = estimated_accuracy(model, good[FEATURES], good["y"], reference, 0.70)
    assert outcome.passed and outcome.figures["rows"] == 4_000 and outcome.figures["estimated_on"].startswith("all rows")


class Overconfident:
    """A model whose probabilities are sharpened: its raw confidence overstates its accuracy."""

    def __init__(self, model: Pipeline) -> None:
        self.model, self.classes_ = model, model.classes_

    def predict(self, x: pd.DataFrame) -> np.ndarray:
        return self.model.predict(x)

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        p = self.model.predict_proba(x) ** 4
        return p / p.sum(axis=1, keepdims=True)


def test_the_reliability_table_corrects_an_overconfident_model(fitted) -> None:
    model = Overconfident(fitted[0])
    reference = build_reference(logistic_sample(5_000, 0), SPEC, model, logistic_sample(2_000, 1))
    current = logistic_sample(20_000, 7, scale=0.5)
    realized = realized_accuracy(fitted[0], current)
    calibrated = estimate_accuracy(model.predict_proba(current[FEATURES]), reference.calibration).accuracy
    assumed = estimate_accuracy(model.predict_proba(current[FEATURES]), None).accuracy
    assert abs(calibrated - realized) < 0.05 < assumed - realized


def test_a_model_without_probabilities_is_not_evaluated(fitted) -> None:
    class LabelsOnly:
        def predict(self, x: Any) -> np.ndarray:
            return np.zeros(len(x))

    frame = logistic_sample(100, 3)
    with pytest.raises(NotEvaluated, match="no predicted probabilities"):
        estimated_accuracy(LabelsOnly(), frame[FEATURES], frame["y"], fitted[1], 0.70)
    assert build_reference(frame, SPEC, LabelsOnly()).calibration is None


def test_a_holdout_too_small_to_calibrate_on_leaves_the_probabilities_as_they_are(fitted) -> None:
    model = fitted[0]
    small = build_reference(logistic_sample(5_000, 0), SPEC, model, logistic_sample(MIN_CALIBRATION_ROWS - 1, 1))
    assert small.calibration is None
    current = logistic_sample(2_000, 7)
    outcome = estimated_accuracy(model, current[FEATURES], current["y"].where(current.index >= 1_000), small, 0.70)
    assert outcome.figures["calibration"].startswith("assumed") and outcome.figures["rows"] == 1_000
    raw = model.predict_proba(current[FEATURES].iloc[:1_000]).max(axis=1).mean()
    assert outcome.figures["estimated_accuracy"] == pytest.approx(raw, rel=1e-12)


def gappy_reference(training_missing: float) -> ModelReference:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(size=10_000), "b": rng.normal(size=10_000)})
    train.loc[rng.random(10_000) < training_missing, "b"] = np.nan
    return ModelReference(summarize_reference(train), {"0": 0.5, "1": 0.5})


def with_missing(share: float, column: str = "a", rows: int = 10_000) -> pd.DataFrame:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    frame.loc[: int(rows * share) - 1, column] = np.nan
    return frame


def test_missing_values_fire_when_a_share_rises_from_0_to_30_percent_and_not_for_2() -> None:
    reference = gappy_reference(0.0)
    outcome = missing_values(reference, with_missing(0.30), max_increase=0.10)
    assert not outcome.passed and outcome.figures["failing_features"] == "a"
    assert outcome.description == "Missing values increased by more than 10% in 1 feature(s): a 30.0% (training 0.0%)"
    assert outcome.figures["missing_shares"] == {"a": {"training": 0.0, "current": 0.3}}
    outcome = missing_values(reference, with_missing(0.02), max_increase=0.10)
    assert outcome.passed and outcome.figures["failing_features"] == "none"
    assert outcome.figures["largest_increase"] == pytest.approx(0.02)


def test_missing_values_are_measured_against_the_training_share() -> None:
    reference = gappy_reference(0.25)  # b was a quarter empty at training already
    training_share = reference.features.feature("b").n_missing / 10_000
    assert missing_values(reference, with_missing(0.30, "b"), max_increase=0.10).passed
    outcome = missing_values(reference, with_missing(training_share + 0.12, "b"), max_increase=0.10)
    assert not outcome.passed and outcome.figures["failing_features"] == "b"


def test_the_drift_table_of_a_mixed_model_shows_each_kind_with_its_figures() -> None:
    rng = np.random.default_rng(0)
    regions = np.array(["north", "south", "east", "west"], dtype=object)
    train = pd.DataFrame({"x": rng.normal(size=20_000), "region": regions[rng.choice(4, 20_000, p=[0.1, 0.3, 0.3, 0.3])]})
    spec = DatasetSpec(features=(FeatureSpec("x"), FeatureSpec("region", kind="categorical")), target="y")
    reference = ModelReference(summarize_reference(train, categorical=spec.categorical_names), {"0": 1.0})
    current = train.assign(region=regions[rng.choice(4, 20_000, p=[0.4, 0.2, 0.2, 0.2])])
    outcome, table = data_drift(reference, current, DataDriftCheck())
    assert list(table.columns) == DRIFT_TABLE_COLUMNS
    rows = table.set_index("feature")
    assert list(rows["kind"]) == ["numeric", "categorical"] and list(rows["drifted"]) == [False, True]
    assert rows.loc["region", "method"] == "psi, jensen_shannon" and rows.loc["region", "fired"] == "psi, jensen_shannon"
    assert pd.isna(rows.loc["region", "ks_precision"]) and rows.loc["x", "ks_precision"].startswith("within ±")
    assert not outcome.passed and "region: PSI " in outcome.description and ", Jensen-Shannon 0.30 > 0.10" in outcome.description
    assert outcome.figures["max_jensen_shannon"] == pytest.approx(rows.loc["region", "jensen_shannon"])
    # A per-feature method applies to its feature's kind; a numeric statistic on a categorical feature is named.
    outcome, table = data_drift(reference, current, DataDriftCheck(features={"region": FeatureDriftOverride(
        method=["jensen_shannon"], jensen_shannon_threshold=0.5)}))
    assert outcome.passed and table.set_index("feature").loc["region", "method"] == "jensen_shannon"
    with pytest.raises(NotEvaluated, match=r"features.region.method: ks does not apply to a categorical feature"):
        data_drift(reference, current, DataDriftCheck(features={"region": FeatureDriftOverride(method=["ks"])}))


def test_an_all_missing_categorical_column_leaves_data_drift_not_evaluated_naming_it() -> None:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"x": rng.normal(size=1_000), "region": np.array(["n", "s"], dtype=object)[rng.integers(0, 2, 1_000)]})
    reference = ModelReference(summarize_reference(train, categorical=["region"]), {"0": 1.0})
    with pytest.raises(NotEvaluated, match=r"feature\(s\) 'region' are all-missing in the current frame"):
        data_drift(reference, train.assign(region=None), DataDriftCheck())
    # The missing-values check, by contrast, evaluates it: 100% against 0% at training.
    outcome = missing_values(reference, train.assign(region=None), max_increase=0.10)
    assert not outcome.passed and outcome.figures["failing_features"] == "region"
