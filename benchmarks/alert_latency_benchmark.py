"""Latency from the end of a run with a failed check to the webhook's receipt, under `dagster dev`.

Starts `dagster dev` (webserver + daemon) on a temporary DAGSTER_HOME with the webhook channel
pointed at a recording HTTP server on 127.0.0.1, then runs the pipeline N times with the
accuracy threshold set above what the model reaches, so every run fails its blocking check
(each run registers a new model version, hence a new alert fingerprint: no deduplication).
Latency = webhook receipt time - the run's end time from the instance's run record.
Target: at most the sensor interval + 2 s.

    python benchmarks/alert_latency_benchmark.py [--runs 5] [--interval 5]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from ml_platform_tests.alert_servers import RecordingHTTPServer  # noqa: E402
from ml_platform_tests.dagster_dev import DagsterDev, make_dagster_home  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--interval", type=int, default=5, help="sensor minimum interval, seconds")
    parser.add_argument("--output", default=str(REPO / "benchmarks" / "results" / "alert_latency.json"))
    args = parser.parse_args()

    with tempfile.TemporaryDirectory() as tmp, RecordingHTTPServer() as webhook:
        home = make_dagster_home(Path(tmp) / "dagster_home")
        os.environ["DAGSTER_HOME"] = str(home)
        config = Path(tmp) / "strict.json"
        config.write_text(json.dumps({"ops": {"trained_model": {"config": {"min_accuracy": 0.999}}}}))
        env = {
            "ML_PLATFORM_ALERT_WEBHOOK_URL": webhook.url("/alerts"),
            "ML_PLATFORM_ALERT_SENSOR_INTERVAL": str(args.interval),
            "ML_PLATFORM_SOURCE": "bundled",
        }
        import dagster as dg

        latencies = []
        with DagsterDev(home, env, Path(tmp) / "dagster_dev.log"):
            for i in range(args.runs):
                result = DagsterDev(home, env, Path(tmp) / "unused.log").materialize("--select", "*", "-c", str(config))
                if result.returncode == 0:
                    print("the run unexpectedly passed its checks", file=sys.stderr)
                    return 1
                [*_, request] = webhook.wait_for(i + 1, timeout=args.interval * 4 + 60)
                with dg.DagsterInstance.get() as instance:
                    record = instance.get_run_records(limit=1)[0]
                run_id = request.json["alerts"][0]["run_id"]
                assert run_id == record.dagster_run.run_id, "alert for another run"
                latencies.append(request.received_at - record.end_time)
                print(f"run {i + 1}: alert received {latencies[-1]:.2f} s after the run ended")

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
    Path(args.output).write_text(json.dumps({**summary, "latencies_s": latencies}, indent=2))
    return 0 if summary["latency_max_s"] <= target else 1


if __name__ == "__main__":
    sys.exit(main())
