"""End-to-end cost of the Dagster pipeline vs a plain pandas + scikit-learn script doing the same work.

Every measurement is a subprocess timed from the outside: wall time includes interpreter
start-up, imports, loading the definitions and (for Dagster) the run's event log in SQLite.

    a. bundled data (569 x 30): `dagster asset materialize -m ml_platform --select <selection>` vs
       `python benchmarks/plain_pipeline.py --source bundled`, --repeat times each, interleaved
       (A B A B ...), after one untimed warm-up of each; median, min, the ratio of medians, and
       the fixed overhead: the difference of the medians (target: <= 1.0 s).
    b. synthetic N x --features for each N of --sizes (default 10,000, 100,000, 1,000,000 and
       10,000,000 rows x 10), both ways, --large-repeat times each: wall time and peak memory
       (max RSS of the largest process of the child's tree; targets at 1e6 and 1e7: time ratio
       <= 1.3, peak-memory ratio <= 1.5).
    c. import costs: `python -c "import dagster"`, `python -c "import ml_platform.definitions"`,
       `python -c "import pandas, sklearn"` and an empty interpreter, for where the time goes.

What runs. By default the selection is the model's training path, `+key:"breast_cancer/production_model"`:
raw_data, validated_data, trained_model, staging_model and production_model with their checks
(schema, accuracy, the smoke test in a fresh process, and the monitoring checks of validated_data,
which find no production model in a fresh home and report "not evaluated"): the work the plain
script does (load, validate, fingerprint, split, train, evaluate, register, promote) plus the
checks. --whole-model selects `group:breast_cancer` instead, adding batch_predictions and the
monitoring report, which the plain script does not do. The project also ships `churn`, which the
plain script does not train, so it is left out.

Isolation: by default each Dagster run gets a fresh temporary DAGSTER_HOME holding a copy of
dagster_home/dagster.yaml (SQLite run/event storage, registry and IO-manager files inside it),
so runs share no state and every run registers v1 and promotes it (no champion to compare,
like the plain script); creating the SQLite databases is then part of every run (about 0.5 s).
--shared-home instead reuses one home (initialised by the warm-up) for all section-a runs: the
steady state of a persistent instance, where each run finds the version it would train already
registered (same data, params and code), reuses it and keeps it in production.
ML_PLATFORM_* variables (and DAGSTER_HOME) from the caller's environment are removed.
The synthetic size reaches Dagster as run config (`-c`) for the shipped model's data source,
`resources.breast_cancer_data_source.config: {kind: synthetic, synthetic: {rows, features}}`.

Peak memory: each child is reaped with os.wait4(pid), whose rusage covers that child and its
waited-for descendants only, so ru_maxrss is per measurement (unlike
getrusage(RUSAGE_CHILDREN), which is the maximum over all children so far). It is the largest
single process's peak, not a sum: the smoke test's fork server (~200 MB) is not added to the run's.

A run counts only if it succeeded: exit code 0 and, for Dagster, the run's record in the
instance is SUCCESS (the CLI prints INFO only, see dagster_home/dagster.yaml, so the run status,
per-step times and step pids are read from the instance's event log afterwards, untimed), the
model's registry at <home>/ml_platform/registry/breast_cancer has a production alias, and this
run's trained_model registered a new version v<n+1> (fresh home), or, with --shared-home, either
did that or reused the existing version (retraining on the same data, params and code registers
nothing new); otherwise the benchmark reports the failure (with the log tail), writes what it has
and exits 1.

    python benchmarks/pipeline_benchmark.py                 # all sections, results/pipeline.json
    python benchmarks/pipeline_benchmark.py --repeat 9 --skip-large
    python benchmarks/pipeline_benchmark.py --sizes 1000000 --large-repeat 5 --skip-imports
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import measure  # noqa: E402

BIN = Path(sys.executable).parent
DAGSTER = str(BIN / "dagster") if (BIN / "dagster").exists() else (shutil.which("dagster") or "dagster")
PLAIN = str(REPO / "benchmarks" / "plain_pipeline.py")
DAGSTER_YAML = REPO / "dagster_home" / "dagster.yaml"
OVERHEAD_TARGET_S = 1.0  # bundled data: Dagster's median minus the plain script's
LARGE_RATIO_TARGETS = {"time": 1.3, "peak_rss": 1.5}  # at 1e6 and 1e7 rows
TRAINING_PATH = '+key:"breast_cancer/production_model"'
MODEL = "breast_cancer"  # the shipped model (ml_platform/defs/breast_cancer/defs.yaml)
DATA_SOURCE = f"{MODEL}_data_source"  # its data source's resource key


class RunFailed(RuntimeError):
    pass


@dataclass
class Measurement(measure.Measurement):
    detail: dict[str, Any] = field(default_factory=dict)  # what the run reported (steps, metrics, rows)


def clean_env(**extra: str) -> dict[str, str]:
    env = measure.clean_env()
    env["PYTHONWARNINGS"] = env.get("PYTHONWARNINGS", "")
    env.update(extra)
    return env


def run_measured(label: str, cmd: list[str], env: dict[str, str], log: Path, timeout: float) -> tuple[Measurement, int, int]:
    """Run `cmd`, timing it from outside; returns (measurement, exit code, pid)."""
    run = measure.run_child(cmd, cwd=REPO, env=env, log=log, timeout=timeout, poll_s=0.005)
    return Measurement.of(label, run, wall_digits=3, cpu_digits=2), run.exit_code, run.pid


def new_home() -> Path:
    home = Path(tempfile.mkdtemp(prefix="bench_dagster_home_"))
    shutil.copy(DAGSTER_YAML, home / "dagster.yaml")
    return home


def registry_dir(home: Path) -> Path:
    """The shipped model's registry in a run's DAGSTER_HOME."""
    return home / "ml_platform" / "registry" / MODEL


def newest_version(home: Path) -> int:
    """The highest registered version number in the model's registry (0 when there is none)."""
    versions = registry_dir(home) / "versions"
    return max((int(p.name[1:]) for p in versions.glob("v*") if p.name[1:].isdigit()), default=0)


@dataclass
class RunOutcome:
    """What the instance recorded about the newest run (read after the run, untimed)."""

    run_id: str | None
    status: str
    steps_s: dict[str, float]
    step_pids: set[int]
    model_version: str | None  # breast_cancer/trained_model's version in that run
    registered: bool | None  # a new version (True) or an existing one reused (False)


def run_outcome(home: Path) -> RunOutcome:
    """The newest run in `home`'s instance: status, per-step seconds, the pids that ran steps,
    and what its trained_model registered."""
    import dagster as dg  # only here: the parent's own import time is never measured

    previous = os.environ.get("DAGSTER_HOME")
    os.environ["DAGSTER_HOME"] = str(home)  # dagster.yaml resolves base_dir from it
    try:
        with dg.DagsterInstance.from_config(str(home)) as instance:
            records = instance.get_run_records(limit=1)
            if not records:
                return RunOutcome(None, "NO_RUN", {}, set(), None, None)
            run_id = records[0].dagster_run.run_id
            steps = {
                stat.step_key: round(stat.end_time - stat.start_time, 3)
                for stat in instance.get_run_step_stats(run_id)
                if stat.start_time is not None and stat.end_time is not None
            }
            starts = instance.all_logs(run_id, of_type=dg.DagsterEventType.STEP_START)
            pids = {e.dagster_event.pid for e in starts if e.dagster_event and e.dagster_event.pid is not None}
            event = instance.get_latest_materialization_event(dg.AssetKey([MODEL, "trained_model"]))
            version = registered = None
            if event is not None and event.run_id == run_id and event.asset_materialization is not None:
                metadata = event.asset_materialization.metadata
                version = metadata["model_version"].value if "model_version" in metadata else None
                registered = bool(metadata["registered"].value) if "registered" in metadata else None
            return RunOutcome(run_id, records[0].dagster_run.status.value, steps, pids, version, registered)
    finally:
        if previous is None:
            os.environ.pop("DAGSTER_HOME", None)
        else:
            os.environ["DAGSTER_HOME"] = previous


def dagster_run(label: str, selection: str, run_config: dict | None, timeout: float, keep: Path | None,
                home: Path | None = None) -> Measurement:
    """One `dagster asset materialize` in `home`, or in a fresh DAGSTER_HOME removed afterwards."""
    shared = home is not None
    home = home or new_home()
    try:
        cmd = [DAGSTER, "asset", "materialize", "-m", "ml_platform", "--select", selection]
        if run_config is not None:
            (home / "run_config.json").write_text(json.dumps(run_config))  # JSON is valid YAML
            cmd += ["-c", str(home / "run_config.json")]
        log = home / "run.log"
        versions_before = newest_version(home)
        m, code, pid = run_measured(label, cmd, clean_env(DAGSTER_HOME=str(home)), log, timeout)
        text = log.read_text(errors="replace")
        state_path = registry_dir(home) / "state.json"
        production = json.loads(state_path.read_text())["aliases"].get("production") if state_path.exists() else None
        versions_after = newest_version(home)
        outcome = run_outcome(home) if code == 0 else None
        new_version = versions_after == versions_before + 1 and outcome is not None and outcome.registered is True
        reused = (shared and versions_before > 0 and versions_after == versions_before
                  and outcome is not None and outcome.registered is False)
        if code != 0 or outcome is None or outcome.status != "SUCCESS" or production is None or not (new_version or reused):
            tail = "\n".join(text.splitlines()[-25:])
            status = outcome.status if outcome else "?"
            raise RunFailed(f"{label}: dagster run failed (exit {code}, run status {status}, production={production}, "
                            f"versions {versions_before} -> {versions_after}); log tail:\n{tail}")
        record_version = outcome.model_version or f"v{versions_after}"
        record = json.loads((registry_dir(home) / "versions" / record_version / "metadata.json").read_text())
        m.detail = {
            "run_id": outcome.run_id,
            "steps_s": outcome.steps_s,
            "steps_in_cli_process": outcome.step_pids == {pid},
            "model_version": record_version,
            "registered": outcome.registered,
            "metrics": record["metrics"],
            "rows": record["row_count"],
        }
        if keep is not None:
            shutil.copy(log, keep / f"{label}-{pid}.log")
        return m
    finally:
        if not shared:
            shutil.rmtree(home, ignore_errors=True)


def plain_run(label: str, args: list[str], timeout: float) -> Measurement:
    work = Path(tempfile.mkdtemp(prefix="bench_plain_"))
    try:
        log = work / "run.log"
        cmd = [sys.executable, PLAIN, *args, "--out-dir", str(work / "registry")]
        m, code, _ = run_measured(label, cmd, clean_env(), log, timeout)
        text = log.read_text(errors="replace")
        if code != 0:
            raise RunFailed(f"{label}: plain script failed (exit {code}):\n{text[-3000:]}")
        result = json.loads(text.strip().splitlines()[-1])
        m.detail = {"steps_s": result["stages_s"], "import_s": result["import_s"], "metrics": result["metrics"], "rows": result["rows"]}
        return m
    finally:
        shutil.rmtree(work, ignore_errors=True)


def fmt_row(cells: list[Any], widths: list[int]) -> str:
    return "  ".join(str(c).ljust(w) if i == 0 else str(c).rjust(w) for i, (c, w) in enumerate(zip(cells, widths)))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--repeat", type=int, default=5, help="timed runs of each, bundled data (default 5)")
    parser.add_argument("--large-repeat", type=int, default=2, help="runs of each at each synthetic size (default 2)")
    parser.add_argument("--skip-large", action="store_true", help="skip section b (the synthetic sizes)")
    parser.add_argument("--skip-imports", action="store_true", help="skip section c (import costs)")
    parser.add_argument("--sizes", default="10000,100000,1000000,10000000",
                        help="synthetic row counts for section b, comma-separated (default 1e4,1e5,1e6,1e7)")
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--whole-model", action="store_true",
                        help="select group:breast_cancer (adds batch_predictions and the report) instead of the training path")
    parser.add_argument("--no-warmup", action="store_true", help="do not run each command once untimed first")
    parser.add_argument("--timeout", type=float, default=1800.0, help="seconds per run before it is killed")
    parser.add_argument("--shared-home", action="store_true",
                        help="section a: reuse one DAGSTER_HOME (initialised by the warm-up) for all Dagster runs, "
                             "the steady state of a persistent instance, instead of a fresh one per run")
    parser.add_argument("--keep-logs", type=Path, help="copy each Dagster run's log into this directory")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "pipeline.json")
    args = parser.parse_args()
    sizes = [int(n) for n in args.sizes.split(",") if n.strip()]
    selection = f"group:{MODEL}" if args.whole_model else TRAINING_PATH
    if args.keep_logs:
        args.keep_logs.mkdir(parents=True, exist_ok=True)

    results: dict[str, Any] = {
        "machine": measure.machine(),
        "started_at": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
        "selection": selection,
    }
    results["dagster_home"] = "one shared DAGSTER_HOME for section a" if args.shared_home else "fresh DAGSTER_HOME per run"
    ok = True
    shared_home = new_home() if args.shared_home else None
    try:
        # -- a. bundled --------------------------------------------------------------------
        if not args.no_warmup:
            print("warm-up (untimed): one run of each ...", flush=True)
            dagster_run("warmup", selection, None, args.timeout, None, shared_home)
            plain_run("warmup", ["--source", "bundled"], args.timeout)
        dag, plain = [], []
        for i in range(args.repeat):
            dag.append(dagster_run("dagster_bundled", selection, None, args.timeout, args.keep_logs, shared_home))
            plain.append(plain_run("plain_bundled", ["--source", "bundled"], args.timeout))
            print(f"  bundled {i + 1}/{args.repeat}: dagster {dag[-1].wall_s:.2f} s, plain {plain[-1].wall_s:.2f} s", flush=True)
        a_dag, a_plain = measure.summary(dag), measure.summary(plain)
        overhead = round(a_dag["median_s"] - a_plain["median_s"], 2)
        results["bundled"] = {"dagster": a_dag, "plain": a_plain,
                              "ratio_of_medians": round(a_dag["median_s"] / a_plain["median_s"], 2),
                              "fixed_overhead_s": overhead, "target_overhead_s": OVERHEAD_TARGET_S,
                              "meets_target": overhead <= OVERHEAD_TARGET_S,
                              "same_metrics": dag[0].detail["metrics"] == plain[0].detail["metrics"]}

        # -- b. synthetic sizes ----------------------------------------------------------------
        results["sizes"] = []
        for rows in [] if args.skip_large else sizes:
            config = {"resources": {DATA_SOURCE: {"config": {
                "kind": "synthetic", "synthetic": {"rows": rows, "features": args.features}}}}}
            plain_args = ["--source", "synthetic", "--rows", str(rows), "--features", str(args.features)]
            ldag, lplain = [], []
            for i in range(args.large_repeat):
                ldag.append(dagster_run("dagster_synthetic", selection, config, args.timeout, args.keep_logs))
                lplain.append(plain_run("plain_synthetic", plain_args, args.timeout))
                print(f"  synthetic {rows:,} x {args.features} {i + 1}/{args.large_repeat}: dagster {ldag[-1].wall_s:.1f} s "
                      f"{ldag[-1].max_rss_mb:.0f} MB, plain {lplain[-1].wall_s:.1f} s {lplain[-1].max_rss_mb:.0f} MB", flush=True)
            b_dag, b_plain = measure.summary(ldag), measure.summary(lplain)
            time_ratio = round(b_dag["median_s"] / b_plain["median_s"], 2)
            rss_ratio = round(b_dag["median_max_rss_mb"] / b_plain["median_max_rss_mb"], 2)
            entry = {"rows": rows, "features": args.features, "dagster": b_dag, "plain": b_plain,
                     "ratio_of_medians": time_ratio, "rss_ratio": rss_ratio,
                     "same_metrics": ldag[0].detail["metrics"] == lplain[0].detail["metrics"]}
            if rows >= 1_000_000:
                entry["targets"] = LARGE_RATIO_TARGETS
                entry["meets_targets"] = {"time": time_ratio <= LARGE_RATIO_TARGETS["time"],
                                          "peak_rss": rss_ratio <= LARGE_RATIO_TARGETS["peak_rss"]}
            results["sizes"].append(entry)
    except RunFailed as exc:
        print(f"FAILED: {exc}", file=sys.stderr)
        results["failure"] = str(exc)
        ok = False
    finally:
        if shared_home is not None:
            shutil.rmtree(shared_home, ignore_errors=True)

    # -- c. imports ----------------------------------------------------------------------------
    if not args.skip_imports:
        snippets = {"python -c pass": "pass", "import pandas, sklearn": "import pandas, sklearn",
                    "import dagster": "import dagster", "import ml_platform.definitions": "import ml_platform.definitions"}
        timings: dict[str, list[float]] = {k: [] for k in snippets}
        scratch = Path(tempfile.mkdtemp(prefix="bench_imports_"))
        try:
            for _ in range(3):
                for name, code in snippets.items():
                    m, rc, _ = run_measured(name, [sys.executable, "-c", code], clean_env(DAGSTER_HOME=str(scratch)),
                                            scratch / "log", args.timeout)
                    if rc == 0:
                        timings[name].append(m.wall_s)
        finally:
            shutil.rmtree(scratch, ignore_errors=True)
        results["imports"] = {k: {"median_s": round(statistics.median(v), 3), "runs": v} for k, v in timings.items() if v}

    results["machine"]["loadavg_end"] = measure.loadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps(results, indent=2))

    # -- table ---------------------------------------------------------------------------------
    widths = [54, 9, 9, 9, 11]
    print(f"\nselection: {selection}")
    print(fmt_row(["what", "median s", "min s", "max s", "peak RSS MB"], widths))
    print(fmt_row(["-" * 54, "-" * 9, "-" * 9, "-" * 9, "-" * 11], widths))
    sections = [("bundled 569x30", results["bundled"])] if "bundled" in results else []
    sections += [(f"synthetic {e['rows']:,}x{e['features']}", e) for e in results.get("sizes", [])]
    for title, section in sections:
        for who in ("dagster", "plain"):
            s = section[who]
            name = f"{title}: {'dagster' if who == 'dagster' else 'plain'} (n={s['n']})"
            print(fmt_row([name, f"{s['median_s']:.2f}", f"{s['min_s']:.2f}", f"{s['max_s']:.2f}", f"{s['median_max_rss_mb']:.0f}"], widths))
    if "bundled" in results:
        b = results["bundled"]
        print(f"\nbundled: fixed overhead {b['fixed_overhead_s']:.2f} s (target <= {OVERHEAD_TARGET_S} s: "
              f"{'met' if b['meets_target'] else 'MISSED'}), ratio {b['ratio_of_medians']:.2f}; same holdout metrics: {b['same_metrics']}")
    for e in results.get("sizes", []):
        verdict = ""
        if "meets_targets" in e:
            verdict = " (" + ", ".join(f"{k} {'met' if v else 'MISSED'}" for k, v in e["meets_targets"].items()) + ")"
        print(f"{e['rows']:>11,} rows: time ratio {e['ratio_of_medians']:.2f}, peak RSS ratio {e['rss_ratio']:.2f}{verdict}; "
              f"same metrics: {e['same_metrics']}")
    if results.get("sizes"):
        biggest = results["sizes"][-1]
        for who in ("dagster", "plain"):
            steps = biggest[who]["runs"][0]["detail"]["steps_s"]
            print(f"  {biggest['rows']:,} rows, {who} steps (s, inside the process): " + ", ".join(f"{k} {v}" for k, v in steps.items()))
    if "imports" in results:
        print("\nimports (median of 3, s): " + ", ".join(f"{k} {v['median_s']:.2f}" for k, v in results["imports"].items()))
    print(f"Dagster instance: {results['dagster_home']}")
    print(f"load average start {results['machine']['loadavg_start']}, end {results['machine']['loadavg_end']}"
          f" ({results['machine']['cpus']} CPUs, {results['machine']['cpu_model']})")
    print(f"results: {args.output}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
