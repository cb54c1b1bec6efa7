"""What each monitoring check decides, on clean and on shifted data, without Dagster."""

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.sources import DatasetSpec, FeatureSpec
from ml_platform.declaration import DataDriftCheck, FeatureDriftOverride
from ml_platform.monitoring.checks import (
    DRIFT_TABLE_COLUMNS,
    ModelReference,
    NotEvaluated,
    data_drift,
    drift_rules,
    precision,
    prediction_drift,
    production_accuracy,
    require_same_features,
)
from ml_platform.monitoring.drift import DriftRule, summarize_reference

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


def test_data_drift_flags_only_a_shifted_feature_and_names_the_method() -> None:
    rng = np.random.default_rng(1)
    clean = pd.DataFrame({"a": rng.normal(size=5_000), "b": rng.normal(size=5_000)})
    outcome, table = data_drift(reference(), clean, DataDriftCheck())
    assert outcome.passed and outcome.figures["drifted_features"] == "none"
    assert outcome.description.startswith("no drift: 0 of 2 features drifted; max PSI 0.0")
    assert "max Wasserstein 0.0" in outcome.description and "(threshold: 0.10)" in outcome.description
    shifted = clean.assign(b=clean["b"] + 1.0)
    outcome, table = data_drift(reference(), shifted, DataDriftCheck())
    assert not outcome.passed and outcome.figures["drifted_features"] == "b"
    psi, wasserstein = table.set_index("feature").loc["b", ["psi", "wasserstein"]]
    assert outcome.description == (
        f"Data drift detected: 1 of 2 features drifted (b: PSI {psi:.2f} > 0.20, Wasserstein {wasserstein:.2f} > 0.10)"
    )
    assert list(table["feature"]) == ["a", "b"] and list(table["fired"]) == ["", "psi, wasserstein"]
    assert list(table.columns) == DRIFT_TABLE_COLUMNS
    # 5,000 distinct training values per feature is within the grid's 10,000: exact figures.
    assert set(table["ks_precision"]) == set(table["wasserstein_precision"]) == {"exact"}


def test_a_scale_change_fires_the_wasserstein_distance_only() -> None:
    rng = np.random.default_rng(2)
    wider = pd.DataFrame({"a": rng.normal(size=5_000), "b": rng.normal(scale=1.4, size=5_000)})
    outcome, table = data_drift(reference(), wider, DataDriftCheck())
    assert outcome.figures["drifted_features"] == "b" and table.set_index("feature").loc["b", "fired"] == "wasserstein"
    assert "(b: Wasserstein 0.3" in outcome.description and "PSI" not in outcome.description.split("(b:")[1]
    # Declared per feature: b decided by PSI alone, which misses it.
    psi_for_b = DataDriftCheck(features={"b": FeatureDriftOverride(method=["psi"])})
    outcome, table = data_drift(reference(), wider, psi_for_b)
    assert outcome.passed and table.set_index("feature").loc["b", "method"] == "psi"


def test_below_the_drift_share_the_check_passes_and_says_which_feature_drifted() -> None:
    rng = np.random.default_rng(3)
    shifted = pd.DataFrame({"a": rng.normal(size=5_000), "b": rng.normal(1.0, size=5_000)})
    outcome, _ = data_drift(reference(), shifted, DataDriftCheck(drift_share=0.75))
    assert outcome.passed and outcome.figures["dataset_rule"] == "at least 75% of the features drift"
    assert outcome.description.startswith("no dataset drift: 1 of 2 features drifted, below the drift share 0.75 (b: PSI")


def test_bounded_figures_say_by_how_much() -> None:
    rng = np.random.default_rng(4)
    train = pd.DataFrame({"a": rng.normal(size=30_000), "b": rng.normal(size=30_000)})
    model = ModelReference(summarize_reference(train, max_points=1_000), {"0": 0.5, "1": 0.5})
    _, table = data_drift(model, train.iloc[:5_000], DataDriftCheck())
    assert all(p.startswith("within ±") for p in [*table["ks_precision"], *table["wasserstein_precision"]])
    assert precision(0.0) == "exact" and precision(4.71e-4) == "within ±0.00048" and precision(5e-5) == "within ±0.00005"


def test_data_that_cannot_be_measured_is_not_evaluated_naming_the_feature() -> None:
    frame = pd.DataFrame({"a": [np.nan] * 10, "b": np.arange(10.0)})
    with pytest.raises(NotEvaluated, match=r"feature\(s\) 'a' are all-missing in the current frame"):
        data_drift(reference(), frame, DataDriftCheck())
    typo = DataDriftCheck(features={"bb": FeatureDriftOverride(method=["ks"])})
    with pytest.raises(NotEvaluated, match="checks.data_drift.features names feature\\(s\\) the model does not have: 'bb'"):
        data_drift(reference(), frame.assign(a=1.0), typo)


def test_drift_rules_inherit_the_checks_fields() -> None:
    settings = DataDriftCheck(method=["ks"], ks_threshold=0.2, features={"a": FeatureDriftOverride(wasserstein_threshold=0.3)})
    rule, per_feature = drift_rules(settings)
    assert rule == DriftRule(("ks",), 0.2, 0.2, 0.1)
    assert per_feature == {"a": DriftRule(("ks",), 0.2, 0.2, 0.3)}


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


def test_a_large_training_set_is_summarized_from_a_seeded_sample_that_measures_what_the_whole_does(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from sklearn.linear_model import LogisticRegression

    import ml_platform.monitoring.checks as checks

    rng = np.random.default_rng(1)
    train = pd.DataFrame({"a": rng.normal(size=50_000), "b": rng.exponential(size=50_000)})
    train["y"] = (train["a"] + rng.normal(size=len(train)) > 0).astype(int)
    model = LogisticRegression().fit(train[["a", "b"]], train["y"])
    assert checks.bounded_sample(train, 50_000) is train  # at or under the bound: the frame itself
    sample = checks.bounded_sample(train, 5_000)
    assert len(sample) == 5_000 and sample.index.is_monotonic_increasing and sample.index.is_unique
    assert sample.index.equals(checks.bounded_sample(train, 5_000).index)  # seeded: the same rows every time

    whole = checks.build_reference(train, SPEC, model, train)
    monkeypatch.setattr(checks, "REFERENCE_MAX_ROWS", 5_000)
    sampled = checks.build_reference(train, SPEC, model, train)
    assert [f.count for f in sampled.features.features] == [5_000, 5_000]
    assert sampled.calibration is not None and sampled.calibration.rows == 5_000
    # Drift of the same shifted data measured against either reference: the same verdicts, close figures.
    shifted = train.assign(a=train["a"] + 0.5)
    (whole_outcome, whole_table), (sample_outcome, sample_table) = (
        data_drift(ref, shifted, DataDriftCheck()) for ref in (whole, sampled))
    assert whole_outcome.passed == sample_outcome.passed and whole_outcome.figures["drifted_features"] == "a"
    assert sample_outcome.figures["drifted_features"] == "a"
    figures = ["psi", "ks_statistic", "wasserstein"]
    difference = (whole_table.set_index("feature")[figures] - sample_table.set_index("feature")[figures]).abs()
    assert (difference < 0.03).all().all(), difference
