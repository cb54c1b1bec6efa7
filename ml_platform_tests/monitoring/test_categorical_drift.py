"""Drift of categorical features: category shares against the reference's category counts."""

import numpy as np
import pandas as pd
import pytest
from scipy import stats
from scipy.spatial import distance

from ml_platform.monitoring.drift import (
    CategoricalSummary,
    DriftInputError,
    DriftRule,
    ReferenceSummary,
    compute_drift,
    population_stability_index,
    summarize_reference,
)

CATEGORIES = np.array(["north", "south", "east", "west"], dtype=object)
TRAINING_SHARES = [0.1, 0.3, 0.3, 0.3]


def draw(rows: int, shares: list[float], seed: int, missing: float = 0.0) -> pd.Series:
    rng = np.random.default_rng(seed)
    values = CATEGORIES[rng.choice(len(CATEGORIES), size=rows, p=shares)]
    values[rng.random(rows) < missing] = None
    return pd.Series(values)


def frames(rows: int, current_region: list[float]) -> tuple[ReferenceSummary, pd.DataFrame]:
    reference = pd.DataFrame({"region": draw(rows, TRAINING_SHARES, 0), "plan": draw(rows, TRAINING_SHARES, 1),
                              "x": np.random.default_rng(2).normal(size=rows)})
    current = pd.DataFrame({"region": draw(rows, current_region, 3), "plan": draw(rows, TRAINING_SHARES, 4),
                            "x": np.random.default_rng(5).normal(size=rows)})
    return summarize_reference(reference, categorical=["region", "plan"]), current


@pytest.mark.parametrize("rows", [20_000, 1_000_000])
def test_a_category_moving_from_10_to_40_percent_is_flagged_and_a_stable_one_is_not(rows: int) -> None:
    summary, current = frames(rows, [0.4, 0.2, 0.2, 0.2])
    report = compute_drift(summary, current)
    region, plan, x = report.feature("region"), report.feature("plan"), report.feature("x")
    assert region.kind == plan.kind == "categorical" and x.kind == "numeric"
    assert region.fired == ("psi", "jensen_shannon") and plan.fired == () and not x.drifted
    assert report.drifted_features == ("region",)
    # The declared defaults sit far from both: the move gives PSI ~0.53 and JS ~0.30, chance far below 0.1.
    assert region.psi > 2 * DriftRule().psi_threshold and region.jensen_shannon > 2 * DriftRule().jensen_shannon_threshold
    assert plan.psi < 0.01 and plan.jensen_shannon < 0.02
    assert region.ks_statistic is None and region.wasserstein is None and x.chi2_statistic is None and x.jensen_shannon is None


def test_categorical_figures_match_scipy_on_the_counts() -> None:
    summary, current = frames(20_000, [0.4, 0.2, 0.2, 0.2])
    drift = compute_drift(summary, current).feature("region")
    ref_summary = summary.feature("region")
    assert isinstance(ref_summary, CategoricalSummary)
    ref = np.array(ref_summary.category_counts, dtype=float)
    cur = current["region"].value_counts().reindex(ref_summary.categories).to_numpy(dtype=float)
    chi2, p = stats.chisquare(cur, ref / ref.sum() * cur.sum())
    assert drift.chi2_statistic == pytest.approx(chi2, rel=1e-9) and drift.chi2_pvalue == pytest.approx(p, abs=1e-12)
    assert drift.jensen_shannon == pytest.approx(distance.jensenshannon(ref, cur, base=2), rel=1e-9)
    assert drift.psi == pytest.approx(population_stability_index(ref, cur), rel=1e-12)


def test_unseen_categories_count_with_a_zero_reference_share_and_are_named() -> None:
    summary, current = frames(20_000, TRAINING_SHARES)
    current.loc[:2_999, "plan"] = "premium"  # 15% of the rows: a category training never saw
    current.loc[3_000:3_009, "plan"] = "trial"
    drift = compute_drift(summary, current).feature("plan")
    assert drift.unseen_categories == ("premium", "trial")
    assert drift.fired == ("psi", "jensen_shannon") and drift.n_current == 20_000
    # Floored at epsilon like PSI: large but finite.
    assert np.isfinite(drift.chi2_statistic) and drift.chi2_pvalue == 0.0


def test_missing_values_are_left_out_of_the_shares_and_counted() -> None:
    reference = pd.DataFrame({"plan": draw(10_000, TRAINING_SHARES, 0, missing=0.05)})
    summary = summarize_reference(reference, categorical=["plan"])
    assert summary.feature("plan").n_missing == int(reference["plan"].isna().sum()) > 0
    current = pd.DataFrame({"plan": draw(10_000, TRAINING_SHARES, 1, missing=0.3)})
    drift = compute_drift(summary, current).feature("plan")
    assert drift.n_missing == int(current["plan"].isna().sum()) and drift.n_current == 10_000 - drift.n_missing
    assert not drift.drifted  # the shares of the present values did not move; missing_values watches the gaps


def test_an_all_missing_categorical_column_is_named() -> None:
    summary, current = frames(1_000, TRAINING_SHARES)
    current["plan"] = None
    with pytest.raises(DriftInputError, match=r"feature\(s\) 'plan' are all-missing in the current frame"):
        compute_drift(summary, current)


def test_pandas_categorical_and_arrow_string_columns_give_the_same_figures() -> None:
    summary, current = frames(5_000, [0.4, 0.2, 0.2, 0.2])
    plain = compute_drift(summary, current).feature("region")
    for dtype in ("category", "string"):
        other = compute_drift(summary, current.astype({"region": dtype})).feature("region")
        assert (other.psi, other.jensen_shannon, other.chi2_statistic) == pytest.approx(
            (plain.psi, plain.jensen_shannon, plain.chi2_statistic), rel=1e-12)


def test_the_summary_round_trips_through_json_and_reads_older_versions() -> None:
    summary, _ = frames(2_000, TRAINING_SHARES)
    document = summary.to_dict()
    assert document["schema_version"] == 3
    assert ReferenceSummary.from_dict(document) == summary
    numeric_only = summarize_reference(pd.DataFrame({"x": np.arange(10.0)}))
    older = {**numeric_only.to_dict(), "schema_version": 2}
    assert ReferenceSummary.from_dict(older) == numeric_only


def test_a_categorical_rule_uses_its_own_methods_and_thresholds() -> None:
    summary, current = frames(20_000, [0.4, 0.2, 0.2, 0.2])
    js_only = DriftRule(categorical_method=("jensen_shannon",), jensen_shannon_threshold=0.5)
    report = compute_drift(summary, current, feature_rules={"region": js_only})
    assert report.feature("region").fired == () and report.feature("region").row()["method"] == "jensen_shannon"
    with pytest.raises(ValueError, match="categorical_method must be a non-empty list of psi, jensen_shannon"):
        DriftRule(categorical_method=("ks",))
