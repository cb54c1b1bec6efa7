"""Validation of a raw frame against the Pandera schema derived from its `DatasetSpec`.

Validation is lazy, so every failure is collected at once into one table
(column, check, failure case, row). A policy decides what happens next: fail, or
quarantine the invalid rows when they are at most `max_invalid_fraction` of the frame.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd
import pandera.pandas as pa

from ml_platform.data.sources import DatasetSpec

FAILURE_COLUMNS = ["column", "check", "failure_case", "row"]


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


@dataclass(frozen=True)
class ValidationResult:
    valid: pd.DataFrame
    quarantined: pd.DataFrame
    failures: pd.DataFrame
    dropped_columns: list[str]


def _finite(series: pd.Series) -> pd.Series:
    return ~np.isinf(series)


def build_schema(spec: DatasetSpec) -> pa.DataFrameSchema:
    """Declared features are float, finite and within their known bounds; the target is one
    of the declared classes."""
    columns: dict[str, pa.Column] = {}
    for feature in spec.features:
        checks = [pa.Check(_finite, name="finite")]
        if feature.min_value is not None:
            checks.append(pa.Check.ge(feature.min_value))
        if feature.max_value is not None:
            checks.append(pa.Check.le(feature.max_value))
        columns[feature.name] = pa.Column(float, checks=checks, nullable=feature.nullable, coerce=True)
    target_checks = [pa.Check.isin(list(spec.classes))] if spec.classes else []
    columns[spec.target] = pa.Column(checks=target_checks, nullable=False)
    # "filter" drops undeclared columns (ids, free text) instead of failing on them.
    return pa.DataFrameSchema(columns, strict="filter", name="validated_data")


def _failure_table(errors: pa.errors.SchemaErrors) -> pd.DataFrame:
    table = errors.failure_cases.rename(columns={"index": "row"})[FAILURE_COLUMNS].copy()
    table["failure_case"] = table["failure_case"].astype(str)
    return table


def _coerce_features(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Numeric features as float, and one failure per non-numeric cell.

    Done before Pandera so that a text cell is reported once, as "numeric", instead of
    making every other check on its column error out.
    """
    failures = []
    converted: dict[str, pd.Series] = {}
    for name in spec.feature_names:
        if name not in frame.columns:
            continue  # Pandera reports missing columns
        column = frame[name]
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


def validate_frame(frame: pd.DataFrame, spec: DatasetSpec, policy: ValidationPolicy) -> ValidationResult:
    if len(frame) < policy.min_rows:
        raise DataValidationError(
            f"validated_data: {len(frame)} rows, fewer than the minimum of {policy.min_rows} "
            "(set ValidationConfig.min_rows to change it)"
        )
    schema = build_schema(spec)
    dropped = [c for c in frame.columns if c not in schema.columns]
    coerced, non_numeric = _coerce_features(frame, spec)
    try:
        valid = schema.validate(coerced, lazy=True)
        failures = non_numeric
    except pa.errors.SchemaErrors as errors:
        failures = _failure_table(errors)
        # A non-numeric cell became NaN; it is already reported as "numeric", not as a null.
        already = set(zip(non_numeric["column"], non_numeric["row"]))
        is_echo = pd.Series([(c, r) in already for c, r in zip(failures["column"], failures["row"])], dtype=bool)
        failures = pd.concat([non_numeric, failures.loc[~is_echo.to_numpy()]], ignore_index=True)
    quarantined = frame.iloc[0:0]
    if len(failures):
        valid, quarantined = _apply_policy(frame, coerced, schema, failures, policy)

    classes = valid[spec.target].nunique()
    if classes < 2:
        raise DataValidationError(
            f"validated_data: target column {spec.target!r} has a single class "
            f"({valid[spec.target].iloc[0]!r}); a classifier needs at least two"
        )
    if len(valid) < policy.min_rows:
        raise DataValidationError(
            f"validated_data: {len(valid)} valid rows after quarantine, fewer than the minimum "
            f"of {policy.min_rows}",
            failures,
        )
    return ValidationResult(
        valid=valid.reset_index(drop=True),
        quarantined=quarantined,
        failures=failures,
        dropped_columns=dropped,
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
    counts = failures.groupby(["column", "check"], dropna=False).size().sort_values(ascending=False)
    parts = [f"{col}: {check} x{n}" for (col, check), n in counts.head(limit).items()]
    more = len(counts) - limit
    return "; ".join(parts) + (f"; and {more} more" if more > 0 else "")
