"""Batch scoring: row keys, the canary split, score_batch's arms and figures, prediction_problems."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from sklearn.linear_model import LogisticRegression

from ml_platform.model.serving import ScoringModel, canary_mask, prediction_problems, row_keys, score_batch

FEATURES = ["a", "b"]


def frame_of(rows: int, seed: int = 0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    return pd.DataFrame({"a": rng.normal(size=rows), "b": rng.normal(size=rows)})


class Fixed:
    """A fitted-looking model whose probabilities are given per row (hand-checkable cases)."""

    def __init__(self, proba: list[list[float]], classes: list[object]) -> None:
        self.proba, self.classes_, self.calls = np.array(proba), np.array(classes), 0

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        self.calls += 1
        assert len(x) == len(self.proba)
        return self.proba


_IN_A_CHILD = """
import sys, numpy as np, pandas as pd
from ml_platform.model.serving import canary_mask, row_keys
rng = np.random.default_rng(0)
frame = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.normal(size=1000), "c": rng.choice(["x", "y"], 1000)})
keys = row_keys(frame, None, ["a", "b", "c"])
print(keys.sum() % 1000003, np.flatnonzero(canary_mask(keys, 0.3, "churn:v2")).sum())
"""


def test_keys_and_the_split_are_the_same_in_another_process() -> None:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame({"a": rng.normal(size=1000), "b": rng.normal(size=1000), "c": rng.choice(["x", "y"], 1000)})
    keys = row_keys(frame, None, ["a", "b", "c"])
    here = f"{keys.sum() % 1000003} {np.flatnonzero(canary_mask(keys, 0.3, 'churn:v2')).sum()}"
    child = subprocess.run([sys.executable, "-c", _IN_A_CHILD], capture_output=True, text=True, check=True)
    assert child.stdout.strip() == here
    assert keys.name == "row_key" and keys.dtype == np.uint64 and keys.nunique() == 1000


def test_content_keys_depend_on_values_only() -> None:
    ints = pd.DataFrame({"a": [1, 2, 0], "b": [3, 4, 5]})
    floats = pd.DataFrame({"a": [1.0, 2.0, -0.0], "b": [3.0, 4.0, 5.0]}, index=[7, 8, 9])
    assert row_keys(ints, None, FEATURES).tolist() == row_keys(floats, None, FEATURES).tolist()
    nulls = pd.DataFrame({"a": pd.array([1.0, None], dtype="Float64"), "b": [np.nan, float("nan")]})
    assert row_keys(nulls, None, FEATURES).tolist() == row_keys(pd.DataFrame({"a": [1.0, np.nan], "b": [np.nan] * 2}), None, FEATURES).tolist()
    assert row_keys(ints, None, ["b", "a"]).tolist() != row_keys(ints, None, FEATURES).tolist()


def test_an_id_column_is_the_key_and_a_bad_one_is_named() -> None:
    frame = frame_of(3).assign(customer=["c1", "c2", "c3"])
    assert row_keys(frame, "customer", FEATURES).tolist() == ["c1", "c2", "c3"]
    with pytest.raises(ValueError, match=r"id column 'client' is not in the data"):
        row_keys(frame, "client", FEATURES)
    with pytest.raises(ValueError, match=r"id column 'customer' has 1 null value\(s\) \(first at row 1\)"):
        row_keys(frame.assign(customer=["c1", None, "c3"]), "customer", FEATURES)
    with pytest.raises(ValueError, match=r"id column 'customer' has 1 repeated value\(s\) \(first: 'c1'\)"):
        row_keys(frame.assign(customer=["c1", "c2", "c1"]), "customer", FEATURES)
    with pytest.raises(ValueError, match=r"feature column\(s\) \['c'\] are not in the data"):
        row_keys(frame, None, ["a", "c"])


@pytest.mark.parametrize("keys", [pd.Series(np.arange(100_000), name="row_key"),
                                  row_keys(frame_of(100_000), None, FEATURES)], ids=["sequential ids", "content hashes"])
def test_the_split_matches_the_share_is_monotone_and_salted(keys: pd.Series) -> None:
    masks = {share: canary_mask(keys, share, "churn:v7") for share in (0.0, 0.1, 0.5, 1.0)}
    assert not masks[0.0].any() and masks[1.0].all()
    for share in (0.1, 0.5):
        assert abs(masks[share].mean() - share) < 0.01
    assert not (masks[0.1] & ~masks[0.5]).any()  # every 10% row is in the 50% set
    other = canary_mask(keys, 0.1, "churn:v8")
    assert abs(other.mean() - 0.1) < 0.01 and (other & masks[0.1]).mean() < 0.02  # about 0.1 * 0.1 overlap
    with pytest.raises(ValueError, match="within \\[0, 1\\], got 1.5"):
        canary_mask(keys, 1.5, "churn:v7")


def test_a_hand_checkable_canary() -> None:
    frame = pd.DataFrame({"a": [0.0] * 4, "b": [0.0] * 4, "label": [1, 0, None, 1]})
    champion = Fixed([[0.9, 0.1], [0.8, 0.2], [0.3, 0.7], [0.4, 0.6]], [0, 1])
    candidate = Fixed([[0.2, 0.8], [0.7, 0.3], [0.1, 0.9], [0.3, 0.7]], [0, 1])
    keys = pd.Series([11, 12, 13, 14], name="row_key")
    share = 0.5
    served_by_candidate = canary_mask(keys, share, "m:v5")
    assert served_by_candidate.tolist() == [True, False, True, True]  # both arms serve (this salt, these keys)
    scores = score_batch(frame, FEATURES, "label", keys, ScoringModel("v1", champion), ScoringModel("v2", candidate),
                         share, "m:v5")
    assert champion.calls == candidate.calls == 1
    p = scores.predictions
    assert p.columns.tolist() == ["row_key", "predicted", "proba_0", "proba_1", "model_version", "arm"]
    assert p["arm"].eq("candidate").to_numpy().tolist() == served_by_candidate.tolist()
    for model, arm, version in ((champion, "champion", "v1"), (candidate, "candidate", "v2")):
        rows = (p["arm"] == arm).to_numpy()
        assert set(p.loc[rows, "model_version"]) <= {version}
        assert np.array_equal(p.loc[rows, ["proba_0", "proba_1"]].to_numpy(), model.proba[rows])
        assert p.loc[rows, "predicted"].tolist() == model.proba[rows].argmax(axis=1).tolist()
    f = scores.figures
    # Predicted: champion 0 0 1 1, candidate 1 0 1 1 -> they agree on rows 2, 3 and 4.
    assert f["agreement"] == 0.75 and f["labelled_rows"] == 3
    assert f["champion_accuracy"] == round(2 / 3, 6)  # labels 1 0 _ 1: right on rows 2 and 4
    assert f["candidate_accuracy"] == 1.0  # right on rows 1, 2 and 4
    assert f["class_shares"] == {"0": 0.25, "1": 0.75}  # served: candidate 1, champion 0, candidate 1, candidate 1
    assert f["versions"] == {"champion": "v1", "candidate": "v2"} and f["rows"] == 4
    assert f["arm_shares"]["candidate"] == served_by_candidate.mean()
    assert prediction_problems(p, [0, 1]) == []

    def plain(value: object) -> bool:  # what Dagster's metadata and JSON take: no numpy scalars
        if isinstance(value, dict):
            return all(plain(v) for v in value.values())
        return type(value) in (int, float, str, bool, type(None))

    assert plain(f), f


def test_real_models_never_mix_versions_within_an_arm() -> None:
    frame = frame_of(5_000)
    frame["label"] = (frame.a > 0).astype(int)
    champion = LogisticRegression().fit(frame[FEATURES], frame.label)
    candidate = LogisticRegression(C=0.01).fit(frame[FEATURES], (frame.a + frame.b > 0).astype(int))
    keys = row_keys(frame, None, FEATURES)
    for share in (0.0, 0.1, 1.0):
        scores = score_batch(frame, FEATURES, "label", keys, ScoringModel("v3", champion), ScoringModel("v4", candidate),
                             share, "m:v4")
        p = scores.predictions
        assert p.groupby("arm", observed=True)["model_version"].nunique().max() == 1
        assert abs(scores.figures["arm_shares"]["candidate"] - share) < 0.02
        served = np.where((p["arm"] == "candidate").to_numpy()[:, None], candidate.predict_proba(frame[FEATURES]),
                          champion.predict_proba(frame[FEATURES]))
        assert np.array_equal(p[["proba_0", "proba_1"]].to_numpy(), served)
        assert prediction_problems(p, [0, 1]) == []
    alone = score_batch(frame, FEATURES, None, keys, ScoringModel("v3", champion), None, 0.5, "m:v4")
    assert set(alone.predictions["arm"]) == {"champion"} and "agreement" not in alone.figures
    assert alone.figures["arm_shares"] == {"champion": 1.0, "candidate": 0.0}


def test_models_with_different_classes_are_refused() -> None:
    frame = frame_of(3)
    with pytest.raises(ValueError, match=r"champion v1 has classes \[0, 1\] but candidate v2 has \['no', 'yes'\]"):
        score_batch(frame, FEATURES, None, pd.Series([1, 2, 3]), ScoringModel("v1", Fixed([[1, 0]] * 3, [0, 1])),
                    ScoringModel("v2", Fixed([[1, 0]] * 3, ["no", "yes"])), 0.1, "m:v2")


def test_prediction_problems_names_each_problem() -> None:
    bad = pd.DataFrame({
        "row_key": [1, 2, 3, 4],
        "predicted": [0, 1, 2, 0],
        "proba_0": [np.nan, 0.5, 1.2, 0.3],
        "proba_1": [0.5, 0.4, -0.2, 0.7],
        "model_version": ["v1", "v1", "v2", "v3"],
        "arm": ["champion", "champion", "champion", "candidate"],
    })
    assert prediction_problems(bad, [0, 1]) == [
        "1 of 4 rows have NaN probabilities (row_key 1)",
        "1 of 4 rows have probabilities outside [0, 1] (row_key 3)",
        "1 of 4 rows have probabilities not summing to 1 (tolerance 1e-06) (row_key 2)",
        "1 of 4 rows have a predicted class outside [0, 1] (row_key 3)",
        "arm champion was answered by 2 versions (v1, v2)",
    ]


def test_three_classes_and_ties_predict_the_first_most_likely_class() -> None:
    proba = [[0.2, 0.4, 0.4], [0.5, 0.3, 0.2], [0.1, 0.1, 0.8], [1 / 3, 1 / 3, 1 / 3]]
    scores = score_batch(frame_of(4), FEATURES, None, pd.Series([1, 2, 3, 4]),
                         ScoringModel("v1", Fixed(proba, ["low", "mid", "high"])), None, 0.0, "m:v1")
    assert scores.predictions["predicted"].tolist() == ["mid", "low", "high", "low"]
    assert scores.figures["class_shares"] == {"low": 0.5, "mid": 0.25, "high": 0.25}
    assert prediction_problems(scores.predictions, ["low", "mid", "high"]) == []
