"""Writing a model's declaration: the commented template (`dg scaffold defs ml_platform.ModelPipeline
NAME`) and a declaration inferred from a data file (`ml-platform new-model NAME --csv PATH`).
No Dagster import."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from ml_platform.declaration import COMPONENT_TYPE, DEFS_FILE, DeclarationError, check_model_name

if TYPE_CHECKING:
    import pandas as pd

# At most this many distinct labels: ml_platform trains classifiers.
MAX_CLASSES = 50
# new-model's inference of categorical columns. A text, boolean or category column with at most
# MAX_CATEGORIES distinct values is categorical; with more it is free text or an identifier, left
# out. Integer columns stay numeric (a count would lose its order if one-hot encoded), but one with
# at most FEW_INTEGER_VALUES distinct values is flagged for review: it may be a code.
MAX_CATEGORIES = 50
FEW_INTEGER_VALUES = 10

DEFAULT_SOURCE = """\
  source:
    kind: bundled              # bundled | synthetic | csv | parquet
    # dataset: breast_cancer   # bundled: breast_cancer | churn (both shipped, no download)
    # path: data/my_data.csv   # csv / parquet: relative to the project root, or absolute
    target: target             # the label column
    # features: [a, b, c]      # csv / parquet: feature columns (default: every column but the target)
    # categorical: [b]         # features that are categories (one-hot encoded); the rest are numeric
    # impute: {a: median}      # median | most_frequent, inside the model; a column not listed rejects gaps
    # classes: [0, 1]          # default: the labels seen at the first training
"""

TEMPLATE = """\
# One model, declared once. Its assets, jobs, schedules, checks, alerts and the `ml-platform`
# command line all read this file. Every key is optional; past `source`, the values shown are
# the defaults (the seed's). Check it with `make check` (dg check defs); run it with
#   make run SELECT=group:{name}
type: {type}
attributes:
  description: {description}
{source}  validation:
    min_rows: 50
    max_invalid_fraction: 0.0  # above 0: invalid rows up to this share are quarantined, not fatal
    allow_new_classes: false   # a label the production model never saw fails validation
    unseen_categories: fail    # a category the production model never saw: fail | other (mapped to "__other__")
  training:
    estimator: logistic_regression   # logistic_regression | random_forest | gradient_boosting
                                     # | hist_gradient_boosting (native categorical support)
    params: {{}}                       # the estimator's hyper-parameters, e.g. {{C: 0.5}}
    holdout_fraction: 0.2
    seed: 42
  gate:
    metric: accuracy           # accuracy | precision | recall | f1 | roc_auc
    tolerance: 0.0             # how much worse than the champion (same holdout) may still promote
    allow_feature_change: false
  checks:                      # thresholds and alert severities (HIGH | MEDIUM | LOW)
    accuracy: {{min_accuracy: 0.70, severity: HIGH}}             # candidate, holdout: blocks promotion
    production_accuracy: {{min_accuracy: 0.70, severity: HIGH}}  # production model, new labelled data
    data_drift:                # a feature drifts when any of its methods exceeds its threshold
      method: [psi, wasserstein]     # any of psi | ks | wasserstein
      psi_threshold: 0.20
      ks_threshold: 0.10             # on the KS statistic D (its p-value never decides)
      wasserstein_threshold: 0.10    # Wasserstein distance / the training data's std
      # drift_share: 0.5             # unset: any drifted feature fails the check; set: at least this share of them
      severity: MEDIUM
      features: {{}}                   # per-feature rules, e.g. {{f3: {{method: [ks], ks_threshold: 0.2}}}}
    prediction_drift: {{psi_threshold: 0.20, severity: MEDIUM}}
    run_time: {{max_seconds: 300, severity: LOW}}
    freshness: {{warn_hours: 25, fail_hours: 49}}
  schedules:
    timezone: UTC
    retrain: {{cron: "0 2 * * *", enabled: true}}
    monitoring: {{cron: "0 * * * *", enabled: true}}   # every 6 hours: "0 */6 * * *"
  alerts:
    routes: {{}}                 # this model's overrides, e.g. {{HIGH: [log, jsonl, pagerduty]}}
  registry:
    keep_last: 20              # versions kept; an aliased version is never deleted
"""


def declaration_yaml(name: str, source: str = DEFAULT_SOURCE, description: str = "") -> str:
    check_model_name(name)
    return TEMPLATE.format(name=name, type=COMPONENT_TYPE, source=source, description=_yaml_scalar(description))


def _yaml_list(values: list[object]) -> str:
    """A flow-style YAML list that reads back as `values` (`no` stays the text "no", not false)."""
    return yaml.safe_dump(values, default_flow_style=True, width=10_000, allow_unicode=True).strip()


def _yaml_scalar(value: object) -> str:
    return _yaml_list([value])[1:-1]


def _feature_kind(column: "pd.Series") -> tuple[str, str]:
    """("numeric" | "categorical" | "left out", why) for one column of the data file."""
    import pandas as pd

    distinct = column.nunique(dropna=True)
    if pd.api.types.is_bool_dtype(column) or not pd.api.types.is_numeric_dtype(column):
        if distinct <= MAX_CATEGORIES:
            return "categorical", f"{column.dtype}, {distinct} distinct values"
        return "left out", f"free text or an identifier: {distinct} distinct values (> {MAX_CATEGORIES})"
    if pd.api.types.is_integer_dtype(column) and distinct <= FEW_INTEGER_VALUES:
        return "numeric", f"{column.dtype}, {distinct} distinct values: categorical if it is a code"
    return "numeric", str(column.dtype)


MOSTLY_NUMERIC = 0.9  # a text column whose values are numbers this often is numbers with typos


def _stray_text_in_numbers(column: "pd.Series", kind: str) -> str | None:
    """What is wrong with a column of numbers that a few text values turned into text, if it is one."""
    import pandas as pd

    if pd.api.types.is_numeric_dtype(column) or pd.api.types.is_bool_dtype(column):
        return None
    present = column.dropna()
    numbers = pd.to_numeric(present, errors="coerce")
    if present.empty or numbers.notna().mean() < MOSTLY_NUMERIC or numbers.notna().all():
        return None
    bad = present[numbers.isna()]
    position = column.index.get_loc(bad.index[0])
    where = f"line {position + 2}" if kind == "csv" else f"row {position}"  # line 1: the header
    return (f"column {column.name!r} holds numbers but {len(bad)} of its {len(present)} values are not "
            f"(e.g. {bad.iloc[0]!r} on {where})")


def inferred_source(path: Path, kind: str, target: str, project_root: Path) -> tuple[str, str]:
    """The `source:` block for a data file, and a one-line summary for the user.

    Numeric columns, and text/boolean columns with few distinct values (categorical), become the
    features; free-text columns are left out (listed with why); columns with gaps get a commented
    `impute:` suggestion; the target's distinct values become the classes, all for the user to review."""
    import pandas as pd  # only new-model reads data: every other command starts without pandas

    source = f"{kind}:{path}"
    try:
        frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    except FileNotFoundError:
        raise DeclarationError(f"{source}: file not found") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure, named
        raise DeclarationError(f"{source}: unreadable ({type(exc).__name__}: {exc})") from None
    if target not in frame.columns:
        raise DeclarationError(f"{source}: no column {target!r}; columns are {list(frame.columns)}")
    labels = frame[target].dropna()
    try:
        classes = sorted(labels.unique().tolist())
    except TypeError:  # mixed types
        classes = sorted(labels.unique().tolist(), key=str)
    if len(classes) < 2:
        raise DeclarationError(f"{source}: target {target!r} has {len(classes)} distinct value(s); a classifier needs two or more")
    if len(classes) > MAX_CLASSES:
        raise DeclarationError(
            f"{source}: target {target!r} has {len(classes)} distinct values; ml_platform trains classifiers "
            f"(at most {MAX_CLASSES} classes)"
        )
    columns = [c for c in frame.columns if c != target]
    stray = [problem for c in columns if (problem := _stray_text_in_numbers(frame[c], kind))]
    if stray:  # left out as "free text", the model would silently train without the column
        raise DeclarationError(f"{source}: " + "; ".join(stray) + "; fix the file (or declare the columns yourself)")
    kinds = {c: _feature_kind(frame[c]) for c in columns}
    features = [c for c in columns if kinds[c][0] != "left out"]
    categorical = [c for c in features if kinds[c][0] == "categorical"]
    left_out = [c for c in columns if c not in features]
    if not features:
        raise DeclarationError(f"{source}: no usable feature besides the target; columns are {columns}")
    gaps = {c: frame[c].isna().mean() for c in features if frame[c].isna().any()}
    resolved = path.resolve()
    shown = resolved.relative_to(project_root.resolve()) if resolved.is_relative_to(project_root.resolve()) else resolved
    lines = [
        "  source:",
        f"    kind: {kind}",
        f"    path: {_yaml_scalar(shown.as_posix())}",
        f"    target: {_yaml_scalar(target)}",
        f"    classes: {_yaml_list(classes)}   # found in the file ({labels.size} labelled rows)",
        "    features:                # inferred from the column types (review)",
        *(f"      - {_yaml_scalar(c)}   # {kinds[c][1]}" for c in features),
    ]
    if categorical:
        lines.append(f"    categorical: {_yaml_list(categorical)}   # inferred: text with few distinct values (review)")
    if gaps:
        lines.append("    # impute:                 # these columns have gaps, so their rows are rejected; to fill them instead:")
        lines += [
            f"    #   {_yaml_scalar(c)}: {'most_frequent' if c in categorical else 'median'}   # {share:.1%} missing"
            for c, share in gaps.items()
        ]
    lines += [f"    # left out: {c} ({kinds[c][1]})" for c in left_out]
    summary = (
        f"{len(frame)} rows; target {target!r} with classes {classes}; {len(features) - len(categorical)} numeric and "
        f"{len(categorical)} categorical feature(s)"
        + (f"; {len(gaps)} with missing values (see impute)" if gaps else "")
        + (f"; left out: {', '.join(left_out)}" if left_out else "")
    )
    return "\n".join(lines) + "\n", summary


def write_declaration(defs_dir: Path, name: str, text: str, overwrite: bool = False) -> Path:
    path = defs_dir / name / DEFS_FILE
    if path.exists() and not overwrite:
        raise DeclarationError(f"{path} exists already (pass --force to replace it)")
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path
