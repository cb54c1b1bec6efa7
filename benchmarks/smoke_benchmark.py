"""Benchmark of the smoke test's fresh process: three ways to run one smoke test of a staged model.

  (a) subprocess: `python -m ml_platform.model.smoke REQUEST.json`, a new interpreter per test;
  (b) ml_platform.model.smoke's fork server: the first call (which forks it from this process) and
      the later calls (a fork of the warm server, then the checks);
  (c) multiprocessing.get_context("forkserver") with set_forkserver_preload(SERVER_PRELOAD): the
      first call (the server's start) and the later ones; each child also re-imports this
      script as __mp_main__ (what multiprocessing does with the caller's main module).

The model: the platform's default estimator (train_candidate) on 2,000 rows x 10 features, a
200-row sample, SmokePolicy's defaults. Each figure is the median of --repeats wall times.

    .venv/bin/python benchmarks/smoke_benchmark.py [--repeats 5]
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import statistics
import subprocess
import sys
import tempfile
import time
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

sys.path.insert(0, str(Path(__file__).resolve().parent))
import measure  # noqa: E402

from ml_platform.data.sources import DatasetSpec, FeatureSpec  # noqa: E402
from ml_platform.model import smoke  # noqa: E402
from ml_platform.model.registry import ModelRegistry  # noqa: E402
from ml_platform.model.training import TrainingSettings, train_candidate  # noqa: E402

FEATURES = [f"x{i}" for i in range(10)]


def staged(workdir: Path) -> tuple[str, str, pd.DataFrame]:
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(2_000, 10)), columns=FEATURES)
    frame["label"] = (frame.x0 + frame.x1 > 0).astype(int)
    spec = DatasetSpec(features=tuple(FeatureSpec(f) for f in FEATURES), target="label")
    trained = train_candidate(frame, spec, TrainingSettings())
    root = str(workdir / "registry")
    version = ModelRegistry(root).register(trained.pipeline, {"target": "label", "features": FEATURES}).version
    return root, version, trained.holdout


def request_for(workdir: Path, root: str, version: str, sample: pd.DataFrame, n: int) -> dict[str, Any]:
    run = workdir / f"run{n}"
    run.mkdir()
    sample.head(smoke.SmokePolicy().sample_rows).to_parquet(run / "sample.parquet")
    return {"registry_root": root, "version": version, "features": FEATURES, "classes": [0, 1],
            "policy": asdict(smoke.SmokePolicy()), "sample": str(run / "sample.parquet"),
            "result": str(run / "result.json"), "log": str(run / "child.log"), "timeout_s": 120}


def timed(fn: Any) -> float:
    start = time.perf_counter()
    fn()
    return time.perf_counter() - start


def median_s(timings: list[float]) -> float:
    return round(statistics.median(timings), 3)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args(argv)
    machine = measure.machine()
    print(f"CPU: {machine['cpu_model']}, {machine['cpus']} cores; load {machine['loadavg_start']};"
          f" medians of {args.repeats}")
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        root, version, sample = staged(workdir)
        requests = iter(request_for(workdir, root, version, sample, n) for n in range(10 * args.repeats + 10))

        def plain() -> None:
            request = next(requests)
            Path(request["log"]).write_text(json.dumps(request))
            subprocess.run([sys.executable, "-m", "ml_platform.model.smoke", request["log"]], check=True)
            assert json.loads(Path(request["result"]).read_text())["passed"]

        def fork_server() -> None:
            result = smoke.run_smoke_test(root, version, sample, FEATURES, [0, 1], smoke.SmokePolicy())
            assert result.passed, result.failures

        context = multiprocessing.get_context("forkserver")
        context.set_forkserver_preload(list(smoke.SERVER_PRELOAD))

        def mp_forkserver() -> None:
            request = next(requests)
            process = context.Process(target=smoke._run_request, args=(request,))
            process.start()
            process.join()
            assert json.loads(Path(request["result"]).read_text())["passed"]

        results: dict[str, Any] = {"plain_subprocess": median_s([timed(plain) for _ in range(args.repeats)])}
        for name, fn in (("fork_server", fork_server), ("multiprocessing_forkserver", mp_forkserver)):
            results[f"{name}_first"] = round(timed(fn), 3)
            results[f"{name}_warm"] = median_s([timed(fn) for _ in range(args.repeats)])
    results["loadavg_end"] = measure.loadavg()
    print(f"(a) plain subprocess per test:            {results['plain_subprocess']:.3f} s")
    print(f"(b) fork server: first {results['fork_server_first']:.3f} s, then per test "
          f"{results['fork_server_warm']:.3f} s")
    print(f"(c) multiprocessing forkserver: first {results['multiprocessing_forkserver_first']:.3f} s, then per test "
          f"{results['multiprocessing_forkserver_warm']:.3f} s")
    print(json.dumps({"machine": machine, **results}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
