import base64
import re

from ml_platform.monitoring.report import FailedCheck, drift_chart, markdown_table, metrics_chart, render_report


def decode(uri: str) -> str:
    assert uri.startswith("data:image/svg+xml;base64,")
    return base64.b64decode(uri.split(",", 1)[1]).decode()


def test_drift_chart_draws_one_bar_per_feature_red_above_threshold() -> None:
    svg = decode(drift_chart([{"feature": "a", "psi": 0.05}, {"feature": "b<&>", "psi": 0.5}], threshold=0.2))
    assert svg.startswith("<svg") and svg.count("<rect") == 3  # background + two bars
    assert svg.count('fill="#d9534f"') == 1 and svg.count('fill="#5b9bd5"') == 1
    assert "b&lt;&amp;&gt;" in svg and "threshold 0.2" in svg


def test_metrics_chart_has_a_line_per_metric_present() -> None:
    rows = [{"version": "v1", "accuracy": 0.9, "f1": 0.88}, {"version": "v2", "accuracy": 0.92, "f1": 0.9}]
    svg = decode(metrics_chart(rows))
    assert svg.count("<polyline") == 2 and ">v1<" in svg and ">v2<" in svg and "roc_auc" not in svg


def test_markdown_table_escapes_pipes_and_formats_floats() -> None:
    table = markdown_table([{"a": "x|y", "b": 0.123456}], ["a", "b"])
    assert table.splitlines()[2] == "| x\\|y | 0.1235 |"
    assert markdown_table([], ["a"]) == "_none_"


def test_report_orders_failures_by_severity_and_counts_them() -> None:
    failed = [
        FailedCheck("LOW", "production_model", "pipeline_run_time", "Pipeline took 400s", "Investigate", "t1"),
        FailedCheck("HIGH", "trained_model", "accuracy_above_threshold", "Model accuracy dropped", "Retrain", "t2"),
    ]
    report = render_report(
        model="churn", failed_checks=failed, drift_rows=[], psi_threshold=0.2, version_rows=[], production_version=None,
        recent_alerts=[{"timestamp": "t", "severity": "HIGH", "asset": "a", "check": "c", "message": "m"}],
        generated_at="now",
    )
    assert "Total failing: 2 (HIGH: 1, MEDIUM: 0, LOW: 1)" in report
    assert report.index("| HIGH |") < report.index("| LOW |")
    assert "# Monitoring report: churn" in report and "Production model: **none yet**" in report
    assert "data:image" not in report
    assert re.search(r"## Latest alerts\n\n\| timestamp", report)
