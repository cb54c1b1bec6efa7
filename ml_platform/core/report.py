"""The monitoring report: Markdown with embedded PNG charts, shown on the asset's page.

The seed's report (alerts by severity, the latest ones), then per-feature drift, the
metrics of the last model versions, and two charts. Charts are PNGs inlined as data URIs
so the Dagster UI renders them without serving any file.
"""

from __future__ import annotations

import base64
import io
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

SEVERITY_ORDER = ("HIGH", "MEDIUM", "LOW")


@dataclass(frozen=True)
class FailedCheck:
    severity: str
    asset: str
    check: str
    message: str
    action: str
    at: str


def markdown_table(rows: Sequence[dict[str, Any]], columns: Sequence[str]) -> str:
    if not rows:
        return "_none_"

    def cell(value: Any) -> str:
        text = f"{value:.4f}" if isinstance(value, float) else ("" if value is None else str(value))
        return text.replace("|", "\\|").replace("\n", " ")

    head = "| " + " | ".join(columns) + " |\n| " + " | ".join("---" for _ in columns) + " |"
    return head + "\n" + "\n".join("| " + " | ".join(cell(r.get(c)) for c in columns) + " |" for r in rows)


def _png_data_uri(figure: Any) -> str:
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=90, bbox_inches="tight")
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode()


def drift_chart(drift_rows: Sequence[dict[str, Any]], threshold: float) -> str:
    import matplotlib

    matplotlib.use("Agg")  # no display; must precede pyplot
    import matplotlib.pyplot as plt

    names = [r["feature"] for r in drift_rows]
    values = [r["psi"] for r in drift_rows]
    figure, axes = plt.subplots(figsize=(7, max(2.0, 0.28 * len(names) + 1)))
    colours = ["#d9534f" if v > threshold else "#5b9bd5" for v in values]
    axes.barh(names, values, color=colours)
    axes.axvline(threshold, color="#444", linestyle="--", linewidth=1, label=f"threshold {threshold}")
    axes.invert_yaxis()
    axes.set_xlabel("population stability index")
    axes.set_title("Data drift per feature (newest data vs training data)")
    axes.legend(loc="lower right")
    uri = _png_data_uri(figure)
    plt.close(figure)
    return uri


def metrics_chart(version_rows: Sequence[dict[str, Any]], metrics: Sequence[str] = ("accuracy", "f1", "roc_auc")) -> str:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axes = plt.subplots(figsize=(7, 3))
    versions = [r["version"] for r in version_rows]
    for metric in metrics:
        values = [r.get(metric) for r in version_rows]
        if any(v is not None for v in values):
            axes.plot(versions, [float("nan") if v is None else v for v in values], marker="o", label=metric)
    axes.set_ylabel("holdout score")
    axes.set_title("Holdout metrics of the last model versions")
    axes.legend(loc="lower left")
    axes.grid(alpha=0.3)
    uri = _png_data_uri(figure)
    plt.close(figure)
    return uri


def render_report(
    *,
    failed_checks: Sequence[FailedCheck],
    drift_rows: Sequence[dict[str, Any]],
    psi_threshold: float,
    version_rows: Sequence[dict[str, Any]],
    production_version: str | None,
    recent_alerts: Sequence[dict[str, Any]],
    generated_at: str,
    charts: bool = True,
) -> str:
    counts = Counter(f.severity for f in failed_checks)
    by_severity = ", ".join(f"{s}: {counts.get(s, 0)}" for s in SEVERITY_ORDER)
    failed = sorted(failed_checks, key=lambda f: (SEVERITY_ORDER.index(f.severity) if f.severity in SEVERITY_ORDER else 9, f.at))
    sections = [
        "# Monitoring report",
        f"Generated {generated_at}. Production model: **{production_version or 'none yet'}**.",
        "## Failing checks",
        f"Total failing: {len(failed_checks)} ({by_severity})",
        markdown_table(
            [{"severity": f.severity, "asset": f.asset, "check": f.check, "message": f.message, "action": f.action, "at": f.at} for f in failed],
            ["severity", "asset", "check", "message", "action", "at"],
        ),
        "## Data drift per feature",
        markdown_table(drift_rows, ["feature", "psi", "ks_statistic", "ks_pvalue", "drifted"]),
    ]
    if charts and drift_rows:
        sections.append(f"![Data drift per feature]({drift_chart(drift_rows, psi_threshold)})")
    sections += [
        "## Last model versions",
        markdown_table(version_rows, ["version", "created_at", "aliases", "accuracy", "f1", "roc_auc", "rows"]),
    ]
    if charts and version_rows:
        sections.append(f"![Holdout metrics trend]({metrics_chart(version_rows)})")
    sections += [
        "## Latest alerts",
        markdown_table(list(recent_alerts), ["timestamp", "severity", "asset", "check", "message"]),
    ]
    return "\n\n".join(sections) + "\n"
