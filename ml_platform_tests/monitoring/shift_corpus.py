"""The shift corpus: the kinds of change a drift rule must tell apart, against a standard normal
reference. Shared by test_drift.py and benchmarks/drift_benchmark.py, so the README's table is
the tests' table.

Which methods flag each case (default thresholds: PSI > 0.2, KS D > 0.1, Wasserstein / std > 0.1),
the same at 1e6 and at 20,000 rows; measured values are in the README's Benchmarks section.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

Generator = Callable[[np.random.Generator, int], np.ndarray]


def _point_mass(rng: np.random.Generator, n: int) -> np.ndarray:
    values = rng.normal(size=n)
    values[rng.random(n) < 0.05] = 0.0  # 5% imputed with the mean
    return values


def _bimodal(rng: np.random.Generator, n: int) -> np.ndarray:
    # Two modes at +-0.95 sd, each with sd 0.31: the same mean and variance as the reference.
    return rng.choice([-0.95, 0.95], size=n) + rng.normal(0.0, np.sqrt(1 - 0.95**2), size=n)


# name -> (what it is, how the current column is drawn)
CASES: dict[str, tuple[str, Generator]] = {
    "location": ("mean + 0.5 sd", lambda rng, n: rng.normal(0.5, 1.0, size=n)),
    "scale": ("sd x 1.4", lambda rng, n: rng.normal(0.0, 1.4, size=n)),
    "tails": ("Student t, 3 df, scaled to sd 1", lambda rng, n: rng.standard_t(3, size=n) / np.sqrt(3.0)),
    "point_mass": ("5% of the values set to the mean", _point_mass),
    "bimodal": ("modes at +-0.95 sd, same mean and sd", _bimodal),
    "tiny": ("mean + 0.05 sd", lambda rng, n: rng.normal(0.05, 1.0, size=n)),
    "unchanged": ("a new sample of the reference", lambda rng, n: rng.normal(size=n)),
}

# Which method exceeds its default threshold, per case: (psi, ks, wasserstein).
EXPECTED_FLAGS: dict[str, tuple[bool, bool, bool]] = {
    "location": (True, True, True),
    "scale": (False, False, True),
    "tails": (False, False, True),
    "point_mass": (False, False, False),
    "bimodal": (True, True, True),
    "tiny": (False, False, False),
    "unchanged": (False, False, False),
}


def reference_column(n: int, seed: int = 0) -> np.ndarray:
    return np.random.default_rng(seed).normal(size=n)


def current_columns(n: int, seed: int = 1) -> dict[str, np.ndarray]:
    """One current column per case, each from its own stream so the cases do not depend on each other."""
    return {name: draw(np.random.default_rng([seed, i]), n) for i, (name, (_, draw)) in enumerate(CASES.items())}


def evidently_psi(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently 0.7's PSI for a numeric column with > 20 distinct values, re-derived in numpy:
    Sturges bins over both samples together, empty bins floored, sum((r - c) * ln(r / c))."""
    edges = np.histogram_bin_edges(np.concatenate([reference, current]), bins="sturges")
    r = np.histogram(reference, edges)[0] / reference.size
    c = np.histogram(current, edges)[0] / current.size
    for share in (r, c):
        smallest = share[share > 0].min()
        share[share == 0] = smallest / 1e6 if smallest <= 1e-4 else 1e-4
    return float(np.sum((r - c) * np.log(r / c)))


def evidently_wasserstein(reference: np.ndarray, current: np.ndarray) -> float:
    """Evidently's default for a numeric column of > 1,000 rows: W1 / max(std of the reference, 0.001)."""
    from scipy import stats

    return float(stats.wasserstein_distance(reference, current) / max(float(np.std(reference)), 0.001))
