"""The monitoring report: Markdown with embedded SVG charts, shown on the asset's page.

The seed's report (alerts by severity, the latest ones), then per-feature drift, the
metrics of the last model versions, and two charts. Charts are SVG images inlined as data
URIs, so the Dagster UI renders them without serving any file.
"""

from __future__ import annotations

import base64
import html
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


def _svg_data_uri(svg: str) -> str:
    return "data:image/svg+xml;base64," + base64.b64encode(svg.encode()).decode()


def _text(x: float, y: float, text: str, anchor: str = "start", size: int = 11) -> str:
    safe = html.escape(text)
    return f'<text x="{x:.1f}" y="{y:.1f}" font-size="{size}" text-anchor="{anchor}" font-family="sans-serif">{safe}</text>'


def drift_chart(drift_rows: Sequence[dict[str, Any]], threshold: float) -> str:
    """Horizontal bars of PSI per feature, red above the threshold, with the threshold line.

    Plain SVG: no plotting library to import on every run, and it stays sharp when zoomed.
    """
    label_width, plot_width, bar, gap, top = 150, 420, 14, 6, 30
    height = top + len(drift_rows) * (bar + gap) + 30
    top_value = max([threshold * 1.5, *(float(r["psi"]) for r in drift_rows)])
    scale = plot_width / top_value
    parts = [_text(label_width, 18, "Data drift per feature: population stability index (newest data vs training)", size=12)]
    for i, row in enumerate(drift_rows):
        y = top + i * (bar + gap)
        psi = float(row["psi"])
        colour = "#d9534f" if psi > threshold else "#5b9bd5"
        parts.append(_text(label_width - 6, y + bar - 3, str(row["feature"]), anchor="end"))
        parts.append(f'<rect x="{label_width}" y="{y}" width="{max(psi * scale, 1):.1f}" height="{bar}" fill="{colour}"/>')
        parts.append(_text(label_width + psi * scale + 4, y + bar - 3, f"{psi:.3f}", size=10))
    x = label_width + threshold * scale
    bottom = top + len(drift_rows) * (bar + gap)
    parts.append(f'<line x1="{x:.1f}" y1="{top - 4}" x2="{x:.1f}" y2="{bottom}" stroke="#333" stroke-dasharray="4 3"/>')
    parts.append(_text(x, bottom + 16, f"threshold {threshold:g}", anchor="middle", size=10))
    width = label_width + plot_width + 60
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


def render_report(
    *,
    model: str,
    failed_checks: Sequence[FailedCheck],
    drift_rows: Sequence[dict[str, Any]],
    psi_threshold: float,
    version_rows: Sequence[dict[str, Any]],
    production_version: str | None,
    recent_alerts: Sequence[dict[str, Any]],
    generated_at: str,
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
        markdown_table(drift_rows, ["feature", "psi", "ks_statistic", "ks_pvalue", "drifted"]),
    ]
    if drift_rows:
        sections.append(f"![Data drift per feature]({drift_chart(drift_rows, psi_threshold)})")
    sections += [
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
