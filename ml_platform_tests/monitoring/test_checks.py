"""What each monitoring check decides, on clean and on shifted data, without Dagster."""

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.sources import DatasetSpec, FeatureSpec
from ml_platform.monitoring.checks import (
    ModelReference,
    NotEvaluated,
    data_drift,
    prediction_drift,
    production_accuracy,
    require_same_features,
)
from ml_platform.monitoring.drift import summarize_reference

SPEC = DatasetSpec(features=(FeatureSpec("a"), FeatureSpec("b")), target="y")


def reference(rows: int = 5_000) -> ModelReference:
    rng = np.random.default_rng(0)
    train = pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})
    return ModelReference(summarize_reference(train), {"0": 0.5, "1": 0.5})


def test_same_features_pass_and_a_changed_feature_set_is_named() -> None:
    require_same_features("v3", ["a", "b"], SPEC)
    with pytest.raises(NotEvaluated, match=r"differs from production v3's \(missing \['c'\], new \['b'\]\)") as info:
        require_same_features("v3", ["a", "c"], SPEC)
    assert not info.value.expected


def test_data_drift_flags_only_a_shifted_feature() -> None:
    rng = np.random.default_rng(1)
    clean = pd.DataFrame({"a": rng.normal(size=5_000), "b": rng.normal(size=5_000)})
    outcome, table = data_drift(reference(), clean, psi_threshold=0.2, drift_share=0.5)
    assert outcome.passed and outcome.figures["drifted_features"] == "none"
    shifted = clean.assign(b=clean["b"] + 1.0)
    outcome, table = data_drift(reference(), shifted, psi_threshold=0.2, drift_share=0.5)
    assert not outcome.passed and outcome.figures["drifted_features"] == "b"
    assert outcome.description.startswith("Data drift detected: 1 of 2 features drifted")
    assert list(table["feature"]) == ["a", "b"] and bool(table.set_index("feature").loc["b", "drifted"])


def test_prediction_drift_compares_class_shares_with_training() -> None:
    balanced = np.array([0, 1] * 500)
    assert prediction_drift(balanced, reference(), 0.2).passed
    skewed = np.array([1] * 950 + [0] * 50)
    outcome = prediction_drift(skewed, reference(), 0.2)
    assert not outcome.passed and outcome.figures["current_shares"] == {"0": 0.05, "1": 0.95}
    assert outcome.description.startswith("Prediction drift detected: PSI")


def test_production_accuracy_uses_labelled_rows_only_and_says_when_there_are_none() -> None:
    predictions = np.array([1, 0, 1, 1])
    outcome = production_accuracy(predictions, pd.Series([1, 0, None, 0]), 0.7)
    assert outcome.figures == {"accuracy": pytest.approx(2 / 3), "threshold": 0.7, "labelled_rows": 3}
    assert not outcome.passed and outcome.description == "Model accuracy dropped to 66.67% (threshold: 70.00%)"
    with pytest.raises(NotEvaluated, match="the newest data has no labelled rows"):
        production_accuracy(predictions, pd.Series([None] * 4, dtype=float), 0.7)
