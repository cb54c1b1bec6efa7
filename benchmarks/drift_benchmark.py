"""Benchmark of the drift statistics: 10 features, 1,000,000 reference vs 1,000,000 current rows.

Times, separately, (a) building the ReferenceSummary from the reference frame (training time)
and (b) computing drift of the current frame against that summary (every monitoring run).
Target for (b): at most 1 s. Reports the median of --repeats runs.

    python benchmarks/drift_benchmark.py            # print the table
    python benchmarks/drift_benchmark.py --check    # also exit 1 if (b) misses the target
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd

# Runnable as a plain script from a checkout, without installing the package.
sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from ml_platform.monitoring.drift import compute_drift, summarize_reference  # noqa: E402

T = TypeVar("T")


def make_frame(n_rows: int, n_features: int, seed: int, shifted: tuple[int, ...] = ()) -> pd.DataFrame:
    """Mixed shapes (normal, exponential, discrete) so the benchmark is not all one easy case."""
    rng = np.random.default_rng(seed)
    columns: dict[str, np.ndarray] = {}
    for i in range(n_features):
        kind = i % 3
        if kind == 0:
            values = rng.normal(float(i), 1.0, size=n_rows)
        elif kind == 1:
            values = rng.exponential(1.0 + i, size=n_rows)
        else:
            values = rng.poisson(4.0, size=n_rows).astype(np.float64)
        if i in shifted:
            values = values + values.std()
        columns[f"feature_{i}"] = values
    return pd.DataFrame(columns)


def time_median(fn: Callable[[], T], repeats: int) -> tuple[float, list[float], T]:
    timings: list[float] = []
    result: T | None = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - start)
    assert result is not None
    return statistics.median(timings), timings, result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rows", type=int, default=1_000_000, help="rows in each of reference and current")
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--target-seconds", type=float, default=1.0, help="target for (b), median")
    parser.add_argument("--check", action="store_true", help="exit 1 if (b) misses the target")
    args = parser.parse_args(argv)

    reference = make_frame(args.rows, args.features, seed=0)
    current = make_frame(args.rows, args.features, seed=1, shifted=(2, 5))

    build_s, build_all, summary = time_median(lambda: summarize_reference(reference), args.repeats)
    drift_s, drift_all, report = time_median(lambda: compute_drift(summary, current), args.repeats)
    json_bytes = len(json.dumps(summary.to_dict()))

    print(
        f"drift benchmark: {args.features} features, {args.rows:,} reference vs {args.rows:,} current rows,"
        f" median of {args.repeats}"
    )
    rows = [
        ("(a) summarize_reference", build_s, build_all, "-"),
        ("(b) compute_drift vs summary", drift_s, drift_all, f"{args.target_seconds:.3f}"),
    ]
    print(f"{'step':<32} {'median s':>9} {'min s':>8} {'max s':>8} {'target s':>9}")
    for name, median, runs, target in rows:
        print(f"{name:<32} {median:>9.3f} {min(runs):>8.3f} {max(runs):>8.3f} {target:>9}")
    drifted = ", ".join(report.drifted_features) or "none"
    print(f"summary JSON: {json_bytes / 1024:.0f} KiB; drifted features: {drifted}")

    met = drift_s <= args.target_seconds
    print(f"target for (b) {'met' if met else 'MISSED'}")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
