"""Where the fixed overhead of a CLI run goes: one `dagster asset materialize` of the training path on
the bundled data, sampled by py-spy (`pip install py-spy`), its main thread's time split into phases.

    .venv/bin/python benchmarks/overhead_profile.py [--runs 3] [--rate 100] [--select SELECTION]

Each run gets a fresh DAGSTER_HOME (a copy of dagster_home/dagster.yaml), as in
pipeline_benchmark.py. py-spy samples the process `--rate` times a second, idle time included, in
order (speedscope format), so the time after the last Python frame (the interpreter's exit) is
seen too. Each sample of the main thread goes to the first phase below whose marker is in its stack:

    import dagster          <module> (dagster/__init__.py ...    the CLI's own import
    instance set-up         create_instance_from_... / DagsterInstance.from_...   storage, SQLite schemas
    definitions             project_definitions (ml_platform/definitions.py ...  reading the declarations
    import numpy, pandas,   <module> (numpy/, pandas/, sklearn/, scipy/     what the plain script imports too
      scikit-learn, scipy
    import ml_platform      <module> (ml_platform/ ...          its own modules, pyarrow, pandera, ...
    smoke test              ml_platform/model/smoke.py          the staged model's test (waiting for it)
    event log writes        store_event / report_dagster_event  Dagster's events into SQLite
    steps' own work         any other ml_platform frame         loading, validating, training, registering
    Dagster run machinery   execute_job ...                     plan, step set-up, IO manager calls
    interpreter exit        no Python frame after the run       finalization, freeing memory
    other

Sampling slows the run by about 10% at 100 Hz; the phases' shares are what to read. Prints the
median over --runs of each phase's seconds and writes benchmarks/results/overhead_profile.json.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO / "benchmarks"))

import measure  # noqa: E402

BIN = Path(sys.executable).parent
PHASES = [
    ("import dagster", ("<module> (dagster/__init__.py",)),
    ("instance set-up", ("create_instance_from", "DagsterInstance.from_config", "DagsterInstance.get (")),
    ("definitions", ("project_definitions (",)),
    ("import numpy, pandas, scikit-learn, scipy", ("<module> (numpy/", "<module> (pandas/", "<module> (sklearn/",
                                                   "<module> (scipy/")),
    ("import ml_platform", ("<module> (ml_platform/",)),
    ("smoke test", ("ml_platform/model/smoke.py",)),
    ("event log writes", ("store_event (", "report_dagster_event (")),
    ("steps' own work", ("(ml_platform/",)),
    ("Dagster run machinery", ("execute_job (", "_logged_execute_job (", "execute_run (")),
]


def short_path(path: str) -> str:
    """A frame's file as the markers name it: from the package folder (site-packages or this repo's)."""
    if "site-packages/" in path:
        return path.split("site-packages/")[-1]
    if "/ml_platform/" in path:
        return "ml_platform/" + path.split("/ml_platform/", 1)[1]
    return path


def phase_of(names: list[str], after_run: bool) -> str:
    if not names:
        return "interpreter exit" if after_run else "other"
    stack = ";".join(names)
    for phase, markers in PHASES:
        if any(marker in stack for marker in markers):
            return phase
    return "other"


def profile_once(py_spy: str, selection: str, rate: int) -> tuple[float, dict[str, float]]:
    home = Path(tempfile.mkdtemp(prefix="overhead_profile_"))
    try:
        shutil.copy(REPO / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
        out = home / "profile.json"
        env = {**measure.clean_env(), "DAGSTER_HOME": str(home)}
        cmd = [py_spy, "record", "--idle", "-r", str(rate), "-f", "speedscope", "-o", str(out), "--",
               str(BIN / "dagster"), "asset", "materialize", "-m", "ml_platform", "--select", selection]
        done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, timeout=600)
        if done.returncode != 0 or "RUN_FAILURE" in done.stderr:
            raise RuntimeError(f"the profiled run failed (exit {done.returncode}):\n{done.stderr[-3000:]}")
        data = json.loads(out.read_text())
    finally:
        shutil.rmtree(home, ignore_errors=True)
    frames = data["shared"]["frames"]
    main = max(data["profiles"], key=lambda p: len(p["samples"]))  # the main thread samples all along
    names_of = [[f"{frames[i]['name']} ({short_path(frames[i].get('file') or '')}:{frames[i].get('line')})"
                 for i in sample] for sample in main["samples"]]
    ran = [i for i, names in enumerate(names_of) if any("execute_job (" in n for n in names)]
    last_run_sample = ran[-1] if ran else len(names_of)
    seconds: dict[str, float] = {}
    for i, (names, weight) in enumerate(zip(names_of, main["weights"])):
        phase = phase_of(names, i > last_run_sample)
        seconds[phase] = seconds.get(phase, 0.0) + weight
    return sum(main["weights"]), seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--rate", type=int, default=100, help="samples per second (default 100)")
    parser.add_argument("--select", default='+key:"breast_cancer/production_model"', help="the runs' asset selection")
    parser.add_argument("--output", type=Path, default=REPO / "benchmarks" / "results" / "overhead_profile.json")
    args = parser.parse_args()
    py_spy = shutil.which("py-spy", path=f"{BIN}:{os.environ.get('PATH', '')}")
    if py_spy is None:
        print("py-spy is not installed: .venv/bin/pip install py-spy", file=sys.stderr)
        return 2
    machine = measure.machine()
    runs = [profile_once(py_spy, args.select, args.rate) for _ in range(args.runs)]
    phases = [name for name, _ in PHASES] + ["interpreter exit", "other"]
    medians = {p: round(statistics.median(r[1].get(p, 0.0) for r in runs), 2) for p in phases}
    total = round(statistics.median(r[0] for r in runs), 2)
    machine["loadavg_end"] = measure.loadavg()
    args.output.parent.mkdir(parents=True, exist_ok=True)
    args.output.write_text(json.dumps({"machine": machine, "selection": args.select, "rate": args.rate,
                                       "sampled_s_median": total, "phases_s_median": medians,
                                       "runs": [{"sampled_s": t, "phases_s": s} for t, s in runs]}, indent=2))
    print(f"{args.select}, bundled data, fresh DAGSTER_HOME; median of {args.runs} runs sampled at {args.rate} Hz")
    for phase in sorted(medians, key=medians.get, reverse=True):
        print(f"  {medians[phase]:6.2f} s  {phase}")
    print(f"  {total:6.2f} s  in all (sampled; the run without py-spy is ~10% faster)")
    print(f"CPU {machine['cpu_model']}, {machine['cpus']} cores; load {machine['loadavg_start']} -> {machine['loadavg_end']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
