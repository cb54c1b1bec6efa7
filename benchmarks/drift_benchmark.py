"""Benchmark of the drift statistics, and the shift corpus table.

For 10 features x 1,000,000 rows and 50 features x 356,000 rows (reference and current the same
size, mixed shapes, two features shifted), the median of --repeats runs of:

  (a) summarize_reference: the reference summary, built once at training time;
  (b) compute_drift against that summary (PSI, KS, Wasserstein; threaded): every monitoring run;
  (c) the same with one thread;
  (d) loading the stored JSON summary and then (b): what a monitoring run really does;
  (e) compute_drift over 10 numeric + 10 categorical features (3 to 100 categories, text),
      1,000,000 vs 1,000,000 rows, the current frame read afresh from Parquet before each repeat
      (new string objects, so no string hash is cached), its text columns as pandas' default
      string dtype and as object dtype (pandas < 3, or pickled object columns);
  and, with --evidently, Evidently's default DataDriftPreset on the same two frames.

Then the shift corpus (ml_platform_tests/monitoring/shift_corpus.py) at 1e6 and 20,000 rows:
each method's value, whether it exceeds its default threshold, the default rule's decision,
and Evidently's figures (its formulas re-derived in numpy; with --evidently, Evidently's own);
and what chance alone gives each figure for two samples of 500, 2,000 and 20,000 rows.

Evidently is not a dependency of the project: install it in a throwaway venv of its own, e.g.
    python3 -m venv /work/evidently-venv && /work/evidently-venv/bin/pip install evidently "pandas<3"
(Evidently 0.7 does not import under pandas 3), then run this script with that venv's python:

    .venv/bin/python benchmarks/drift_benchmark.py                          # ours only
    /work/evidently-venv/bin/python benchmarks/drift_benchmark.py --evidently
    ... --check     # exit 1 if (b) at 1e6 x 10 misses 0.15 s, (e) misses 1 s, or Evidently / (d) is below 100

Results: the tables on stdout and benchmarks/results/drift.json (with the CPU and its SIMD flags:
numpy's sort, most of (b), is several times faster with AVX-512 than without).
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import numpy as np
import pandas as pd

REPO = Path(__file__).resolve().parents[1]
# Runnable as a plain script from a checkout, without installing the package.
sys.path[:0] = [str(REPO), str(REPO / "benchmarks")]

import measure  # noqa: E402
from ml_platform.monitoring.drift import (  # noqa: E402
    DRIFT_METHODS,
    DriftRule,
    ReferenceSummary,
    compute_drift,
    summarize_reference,
)
from ml_platform_tests.monitoring.shift_corpus import (  # noqa: E402
    CASES,
    current_columns,
    evidently_psi,
    evidently_wasserstein,
    reference_column,
)

T = TypeVar("T")
SIZES = ((1_000_000, 10), (356_000, 50))
TARGET_SECONDS = 0.15  # (b) at 1e6 x 10, median
MIXED_ROWS = 1_000_000
MIXED_TARGET_SECONDS = 1.0  # (e), median, either string dtype
# Categories per categorical feature in (e): few to many.
MIXED_CATEGORIES = (3, 4, 5, 8, 10, 12, 20, 30, 50, 100)
TARGET_RATIO = 100.0  # Evidently's default preset / (d)


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


def make_mixed_frame(n_rows: int, seed: int, shifted: tuple[int, ...] = ()) -> pd.DataFrame:
    """make_frame's 10 numeric features plus 10 categorical ones, text with 1% missing; the
    features in `shifted` (of both kinds) are shifted: a categorical one moves a tenth of its
    rows to its first category."""
    rng = np.random.default_rng(seed + 100)
    frame = make_frame(n_rows, 10, seed, shifted)
    for i, k in enumerate(MIXED_CATEGORIES):
        names = np.array([f"c{i}_value_{j}" for j in range(k)], dtype=object)
        codes = rng.integers(0, k, size=n_rows)
        if i in shifted:
            codes[rng.random(n_rows) < 0.1] = 0
        values = names[codes]
        values[rng.random(n_rows) < 0.01] = None
        frame[f"category_{i}"] = values
    return frame


def bench_mixed(repeats: int) -> dict[str, Any]:
    """(e): 10 numeric + 10 categorical features, 1e6 vs 1e6 rows."""
    reference = make_mixed_frame(MIXED_ROWS, seed=0)
    categorical = [c for c in reference.columns if c.startswith("category_")]
    summary = summarize_reference(reference, categorical=categorical)
    workdir = tempfile.TemporaryDirectory()
    path = Path(workdir.name) / "mixed_current.parquet"
    make_mixed_frame(MIXED_ROWS, seed=1, shifted=(2, 5)).to_parquet(path)
    from scipy import spatial, stats  # noqa: F401  # imported by any run that loaded a model (scikit-learn)

    result: dict[str, Any] = {"rows": MIXED_ROWS, "numeric": 10, "categorical": len(categorical),
                              "categories": list(MIXED_CATEGORIES)}
    for label, to_dtype in (("string_dtype", None), ("object_dtype", object)):
        timings: list[float] = []
        for _ in range(repeats):
            current = pd.read_parquet(path)
            if to_dtype is not None:
                current = current.astype({c: to_dtype for c in categorical})
            start = time.perf_counter()
            report = compute_drift(summary, current)
            timings.append(time.perf_counter() - start)
        result[label] = {"median_s": round(statistics.median(timings), 4), "min_s": round(min(timings), 4),
                         "max_s": round(max(timings), 4), "n": repeats,
                         "dtype": str(current[categorical[0]].dtype)}
        result["drifted_features"] = list(report.drifted_features)
    workdir.cleanup()
    return result


def time_median(fn: Callable[[], T], repeats: int) -> tuple[dict[str, float], T]:
    timings: list[float] = []
    result: T | None = None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        timings.append(time.perf_counter() - start)
    assert result is not None
    return {"median_s": round(statistics.median(timings), 4), "min_s": round(min(timings), 4),
            "max_s": round(max(timings), 4), "n": repeats}, result


def evidently_report(reference: pd.DataFrame, current: pd.DataFrame) -> dict[str, float]:
    """Evidently's default DataDriftPreset; its drift value per column."""
    from evidently import Report
    from evidently.presets import DataDriftPreset

    snapshot = Report([DataDriftPreset()]).run(current_data=current, reference_data=reference)
    values = {}
    for metric in snapshot.dict()["metrics"]:
        name = metric["metric_name"]
        if name.startswith("ValueDrift(column="):
            values[name.split("column=", 1)[1].split(",", 1)[0]] = float(metric["value"])
    return values


def bench_size(rows: int, features: int, repeats: int, evidently_repeats: int) -> dict[str, Any]:
    reference = make_frame(rows, features, seed=0)
    current = make_frame(rows, features, seed=1, shifted=(2, 5))
    build, summary = time_median(lambda: summarize_reference(reference), repeats)
    raw = json.dumps(summary.to_dict(), separators=(",", ":"))  # as ModelReference stores it
    compute_drift(summary, current)  # warm-up: the grid arrays are converted once per summary
    threaded, report = time_median(lambda: compute_drift(summary, current), repeats)
    serial, _ = time_median(lambda: compute_drift(summary, current, workers=1), repeats)
    from_json, _ = time_median(lambda: compute_drift(ReferenceSummary.from_dict(json.loads(raw)), current), repeats)
    result: dict[str, Any] = {
        "rows": rows, "features": features, "summarize_reference": build, "compute_drift": threaded,
        "compute_drift_one_thread": serial, "load_json_and_compute_drift": from_json,
        "summary_json_bytes": len(raw), "grid_points": sum(len(f.grid_points) for f in summary.features),
        "drifted_features": list(report.drifted_features),
    }
    if evidently_repeats:
        evidently, _ = time_median(lambda: evidently_report(reference, current), evidently_repeats)
        result["evidently_data_drift_preset"] = evidently
        result["ratio_evidently_to_load_and_drift"] = round(evidently["median_s"] / from_json["median_s"], 1)
        result["ratio_evidently_to_summary_and_drift"] = round(
            evidently["median_s"] / (build["median_s"] + threaded["median_s"]), 1)
    return result


def corpus_table(rows: int, with_evidently: bool) -> list[dict[str, Any]]:
    reference = reference_column(rows)
    current = current_columns(rows)
    summary = summarize_reference(pd.DataFrame({name: reference for name in CASES}))
    every = compute_drift(summary, pd.DataFrame(current), rule=DriftRule(method=DRIFT_METHODS))
    default = compute_drift(summary, pd.DataFrame(current))
    evidently_own = evidently_report(pd.DataFrame({n: reference for n in CASES}), pd.DataFrame(current)) \
        if with_evidently else {}
    table = []
    for name, (what, _) in CASES.items():
        f = every.feature(name)
        row: dict[str, Any] = {"case": name, "what": what, "rows": rows}
        for method, value, bound in (("psi", f.psi, 0.0), ("ks", f.ks_statistic, f.ks_bound),
                                     ("wasserstein", f.wasserstein, f.wasserstein_bound)):
            row[method] = value
            row[f"{method}_bound"] = bound
            row[f"{method}_flags"] = method in f.fired
        row["default_rule_fired"] = ", ".join(default.feature(name).fired) or "-"
        row["evidently_wasserstein"] = evidently_wasserstein(reference, current[name])
        row["evidently_psi"] = evidently_psi(reference, current[name])
        if evidently_own:
            row["evidently_own_value"] = evidently_own[name]
        table.append(row)
    return table


def noise_floor(sizes: tuple[int, ...] = (500, 2_000, 20_000), draws: int = 20) -> list[dict[str, Any]]:
    """Each figure for two samples of one normal population (what chance alone gives), per size."""
    rows = []
    for n in sizes:
        figures = []
        for seed in range(draws):
            rng = np.random.default_rng(seed)
            summary = summarize_reference(pd.DataFrame({"x": rng.normal(size=n)}))
            figures.append(compute_drift(summary, pd.DataFrame({"x": rng.normal(size=n)}), workers=1).feature("x"))
        rows.append({"rows": n, "draws": draws, **{
            f"{stat}_{how}": round(float(agg([getattr(f, stat) for f in figures])), 4)
            for stat in ("psi", "ks_statistic", "wasserstein") for how, agg in (("median", np.median), ("max", np.max))
        }})
    return rows


def print_times(results: list[dict[str, Any]]) -> None:
    print(f"{'size':<16} {'(a) summary':>12} {'(b) drift':>10} {'(c) 1 thread':>13} {'(d) json+drift':>15}"
          f" {'Evidently':>10} {'ratio':>7} {'JSON':>9}")
    for r in results:
        evidently = r.get("evidently_data_drift_preset", {}).get("median_s")
        print(f"{r['rows']:,} x {r['features']:<4} {r['summarize_reference']['median_s']:>12.3f}"
              f" {r['compute_drift']['median_s']:>10.3f} {r['compute_drift_one_thread']['median_s']:>13.3f}"
              f" {r['load_json_and_compute_drift']['median_s']:>15.3f}"
              f" {evidently if evidently is not None else '-':>10} {r.get('ratio_evidently_to_load_and_drift', '-'):>7}"
              f" {r['summary_json_bytes'] / 2**20:>7.1f} MiB")


def print_corpus(table: list[dict[str, Any]]) -> None:
    def cell(value: float, bound: float, flag: bool) -> str:
        return f"{value:.4f}{'±' + format(bound, '.0e') if bound else ''}{' *' if flag else '  '}"

    print(f"{'rows':>9} {'case':<11} {'psi':>9} {'ks D':>16} {'wasserstein':>16} {'default fires':>17}"
          f" {'Evidently W':>12} {'Evidently PSI':>14}")
    for r in table:
        own = f" (own {r['evidently_own_value']:.4f})" if "evidently_own_value" in r else ""
        print(f"{r['rows']:>9,} {r['case']:<11} {cell(r['psi'], 0, r['psi_flags']):>9}"
              f" {cell(r['ks'], r['ks_bound'], r['ks_flags']):>16}"
              f" {cell(r['wasserstein'], r['wasserstein_bound'], r['wasserstein_flags']):>16}"
              f" {r['default_rule_fired']:>17} {r['evidently_wasserstein']:>12.4f}{own} {r['evidently_psi']:>14.4f}")
    print("* = above the default threshold (PSI 0.2, KS D 0.1, Wasserstein / std 0.1)")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--evidently", action="store_true", help="run Evidently's DataDriftPreset side by side")
    parser.add_argument("--evidently-repeats", type=int, default=3)
    parser.add_argument("--skip-corpus", action="store_true")
    parser.add_argument("--check", action="store_true", help="exit 1 if a target is missed")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "drift.json")
    args = parser.parse_args(argv)

    versions = {"numpy": np.__version__, "pandas": pd.__version__}
    if args.evidently:
        import evidently

        versions["evidently"] = evidently.__version__
    machine = {**measure.machine(**versions), "simd_flags": measure.cpu_simd_flags()}
    print(f"CPU: {machine['cpu_model']}, {machine['cpus']} cores, SIMD {' '.join(machine['simd_flags'])};"
          f" numpy {np.__version__}; load {machine['loadavg_start']}; medians of {args.repeats}")
    sizes = [bench_size(rows, features, args.repeats, args.evidently_repeats if args.evidently else 0)
             for rows, features in SIZES]
    print_times(sizes)
    mixed = bench_mixed(args.repeats)
    print(f"(e) {MIXED_ROWS:,} x (10 numeric + 10 categorical) vs the same: compute_drift median "
          f"{mixed['string_dtype']['median_s']:.3f} s (text as {mixed['string_dtype']['dtype']}), "
          f"{mixed['object_dtype']['median_s']:.3f} s (as object); drifted {', '.join(mixed['drifted_features'])}")
    corpus = [] if args.skip_corpus else [row for rows in (1_000_000, 20_000) for row in corpus_table(rows, args.evidently)]
    if corpus:
        print_corpus(corpus)
    noise = noise_floor()
    print("chance alone (two samples of one normal population):")
    for r in noise:
        print(f"  {r['rows']:>6,} rows, {r['draws']} draws: Wasserstein median {r['wasserstein_median']:.3f}"
              f" max {r['wasserstein_max']:.3f}; PSI median {r['psi_median']:.4f} max {r['psi_max']:.4f};"
              f" KS D median {r['ks_statistic_median']:.4f} max {r['ks_statistic_max']:.4f}")
    machine["loadavg_end"] = measure.loadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine, "sizes": sizes, "mixed": mixed, "corpus": corpus,
                                       "noise_floor": noise}, indent=2))
    print(f"results: {args.output}")

    drift_s = sizes[0]["compute_drift"]["median_s"]
    met = drift_s <= TARGET_SECONDS
    print(f"(b) at 1e6 x 10: {drift_s:.3f} s, target {TARGET_SECONDS} s: {'met' if met else 'MISSED'}")
    mixed_s = max(mixed["string_dtype"]["median_s"], mixed["object_dtype"]["median_s"])
    mixed_met = mixed_s <= MIXED_TARGET_SECONDS
    met = met and mixed_met
    print(f"(e) at 1e6 x (10 + 10): {mixed_s:.3f} s (the slower dtype), target {MIXED_TARGET_SECONDS} s: "
          f"{'met' if mixed_met else 'MISSED'}")
    if args.evidently:
        ratio = sizes[0]["ratio_evidently_to_load_and_drift"]
        met = met and ratio >= TARGET_RATIO
        print(f"Evidently / (d) at 1e6 x 10: {ratio}x, target {TARGET_RATIO:.0f}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'}")
    return 1 if args.check and not met else 0


if __name__ == "__main__":
    sys.exit(main())
