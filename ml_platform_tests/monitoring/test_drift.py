"""Drift statistics: PSI, KS (exact and summary-based), the drift rule, the JSON round trip, errors."""

from __future__ import annotations

import json
import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml_platform.monitoring.drift import (
    DriftReport,
    ReferenceSummary,
    class_share_psi,
    class_shares,
    compute_drift,
    ks_two_sample,
    population_stability_index,
    summarize_reference,
)

# --------------------------------------------------------------------------------------------------
# PSI
# --------------------------------------------------------------------------------------------------


def test_psi_hand_computed_from_counts() -> None:
    # Reference: 25% in each of 4 bins. Current: 40%, 30%, 20%, 10%.
    #   (0.40 - 0.25) * ln(0.40 / 0.25) = 0.15 * 0.470004 = 0.070501
    #   (0.30 - 0.25) * ln(0.30 / 0.25) = 0.05 * 0.182322 = 0.009116
    #   (0.20 - 0.25) * ln(0.20 / 0.25) = -0.05 * -0.223144 = 0.011157
    #   (0.10 - 0.25) * ln(0.10 / 0.25) = -0.15 * -0.916291 = 0.137444
    #   sum = 0.228218
    expected = (
        0.15 * math.log(0.40 / 0.25)
        + 0.05 * math.log(0.30 / 0.25)
        - 0.05 * math.log(0.20 / 0.25)
        - 0.15 * math.log(0.10 / 0.25)
    )
    assert expected == pytest.approx(0.228218, abs=1e-6)
    # Counts and proportions give the same answer: each side is normalised by its own total.
    assert population_stability_index([25, 25, 25, 25], [40, 30, 20, 10]) == pytest.approx(expected)
    assert population_stability_index([0.25] * 4, [0.4, 0.3, 0.2, 0.1]) == pytest.approx(expected)


def test_psi_hand_computed_through_the_summary_bins() -> None:
    # Reference 1..100 with 4 bins: edges at the linear quantiles 25.75, 50.5, 75.25,
    # so each bin holds 25 reference values. The current values land 40/30/20/10 in those bins.
    reference = pd.DataFrame({"x": np.arange(1, 101, dtype=float)})
    summary = summarize_reference(reference, n_bins=4)
    feature = summary.feature("x")
    assert feature.bin_edges == pytest.approx((25.75, 50.5, 75.25))
    assert feature.bin_counts == (25, 25, 25, 25)
    current = pd.DataFrame({"x": [10.0] * 40 + [30.0] * 30 + [60.0] * 20 + [90.0] * 10})
    report = compute_drift(summary, current)
    assert report.feature("x").psi == pytest.approx(0.228218, abs=1e-6)


def test_psi_empty_bin_uses_epsilon() -> None:
    # Reference proportions 0.5, 0.5, 0 (-> floored to 1e-4); current 0.5, 0.25, 0.25:
    #   0 + (0.25 - 0.5) * ln(0.25 / 0.5) + (0.25 - 1e-4) * ln(0.25 / 1e-4)
    #   = 0.173287 + 0.2499 * 7.824046 = 0.173287 + 1.955229 = 2.128516
    expected = -0.25 * math.log(0.5) + (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    assert expected == pytest.approx(2.128516, abs=1e-6)
    assert population_stability_index([2, 2, 0], [2, 1, 1], epsilon=1e-4) == pytest.approx(expected)


def test_current_values_outside_reference_range_land_in_open_outer_bins() -> None:
    summary = summarize_reference(pd.DataFrame({"x": np.linspace(0.0, 1.0, 1000)}))
    report = compute_drift(summary, pd.DataFrame({"x": [-50.0] * 500 + [50.0] * 500}))
    # Half the current mass in each outer bin (reference 10% each), nothing in the 8 inner bins:
    #   2 * (0.5 - 0.1) * ln(0.5 / 0.1) + 8 * (1e-4 - 0.1) * ln(1e-4 / 0.1)
    expected = 2 * 0.4 * math.log(5.0) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert report.feature("x").psi == pytest.approx(expected, rel=1e-9)
    assert report.feature("x").ks_statistic == pytest.approx(0.5)


# --------------------------------------------------------------------------------------------------
# KS
# --------------------------------------------------------------------------------------------------

KS_CASES = [
    # (n_ref, n_cur, shift, decimals rounded to (None: continuous; small values force many ties))
    (40, 55, 0.0, None),
    (300, 200, 0.3, None),
    (1_000, 1_500, 0.05, None),
    (2_000, 2_000, 0.0, 1),
    (500, 800, 0.1, 0),
    (5_000, 3_000, 0.02, 2),
]


@pytest.mark.parametrize(("n_ref", "n_cur", "shift", "decimals"), KS_CASES)
def test_exact_ks_matches_scipy(n_ref: int, n_cur: int, shift: float, decimals: int | None) -> None:
    rng = np.random.default_rng(n_ref + n_cur)
    ref = rng.normal(size=n_ref)
    cur = rng.normal(loc=shift, size=n_cur)
    if decimals is not None:
        ref, cur = np.round(ref, decimals), np.round(cur, decimals)
    ours = ks_two_sample(ref, cur)
    scipy_default = stats.ks_2samp(ref, cur)
    assert ours.statistic == scipy_default.statistic
    # Same p-value as scipy's asymptotic method; close to its default (exact) one for these sizes.
    assert ours.pvalue == pytest.approx(stats.ks_2samp(ref, cur, method="asymp").pvalue, rel=1e-9, abs=1e-300)
    assert ours.pvalue == pytest.approx(scipy_default.pvalue, rel=0.05, abs=2e-3)


def test_exact_ks_statistic_for_large_samples_matches_scipy_to_rounding() -> None:
    # Above 10,000 per side scipy subtracts two rounded ECDFs; we round the exact rational once.
    rng = np.random.default_rng(7)
    ref, cur = rng.normal(size=20_000), rng.normal(0.01, size=15_000)
    ours, theirs = ks_two_sample(ref, cur), stats.ks_2samp(ref, cur)
    assert ours.statistic == pytest.approx(theirs.statistic, rel=0, abs=1e-15)
    assert ours.pvalue == pytest.approx(theirs.pvalue, rel=0.02)


@pytest.mark.parametrize(("n_ref", "n_cur", "shift", "decimals"), KS_CASES + [(50_000, 40_000, 0.01, None)])
def test_summary_ks_within_resolution_of_exact(
    n_ref: int, n_cur: int, shift: float, decimals: int | None
) -> None:
    rng = np.random.default_rng(n_ref * 3 + n_cur)
    ref = rng.standard_t(df=5, size=n_ref)
    cur = rng.standard_t(df=5, size=n_cur) + shift
    if decimals is not None:
        ref, cur = np.round(ref, decimals), np.round(cur, decimals)
    n_quantiles = 1001
    summary = summarize_reference(pd.DataFrame({"x": ref}), n_quantiles=n_quantiles)
    feature = summary.feature("x")
    # Documented bound: the largest reference mass strictly between grid points,
    # at most 1/(n_quantiles - 1) + 1/n_ref.
    assert feature.ks_resolution <= 1 / (n_quantiles - 1) + 1 / n_ref + 1e-12
    approx = compute_drift(summary, pd.DataFrame({"x": cur})).feature("x")
    exact = ks_two_sample(ref, cur)
    # The sketch only evaluates points of the exact statistic, so it never over-states it.
    assert exact.statistic - feature.ks_resolution - 1e-12 <= approx.ks_statistic <= exact.statistic + 1e-12
    if n_ref <= 1001:
        # Every reference value is a grid point: the sketch is exact.
        assert approx.ks_statistic == pytest.approx(exact.statistic, abs=1e-12)


def test_summary_ks_pvalue_for_large_effective_n_uses_kolmogorov_asymptotics() -> None:
    rng = np.random.default_rng(11)
    ref, cur = rng.normal(size=60_000), rng.normal(0.015, size=60_000)
    summary = summarize_reference(pd.DataFrame({"x": ref}))
    result = compute_drift(summary, pd.DataFrame({"x": cur})).feature("x")
    n_eff = 60_000 * 60_000 / 120_000
    assert result.ks_pvalue == pytest.approx(stats.kstwo.sf(result.ks_statistic, n_eff), rel=0.02)


# --------------------------------------------------------------------------------------------------
# Drift rule on synthetic data
# --------------------------------------------------------------------------------------------------


def _synthetic_frame(n: int, seed: int) -> pd.DataFrame:
    """Eight features of different shapes, including a discrete one."""
    rng = np.random.default_rng(seed)
    return pd.DataFrame(
        {
            "f0": rng.normal(size=n),
            "f1": rng.normal(10.0, 3.0, size=n),
            "f2": rng.normal(-5.0, 0.5, size=n),
            "f3": rng.exponential(2.0, size=n),
            "f4": rng.uniform(0.0, 1.0, size=n),
            "f5": rng.lognormal(0.0, 0.5, size=n),
            "f6": rng.poisson(3.0, size=n),
            "f7": rng.gamma(2.0, 2.0, size=n),
        }
    )


@pytest.fixture(scope="module")
def synthetic_summary() -> ReferenceSummary:
    return summarize_reference(_synthetic_frame(20_000, seed=1))


def test_no_shift_flags_nothing(synthetic_summary: ReferenceSummary) -> None:
    report = compute_drift(synthetic_summary, _synthetic_frame(20_000, seed=2))
    assert report.drifted_features == ()
    assert report.share_drifted == 0.0
    assert not report.dataset_drift
    assert max(f.psi for f in report.features) < 0.02


def test_shifted_features_are_exactly_the_flagged_ones(synthetic_summary: ReferenceSummary) -> None:
    current = _synthetic_frame(20_000, seed=3)
    for name in ("f2", "f5"):
        current[name] = current[name] + current[name].std()  # mean + 1 std
    report = compute_drift(synthetic_summary, current)
    assert report.drifted_features == ("f2", "f5")
    assert {f.feature for f in report.features if f.drifted} == {"f2", "f5"}
    assert report.share_drifted == pytest.approx(2 / 8)
    assert report.dataset_drift  # some feature's PSI > 0.20
    for f in report.features:
        assert (f.psi > 0.2) == (f.feature in ("f2", "f5"))


def test_dataset_rules_are_parameters(synthetic_summary: ReferenceSummary) -> None:
    current = _synthetic_frame(20_000, seed=3)
    current["f2"] = current["f2"] + current["f2"].std()
    # Any-feature rule switched off (threshold out of reach): 1 of 8 drifted is below half.
    report = compute_drift(synthetic_summary, current, dataset_psi_threshold=1e9)
    assert report.drifted_features == ("f2",) and not report.dataset_drift
    # Share rule alone: 1/8 >= 0.125.
    report = compute_drift(synthetic_summary, current, dataset_psi_threshold=1e9, drift_share_threshold=0.125)
    assert report.dataset_drift


def test_tiny_ks_pvalue_alone_does_not_flag_drift() -> None:
    # A trivial shift (0.02 std) on large samples: KS is "significant" but PSI is far below 0.20.
    rng = np.random.default_rng(5)
    summary = summarize_reference(pd.DataFrame({"x": rng.normal(size=200_000)}))
    result = compute_drift(summary, pd.DataFrame({"x": rng.normal(0.02, size=200_000)})).feature("x")
    assert result.ks_pvalue < 1e-6 and result.ks_significant
    assert result.psi < 0.01 and not result.drifted


def test_nans_in_current_are_dropped_and_counted(synthetic_summary: ReferenceSummary) -> None:
    current = _synthetic_frame(5_000, seed=4)
    current.loc[:99, "f0"] = np.nan
    report = compute_drift(synthetic_summary, current)
    assert report.feature("f0").n_missing == 100
    assert report.feature("f0").n_current == 4_900
    assert report.feature("f1").n_missing == 0
    assert not report.feature("f0").drifted


def test_extra_current_columns_are_ignored_and_nullable_ints_work() -> None:
    summary = summarize_reference(pd.DataFrame({"x": np.arange(100)}))
    current = pd.DataFrame({"x": pd.array(list(range(99)) + [None], dtype="Int64"), "other": ["a"] * 100})
    report = compute_drift(summary, current)
    assert [f.feature for f in report.features] == ["x"]
    assert report.feature("x").n_missing == 1


def test_report_serialises(synthetic_summary: ReferenceSummary) -> None:
    report = compute_drift(synthetic_summary, _synthetic_frame(2_000, seed=6))
    as_json = json.loads(json.dumps(report.to_dict()))
    assert [f["feature"] for f in as_json["features"]] == list(synthetic_summary.feature_names)
    assert list(report.to_frame()["feature"]) == list(synthetic_summary.feature_names)


# --------------------------------------------------------------------------------------------------
# JSON round trip
# --------------------------------------------------------------------------------------------------


def test_summary_json_round_trip_gives_identical_results(synthetic_summary: ReferenceSummary) -> None:
    restored = ReferenceSummary.from_dict(json.loads(json.dumps(synthetic_summary.to_dict())))
    assert restored == synthetic_summary
    current = _synthetic_frame(5_000, seed=8)
    current["f1"] = current["f1"] * 1.5
    before: DriftReport = compute_drift(synthetic_summary, current)
    after: DriftReport = compute_drift(restored, current)
    assert after == before


def test_from_dict_rejects_unknown_schema_version(synthetic_summary: ReferenceSummary) -> None:
    data = synthetic_summary.to_dict()
    data["schema_version"] = 999
    with pytest.raises(ValueError, match="schema_version"):
        ReferenceSummary.from_dict(data)


# --------------------------------------------------------------------------------------------------
# Clear errors
# --------------------------------------------------------------------------------------------------


def test_missing_feature_is_named() -> None:
    summary = summarize_reference(pd.DataFrame({"age": [1.0, 2.0, 3.0], "income": [4.0, 5.0, 6.0]}))
    with pytest.raises(ValueError, match="'income'"):
        compute_drift(summary, pd.DataFrame({"age": [1.0, 2.0]}))


def test_non_numeric_feature_is_named() -> None:
    summary = summarize_reference(pd.DataFrame({"age": [1.0, 2.0, 3.0], "city": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match="'city'.*not numeric"):
        compute_drift(summary, pd.DataFrame({"age": [1.0, 2.0], "city": ["Oslo", "Rome"]}))
    with pytest.raises(ValueError, match="'city'.*not numeric"):
        summarize_reference(pd.DataFrame({"city": ["Oslo", "Rome"]}))


def test_empty_current_frame() -> None:
    summary = summarize_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match="empty"):
        compute_drift(summary, pd.DataFrame({"x": pd.Series([], dtype=float)}))


def test_all_nan_feature_is_named() -> None:
    summary = summarize_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    with pytest.raises(ValueError, match="'x'.*all-NaN"):
        compute_drift(summary, pd.DataFrame({"x": [np.nan, np.nan]}))
    with pytest.raises(ValueError, match="'x'.*all-NaN"):
        summarize_reference(pd.DataFrame({"x": [np.nan, np.nan]}))


# --------------------------------------------------------------------------------------------------
# Constant and discrete features (duplicate quantile edges)
# --------------------------------------------------------------------------------------------------


def test_constant_feature() -> None:
    summary = summarize_reference(pd.DataFrame({"c": np.full(1_000, 7.0)}))
    feature = summary.feature("c")
    assert feature.std == 0.0 and feature.ks_points == (7.0,)
    same = compute_drift(summary, pd.DataFrame({"c": np.full(500, 7.0)})).feature("c")
    assert same.psi == 0.0 and same.ks_statistic == 0.0 and not same.drifted
    # A constant that moves, up or down, is caught by PSI as well as by KS.
    for value in (8.0, 6.0):
        moved = compute_drift(summary, pd.DataFrame({"c": np.full(500, value)})).feature("c")
        assert moved.drifted and moved.ks_statistic == 1.0


def test_discrete_feature_with_duplicate_quantiles() -> None:
    rng = np.random.default_rng(9)
    values = rng.choice([0, 1, 2], p=[0.7, 0.2, 0.1], size=5_000)
    summary = summarize_reference(pd.DataFrame({"k": values}))
    feature = summary.feature("k")
    assert len(feature.bin_counts) < 10  # duplicate deciles were merged
    assert len(feature.bin_edges) == len(set(feature.bin_edges))
    same = compute_drift(summary, pd.DataFrame({"k": values})).feature("k")
    assert same.psi == 0.0 and same.ks_statistic == 0.0
    shifted = compute_drift(
        summary, pd.DataFrame({"k": rng.choice([0, 1, 2], p=[0.3, 0.3, 0.4], size=5_000)})
    ).feature("k")
    assert shifted.drifted


# --------------------------------------------------------------------------------------------------
# Prediction drift (class shares)
# --------------------------------------------------------------------------------------------------


def test_class_shares_are_json_friendly() -> None:
    shares = class_shares(np.array([1, 0, 1, 1]))
    assert shares == {"0": 0.25, "1": 0.75}
    assert class_shares(pd.Series(["b", "a", None, "a"])) == {
        "a": pytest.approx(2 / 3),
        "b": pytest.approx(1 / 3),
    }
    with pytest.raises(ValueError):
        class_shares([])


def test_class_share_psi() -> None:
    reference = class_shares(["a"] * 50 + ["b"] * 30 + ["c"] * 20)
    assert class_share_psi(reference, class_shares(["c"] * 2 + ["a"] * 5 + ["b"] * 3)) == pytest.approx(0.0)
    shifted = class_shares(["a"] * 20 + ["b"] * 30 + ["c"] * 50)
    assert class_share_psi(reference, shifted) > 0.2
    # A class the reference never predicted counts as share 0 (floored at epsilon), not an error.
    assert class_share_psi(reference, {"a": 0.5, "b": 0.3, "c": 0.1, "d": 0.1}) > 0.2
