"""Drift statistics: PSI, the KS statistic and the normalized Wasserstein distance against the
stored summary (exact on a complete grid, guaranteed bounds otherwise), checked against scipy
and Evidently's formulas; the shift corpus and the drift rule; the JSON round trip; errors."""

from __future__ import annotations

import json
import math
from typing import get_args

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from ml_platform import declaration
from ml_platform.monitoring import drift
from ml_platform.monitoring.drift import (
    DriftInputError,
    DriftReport,
    DriftRule,
    ReferenceSummary,
    class_share_psi,
    class_shares,
    compute_drift,
    population_stability_index,
    summarize_reference,
)
from ml_platform_tests.monitoring.shift_corpus import (
    CASES,
    EXPECTED_FLAGS,
    current_columns,
    evidently_psi,
    evidently_wasserstein,
    reference_column,
)

EVERY_METHOD = DriftRule(method=("psi", "ks", "wasserstein"))

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
    assert compute_drift(summary, current).feature("x").psi == pytest.approx(0.228218, abs=1e-6)


def test_psi_equals_an_independent_decile_psi() -> None:
    rng = np.random.default_rng(3)
    ref, cur = rng.gamma(2.0, size=50_000), rng.gamma(2.2, size=40_000)
    edges = np.quantile(ref, np.arange(1, 10) / 10)  # numpy's own deciles, bins [e_i-1, e_i)
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=10) / ref.size
    c = np.bincount(np.searchsorted(edges, cur, side="right"), minlength=10) / cur.size
    r, c = np.maximum(r, 1e-4), np.maximum(c, 1e-4)
    independent = float(np.sum((c - r) * np.log(c / r)))
    ours = compute_drift(summarize_reference(pd.DataFrame({"x": ref})), pd.DataFrame({"x": cur})).feature("x").psi
    assert ours == pytest.approx(independent, rel=1e-12)


def test_psi_empty_bin_uses_epsilon() -> None:
    # Reference proportions 0.5, 0.5, 0 (-> floored to 1e-4); current 0.5, 0.25, 0.25:
    #   0 + (0.25 - 0.5) * ln(0.25 / 0.5) + (0.25 - 1e-4) * ln(0.25 / 1e-4)
    expected = -0.25 * math.log(0.5) + (0.25 - 1e-4) * math.log(0.25 / 1e-4)
    assert expected == pytest.approx(2.128516, abs=1e-6)
    assert population_stability_index([2, 2, 0], [2, 1, 1], epsilon=1e-4) == pytest.approx(expected)


def test_current_values_outside_reference_range_land_in_open_outer_bins() -> None:
    summary = summarize_reference(pd.DataFrame({"x": np.linspace(0.0, 1.0, 1000)}))
    result = compute_drift(summary, pd.DataFrame({"x": [-50.0] * 500 + [50.0] * 500})).feature("x")
    # Half the current mass in each outer bin (reference 10% each), nothing in the 8 inner bins:
    expected = 2 * 0.4 * math.log(5.0) + 8 * (1e-4 - 0.1) * math.log(1e-4 / 0.1)
    assert result.psi == pytest.approx(expected, rel=1e-9)
    assert result.ks_statistic == 0.5 and result.ks_bound == 0.0
    # W1 = 50 * 0.5 (below the reference) + 49 * 0.5 (above it) + about 1/4 (across it), over its std.
    assert result.wasserstein * np.std(np.linspace(0.0, 1.0, 1000)) == pytest.approx(49.75, abs=1e-3)


# --------------------------------------------------------------------------------------------------
# KS and Wasserstein: exact on a complete grid, within their bounds otherwise
# --------------------------------------------------------------------------------------------------

SAMPLE_CASES = [
    # (n_ref, n_cur, shift, scale, decimals rounded to (None: continuous; few decimals force ties))
    (1, 1, 0.0, 1.0, None),
    (1, 40, 0.3, 1.0, None),
    (40, 55, 0.0, 1.0, None),
    (300, 200, 0.3, 1.5, None),
    (1_000, 1_500, 0.05, 1.0, None),
    (2_000, 2_000, 0.0, 1.0, 1),
    (500, 800, 0.1, 2.0, 0),
    (5_000, 3_000, 0.02, 1.0, 2),
    (9_000, 30_000, -0.2, 0.7, None),
    (60_000, 20_000, 0.1, 1.0, 2),  # 60,000 rows, few distinct values: still a complete grid
]


def sample(n_ref: int, n_cur: int, shift: float, scale: float, decimals: int | None, offset: float = 0.0,
           ) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng([n_ref, n_cur, 7])
    ref = rng.standard_t(df=5, size=n_ref) + offset
    cur = rng.standard_t(df=5, size=n_cur) * scale + shift + offset
    if decimals is not None:
        ref, cur = np.round(ref, decimals), np.round(cur, decimals)
    return ref, cur


def drift_of(ref: np.ndarray, cur: np.ndarray, **summary_options: int) -> drift.FeatureDrift:
    summary = summarize_reference(pd.DataFrame({"x": ref}), **summary_options)
    return compute_drift(summary, pd.DataFrame({"x": cur}), rule=EVERY_METHOD).feature("x")


def scipy_wasserstein(ref: np.ndarray, cur: np.ndarray) -> float:
    std = float(np.std(ref))
    norm = std if std > 0 else (abs(float(np.mean(ref))) or 1.0)
    return float(stats.wasserstein_distance(ref, cur)) / norm


@pytest.mark.parametrize("offset", [0.0, 1e4])
@pytest.mark.parametrize(("n_ref", "n_cur", "shift", "scale", "decimals"), SAMPLE_CASES)
def test_complete_grid_gives_exact_ks_and_wasserstein(
    n_ref: int, n_cur: int, shift: float, scale: float, decimals: int | None, offset: float
) -> None:
    ref, cur = sample(n_ref, n_cur, shift, scale, decimals, offset)
    result = drift_of(ref, cur)
    assert result.ks_bound == 0.0 and result.wasserstein_bound == 0.0
    assert result.ks_statistic == pytest.approx(stats.ks_2samp(ref, cur).statistic, rel=0, abs=1e-15)
    # A large offset (1e4) costs scipy and us a little rounding on the values themselves.
    assert result.wasserstein == pytest.approx(scipy_wasserstein(ref, cur), rel=1e-9, abs=1e-12)


@pytest.mark.parametrize(("n_ref", "n_cur", "shift", "scale", "decimals"), SAMPLE_CASES[2:5])
def test_ks_statistic_is_bit_equal_to_scipys_exact_mode(
    n_ref: int, n_cur: int, shift: float, scale: float, decimals: int | None
) -> None:
    ref, cur = sample(n_ref, n_cur, shift, scale, decimals)
    assert drift_of(ref, cur).ks_statistic == stats.ks_2samp(ref, cur, method="exact").statistic


@pytest.mark.parametrize("max_points", [2, 50, 1_001])
@pytest.mark.parametrize(("n_ref", "n_cur", "shift", "scale", "decimals"), SAMPLE_CASES[3:])
def test_bounded_grid_brackets_the_exact_values(
    n_ref: int, n_cur: int, shift: float, scale: float, decimals: int | None, max_points: int
) -> None:
    ref, cur = sample(n_ref, n_cur, shift, scale, decimals)
    summary = summarize_reference(pd.DataFrame({"x": ref}), max_points=max_points)
    result = compute_drift(summary, pd.DataFrame({"x": cur}), rule=EVERY_METHOD).feature("x")
    exact_d, exact_w = stats.ks_2samp(ref, cur).statistic, scipy_wasserstein(ref, cur)
    assert abs(result.ks_statistic - exact_d) <= result.ks_bound + 1e-15
    assert abs(result.wasserstein - exact_w) <= result.wasserstein_bound + 1e-12
    if summary.feature("x").complete:
        assert result.ks_bound == result.wasserstein_bound == 0.0
    else:
        assert len(summary.feature("x").grid_points) <= max_points


def test_p_value_follows_scipy() -> None:
    ref, cur = sample(3_000, 2_000, 0.08, 1.0, None)
    result = drift_of(ref, cur)
    assert result.ks_pvalue == pytest.approx(stats.ks_2samp(ref, cur, method="asymp").pvalue, rel=1e-9)
    big_ref, big_cur = sample(60_000, 60_000, 0.015, 1.0, None)
    big = drift_of(big_ref, big_cur)
    assert big.ks_pvalue == pytest.approx(stats.kstwo.sf(big.ks_statistic, 30_000), rel=0.02)


def test_summary_keeps_every_distinct_value_up_to_max_points() -> None:
    values = np.repeat(np.arange(10_000, dtype=float), 3)
    complete = summarize_reference(pd.DataFrame({"x": values})).feature("x")
    assert complete.complete and list(complete.grid_points) == list(range(10_000))
    assert list(complete.grid_count_le[:2]) == [3, 6] and list(complete.grid_count_lt[:2]) == [0, 3]
    bounded = summarize_reference(pd.DataFrame({"x": np.append(values, 0.5)})).feature("x")
    assert not bounded.complete and len(bounded.grid_points) <= 10_000
    assert (bounded.grid_points[0], bounded.grid_points[-1]) == (0.0, 9_999.0)


# --------------------------------------------------------------------------------------------------
# The shift corpus, at 1e6 and at 20,000 rows
# --------------------------------------------------------------------------------------------------

CORPUS_SIZES = [1_000_000, 20_000]


@pytest.fixture(scope="module", params=CORPUS_SIZES, ids=lambda n: f"{n}_rows")
def corpus(request: pytest.FixtureRequest) -> tuple[np.ndarray, dict[str, np.ndarray], DriftReport, DriftReport]:
    """Reference, current columns, and the report with every method and with the default rule."""
    n = request.param
    reference = reference_column(n)
    current = current_columns(n)
    summary = summarize_reference(pd.DataFrame({name: reference for name in CASES}))
    frame = pd.DataFrame(current)
    return reference, current, compute_drift(summary, frame, rule=EVERY_METHOD), compute_drift(summary, frame)


def test_each_method_flags_the_cases_of_the_table(corpus) -> None:
    _, _, report, _ = corpus
    flags = {f.feature: tuple(m in f.fired for m in ("psi", "ks", "wasserstein")) for f in report.features}
    assert flags == EXPECTED_FLAGS


def test_the_default_rule_flags_location_scale_and_tails_and_leaves_tiny_and_unchanged(corpus) -> None:
    _, _, _, default = corpus
    assert default.features[0].rule == DriftRule() and DriftRule().method == ("psi", "wasserstein")
    assert set(default.drifted_features) == {"location", "scale", "tails", "bimodal"}
    assert default.dataset_drift and default.share_drifted == pytest.approx(4 / 7)
    # Location and bimodal fire both methods; scale and tails only the Wasserstein distance.
    assert {f.feature: f.fired for f in default.features if f.drifted} == {
        "location": ("psi", "wasserstein"), "bimodal": ("psi", "wasserstein"),
        "scale": ("wasserstein",), "tails": ("wasserstein",),
    }


def test_corpus_values_match_scipy_and_evidentlys_formulas(corpus) -> None:
    reference, current, report, _ = corpus
    # scipy on 1e6 rows costs ~1.5 s a case: check one there, all of them on 20,000 rows.
    names = list(CASES) if reference.size <= 20_000 else ["scale"]
    for name in names:
        result = report.feature(name)
        assert abs(result.ks_statistic - stats.ks_2samp(reference, current[name]).statistic) <= result.ks_bound + 1e-15
        # Evidently's default for > 1,000 rows: the same normalized distance, threshold 0.1 (>=).
        evidently = evidently_wasserstein(reference, current[name])
        assert abs(result.wasserstein - evidently) <= result.wasserstein_bound + 1e-12
        assert (evidently >= 0.1) == ("wasserstein" in result.fired)
    for name in CASES:
        result = report.feature(name)
        assert 0 < result.ks_bound < 1e-4 and 0 < result.wasserstein_bound < 1e-3  # 10,000 quantiles
    # Evidently's own PSI (Sturges bins over both samples, threshold 0.1) catches the scale
    # change that decile PSI misses.
    assert evidently_psi(reference, current["scale"]) > 0.2 > report.feature("scale").psi
    assert evidently_psi(reference, current["unchanged"]) < 0.01


# --------------------------------------------------------------------------------------------------
# The drift rule
# --------------------------------------------------------------------------------------------------


def small_corpus(n: int = 20_000) -> tuple[ReferenceSummary, pd.DataFrame]:
    return (summarize_reference(pd.DataFrame({name: reference_column(n) for name in CASES})),
            pd.DataFrame(current_columns(n)))


def test_methods_and_thresholds_can_differ_per_feature() -> None:
    summary, current = small_corpus()
    report = compute_drift(summary, current, feature_rules={
        "scale": DriftRule(method=("psi",)),  # PSI alone misses the scale change
        "tiny": DriftRule(method=("wasserstein",), wasserstein_threshold=0.03),  # a stricter threshold catches it
    })
    assert set(report.drifted_features) == {"location", "tails", "bimodal", "tiny"}
    assert report.feature("tiny").fired == ("wasserstein",) and report.feature("tiny").rule.wasserstein_threshold == 0.03
    assert report.feature("location").rule == DriftRule()


def test_drift_share_decides_the_dataset() -> None:
    summary, current = small_corpus()
    only_tails = current.assign(location=current["unchanged"], scale=current["unchanged"], bimodal=current["unchanged"])
    assert compute_drift(summary, only_tails).dataset_drift  # unset: any drifted feature
    at_half = compute_drift(summary, only_tails, drift_share=0.5)
    assert at_half.drifted_features == ("tails",) and not at_half.dataset_drift
    assert compute_drift(summary, only_tails, drift_share=1 / 7).dataset_drift


def test_bad_rules_are_named() -> None:
    with pytest.raises(ValueError, match="non-empty list of psi, ks, wasserstein; got \\['chi2'\\]"):
        DriftRule(method=("chi2",))
    with pytest.raises(ValueError, match="ks_threshold"):
        DriftRule(ks_threshold=0.0)
    summary, current = small_corpus(200)
    with pytest.raises(DriftInputError, match="does not have: 'nope'"):
        compute_drift(summary, current, feature_rules={"nope": DriftRule()})


def test_threads_give_the_same_report_as_one() -> None:
    summary, current = small_corpus()
    assert compute_drift(summary, current, workers=1) == compute_drift(summary, current, workers=4)


def test_declaration_offers_the_same_methods_and_defaults() -> None:
    assert get_args(declaration.DriftMethod) == drift.DRIFT_METHODS
    declared = declaration.DataDriftCheck()
    assert (tuple(declared.method), declared.psi_threshold, declared.ks_threshold, declared.wasserstein_threshold) == (
        drift.DEFAULT_METHOD, drift.DEFAULT_PSI_THRESHOLD, drift.DEFAULT_KS_THRESHOLD, drift.DEFAULT_WASSERSTEIN_THRESHOLD)


# --------------------------------------------------------------------------------------------------
# Missing values, extra columns, serialisation
# --------------------------------------------------------------------------------------------------


def test_nans_in_current_are_dropped_and_counted() -> None:
    summary, current = small_corpus(5_000)
    current.loc[:99, "unchanged"] = np.nan
    result = compute_drift(summary, current).feature("unchanged")
    expected = drift_of(reference_column(5_000), current["unchanged"].dropna().to_numpy())
    assert (result.n_missing, result.n_current) == (100, 4_900)
    assert (result.ks_statistic, result.wasserstein, result.psi) == (expected.ks_statistic, expected.wasserstein, expected.psi)


def test_extra_current_columns_are_ignored_and_nullable_ints_work() -> None:
    summary = summarize_reference(pd.DataFrame({"x": np.arange(100)}))
    current = pd.DataFrame({"x": pd.array(list(range(99)) + [None], dtype="Int64"), "other": ["a"] * 100})
    report = compute_drift(summary, current)
    assert [f.feature for f in report.features] == ["x"]
    assert report.feature("x").n_missing == 1


def test_report_serialises() -> None:
    summary, current = small_corpus(2_000)
    as_json = json.loads(json.dumps(compute_drift(summary, current).to_dict()))
    assert [f["feature"] for f in as_json["features"]] == list(CASES)
    assert as_json["features"][0]["method"] == "psi, wasserstein" and as_json["drift_share"] is None


def test_summary_json_round_trip_gives_identical_results() -> None:
    summary, current = small_corpus(5_000)
    restored = ReferenceSummary.from_dict(json.loads(json.dumps(summary.to_dict())))
    assert restored == summary
    assert compute_drift(restored, current) == compute_drift(summary, current)


def version_1(summary: ReferenceSummary) -> dict:
    """The summary as the previous release stored it: schema 1, a 1,001-point sketch under ks_* keys."""
    data = summary.to_dict()
    data.update(schema_version=1, n_quantiles=data.pop("max_points"))
    del data["grid_encoding"]
    for feature, stored in zip(data["features"], summary.features):
        for key in ("points", "count_le", "count_lt"):
            del feature[f"grid_{key}"]
            feature[f"ks_{key}"] = getattr(stored, f"grid_{key}").tolist()
    return data


def test_a_version_1_summary_is_read_as_a_bounded_grid() -> None:
    ref, cur = sample(20_000, 20_000, 0.1, 1.2, None)
    old = ReferenceSummary.from_dict(version_1(summarize_reference(pd.DataFrame({"x": ref}), max_points=1_001)))
    assert old.max_points == 1_001 and not old.feature("x").complete
    result = compute_drift(old, pd.DataFrame({"x": cur}), rule=EVERY_METHOD).feature("x")
    assert 0 < result.ks_bound <= 1 / 1_000 and abs(result.ks_statistic - stats.ks_2samp(ref, cur).statistic) <= result.ks_bound
    assert abs(result.wasserstein - scipy_wasserstein(ref, cur)) <= result.wasserstein_bound


def test_from_dict_rejects_unknown_schema_version() -> None:
    data = summarize_reference(pd.DataFrame({"x": [1.0, 2.0]})).to_dict()
    data["schema_version"] = 999
    with pytest.raises(ValueError, match="schema_version 999"):
        ReferenceSummary.from_dict(data)


def test_json_size_is_bounded_by_max_points() -> None:
    summary = summarize_reference(pd.DataFrame({"x": reference_column(50_000)}))
    size = len(json.dumps(summary.to_dict(), separators=(",", ":")))
    assert len(summary.feature("x").grid_points) == 10_000
    assert 10_000 * 20 < size < 10_000 * 40  # ~36 bytes a point: the value and its two counts


# --------------------------------------------------------------------------------------------------
# Clear errors
# --------------------------------------------------------------------------------------------------


def test_missing_feature_is_named() -> None:
    summary = summarize_reference(pd.DataFrame({"age": [1.0, 2.0, 3.0], "income": [4.0, 5.0, 6.0]}))
    with pytest.raises(DriftInputError, match="'income'"):
        compute_drift(summary, pd.DataFrame({"age": [1.0, 2.0]}))


def test_non_numeric_feature_is_named() -> None:
    summary = summarize_reference(pd.DataFrame({"age": [1.0, 2.0, 3.0], "city": [1.0, 2.0, 3.0]}))
    with pytest.raises(DriftInputError, match="'city'.*not numeric"):
        compute_drift(summary, pd.DataFrame({"age": [1.0, 2.0], "city": ["Oslo", "Rome"]}))
    with pytest.raises(ValueError, match="'city'.*not numeric"):
        summarize_reference(pd.DataFrame({"city": ["Oslo", "Rome"]}))


def test_empty_current_frame() -> None:
    summary = summarize_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    with pytest.raises(DriftInputError, match="empty"):
        compute_drift(summary, pd.DataFrame({"x": pd.Series([], dtype=float)}))


def test_all_nan_features_are_all_named() -> None:
    summary = summarize_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0], "y": [1.0, 2.0, 3.0], "z": [1.0, 2.0, 3.0]}))
    with pytest.raises(DriftInputError, match=r"feature\(s\) 'x', 'z' are all-missing in the current frame"):
        compute_drift(summary, pd.DataFrame({"x": [np.nan, np.nan], "y": [1.0, 2.0], "z": [np.nan, np.nan]}))
    with pytest.raises(ValueError, match="'x'.*all-NaN"):
        summarize_reference(pd.DataFrame({"x": [np.nan, np.nan]}))


def test_infinite_current_values_are_named() -> None:
    summary = summarize_reference(pd.DataFrame({"x": [1.0, 2.0, 3.0]}))
    with pytest.raises(DriftInputError, match="'x' has infinite values in the current frame"):
        compute_drift(summary, pd.DataFrame({"x": [1.0, np.inf]}))


# --------------------------------------------------------------------------------------------------
# Constant and discrete features (duplicate quantile edges)
# --------------------------------------------------------------------------------------------------


def test_constant_feature_is_normalized_by_its_mean_or_one() -> None:
    summary = summarize_reference(pd.DataFrame({"c": np.full(1_000, 7.0), "zero": np.zeros(1_000)}))
    assert summary.feature("c").std == 0.0 and list(summary.feature("c").grid_points) == [7.0]
    same = compute_drift(summary, pd.DataFrame({"c": np.full(500, 7.0), "zero": np.zeros(500)}), rule=EVERY_METHOD)
    assert all(f.psi == f.ks_statistic == f.wasserstein == 0.0 and not f.drifted for f in same.features)
    # A constant that moves by 1, up or down, is caught by every method; W1 = 1, over |mean| 7, or 1 for 0.
    for step in (1.0, -1.0):
        moved = compute_drift(summary, pd.DataFrame({"c": np.full(500, 7.0 + step), "zero": np.full(500, step)}),
                              rule=EVERY_METHOD)
        assert moved.feature("c").fired == ("psi", "ks", "wasserstein") and moved.feature("c").ks_statistic == 1.0
        assert moved.feature("c").wasserstein == pytest.approx(1 / 7) and moved.feature("zero").wasserstein == 1.0


def test_discrete_feature_with_duplicate_quantiles() -> None:
    rng = np.random.default_rng(9)
    values = rng.choice([0, 1, 2], p=[0.7, 0.2, 0.1], size=5_000)
    summary = summarize_reference(pd.DataFrame({"k": values}))
    feature = summary.feature("k")
    assert len(feature.bin_counts) < 10 and list(feature.grid_points) == [0.0, 1.0, 2.0]  # duplicate deciles merged
    same = compute_drift(summary, pd.DataFrame({"k": values})).feature("k")
    assert same.psi == 0.0 and same.ks_statistic == 0.0 and same.wasserstein == 0.0
    shifted_values = rng.choice([0, 1, 2], p=[0.3, 0.3, 0.4], size=5_000)
    shifted = compute_drift(summary, pd.DataFrame({"k": shifted_values})).feature("k")
    assert shifted.drifted and shifted.wasserstein == pytest.approx(scipy_wasserstein(values, shifted_values), rel=1e-12)


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
