import base64
import re

from ml_platform.monitoring.report import FailedCheck, drift_chart, drift_rule, markdown_table, metrics_chart, render_report


def decode(uri: str) -> str:
    assert uri.startswith("data:image/svg+xml;base64,")
    return base64.b64decode(uri.split(",", 1)[1]).decode()


def drift_row(feature: str, psi: float, ks: float, wasserstein: float, method: str = "psi, wasserstein",
              fired: str = "", psi_threshold: float = 0.2) -> dict:
    return {"feature": feature, "psi": psi, "ks_statistic": ks, "wasserstein": wasserstein, "method": method,
            "fired": fired, "drifted": bool(fired), "psi_threshold": psi_threshold, "ks_threshold": 0.1,
            "wasserstein_threshold": 0.1, "ks_precision": "exact", "wasserstein_precision": "within ±0.00048"}


def test_drift_chart_has_a_panel_per_statistic_coloured_by_what_fired() -> None:
    rows = [drift_row("a", 0.05, 0.02, 0.03), drift_row("b<&>", 0.5, 0.3, 0.4, fired="psi, wasserstein"),
            drift_row("c", 0.1, 0.05, 0.2, method="wasserstein", fired="wasserstein")]
    svg = decode(drift_chart(rows))
    assert svg.startswith("<svg") and svg.count("<rect") == 1 + 3 * 3  # background + a bar per feature per panel
    # Fired: b's psi and wasserstein, c's wasserstein. Information only: KS for all, c's psi.
    assert svg.count('fill="#d9534f"') == 3 and svg.count('fill="#c8c8c8"') == 4 and svg.count('fill="#5b9bd5"') == 2
    assert svg.count('stroke-width="2"') == 9  # a threshold tick per bar
    assert "b&lt;&amp;&gt;" in svg and "Wasserstein / std" in svg


def test_drift_chart_cuts_a_huge_value_and_says_so() -> None:
    svg = decode(drift_chart([drift_row("a", 9.0, 0.02, 0.03, fired="psi"), drift_row("b", 0.1, 0.02, 0.03)]))
    assert ">&gt;9.000<" in svg and ">0.100<" in svg


def test_drift_rule_reads_as_the_decision() -> None:
    assert drift_rule(drift_row("a", 0.1, 0.1, 0.1, psi_threshold=0.25)) == "psi > 0.25 or wasserstein > 0.1"


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
        model="churn", failed_checks=failed, drift_rows=[], version_rows=[], production_version=None,
        recent_alerts=[{"timestamp": "t", "severity": "HIGH", "asset": "a", "check": "c", "message": "m"}],
        generated_at="now",
    )
    assert "Total failing: 2 (HIGH: 1, MEDIUM: 0, LOW: 1)" in report
    assert report.index("| HIGH |") < report.index("| LOW |")
    assert "# Monitoring report: churn" in report and "Production model: **none yet**" in report
    assert "data:image" not in report
    assert re.search(r"## Latest alerts\n\n\| timestamp", report)


def test_the_drift_chart_and_table_show_numeric_and_categorical_features() -> None:
    import numpy as np
    import pandas as pd

    from ml_platform.declaration import DataDriftCheck
    from ml_platform.monitoring.checks import ModelReference, data_drift
    from ml_platform.monitoring.drift import summarize_reference

    rng = np.random.default_rng(0)
    plans = np.array(["basic", "plus", "pro", "team"], dtype=object)
    train = pd.DataFrame({"x": rng.normal(size=5_000), "plan": plans[rng.choice(4, 5_000, p=[0.1, 0.3, 0.3, 0.3])]})
    reference = ModelReference(summarize_reference(train, categorical=["plan"]), {"0": 1.0})
    current = train.assign(plan=plans[rng.choice(4, 5_000, p=[0.4, 0.2, 0.2, 0.2])])
    _, table = data_drift(reference, current, DataDriftCheck())
    # The rows as the report reads them back from the check's metadata: n/a figures are None.
    rows = [{k: (None if isinstance(v, float) and v != v else v) for k, v in row.items()} for row in table.to_dict("records")]
    svg = decode(drift_chart(rows))
    assert "Jensen-Shannon" in svg and svg.count(">n/a<") == 3  # KS and Wasserstein of plan, JS of x
    # plan: PSI and JS fired (red); x: PSI and Wasserstein decide (blue), KS information only (grey).
    assert svg.count('fill="#d9534f"') == 2 and svg.count('fill="#5b9bd5"') == 2 and svg.count('fill="#c8c8c8"') == 1
    report = render_report(model="churn", failed_checks=[], drift_rows=rows, version_rows=[], production_version="v1",
                           recent_alerts=[], generated_at="now")
    assert "| plan | categorical |" in report and "| x | numeric |" in report
    assert "psi > 0.2 or jensen_shannon > 0.1" in report


def test_the_report_shows_the_estimated_accuracy_beside_the_realized_one() -> None:
    from ml_platform.monitoring.report import accuracy_row

    accuracy_rows = [
        accuracy_row("estimated", {"estimated_accuracy": 0.81, "interval_95": "[0.7950, 0.8250]", "rows": 3000,
                                   "estimated_on": "unlabelled rows", "threshold": 0.7,
                                   "calibration": "reliability table measured on the holdout (800 rows, 8 bins)"}, "t1"),
        accuracy_row("realized", {"accuracy": 0.83, "labelled_rows": 1000, "threshold": 0.7}, "t1"),
    ]
    report = render_report(model="churn", failed_checks=[], drift_rows=[], version_rows=[], production_version="v1",
                           accuracy_rows=accuracy_rows, recent_alerts=[], generated_at="now")
    section = report.split("## Production accuracy: estimated (before labels) and realized\n\n")[1].split("\n\n")[0]
    lines = section.splitlines()
    assert lines[0].startswith("| accuracy | value | interval_95 | rows |")
    assert lines[2].startswith("| estimated | 0.8100 | [0.7950, 0.8250] | 3000 | unlabelled rows |")
    assert lines[3].startswith("| realized | 0.8300 |  | 1000 | labelled rows |")
