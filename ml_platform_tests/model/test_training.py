import numpy as np
import pandas as pd
import pytest

from ml_platform.data.sources import generate_synthetic, load_breast_cancer_source
from ml_platform.model.training import TrainingSettings, build_pipeline, evaluate, split_holdout, train_candidate


def test_default_candidate_is_scaler_plus_logistic_regression_with_all_holdout_metrics() -> None:
    source = load_breast_cancer_source()
    candidate = train_candidate(source.frame, source.spec, TrainingSettings())
    assert [name for name, _ in candidate.pipeline.steps] == ["scaler", "model"]
    assert type(candidate.pipeline.named_steps["model"]).__name__ == "LogisticRegression"
    assert set(candidate.metrics) == {"accuracy", "precision", "recall", "f1", "roc_auc"}
    assert candidate.metrics["accuracy"] > 0.9
    assert len(candidate.holdout) == 114 and len(candidate.train) == 455
    assert candidate.params["estimator"] == "logistic_regression" and candidate.params["max_iter"] == 1000


def test_holdout_is_stratified_and_fixed_by_the_seed() -> None:
    frame = generate_synthetic(rows=1_000, positive_fraction=0.2, seed=3).frame
    _, a = split_holdout(frame, "target", 0.2, seed=42)
    _, b = split_holdout(frame, "target", 0.2, seed=42)
    _, c = split_holdout(frame, "target", 0.2, seed=43)
    assert list(a.index) == list(b.index) and list(a.index) != list(c.index)
    assert a["target"].mean() == pytest.approx(frame["target"].mean(), abs=0.01)


def test_estimator_and_hyper_parameters_come_from_settings() -> None:
    source = generate_synthetic(rows=600, features=4, seed=1)
    candidate = train_candidate(
        source.frame, source.spec, TrainingSettings(estimator="random_forest", params={"n_estimators": 7})
    )
    forest = candidate.pipeline.named_steps["model"]
    assert type(forest).__name__ == "RandomForestClassifier"
    assert forest.n_estimators == 7 and forest.random_state == 42


def test_bad_estimator_or_parameters_are_named_in_the_error() -> None:
    with pytest.raises(ValueError, match="unknown estimator 'xgboost'"):
        build_pipeline("xgboost", None, 0)
    with pytest.raises(ValueError, match="bad hyper-parameters for logistic_regression"):
        build_pipeline("logistic_regression", {"no_such_param": 1}, 0)


def test_metrics_of_a_perfect_and_of_a_constant_predictor() -> None:
    source = generate_synthetic(rows=400, features=3, seed=5)
    candidate = train_candidate(source.frame, source.spec, TrainingSettings())
    perfect = candidate.holdout.copy()
    perfect["target"] = candidate.pipeline.predict(perfect[source.spec.feature_names])
    metrics = evaluate(candidate.pipeline, perfect, source.spec)
    assert metrics["accuracy"] == metrics["precision"] == metrics["recall"] == metrics["f1"] == 1.0
    flipped = perfect.assign(target=1 - perfect["target"])
    assert evaluate(candidate.pipeline, flipped, source.spec)["accuracy"] == 0.0
    assert isinstance(flipped, pd.DataFrame)


def test_a_class_with_a_single_row_is_named_before_the_split() -> None:
    frame = pd.DataFrame({"a": range(20), "y": [0, 1] * 9 + [0, 2]})
    with pytest.raises(ValueError, match=r"y: class\(es\) \[2\] have a single row"):
        split_holdout(frame, "y", 0.2, 0)


@pytest.mark.parametrize(
    ("labels", "weights"),
    [([0, 1], [0.7, 0.3]), (["yes", "no"], [0.5, 0.5]), (["b", "a", "c"], [0.2, 0.5, 0.3]), ([True, False], [0.9, 0.1]),
     ([2.5, -1.0, 0.0, 7.0, 3.0], [0.1, 0.2, 0.3, 0.2, 0.2])],
)
def test_the_holdout_is_exactly_the_rows_train_test_split_picks(labels: list, weights: list) -> None:
    from sklearn.model_selection import train_test_split

    rng = np.random.default_rng(3)
    for rows in (20, 997, 5_000):
        frame = pd.DataFrame({"x": rng.random(rows), "y": rng.choice(np.array(labels, dtype=object), rows, p=weights)})
        frame["y"] = frame["y"].astype(type(labels[0]) if not isinstance(labels[0], str) else "str")
        frame.index = rng.permutation(rows) + 100  # labels, not positions, are what is compared
        for fraction, seed in ((0.2, 42), (0.33, 0), (0.1, 7)):
            try:
                expected = train_test_split(frame, test_size=fraction, random_state=seed, stratify=frame["y"])
            except ValueError:
                continue  # too few rows of a class for this fraction: sklearn refuses it too
            train, holdout = split_holdout(frame, "y", fraction, seed)
            assert train.index.equals(expected[0].index) and holdout.index.equals(expected[1].index)
            pd.testing.assert_frame_equal(holdout, expected[1])
