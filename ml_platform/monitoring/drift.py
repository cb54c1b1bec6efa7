"""Feature and prediction drift: PSI and Kolmogorov-Smirnov against a compact reference summary.

At training time `summarize_reference` turns the training frame into a `ReferenceSummary` that is
stored as JSON next to the model artifact (`to_dict` / `from_dict`). Monitoring then calls
`compute_drift(summary, current_frame)` and never needs the training data again.

Per feature the summary holds:

* PSI bins: interior edges at the reference's quantiles (10 bins by default). Duplicate edges
  (discrete or constant features) are de-duplicated, so such features get fewer bins. The outer
  bins are open to -inf/+inf so current values outside the reference range are still counted.
  Bins are left-closed: bin i holds edges[i-1] <= x < edges[i]. If the top edge is the reference
  maximum (an atom), one more edge just above it keeps "above the max" in a bin of its own.
* Moments (count, mean, std, min, max) for humans reading the summary.
* A KS sketch: the reference's empirical CDF (counts <= and < each point) at the distinct values
  of a fixed grid of quantiles (1,001 by default). The summary-based KS statistic is
  max |ECDF_ref - ECDF_cur| over those points and their left limits. Every point evaluated is a
  point of the exact two-sample statistic, so the sketch never over-states it, and it under-states
  it by at most `FeatureSummary.ks_resolution`, the largest reference mass strictly between two
  grid points: <= 1/(n_quantiles - 1) + 1/n_ref.

Drift rule (why PSI decides and KS only informs): with a million rows the KS p-value is tiny for
any shift, however trivial, so a p-value cut-off would flag everything. PSI is an effect size that
does not grow with n, so a feature drifts when its PSI exceeds `psi_threshold` (0.20 by default).
KS statistic and p-value are reported alongside. The dataset drifts when any feature's PSI exceeds
`dataset_psi_threshold` or at least `drift_share_threshold` of the features drift.

This module deliberately imports no Dagster: numpy, scipy and pandas only.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass
from typing import Any, NamedTuple

import numpy as np
import pandas as pd

SCHEMA_VERSION = 1
DEFAULT_N_BINS = 10
DEFAULT_N_QUANTILES = 1001
# Floor for bin proportions so an empty bin gives a large but finite log() term.
DEFAULT_EPSILON = 1e-4
DEFAULT_PSI_THRESHOLD = 0.2
DEFAULT_KS_PVALUE_THRESHOLD = 0.05
DEFAULT_DRIFT_SHARE_THRESHOLD = 0.5
# Up to this effective n the finite-n Kolmogorov distribution (`scipy.stats.kstwo`) is used, which
# is what `scipy.stats.ks_2samp(method="asymp")` does. Above it kstwo.sf costs ~1 us per unit of n
# (about 0.5 s at n = 500,000), so the asymptotic Kolmogorov distribution is used instead; it is
# slightly conservative (p-values a few percent too high relative, at most) at those sizes.
_KSTWO_MAX_N = 10_000


# --------------------------------------------------------------------------------------------------
# Plain statistics
# --------------------------------------------------------------------------------------------------


class KSResult(NamedTuple):
    statistic: float
    pvalue: float


def population_stability_index(
    reference: Sequence[float] | np.ndarray,
    current: Sequence[float] | np.ndarray,
    *,
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """PSI = sum((c - r) * ln(c / r)) over bins, from per-bin counts or proportions.

    Each side is normalised by its own total, then floored at `epsilon` so empty bins stay finite.
    """
    ref = np.asarray(reference, dtype=np.float64)
    cur = np.asarray(current, dtype=np.float64)
    if ref.shape != cur.shape or ref.ndim != 1 or ref.size == 0:
        raise ValueError(f"PSI needs two equally long non-empty 1-d vectors, got {ref.shape} and {cur.shape}")
    if (ref < 0).any() or (cur < 0).any() or ref.sum() <= 0 or cur.sum() <= 0:
        raise ValueError("PSI needs non-negative counts/proportions with a positive total on each side")
    r = np.maximum(ref / ref.sum(), epsilon)
    c = np.maximum(cur / cur.sum(), epsilon)
    return float(np.sum((c - r) * np.log(c / r)))


def ks_two_sample(
    reference_values: Sequence[float] | np.ndarray, current_values: Sequence[float] | np.ndarray
) -> KSResult:
    """Exact two-sample KS statistic from both raw samples (NaNs dropped).

    The statistic is the exact rational max |ECDF_ref - ECDF_cur| rounded once to float: bit-equal
    to `scipy.stats.ks_2samp` where scipy uses its exact method (both samples <= 10,000), within
    ~1e-16 elsewhere (scipy then subtracts two rounded ECDFs). The p-value is the one the summary
    path uses (see `_ks_pvalue`): equal to `ks_2samp(method="asymp")` up to effective n = 10,000 and
    close to `ks_2samp`'s default, which uses an exact p-value for small samples.
    """
    ref = _sorted_non_nan(reference_values, "reference_values")
    cur = _sorted_non_nan(current_values, "current_values")
    n_ref, n_cur = ref.size, cur.size
    both = np.concatenate([ref, cur])
    # ECDFs as integer counts: D = max |c_ref * n_cur - c_cur * n_ref| / (n_ref * n_cur) is then an
    # exact rational rounded once (as ks_2samp's exact mode does), not a difference of two roundings.
    c_ref = np.searchsorted(ref, both, side="right").astype(np.int64)
    c_cur = np.searchsorted(cur, both, side="right").astype(np.int64)
    numerator = int(np.max(np.abs(c_ref * n_cur - c_cur * n_ref)))
    g = math.gcd(n_ref, n_cur)
    statistic = (numerator // g) / (n_ref * n_cur // g)
    return KSResult(statistic, _ks_pvalue(statistic, n_ref, n_cur))


def class_shares(labels: Iterable[object] | pd.Series | np.ndarray) -> dict[str, float]:
    """Share of each predicted class, keyed by str(label) so the dict is JSON-able. Nulls are dropped."""
    series = pd.Series(labels if isinstance(labels, (pd.Series, np.ndarray)) else list(labels))
    series = series.dropna()
    if series.empty:
        raise ValueError("class_shares needs at least one non-null label")
    # Group on the string form: JSON keys are strings, and 1 and "1" must not become two classes.
    counts = series.astype(str).value_counts(sort=False)
    total = float(counts.sum())
    return {str(label): float(n) / total for label, n in sorted(counts.items())}


def class_share_psi(
    reference_shares: Mapping[str, float],
    current_shares: Mapping[str, float],
    *,
    epsilon: float = DEFAULT_EPSILON,
) -> float:
    """PSI over class shares (prediction drift). A class missing on one side counts as share 0."""
    classes = sorted(set(reference_shares) | set(current_shares))
    if not classes:
        raise ValueError("class_share_psi needs at least one class")
    return population_stability_index(
        [float(reference_shares.get(k, 0.0)) for k in classes],
        [float(current_shares.get(k, 0.0)) for k in classes],
        epsilon=epsilon,
    )


# --------------------------------------------------------------------------------------------------
# Reference summary (stored with the model version)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureSummary:
    """Everything monitoring needs about one reference feature. Tuples keep it hashable and JSON-able."""

    name: str
    count: int  # non-missing reference values
    n_missing: int
    mean: float
    std: float  # population std (ddof=0): defined for a single value, so the JSON never holds NaN
    min: float
    max: float
    bin_edges: tuple[float, ...]  # interior PSI edges, strictly increasing; len(bin_counts) - 1
    bin_counts: tuple[int, ...]
    ks_points: tuple[float, ...]  # distinct reference quantiles on the KS grid, strictly increasing
    ks_count_le: tuple[int, ...]  # reference values <= point
    ks_count_lt: tuple[int, ...]  # reference values < point (the ECDF's left limit, needed for ties)

    def __post_init__(self) -> None:
        problems = []
        if self.count <= 0:
            problems.append("count must be positive")
        if len(self.bin_counts) != len(self.bin_edges) + 1 or sum(self.bin_counts) != self.count:
            problems.append("bin_counts must have len(bin_edges) + 1 entries summing to count")
        if any(b <= a for a, b in zip(self.bin_edges, self.bin_edges[1:])):
            problems.append("bin_edges must be strictly increasing")
        if not len(self.ks_points) == len(self.ks_count_le) == len(self.ks_count_lt) > 0:
            problems.append("ks_points, ks_count_le and ks_count_lt must be equally long and non-empty")
        if any(b <= a for a, b in zip(self.ks_points, self.ks_points[1:])):
            problems.append("ks_points must be strictly increasing")
        if problems:
            raise ValueError(f"invalid summary for feature {self.name!r}: " + "; ".join(problems))

    @property
    def ks_resolution(self) -> float:
        """Upper bound of (exact KS - summary KS): largest reference mass strictly between grid points."""
        le = np.asarray(self.ks_count_le[:-1])
        lt = np.asarray(self.ks_count_lt[1:])
        return float(np.max(lt - le, initial=0)) / self.count


@dataclass(frozen=True)
class ReferenceSummary:
    """Compact per-feature reference statistics; round-trips through JSON via to_dict/from_dict."""

    features: tuple[FeatureSummary, ...]
    n_rows: int
    n_bins: int
    n_quantiles: int

    def __post_init__(self) -> None:
        names = [f.name for f in self.features]
        if not names:
            raise ValueError("a ReferenceSummary needs at least one feature")
        if len(set(names)) != len(names):
            raise ValueError(f"duplicate feature names in ReferenceSummary: {names}")

    @property
    def feature_names(self) -> tuple[str, ...]:
        return tuple(f.name for f in self.features)

    def feature(self, name: str) -> FeatureSummary:
        for f in self.features:
            if f.name == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        """Plain dict of str/int/float/list only, ready for json.dumps (floats round-trip exactly)."""
        return {
            "schema_version": SCHEMA_VERSION,
            "n_rows": self.n_rows,
            "n_bins": self.n_bins,
            "n_quantiles": self.n_quantiles,
            "features": [
                {k: list(v) if isinstance(v, tuple) else v for k, v in asdict(f).items()}
                for f in self.features
            ],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> ReferenceSummary:
        version = data.get("schema_version")
        if version != SCHEMA_VERSION:
            raise ValueError(
                f"unsupported ReferenceSummary schema_version {version!r} (expected {SCHEMA_VERSION})"
            )
        features = tuple(
            FeatureSummary(
                name=str(f["name"]),
                count=int(f["count"]),
                n_missing=int(f["n_missing"]),
                mean=float(f["mean"]),
                std=float(f["std"]),
                min=float(f["min"]),
                max=float(f["max"]),
                bin_edges=tuple(float(x) for x in f["bin_edges"]),
                bin_counts=tuple(int(x) for x in f["bin_counts"]),
                ks_points=tuple(float(x) for x in f["ks_points"]),
                ks_count_le=tuple(int(x) for x in f["ks_count_le"]),
                ks_count_lt=tuple(int(x) for x in f["ks_count_lt"]),
            )
            for f in data["features"]
        )
        return cls(
            features=features, n_rows=int(data["n_rows"]), n_bins=int(data["n_bins"]),
            n_quantiles=int(data["n_quantiles"]),
        )


def summarize_reference(
    reference: pd.DataFrame,
    features: Sequence[str] | None = None,
    *,
    n_bins: int = DEFAULT_N_BINS,
    n_quantiles: int = DEFAULT_N_QUANTILES,
) -> ReferenceSummary:
    """Build the summary from the training (reference) frame; `features` defaults to all columns."""
    if n_bins < 2:
        raise ValueError(f"n_bins must be at least 2, got {n_bins}")
    if n_quantiles < 2:
        raise ValueError(f"n_quantiles must be at least 2, got {n_quantiles}")
    if len(reference) == 0:
        raise ValueError("the reference frame is empty")
    names = list(reference.columns) if features is None else list(features)
    edge_probs = np.arange(1, n_bins) / n_bins
    grid_probs = np.linspace(0.0, 1.0, n_quantiles)
    summaries = []
    for name in names:
        values = _numeric_column(reference, name, "reference")
        missing = np.isnan(values)
        n_missing = int(missing.sum())
        s = np.sort(values[~missing] if n_missing else values)
        if s.size == 0:
            raise ValueError(f"feature {name!r} is all-NaN in the reference frame")
        if np.isinf(s[0]) or np.isinf(s[-1]):
            # Infinite reference values would make mean/std/edges non-finite and the JSON invalid.
            raise ValueError(f"feature {name!r} has infinite values in the reference frame")
        # PSI edges interpolate between observations (numpy's default 'linear' quantile), so for
        # continuous data no edge sits on an observed value; np.unique drops the duplicates that
        # discrete/constant features produce.
        edges = np.unique(_linear_quantiles(s, edge_probs))
        if edges[-1] == s[-1]:
            # The top edge is the reference max (an atom, e.g. a constant feature). Bins are
            # left-closed, so without this extra edge values above the max would share the max's
            # bin and a shift upwards would be invisible to PSI; now that bin is exactly {max}.
            edges = np.append(edges, np.nextafter(s[-1], np.inf))
        # KS grid points are observed values (the 'lower' quantile): the ECDF jumps exactly there.
        points = np.unique(s[np.floor(grid_probs * (s.size - 1)).astype(np.intp)])
        summaries.append(
            FeatureSummary(
                name=str(name),
                count=int(s.size),
                n_missing=n_missing,
                mean=float(np.mean(s)),
                std=float(np.std(s)),
                min=float(s[0]),
                max=float(s[-1]),
                bin_edges=tuple(edges.tolist()),
                bin_counts=tuple(_bin_counts_sorted(s, edges).tolist()),
                ks_points=tuple(points.tolist()),
                ks_count_le=tuple(np.searchsorted(s, points, side="right").tolist()),
                ks_count_lt=tuple(np.searchsorted(s, points, side="left").tolist()),
            )
        )
    return ReferenceSummary(
        features=tuple(summaries), n_rows=len(reference), n_bins=n_bins, n_quantiles=n_quantiles
    )


# --------------------------------------------------------------------------------------------------
# Drift of a current frame against the summary
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FeatureDrift:
    feature: str
    psi: float
    ks_statistic: float  # summary-based; under-states the exact value by <= the feature's ks_resolution
    ks_pvalue: float
    ks_significant: bool  # ks_pvalue < ks_pvalue_threshold; informational, does not decide drift
    drifted: bool  # psi > psi_threshold
    n_current: int  # non-missing current values used
    n_missing: int  # NaNs dropped from the current column


@dataclass(frozen=True)
class DriftReport:
    features: tuple[FeatureDrift, ...]
    drifted_features: tuple[str, ...]
    share_drifted: float
    dataset_drift: bool
    psi_threshold: float
    ks_pvalue_threshold: float
    dataset_psi_threshold: float
    drift_share_threshold: float

    def feature(self, name: str) -> FeatureDrift:
        for f in self.features:
            if f.feature == name:
                return f
        raise KeyError(name)

    def to_dict(self) -> dict[str, Any]:
        return {
            **{k: v for k, v in asdict(self).items() if k not in ("features", "drifted_features")},
            "drifted_features": list(self.drifted_features),
            "features": [asdict(f) for f in self.features],
        }

    def to_frame(self) -> pd.DataFrame:
        """One row per feature, handy for logs and Dagster table metadata."""
        return pd.DataFrame([asdict(f) for f in self.features])


def compute_drift(
    reference: ReferenceSummary,
    current: pd.DataFrame,
    *,
    psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    ks_pvalue_threshold: float = DEFAULT_KS_PVALUE_THRESHOLD,
    dataset_psi_threshold: float = DEFAULT_PSI_THRESHOLD,
    drift_share_threshold: float = DEFAULT_DRIFT_SHARE_THRESHOLD,
    epsilon: float = DEFAULT_EPSILON,
) -> DriftReport:
    """PSI and KS per reference feature of `current`; columns the reference lacks are ignored.

    A feature drifts when PSI > psi_threshold. The KS p-value never decides on its own: at monitoring
    volumes (1e6 rows) it is ~0 for any trivial shift. The dataset drifts when any feature's PSI
    exceeds dataset_psi_threshold or share_drifted >= drift_share_threshold. (With the defaults,
    both PSI thresholds are 0.20, so the share rule only matters if psi_threshold is set lower.)
    """
    if len(current) == 0:
        raise ValueError("the current frame is empty")
    missing = [name for name in reference.feature_names if name not in current.columns]
    if missing:
        raise ValueError(f"the current frame lacks reference feature(s): {', '.join(map(repr, missing))}")
    # Validate every column before the (costlier) statistics, so a bad frame fails fast.
    columns = {f.name: _numeric_column(current, f.name, "current") for f in reference.features}

    results = []
    for summary in reference.features:
        values = columns[summary.name]
        nan = np.isnan(values)
        n_missing = int(nan.sum())
        s = np.sort(values[~nan] if n_missing else values)
        if s.size == 0:
            raise ValueError(f"feature {summary.name!r} is all-NaN in the current frame")
        psi = population_stability_index(
            summary.bin_counts, _bin_counts_sorted(s, np.asarray(summary.bin_edges)), epsilon=epsilon
        )
        ks = _summary_ks(summary, s)
        results.append(
            FeatureDrift(
                feature=summary.name,
                psi=psi,
                ks_statistic=ks.statistic,
                ks_pvalue=ks.pvalue,
                ks_significant=ks.pvalue < ks_pvalue_threshold,
                drifted=psi > psi_threshold,
                n_current=int(s.size),
                n_missing=n_missing,
            )
        )

    drifted = tuple(r.feature for r in results if r.drifted)
    share = len(drifted) / len(results)
    dataset_drift = any(r.psi > dataset_psi_threshold for r in results) or share >= drift_share_threshold
    return DriftReport(
        features=tuple(results),
        drifted_features=drifted,
        share_drifted=share,
        dataset_drift=dataset_drift,
        psi_threshold=psi_threshold,
        ks_pvalue_threshold=ks_pvalue_threshold,
        dataset_psi_threshold=dataset_psi_threshold,
        drift_share_threshold=drift_share_threshold,
    )


# --------------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------------


def _numeric_column(frame: pd.DataFrame, name: str, which: str) -> np.ndarray:
    """The column as float64 with NaN for missing values; ValueError naming the feature otherwise."""
    if name not in frame.columns:
        raise ValueError(f"the {which} frame lacks feature {name!r}")
    column = frame[name]
    if isinstance(column, pd.DataFrame):
        raise ValueError(f"feature {name!r} appears more than once in the {which} frame")
    dtype = column.dtype
    if not pd.api.types.is_numeric_dtype(dtype) or pd.api.types.is_complex_dtype(dtype):
        raise ValueError(f"feature {name!r} in the {which} frame is not numeric (dtype {dtype})")
    return column.to_numpy(dtype=np.float64, na_value=np.nan)


def _sorted_non_nan(values: Sequence[float] | np.ndarray, what: str) -> np.ndarray:
    arr = np.asarray(values, dtype=np.float64).ravel()
    arr = np.sort(arr[~np.isnan(arr)])
    if arr.size == 0:
        raise ValueError(f"{what} has no non-NaN values")
    return arr


def _linear_quantiles(sorted_values: np.ndarray, probs: np.ndarray) -> np.ndarray:
    """np.quantile(method='linear') on already sorted data, without re-partitioning 1e6 values."""
    h = (sorted_values.size - 1) * probs
    lo = np.floor(h).astype(np.intp)
    hi = np.minimum(lo + 1, sorted_values.size - 1)
    return sorted_values[lo] + (h - lo) * (sorted_values[hi] - sorted_values[lo])


def _bin_counts_sorted(sorted_values: np.ndarray, edges: np.ndarray) -> np.ndarray:
    """Counts in (-inf, e0), [e0, e1), ..., [e_last, +inf); O(len(edges) log n) on sorted data."""
    below = np.searchsorted(sorted_values, edges, side="left")
    return np.diff(below, prepend=0, append=sorted_values.size)


def _summary_ks(summary: FeatureSummary, sorted_current: np.ndarray) -> KSResult:
    """max |ECDF_ref - ECDF_cur| at the stored grid points and at their left limits."""
    points = np.asarray(summary.ks_points)
    n_ref, n_cur = summary.count, sorted_current.size
    cur_le = np.searchsorted(sorted_current, points, side="right") / n_cur
    cur_lt = np.searchsorted(sorted_current, points, side="left") / n_cur
    d_le = np.asarray(summary.ks_count_le) / n_ref - cur_le
    d_lt = np.asarray(summary.ks_count_lt) / n_ref - cur_lt
    statistic = float(max(np.max(np.abs(d_le)), np.max(np.abs(d_lt))))
    return KSResult(statistic, _ks_pvalue(statistic, n_ref, n_cur))


def _ks_pvalue(statistic: float, n_ref: int, n_cur: int) -> float:
    """Two-sided KS p-value with effective n = n_ref * n_cur / (n_ref + n_cur), as in ks_2samp's asymp."""
    n_eff = max(1, round(n_ref * n_cur / (n_ref + n_cur)))  # round() like scipy's np.round; never 0
    if n_eff <= _KSTWO_MAX_N:
        from scipy import stats  # imported on first use: it costs ~0.3 s, paid only by monitoring

        p = float(stats.kstwo.sf(statistic, n_eff))
    else:
        from scipy import special

        p = float(special.kolmogorov(math.sqrt(n_eff) * statistic))
    return min(1.0, max(0.0, p))
