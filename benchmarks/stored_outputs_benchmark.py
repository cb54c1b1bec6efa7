"""Write + read of one output between assets: Parquet + JSON (the run-scoped IO manager's
ml_platform.data.stored_outputs) against pickle (what it did before), on a SourceData of
--rows x 10 (9 float features and an int target, as the synthetic source makes them).

Each way runs --repeat times, interleaved (pickle, parquet, pickle, ...), after one untimed
warm-up of each, in a fresh temporary folder on the same disk; the write includes fsync-free
file writes as the IO manager does them, the read the whole load back into a SourceData.
Reported: median and min seconds of write, read and both, the stored size, the ratio of
medians parquet/pickle, and the machine (CPU model, cores).

    python benchmarks/stored_outputs_benchmark.py                 # 1,000,000 rows, --repeat 5
    python benchmarks/stored_outputs_benchmark.py --rows 100000 --repeat 9
"""

from __future__ import annotations

import argparse
import os
import pickle
import platform
import shutil
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from ml_platform.data.sources import DatasetSpec, FeatureSpec, SourceData
from ml_platform.data.stored_outputs import read_output, write_output


def source_data(rows: int) -> SourceData:
    rng = np.random.default_rng(1)
    frame = pd.DataFrame({f"f{i}": rng.random(rows) for i in range(9)})
    frame["target"] = rng.integers(0, 2, rows)
    spec = DatasetSpec(features=tuple(FeatureSpec(f"f{i}") for i in range(9)), target="target", classes=(0, 1))
    return SourceData(frame, spec, description=f"synthetic {rows}x10", fingerprint="0" * 16)


def pickle_write(value: SourceData, path: Path) -> None:
    with path.open("wb") as f:
        pickle.dump(value, f, protocol=pickle.HIGHEST_PROTOCOL)


def pickle_read(path: Path) -> Any:
    with path.open("rb") as f:
        return pickle.load(f)  # noqa: S301 - our own file, the baseline being measured


def size(path: Path) -> int:
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or "unknown"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()
    value = source_data(args.rows)
    ways: dict[str, tuple[Callable[[SourceData, Path], None], Callable[[Path], Any]]] = {
        "pickle": (pickle_write, pickle_read),
        "parquet": (write_output, read_output),
    }
    times: dict[str, dict[str, list[float]]] = {w: {"write": [], "read": [], "total": []} for w in ways}
    sizes: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for round_ in range(args.repeat + 1):  # round 0: the untimed warm-up
            for way, (write, read) in ways.items():
                path = Path(tmp) / f"{way}-{round_}"
                start = time.perf_counter()
                write(value, path)
                written = time.perf_counter()
                back = read(path)
                done = time.perf_counter()
                assert back.frame.shape == value.frame.shape
                sizes[way] = size(path)
                shutil.rmtree(path) if path.is_dir() else path.unlink()
                if round_:
                    times[way]["write"].append(written - start)
                    times[way]["read"].append(done - written)
                    times[way]["total"].append(done - start)
    print(f"{args.rows:,} x 10 SourceData, {args.repeat} runs each; CPU {cpu_model()}, {os.cpu_count()} cores")
    print(f"{'way':8} {'write s':>8} {'read s':>8} {'total s':>8} {'min total':>9} {'size MB':>8}")
    for way, measured in times.items():
        medians = {k: statistics.median(v) for k, v in measured.items()}
        print(f"{way:8} {medians['write']:8.3f} {medians['read']:8.3f} {medians['total']:8.3f} "
              f"{min(measured['total']):9.3f} {sizes[way] / 1e6:8.1f}")
    ratio = statistics.median(times["parquet"]["total"]) / statistics.median(times["pickle"]["total"])
    print(f"parquet / pickle, median write+read: {ratio:.2f}")


if __name__ == "__main__":
    main()
