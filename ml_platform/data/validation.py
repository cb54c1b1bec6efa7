"""Validation of a raw frame against the Pandera schema derived from its `DatasetSpec`.

Validation is lazy, so every failure is collected at once into one table
(column, check, failure case, row). A policy decides what happens next: fail, or
quarantine the invalid rows when they are at most `max_invalid_fraction` of the frame.

Labels must be among the declared classes or, when none are declared, among the classes the
production model was trained on: a label no model has seen is a data error, not a new class.
A row without a label is kept, as unlabelled (labels arrive late; training uses labelled rows only).

Categorical features are text. Their known categories are the production model's (recorded at
training, passed in as `FeatureSpec.categories`); an unseen one fails validation or, under the
"other" policy, becomes OTHER_CATEGORY, counted in `ValidationResult.remapped`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ml_platform.data.sources import DatasetSpec, FeatureSpec

FAILURE_COLUMNS = ["column", "check", "failure_case", "row"]
# The check name of a label outside the known classes starts with this (see _label_failures).
CLASS_CHECK_PREFIX = "one of the "
CATEGORY_CHECK_PREFIX = "one of the production model's categories "
# The one value an unseen category becomes under `unseen_categories: other`.
OTHER_CATEGORY = "__other__"
UnseenCategoryPolicy = Literal["fail", "other"]


class DataValidationError(ValueError):
    """The data was rejected. `failures` holds one row per failure (see FAILURE_COLUMNS)."""

    def __init__(self, message: str, failures: pd.DataFrame | None = None) -> None:
        super().__init__(message)
        self.failures = failures if failures is not None else pd.DataFrame(columns=FAILURE_COLUMNS)


@dataclass(frozen=True)
class ValidationPolicy:
    min_rows: int = 50
    # 0.0 means any invalid row fails validation; above it, invalid rows are quarantined.
    max_invalid_fraction: float = 0.0
    unseen_categories: UnseenCategoryPolicy = "fail"


@dataclass(frozen=True)
class ValidationResult:
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failures: pd.DataFrame
    dropped_columns: list[str]
    # Per categorical column: how many values were mapped to OTHER_CATEGORY (unseen_categories: other).
    remapped: dict[str, int] = field(default_factory=dict)
    unlabelled_rows: int = 0  # valid rows whose label has not arrived


def _finite(series: pd.Series) -> pd.Series:
    return ~np.isinf(series)


def _category_check(categories: Sequence[str]) -> pa.Check:
    known = list(categories)
    return pa.Check(lambda s: s.isin(known), element_wise=False, name=f"{CATEGORY_CHECK_PREFIX}{known}")


def build_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """Declared numeric features are float, finite and within their known bounds; categorical ones
    are text among their known categories (when known). The target column is present; a missing
    label is an unlabelled row (its classes are checked by _label_failures, which can name the
    classes' origin)."""
    columns: dict[str, pa.Column] = {}
    for feature in spec.features:
        if feature.kind == "categorical":
            checks = [_category_check(feature.categories)] if feature.categories is not None else []
            columns[feature.name] = pa.Column(object, checks=checks, nullable=feature.nullable)
            continue
        checks = [pa.Check(_finite, name="finite")]
        if feature.min_value is not None:
            checks.append(pa.Check.ge(feature.min_value))
        if feature.max_value is not None:
            checks.append(pa.Check.le(feature.max_value))
        columns[feature.name] = pa.Column(float, checks=checks, nullable=feature.nullable, coerce=True)
    columns[spec.target] = pa.Column(nullable=True)
    # "filter" drops undeclared columns (ids, free text) instead of failing on them.
    return pa.DataFrameSchema(columns, strict="filter", name="validated_data")


def _failure_table(errors: pa.errors.SchemaErrors) -> pd.DataFrame:
    table = errors.failure_cases.rename(columns={"index": "row"})[FAILURE_COLUMNS].copy()
    table["failure_case"] = table["failure_case"].astype(str)
    return table


def as_category_text(column: pd.Series) -> pd.Series:
    """A categorical column as text, missing values kept missing (NaN). Whole floats lose their
    ".0", so a code read as 1.0 from a file with gaps is the category "1", as in a file without."""
    if pd.api.types.is_float_dtype(column):
        present = column.dropna()
        if (present == present.round()).all():
            column = column.astype("Int64")
    text = column.astype(object).map(str, na_action="ignore")
    return text.where(column.notna(), np.nan).astype(object)


def _coerce_features(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Numeric features as float, and one failure per non-numeric cell; categorical ones as text.

    Done before Pandera so that a text cell is reported once, as "numeric", instead of
    making every other check on its column error out.
    """
    failures = []
    converted: dict[str, pd.Series] = {}
    for feature in spec.features:
        name = feature.name
        if name not in frame.columns:
            continue  # Pandera reports missing columns
        column = frame[name]
        if feature.kind == "categorical":
            converted[name] = as_category_text(column)
            continue
        if pd.api.types.is_float_dtype(column):
            continue  # already what the schema wants: no copy
        values = pd.to_numeric(column, errors="coerce")
        bad = values.isna() & column.notna()
        failures += [(name, "numeric", str(v), row) for row, v in column[bad].items()]
        converted[name] = values.astype(float)
    # One assign keeps the frame in a single block; column-by-column writes fragment it and
    # make Pandera's copy expensive at a million rows.
    coerced = frame.assign(**converted) if converted else frame
    return coerced, pd.DataFrame(failures, columns=FAILURE_COLUMNS)


def _label_failures(frame: pd.DataFrame, target: str, classes: Sequence[object], origin: str) -> pd.DataFrame:
    """One failure per row whose label is not among `classes` (nulls are Pandera's to report)."""
    if target not in frame.columns:
        return pd.DataFrame(columns=FAILURE_COLUMNS)  # Pandera reports the missing column
    labels = frame[target]
    unknown = labels.notna() & ~labels.isin(list(classes))
    check = f"{CLASS_CHECK_PREFIX}{origin} classes {list(classes)}"
    return pd.DataFrame(
        [(target, check, str(label), row) for row, label in labels[unknown].items()], columns=FAILURE_COLUMNS
    )


def with_known_categories(spec: DatasetSpec, categories: Mapping[str, Sequence[str]]) -> DatasetSpec:
    """Each categorical feature's known categories, e.g. the production model's (a column it did
    not treat as categorical keeps None: any category is accepted)."""
    features = tuple(
        replace(f, categories=tuple(categories[f.name])) if f.kind == "categorical" and f.name in categories else f
        for f in spec.features
    )
    return replace(spec, features=features)


def _map_unseen_to_other(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, DatasetSpec, dict[str, int]]:
    """Unseen categories become OTHER_CATEGORY (which the known categories then include)."""
    converted: dict[str, pd.Series] = {}
    counts: dict[str, int] = {}
    features: list[FeatureSpec] = []
    for feature in spec.features:
        if feature.kind == "categorical" and feature.categories is not None and feature.name in frame.columns:
            column = frame[feature.name]
            unseen = column.notna() & ~column.isin(list(feature.categories))
            if unseen.any():
                converted[feature.name] = column.mask(unseen, OTHER_CATEGORY)
                counts[feature.name] = int(unseen.sum())
            if OTHER_CATEGORY not in feature.categories:
                feature = replace(feature, categories=(*feature.categories, OTHER_CATEGORY))
        features.append(feature)
    remapped = frame.assign(**converted) if converted else frame
    return remapped, replace(spec, features=tuple(features)), counts


def validate_frame(
    frame: pd.DataFrame,
    spec: DatasetSpec,
    policy: ValidationPolicy,
    production_classes: Sequence[object] | None = None,
) -> ValidationResult:
    """Validate `frame` against `spec`. Labels are checked against the declared classes, else
    against `production_classes` (pass None to accept any label, e.g. allow_new_classes).
    Categories are checked against each categorical feature's `categories` (None: any)."""
    if len(frame) < policy.min_rows:
        raise DataValidationError(
            f"validated_data: {len(frame)} rows, fewer than the minimum of {policy.min_rows} "
            "(validation.min_rows in the model's declaration)"
        )
    coerced, non_numeric = _coerce_features(frame, spec)
    remapped: dict[str, int] = {}
    if policy.unseen_categories == "other":
        coerced, spec, remapped = _map_unseen_to_other(coerced, spec)
    schema = build_schema(spec)
    dropped = [c for c in frame.columns if c not in schema.columns]
    if spec.classes:
        early = pd.concat([non_numeric, _label_failures(frame, spec.target, spec.classes, "declared")], ignore_index=True)
    elif production_classes:
        early = pd.concat(
            [non_numeric, _label_failures(frame, spec.target, production_classes, "production model's")],
            ignore_index=True,
        )
    else:
        early = non_numeric
    try:
        valid = schema.validate(coerced, lazy=True)
        failures = early
    except pa.errors.SchemaErrors as errors:
        failures = _failure_table(errors)
        # A non-numeric cell became NaN; it is already reported as "numeric", not as a null.
        already = set(zip(non_numeric["column"], non_numeric["row"]))
        is_echo = pd.Series([(c, r) in already for c, r in zip(failures["column"], failures["row"])], dtype=bool)
        failures = pd.concat([early, failures.loc[~is_echo.to_numpy()]], ignore_index=True)
    quarantined = frame.iloc[0:0]
    if len(failures):
        valid, quarantined = _apply_policy(frame, coerced, schema, failures, policy)

    # Rows first: with every row quarantined there is no class to name.
    if len(valid) < policy.min_rows:
        raise DataValidationError(
            f"validated_data: {len(valid)} valid rows after quarantine, fewer than the minimum "
            f"of {policy.min_rows}" + (f": {_summarize(failures)}" if len(failures) else ""),
            failures,
        )
    labels = valid[spec.target].dropna()
    if labels.nunique() == 1:  # no label at all is unlabelled data, which monitoring accepts
        raise DataValidationError(
            f"validated_data: target column {spec.target!r} has a single class "
            f"({labels.iloc[0]!r}); a classifier needs at least two"
        )
    return ValidationResult(
        valid=valid.reset_index(drop=True),
        quarantined=quarantined,
        failures=failures,
        dropped_columns=dropped,
        remapped=remapped,
        unlabelled_rows=int(valid[spec.target].isna().sum()),
    )


def _apply_policy(
    frame: pd.DataFrame,
    coerced: pd.DataFrame,
    schema: pa.DataFrameSchema,
    failures: pd.DataFrame,
    policy: ValidationPolicy,
) -> tuple[pd.DataFrame, pd.DataFrame]:
    summary = _summarize(failures)
    frame_level = failures["row"].isna()
    if frame_level.any():
        # A missing column or a wrong column type cannot be fixed by dropping rows.
        raise DataValidationError(f"validated_data: schema violations that affect whole columns: {summary}", failures)
    bad_rows = pd.Index(failures["row"].astype(int).unique())
    fraction = len(bad_rows) / len(frame)
    if fraction > policy.max_invalid_fraction:
        raise DataValidationError(
            f"validated_data: {len(bad_rows)} of {len(frame)} rows invalid ({fraction:.1%}, allowed "
            f"{policy.max_invalid_fraction:.1%}): {summary}",
            failures,
        )
    quarantined = frame.loc[bad_rows]
    # The remaining rows passed every check, so validating them again only coerces dtypes.
    valid = schema.validate(coerced.drop(index=bad_rows), lazy=True)
    return valid, quarantined


def _summarize(failures: pd.DataFrame, limit: int = 5) -> str:
    """One line: each kind of failure with its count and the first offending values and rows."""
    groups = failures.groupby(["column", "check"], dropna=False)
    counts = groups.size().sort_values(ascending=False)
    parts = []
    for (col, check), n in counts.head(limit).items():
        group = groups.get_group((col, check))
        if check == "column_in_dataframe":
            parts.append(f"missing column(s) {', '.join(repr(c) for c in group['failure_case'])}")
        elif str(check).startswith(CLASS_CHECK_PREFIX):
            # Name the unseen labels: "target: 2 is not one of the production model's classes [0, 1]".
            labels = list(dict.fromkeys(group["failure_case"]))
            if str(check).startswith(CATEGORY_CHECK_PREFIX):
                labels = [repr(v) for v in labels]
            shown = ", ".join(labels[:5]) + (", ..." if len(labels) > 5 else "")
            parts.append(f"{col}: {shown} {'is' if len(labels) == 1 else 'are'} not {check}" + (f" x{n}" if n > 1 else ""))
        else:
            examples = ", ".join(f"{case!r} in row {row}" for case, row in group[["failure_case", "row"]].head(3).itertuples(index=False))
            parts.append(f"{col}: {check} x{n} (e.g. {examples})")
    more = len(counts) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
