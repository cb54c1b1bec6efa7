"""Benchmark of batch scoring (ml_platform.model.serving) at 1,000,000 rows x 10 features.

The model is the platform's default estimator (logistic regression behind a StandardScaler),
trained by train_candidate as every training run trains it, on the same 1,000,000-row frame.
The median of --repeats rounds (each round runs every step once, in turn) of:

  (a) model.predict_proba alone on the frame's features, frame[features] (what any scoring pays);
      also on a features-only frame selected beforehand (a'), ~15% faster: sklearn's conversion
      of a fresh column selection to an array costs more than that of one already converted;
  (b) row_keys (a content hash of the 10 features) + score_batch with the champion only, called
      as batch_predictions calls it: the keys computed in a thread while the champion scores;
      (b') the same with the keys from a declared id column;
  (c) row_keys + score_batch with champion + candidate at a 10% canary (both score every row);
  (d) writing (c)'s predictions to Parquet (pyarrow, snappy, as batch_predictions stores them).

Printed: each median, its throughput (rows/s), (b)'s throughput over (a)'s (target >= 0.8x),
the extra cost of (c) over (b), where (b)'s time goes, the CPU and the load average.

    .venv/bin/python benchmarks/batch_benchmark.py [--repeats 7] [--check]

Results: stdout and benchmarks/results/batch.json.
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
from typing import Any

import numpy as np
import pandas as pd
import sklearn

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

from ml_platform.data.sources import DatasetSpec, FeatureSpec  # noqa: E402
from ml_platform.model.serving import ScoringModel, canary_mask, row_keys, score_batch  # noqa: E402
from ml_platform.model.training import TrainingSettings, train_candidate  # noqa: E402

REPO = Path(__file__).resolve().parents[1]
ROWS, FEATURES = 1_000_000, [f"x{i}" for i in range(10)]
TARGET_RATIO = 0.8


def timings_of(steps: dict[str, Callable[[], Any]], repeats: int) -> tuple[dict[str, dict[str, float]], dict[str, Any]]:
    """Each step's median wall and CPU (process) time over `repeats` rounds. The steps run in turn
    within each round, so that a change in the machine's load hits all of them alike."""
    wall: dict[str, list[float]] = {name: [] for name in steps}
    cpu: dict[str, list[float]] = {name: [] for name in steps}
    last: dict[str, Any] = {}
    for _ in range(repeats):
        for name, step in steps.items():
            start_wall, start_cpu = time.perf_counter(), time.process_time()
            last[name] = step()
            wall[name].append(time.perf_counter() - start_wall)
            cpu[name].append(time.process_time() - start_cpu)
    return {name: {"median_s": round(statistics.median(wall[name]), 4), "min_s": round(min(wall[name]), 4),
                   "max_s": round(max(wall[name]), 4), "median_cpu_s": round(statistics.median(cpu[name]), 4),
                   "n": repeats, "rows_per_s": round(ROWS / statistics.median(wall[name]))} for name in steps}, last


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--check", action="store_true", help="exit 1 if (b) is below 0.8x of (a)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "batch.json")
    args = parser.parse_args(argv)
    machine = measure.machine(numpy=np.__version__, pandas=pd.__version__, sklearn=sklearn.__version__)

    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(ROWS, len(FEATURES))), columns=FEATURES)
    frame["row_id"] = np.arange(ROWS, dtype=np.int64)
    frame["label"] = (frame.x0 + 0.5 * frame.x1 + rng.normal(size=ROWS) > 0).astype(int)
    spec = DatasetSpec(features=tuple(FeatureSpec(f) for f in FEATURES), target="label")
    champion = ScoringModel("v1", train_candidate(frame, spec, TrainingSettings()).pipeline)
    candidate = ScoringModel("v2", train_candidate(frame, spec, TrainingSettings(seed=7)).pipeline)
    print(f"CPU: {machine['cpu_model']}, {machine['cpus']} cores; load {machine['loadavg_start']};"
          f" {ROWS:,} rows x {len(FEATURES)} features; medians of {args.repeats}")

    def single() -> Any:
        return score_batch(frame, FEATURES, "label", lambda: row_keys(frame, None, FEATURES), champion, None, 0.0, "m:v2")

    def single_by_id() -> Any:  # a declared id column: the key is a lookup, not a hash
        return score_batch(frame, FEATURES, "label", lambda: row_keys(frame, "row_id", FEATURES), champion, None, 0.0, "m:v2")

    def canary() -> Any:
        return score_batch(frame, FEATURES, "label", lambda: row_keys(frame, None, FEATURES), champion, candidate, 0.1, "m:v2")

    x = frame[FEATURES]
    keys = row_keys(frame, None, FEATURES)
    workdir = tempfile.TemporaryDirectory()
    parquet = Path(workdir.name) / "batch_predictions.parquet"
    predictions = canary().predictions
    timings, _ = timings_of({
        "a": lambda: champion.model.predict_proba(frame[FEATURES]),
        "a_prebuilt": lambda: champion.model.predict_proba(x),
        "b": single,
        "b_id": single_by_id,
        "c": canary,
        "d": lambda: predictions.to_parquet(parquet, index=False),
        "row_keys": lambda: row_keys(frame, None, FEATURES),
        "canary_mask": lambda: canary_mask(keys, 0.1, "m:v2"),
    }, args.repeats)
    parquet_mb = round(parquet.stat().st_size / 2**20, 1)
    workdir.cleanup()
    proba_alone, champion_only, with_canary, write = (timings[k] for k in "abcd")
    keys_alone, mask_alone = timings["row_keys"], timings["canary_mask"]
    scores = canary()
    ratio = round(proba_alone["median_s"] / champion_only["median_s"], 3)
    cpu_ratio = round(proba_alone["median_cpu_s"] / champion_only["median_cpu_s"], 3)
    extra = round(with_canary["median_s"] - champion_only["median_s"], 4)
    machine["loadavg_end"] = measure.loadavg()
    results = {"machine": machine, "rows": ROWS, "features": len(FEATURES),
               "a_predict_proba": proba_alone, "b_row_keys_and_score_batch_champion": champion_only,
               "c_row_keys_and_score_batch_canary_10pct": with_canary, "d_write_parquet": write,
               "parquet_mb": parquet_mb, "row_keys": keys_alone, "canary_mask": mask_alone,
               "ratio_b_to_a_throughput": ratio, "ratio_b_to_a_cpu": cpu_ratio, "extra_c_over_b_s": extra,
               "figures_c": scores.figures}
    results["a_prebuilt_features_frame"] = timings["a_prebuilt"]
    results["b_id_column_keys"] = timings["b_id"]
    for label, r in (("(a) predict_proba alone", proba_alone), ("(a') on a prebuilt features frame", timings["a_prebuilt"]), ("(b) row_keys + score_batch, champion", champion_only),
                     ("(b') the same, keys from an id column", timings["b_id"]),
                     ("(c) row_keys + score_batch, 10% canary", with_canary), ("(d) predictions to Parquet", write),
                     ("    of which row_keys", keys_alone), ("    canary_mask", mask_alone)):
        print(f"{label:<42} {r['median_s']:>8.4f} s  {r['rows_per_s']:>12,} rows/s  (CPU {r['median_cpu_s']:.4f} s)")
    print(f"(b) / (a) throughput: {ratio}x (target {TARGET_RATIO}x: {'met' if ratio >= TARGET_RATIO else 'MISSED'});"
          f" in CPU time {cpu_ratio}x;"
          f" (b) beyond (a): {champion_only['median_s'] - proba_alone['median_s']:.4f} s, of which row_keys"
          f" {keys_alone['median_s']:.4f} s")
    print(f"(b') / (a) throughput: {round(proba_alone['median_s'] / timings['b_id']['median_s'], 3)}x;"
          f" in CPU time {round(proba_alone['median_cpu_s'] / timings['b_id']['median_cpu_s'], 3)}x")
    print(f"(b) / (a') throughput: {round(timings['a_prebuilt']['median_s'] / champion_only['median_s'], 3)}x")
    print(f"(c) over (b): +{extra:.4f} s ({with_canary['median_s'] / champion_only['median_s']:.2f}x);"
          f" Parquet {parquet_mb} MiB; load at the end {machine['loadavg_end']}")
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    print(f"results: {args.output}")
    return 1 if args.check and ratio < TARGET_RATIO else 0


if __name__ == "__main__":
    sys.exit(main())
