"""The monitoring report: Markdown with embedded SVG charts, shown on the asset's page.

The seed's report (alerts by severity, the latest ones), then per-feature drift (each figure,
whether it is exact, and which method fired), the metrics of the last model versions, and two
charts. Charts are SVG images inlined as data
URIs, so the Dagster UI renders them without serving any file.
"""

from __future__ import annotations

import base64
import html
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from ml_platform.model.rollout import describe, is_open

SEVERITY_ORDER = ("HIGH", "MEDIUM", "LOW")
# What the report shows of the data_drift check's per-feature table ("fired": the method(s) that flagged it).
DRIFT_COLUMNS = ["feature", "kind", "psi", "ks_statistic", "ks_precision", "wasserstein", "wasserstein_precision",
                 "chi2_statistic", "jensen_shannon", "unseen_categories", "rule", "fired", "drifted"]


# The estimated_accuracy and production_model_accuracy checks' latest figures, side by side.
ACCURACY_COLUMNS = ["accuracy", "value", "interval_95", "rows", "on", "calibration", "threshold", "at"]


def accuracy_row(what: str, metadata: dict[str, Any], at: str) -> dict[str, Any]:
    """One line of the accuracy table from the metadata of estimated_accuracy (`what` "estimated")
    or production_model_accuracy ("realized")."""
    estimated = what == "estimated"
    return {
        "accuracy": what,
        "value": metadata.get("estimated_accuracy" if estimated else "accuracy"),
        "interval_95": metadata.get("interval_95", ""),
        "rows": metadata.get("rows" if estimated else "labelled_rows"),
        "on": metadata.get("estimated_on", "labelled rows"),
        "calibration": metadata.get("calibration", ""),
        "threshold": metadata.get("threshold"),
        "at": at,
    }


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


def _svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    safe = html.escape(text)
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-family="sans-serif">{safe}</text>'


# Numeric features have the first three, categorical ones PSI and Jensen-Shannon (n/a elsewhere).
DRIFT_PANELS = (("psi", "psi", "PSI"), ("ks", "ks_statistic", "KS statistic D"),
                ("wasserstein", "wasserstein", "Wasserstein / std"), ("jensen_shannon", "jensen_shannon", "Jensen-Shannon"))
FIRED, DECIDING, INFORMATION = "#d9534f", "#5b9bd5", "#c8c8c8"


def _methods(row: dict[str, Any], column: str) -> list[str]:
    return [m.strip() for m in str(row.get(column) or "").split(",") if m.strip()]


def drift_rule(row: dict[str, Any]) -> str:
    """A feature's rule as read: 'psi > 0.2 or wasserstein > 0.1'."""
    return " or ".join(f"{m} > {float(row[f'{m}_threshold']):g}" for m in _methods(row, "method"))


def _figure(row: dict[str, Any], column: str) -> float | None:
    """A statistic of the row, None where it does not apply to the feature's kind (None or NaN in the table)."""
    value = row.get(column)
    return None if value is None or value != value else float(value)


def drift_chart(drift_rows: Sequence[dict[str, Any]]) -> str:
    """One panel per statistic (PSI, KS D, normalized Wasserstein for numeric features, PSI and
    Jensen-Shannon for categorical ones; n/a where a statistic does not apply), a bar per feature: red where
    that method fired, blue where it decides for the feature but stayed below its threshold
    (the black tick), grey where it is information only. Each panel is scaled to at most
    3x its largest threshold, so one huge value does not flatten the rest; longer bars are cut
    and marked with their value.

    Plain SVG: no plotting library to import on every run, and it stays sharp when zoomed.
    """
    label_width, panel_width, gap_x, bar, gap, top = 150, 190, 24, 14, 6, 46
    height = top + len(drift_rows) * (bar + gap) + 16
    parts = [_text(8, 18, "Data drift per feature (newest data vs training); tick: threshold", size=12)]
    for i, row in enumerate(drift_rows):
        parts.append(_text(label_width - 6, top + i * (bar + gap) + bar - 3, str(row["feature"]), anchor="end"))
    for p, (method, column, title) in enumerate(DRIFT_PANELS):
        left = label_width + p * (panel_width + gap_x)
        thresholds = [float(r.get(f"{method}_threshold") or 0.0) for r in drift_rows]
        values = [_figure(r, column) for r in drift_rows]
        limit = max(thresholds) or 1.0  # rows of an older table lack the Jensen-Shannon threshold
        top_value = min(max([*(v for v in values if v is not None), 1.5 * limit]), 3 * limit)
        scale = (panel_width - 40) / top_value
        parts.append(_text(left, top - 10, title, size=11))
        parts.append(f'<line x1="{left}" y1="{top - 4}" x2="{left}" y2="{height - 16}" stroke="#999"/>')
        for i, (row, value, threshold) in enumerate(zip(drift_rows, values, thresholds)):
            y = top + i * (bar + gap)
            if value is None:
                parts.append(_text(left + 4, y + bar - 3, "n/a", size=10))
                continue
            colour = FIRED if method in _methods(row, "fired") else DECIDING if method in _methods(row, "method") else INFORMATION
            length = min(value, top_value) * scale
            parts.append(f'<rect x="{left}" y="{y}" width="{max(length, 1):.1f}" height="{bar}" fill="{colour}"/>')
            tick = left + min(threshold, top_value) * scale
            parts.append(f'<line x1="{tick:.1f}" y1="{y - 2}" x2="{tick:.1f}" y2="{y + bar + 2}" stroke="#222" stroke-width="2"/>')
            cut = ">" if value > top_value else ""
            parts.append(_text(max(left + length, tick) + 4, y + bar - 3, f"{cut}{value:.3f}", size=10))  # clear of the tick
    width = label_width + len(DRIFT_PANELS) * (panel_width + gap_x)
    return _svg_data_uri(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>'
    )


METRIC_COLOURS = {"accuracy": "#1f77b4", "f1": "#ff7f0e", "roc_auc": "#2ca02c"}


def metrics_chart(version_rows: Sequence[dict[str, Any]], metrics: Sequence[str] = ("accuracy", "f1", "roc_auc")) -> str:
    """A line per metric across the listed model versions (holdout scores)."""
    left, top, plot_width, plot_height = 50, 30, 460, 160
    values = [float(r[m]) for r in version_rows for m in metrics if r.get(m) is not None]
    low = min(values, default=0.0)
    low = max(0.0, min(low - 0.02, 0.95))
    span = max(1.0 - low, 1e-6)
    step = plot_width / max(len(version_rows) - 1, 1)

    def point(i: int, v: float) -> tuple[float, float]:
        return left + i * step, top + plot_height * (1.0 - (v - low) / span)

    parts = [_text(left, 18, "Holdout metrics of the last model versions", size=12)]
    parts.append(f'<rect x="{left}" y="{top}" width="{plot_width}" height="{plot_height}" fill="none" stroke="#ccc"/>')
    for tick in (low, (low + 1.0) / 2, 1.0):
        _, y = point(0, tick)
        parts.append(_text(left - 6, y + 4, f"{tick:.2f}", anchor="end", size=10))
    for i, row in enumerate(version_rows):
        x, _ = point(i, low)
        parts.append(_text(x, top + plot_height + 16, str(row["version"]), anchor="middle", size=10))
    for j, metric in enumerate(metrics):
        points = [point(i, float(r[metric])) for i, r in enumerate(version_rows) if r.get(metric) is not None]
        if not points:
            continue
        colour = METRIC_COLOURS.get(metric, "#555")
        path = " ".join(f"{x:.1f},{y:.1f}" for x, y in points)
        parts.append(f'<polyline points="{path}" fill="none" stroke="{colour}" stroke-width="2"/>')
        parts += [f'<circle cx="{x:.1f}" cy="{y:.1f}" r="3" fill="{colour}"/>' for x, y in points]
        parts.append(f'<rect x="{left + plot_width + 12}" y="{top + j * 18}" width="10" height="10" fill="{colour}"/>')
        parts.append(_text(left + plot_width + 26, top + j * 18 + 9, metric, size=10))
    width, height = left + plot_width + 90, top + plot_height + 30
    return _svg_data_uri(
        f'<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" '
        f'viewBox="0 0 {width} {height}"><rect width="100%" height="100%" fill="white"/>{"".join(parts)}</svg>'
    )


def rollout_section(rollout: Mapping[str, Any] | None) -> list[str]:
    """The newest canary rollout: where it stands, and its decisions with their figures."""
    if rollout is None:
        return []
    state = describe(rollout) if is_open(rollout) else (
        f"none in progress; the last, {rollout['candidate']} vs {rollout['champion']}, {rollout['status']}"
    )
    rows = [
        {"at": d["at"], "step": f"{d['share']}%", "action": d["action"],
         "agreement": d["figures"].get("agreement"), "candidate accuracy": d["figures"].get("candidate_accuracy"),
         "champion accuracy": d["figures"].get("champion_accuracy"), "reason": d["reason"]}
        for d in rollout["decisions"][-10:]
    ]
    columns = ["at", "step", "action", "agreement", "candidate accuracy", "champion accuracy", "reason"]
    return ["## Canary rollout", f"Rollout: {state}.", markdown_table(rows, columns)]


def render_report(
    *,
    model: str,
    failed_checks: Sequence[FailedCheck],
    drift_rows: Sequence[dict[str, Any]],
    version_rows: Sequence[dict[str, Any]],
    production_version: str | None,
    accuracy_rows: Sequence[dict[str, Any]] = (),
    recent_alerts: Sequence[dict[str, Any]],
    generated_at: str,
    rollout: Mapping[str, Any] | None = None,
) -> str:
    counts = Counter(f.severity for f in failed_checks)
    by_severity = ", ".join(f"{s}: {counts.get(s, 0)}" for s in SEVERITY_ORDER)
    failed = sorted(failed_checks, key=lambda f: (SEVERITY_ORDER.index(f.severity) if f.severity in SEVERITY_ORDER else 9, f.at))
    sections = [
        f"# Monitoring report: {model}",
        f"Generated {generated_at}. Production model: **{production_version or 'none yet'}**.",
        "## Failing checks",
        f"Total failing: {len(failed_checks)} ({by_severity})",
        markdown_table(
            [{"severity": f.severity, "asset": f.asset, "check": f.check, "message": f.message, "action": f.action, "at": f.at} for f in failed],
            ["severity", "asset", "check", "message", "action", "at"],
        ),
        "## Data drift per feature",
        markdown_table([{**row, "rule": drift_rule(row)} for row in drift_rows], DRIFT_COLUMNS),
    ]
    if drift_rows:
        sections.append(f"![Data drift per feature]({drift_chart(drift_rows)})")
    sections += [*rollout_section(rollout)]
    sections += [
        "## Production accuracy: estimated (before labels) and realized",
        markdown_table(list(accuracy_rows), ACCURACY_COLUMNS),
        "## Last model versions",
        markdown_table(version_rows, ["version", "created_at", "aliases", "accuracy", "f1", "roc_auc", "rows"]),
    ]
    if version_rows:
        sections.append(f"![Holdout metrics trend]({metrics_chart(version_rows)})")
    sections += [
        "## Latest alerts",
        markdown_table(list(recent_alerts), ["timestamp", "state", "severity", "asset", "check", "message"]),
    ]
    return "\n\n".join(sections) + "\n"
