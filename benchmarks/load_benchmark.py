"""Load time of the code location with 1 declared model and with 10 declared models.

Target (product issue): 10 declared models load in under 1.5x the time of one.

Two temporary dg projects are made with ml_platform_tests/projects.py::make_project, exactly as a
project of one's own declares models (`<package>/defs/<model>/defs.yaml`, type
ml_platform.ModelPipeline), and loaded the way the shipped project loads its own (Dagster's
load_from_defs_folder, via ml_platform.definitions.project_definitions):

    one   breast_cancer only (bundled data, the shipped declaration's settings)
    ten   breast_cancer plus 9 more: bundled and synthetic sources with different estimators,
          params, thresholds, severities, schedules, time zones, routing overrides and retention

Every measurement is a fresh `python -c ...` subprocess timed from the outside (wall time
includes interpreter start-up and all imports), its peak RSS from os.wait4 (that child only):

    full    `import <package>.definitions as d; defs = d.defs(); dg.Definitions.validate_loadable(defs)`
            i.e. imports + load_from_defs_folder + every model's assets, checks, jobs, schedules,
            resources + the platform's sensors, then resolving the repository (asset graph, asset
            jobs, resource requirements), as a code server does before it serves anything
    import  `import ml_platform.definitions`: the import-only baseline (no model built)

The three commands run interleaved (baseline, one, ten, baseline, one, ten, ...) --repeat times
each, after one untimed warm-up of each. Reported: median and min wall time of each; (a) the
ratio of medians ten/one of the full load (the target); (b) full minus the baseline's median,
per project, the building cost alone, with its ratio and the cost per extra model. Each child
also times its own phases (import, defs() = load_from_defs_folder + build, validate_loadable)
with perf_counter and prints them, and the parent adds start-up (spawn until the script's first
line) and teardown (its last line until the process is reaped: interpreter shutdown), for where
the time goes; medians of those are reported too.
The child checks that it built 5 assets per model and the expected jobs; a failed measurement
(non-zero exit, wrong counts, timeout) is reported with its output and the script exits 1.

DAGSTER_HOME is a temporary folder; ML_PLATFORM_* variables from the caller's environment are
removed. Results: a table on stdout and benchmarks/results/load.json (machine: CPU model from
/proc/cpuinfo, core count, Python, Dagster).

    python benchmarks/load_benchmark.py               # --repeat 7
    python benchmarks/load_benchmark.py --repeat 15 --keep-projects
"""

from __future__ import annotations

import argparse
import json
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))
sys.path.insert(0, str(REPO / "benchmarks"))

import measure  # noqa: E402
from ml_platform_tests.projects import Project, make_project  # noqa: E402

RATIO_TARGET = 1.5
ASSETS_PER_MODEL = 5  # raw_data, validated_data, trained_model, production_model, monitoring_report
JOBS_PER_MODEL = 3  # <model>_training, <model>_monitoring, <model>_rollback

# breast_cancer as ml_platform/defs/breast_cancer/defs.yaml declares it (its other values are the defaults).
BREAST_CANCER: dict[str, Any] = {
    "description": "Breast-cancer diagnosis from cell-nucleus measurements (scikit-learn bundled data)",
    "source": {"kind": "bundled"},
}


def synthetic(rows: int, features: int, seed: int, **knobs: Any) -> dict[str, Any]:
    return {"kind": "synthetic", "synthetic": {"rows": rows, "features": features, "seed": seed, **knobs}}


# Nine more models, each declared differently, so nothing is shared by accident between them.
OTHER_MODELS: dict[str, dict[str, Any]] = {
    "cancer_forest": {
        "source": {"kind": "bundled"},
        "training": {"estimator": "random_forest", "params": {"n_estimators": 50, "max_depth": 6}},
        "gate": {"metric": "roc_auc", "tolerance": 0.005},
    },
    "cancer_strict": {
        "source": {"kind": "bundled"},
        "training": {"params": {"C": 0.5}, "holdout_fraction": 0.25, "seed": 7},
        "checks": {"accuracy": {"min_accuracy": 0.9, "severity": "MEDIUM"}, "run_time": {"max_seconds": 60}},
        "schedules": {"timezone": "Europe/Berlin", "retrain": {"cron": "30 3 * * *"}},
    },
    "synth_small": {"source": synthetic(2_000, 8, 1)},
    "synth_wide": {
        "source": synthetic(5_000, 40, 2),
        "training": {"estimator": "gradient_boosting", "params": {"n_estimators": 30}},
        "registry": {"keep_last": 5},
    },
    "synth_drift": {
        "source": synthetic(3_000, 10, 3, drift_features=["f1", "f4"], drift_shift=0.5, drift_scale=1.2),
        "checks": {"data_drift": {"psi_threshold": 0.1, "drift_share": 0.3, "severity": "HIGH"}},
    },
    "synth_imbalanced": {
        "source": synthetic(4_000, 12, 4, positive_fraction=0.1),
        "gate": {"metric": "f1", "tolerance": 0.01},
        "checks": {"prediction_drift": {"psi_threshold": 0.3, "severity": "LOW"}},
    },
    "synth_quarantine": {
        "source": synthetic(1_500, 6, 5),
        "validation": {"min_rows": 100, "max_invalid_fraction": 0.05, "allow_new_classes": True},
        "checks": {"freshness": {"warn_hours": 12, "fail_hours": 36}},
    },
    "synth_routed": {
        "source": synthetic(2_500, 16, 6),
        "alerts": {"routes": {"HIGH": ["log", "jsonl"], "MEDIUM": ["jsonl"]}},
        "schedules": {"monitoring": {"cron": "0 */6 * * *", "enabled": False}},
    },
    "synth_hourly": {
        "description": "retrained every hour on fresh synthetic data",
        "source": synthetic(1_000, 20, 9),
        "training": {"estimator": "logistic_regression", "params": {"C": 2.0, "max_iter": 500}},
        "schedules": {"timezone": "America/New_York", "retrain": {"cron": "0 * * * *"}},
        "checks": {"production_accuracy": {"min_accuracy": 0.8}},
    },
}

# What each full-load child runs ({package}, {assets}, {jobs} are filled in); it prints one JSON line.
FULL_LOAD = """\
import time
started_at = time.time()
t0 = time.perf_counter()
import dagster as dg
import {package}.definitions as d
t1 = time.perf_counter()
defs = d.defs()
t2 = time.perf_counter()
dg.Definitions.validate_loadable(defs)
t3 = time.perf_counter()
repo = defs.get_repository_def()
keys = repo.asset_graph.get_all_asset_keys()
jobs = [j for j in repo.job_names if not j.startswith("__")]
models = sorted({{k.path[0] for k in keys}})
assert len(keys) == {assets}, f"{{len(keys)}} assets, expected {assets}: {{sorted(k.to_user_string() for k in keys)}}"
assert len(jobs) == {jobs}, f"{{len(jobs)}} jobs, expected {jobs}: {{sorted(jobs)}}"
import json
print(json.dumps({{"models": models, "assets": len(keys), "jobs": len(jobs),
                  "schedules": len(repo.schedule_defs), "sensors": len(repo.sensor_defs),
                  "phases_s": {{"import": t1 - t0, "defs()": t2 - t1, "validate_loadable": t3 - t2}},
                  "started_at": started_at, "finished_at": time.time()}}), flush=True)
"""
IMPORT_ONLY = "import ml_platform.definitions"


class MeasurementFailed(RuntimeError):
    pass


@dataclass
class Measurement(measure.Measurement):
    child: dict[str, Any] = field(default_factory=dict)  # what the child printed (phases, counts)


@dataclass(frozen=True)
class Command:
    label: str
    code: str
    env: dict[str, str]
    models: int  # 0 for the import-only baseline


def clean_env(dagster_home: Path, pythonpath: Path | None) -> dict[str, str]:
    env = measure.clean_env("PYTHONPATH", DAGSTER_HOME=str(dagster_home))
    if pythonpath is not None:
        env["PYTHONPATH"] = str(pythonpath)
    return env


def run_measured(command: Command, timeout: float, scratch: Path) -> Measurement:
    """Run the command in a fresh interpreter, timed from outside; raise MeasurementFailed on error."""
    log = scratch / f"{command.label}.log"
    run = measure.run_child([sys.executable, "-c", command.code], cwd=scratch, env=command.env, log=log,
                            timeout=timeout, poll_s=0.002)
    text = log.read_text(errors="replace")
    if run.exit_code != 0:
        raise MeasurementFailed(f"{command.label}: exit {run.exit_code} after {run.wall_s:.1f} s; output tail:\n{text[-3000:]}")
    m = Measurement.of(command.label, run, wall_digits=4, cpu_digits=3)
    if command.models:
        lines = [line for line in text.splitlines() if line.startswith("{")]
        if not lines:
            raise MeasurementFailed(f"{command.label}: no result line; output tail:\n{text[-3000:]}")
        child = json.loads(lines[-1])
        if len(child["models"]) != command.models:
            raise MeasurementFailed(f"{command.label}: built {len(child['models'])} models, expected {command.models}")
        # Outside the script's own timers (wall clock, parent and child): interpreter start-up
        # until the script's first line, and from its last line until the process was reaped
        # (interpreter shutdown: module teardown and the final garbage collection).
        child["phases_s"] = {"startup": child["started_at"] - run.spawned_at, **child["phases_s"],
                             "teardown": run.reaped_at - child["finished_at"]}
        m.child = child
    return m


def full_load(label: str, project: Project, models: int, home: Path) -> Command:
    code = FULL_LOAD.format(package=project.package, assets=models * ASSETS_PER_MODEL, jobs=models * JOBS_PER_MODEL)
    return Command(label, code, clean_env(home, project.root), models)


def summary(ms: list[Measurement]) -> dict[str, Any]:
    """measure.summary, plus (for the full loads) the median of each phase the child timed and what it built."""
    extra: dict[str, Any] = {}
    if ms and ms[0].child:
        phases = ms[0].child["phases_s"]
        extra["child_phases_median_s"] = {p: round(statistics.median(m.child["phases_s"][p] for m in ms), 3) for p in phases}
        extra["built"] = {k: ms[0].child[k] for k in ("assets", "jobs", "schedules", "sensors")}
    return measure.summary(ms, extra)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=7, help="timed runs of each command (default 7)")
    parser.add_argument("--no-warmup", action="store_true", help="do not run each command once untimed first")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per measurement before it is killed")
    parser.add_argument("--keep-projects", action="store_true", help="keep the temporary projects (their path is printed)")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "load.json")
    args = parser.parse_args(argv)
    if args.repeat < 1:
        parser.error("--repeat must be at least 1")

    import dagster

    work = Path(tempfile.mkdtemp(prefix="bench_load_"))
    home = work / "dagster_home"
    home.mkdir()
    shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    one = make_project(work / "one", {"breast_cancer": BREAST_CANCER})
    ten = make_project(work / "ten", {"breast_cancer": BREAST_CANCER, **OTHER_MODELS})
    commands = [
        Command("import", IMPORT_ONLY, clean_env(home, None), 0),
        full_load("one", one, 1, home),
        full_load("ten", ten, 1 + len(OTHER_MODELS), home),
    ]

    results: dict[str, Any] = {
        "benchmark": "code location load: 1 vs 10 declared models",
        "machine": measure.machine(dagster=dagster.__version__),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "repeat": args.repeat,
        "commands": {c.label: ("python -c " + json.dumps(c.code)) for c in commands},
        "models": {"one": ["breast_cancer"], "ten": ["breast_cancer", *OTHER_MODELS]},
        "declarations": {"breast_cancer": BREAST_CANCER, **OTHER_MODELS},
    }
    timings: dict[str, list[Measurement]] = {c.label: [] for c in commands}
    ok = True
    try:
        if not args.no_warmup:
            print("warm-up (untimed): one run of each ...", flush=True)
            for command in commands:
                run_measured(command, args.timeout, work)
        for i in range(args.repeat):
            for command in commands:
                timings[command.label].append(run_measured(command, args.timeout, work))
            print(f"  {i + 1}/{args.repeat}: " + ", ".join(f"{k} {v[-1].wall_s:.2f} s" for k, v in timings.items()), flush=True)
    except MeasurementFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        results["failure"] = str(exc)
        ok = False
    finally:
        if args.keep_projects:
            print(f"kept the projects in {work}")
        else:
            shutil.rmtree(work, ignore_errors=True)

    if ok:
        s = {label: summary(ms) for label, ms in timings.items()}
        base = s["import"]["median_s"]
        built_one = s["one"]["median_s"] - base
        built_ten = s["ten"]["median_s"] - base
        ratio = round(s["ten"]["median_s"] / s["one"]["median_s"], 3)
        results.update({
            "import_only": s["import"],
            "one": s["one"],
            "ten": s["ten"],
            "full_load_ratio_of_medians": ratio,
            "target_ratio": RATIO_TARGET,
            "meets_target": ratio < RATIO_TARGET,
            "minus_import": {
                "one_s": round(built_one, 3),
                "ten_s": round(built_ten, 3),
                "ratio": round(built_ten / built_one, 3) if built_one > 0 else None,
                "per_extra_model_s": round((built_ten - built_one) / len(OTHER_MODELS), 3),
            },
        })
    results["machine"]["loadavg_end"] = measure.loadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))
    if not ok:
        print(f"results (incomplete): {args.output}")
        return 1

    # -- table -------------------------------------------------------------------------------------
    m = results["machine"]
    print(f"\ncode location load, median of {args.repeat} fresh interpreters each "
          f"({m['cpu_model']}, {m['cpus']} cores, Python {m['python']}, Dagster {m['dagster']})")
    print(f"{'what':<46} {'median s':>9} {'min s':>8} {'max s':>8} {'peak RSS MB':>12}")
    rows = (("import", "import ml_platform.definitions (baseline)"),
            ("one", "full load, 1 model"), ("ten", f"full load, {1 + len(OTHER_MODELS)} models"))
    for key, title in rows:
        r = results[key if key != "import" else "import_only"]
        print(f"{title:<46} {r['median_s']:>9.3f} {r['min_s']:>8.3f} {r['max_s']:>8.3f} {r['median_max_rss_mb']:>12.0f}")
    mi = results["minus_import"]
    print(f"\n(a) full load, ratio of medians 10/1: {results['full_load_ratio_of_medians']:.2f} "
          f"(target < {RATIO_TARGET}: {'met' if results['meets_target'] else 'MISSED'})")
    print(f"(b) minus the import baseline: 1 model {mi['one_s']:.3f} s, 10 models {mi['ten_s']:.3f} s, "
          f"ratio {mi['ratio']}, {mi['per_extra_model_s'] * 1000:.0f} ms per extra model")
    for key in ("one", "ten"):
        phases = results[key]["child_phases_median_s"]
        built = results[key]["built"]
        print(f"    {key}: phases (median s): " + ", ".join(f"{p} {v:.3f}" for p, v in phases.items())
              + f"; built {built['assets']} assets, {built['jobs']} jobs, {built['schedules']} schedules, {built['sensors']} sensors")
    print(f"load average start {m['loadavg_start']}, end {m['loadavg_end']}")
    print(f"results: {args.output}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
