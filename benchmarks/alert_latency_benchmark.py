"""Latency from the end of a run with a failed check to the webhook's receipt, under `dagster dev`.

Starts `dagster dev` (webserver + daemon) on a temporary DAGSTER_HOME with the webhook channel
pointed at a recording HTTP server on 127.0.0.1, then runs `dagster asset materialize -m
ml_platform --select '*'` N times with the shipped model's accuracy threshold set above what
the model reaches (run config for the op `breast_cancer__trained_model`:
`{params: {C: <c>}, accuracy_check: {min_accuracy: 0.999}}`), so every run fails its blocking
check `breast_cancer/trained_model:accuracy_above_threshold` (HIGH, routed to the webhook).
Each run uses a different C: retraining on the same data, params and code registers nothing
new and reuses the existing version, whose alert fingerprint would be deduplicated; a new C
registers a new version, hence a new fingerprint and a new alert per run.
Latency = webhook receipt time - the run's end time from the instance's run record.
Target: at most the sensor interval + 2 s.

    python benchmarks/alert_latency_benchmark.py [--runs 5] [--interval 5]

Writes benchmarks/results/alert_latency.json; exits 1 if a run passes its checks, no alert
arrives, or the slowest alert misses the target.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_platform_tests.alert_servers import RecordingHTTPServer  # noqa: E402
from ml_platform_tests.dagster_dev import DagsterDev, make_dagster_home  # noqa: E402

MODEL = "breast_cancer"
TRAINED_MODEL_OP = f"{MODEL}__trained_model"
MIN_ACCURACY = 0.999  # the bundled data's holdout accuracy is about 0.98
ACCURACY_CHECK = "accuracy_above_threshold"
CLI_JOB = "__ASSET_JOB"  # the job `dagster asset materialize` runs


def strict_config(run: int) -> dict[str, Any]:
    """Run config that fails the accuracy check with a new candidate: C differs for every run."""
    c = round(0.9 ** (run + 1), 6)  # 0.9, 0.81, 0.729, ...: distinct and positive
    return {"ops": {TRAINED_MODEL_OP: {"config": {"params": {"C": c}, "accuracy_check": {"min_accuracy": MIN_ACCURACY}}}}}


def wait_for_alert(webhook: RecordingHTTPServer, run_id: str, timeout: float) -> tuple[Any, dict[str, Any]]:
    """The first webhook request carrying the accuracy alert of run `run_id`, and that alert.
    Other requests (e.g. from a scheduled run the daemon started meanwhile) are skipped."""
    deadline = time.monotonic() + timeout
    seen = 0
    while True:
        requests = webhook.requests
        for request in requests[seen:]:
            for alert in (request.json or {}).get("alerts", []):
                if alert.get("run_id") == run_id and alert.get("check") == ACCURACY_CHECK:
                    return request, alert
        seen = len(requests)
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"no {ACCURACY_CHECK} alert for run {run_id} within {timeout:.0f} s "
                               f"({seen} other request(s) arrived)")
        try:
            webhook.wait_for(seen + 1, timeout=left)
        except TimeoutError:
            pass


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=int, default=5, help="sensor minimum interval, seconds")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "alert_latency.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, RecordingHTTPServer() as webhook:
        home = make_dagster_home(Path(tmp) / "dagster_home")
        os.environ["DAGSTER_HOME"] = str(home)
        env = {
            "ML_PLATFORM_ALERT_WEBHOOK_URL": webhook.url("/alerts"),
            "ML_PLATFORM_ALERT_SENSOR_INTERVAL": str(args.interval),
        }
        import dagster as dg

        latencies: list[float] = []
        params: list[float] = []
        with DagsterDev(home, env, Path(tmp) / "dagster_dev.log") as dev:
            for i in range(args.runs):
                run_config = strict_config(i)
                config = Path(tmp) / f"strict-{i}.json"
                config.write_text(json.dumps(run_config))  # JSON is valid YAML
                params.append(run_config["ops"][TRAINED_MODEL_OP]["config"]["params"]["C"])
                result = dev.materialize("--select", "*", "-c", str(config))
                if result.returncode == 0:
                    print(f"run {i + 1} unexpectedly passed its checks", file=sys.stderr)
                    return 1
                with dg.DagsterInstance.get() as instance:
                    record = instance.get_run_records(dg.RunsFilter(job_name=CLI_JOB), limit=1)[0]
                try:
                    request, alert = wait_for_alert(webhook, record.dagster_run.run_id, timeout=args.interval * 4 + 60)
                except TimeoutError as exc:
                    print(f"run {i + 1}: {exc}; CLI output tail:\n{result.stderr[-3000:]}", file=sys.stderr)
                    return 1
                latencies.append(request.received_at - record.end_time)
                print(f"run {i + 1} (C={params[-1]}): {alert['asset']}:{alert['check']} {alert['model_version']} "
                      f"alert received {latencies[-1]:.2f} s after the run ended", flush=True)

    target = args.interval + 2.0
    summary = {
        "sensor_interval_s": args.interval,
        "runs": args.runs,
        "latency_median_s": statistics.median(latencies),
        "latency_max_s": max(latencies),
        "latency_min_s": min(latencies),
        "target_s": target,
    }
    print(json.dumps(summary, indent=2))
    Path(args.output).parent.mkdir(parents=True, exist_ok=True)
    Path(args.output).write_text(json.dumps({**summary, "latencies_s": latencies, "params_C": params,
                                             "run_config": strict_config(0)}, indent=2))
    return 0 if summary["latency_max_s"] <= target else 1


if __name__ == "__main__":
    sys.exit(main())
