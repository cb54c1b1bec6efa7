"""Turning frames into metadata the Dagster UI renders as tables."""

import math
from collections.abc import Mapping
from typing import Any

import dagster as dg
import pandas as pd


def _cell(value: object) -> str | int | float | bool | None:
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return None
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 2**53:
        return str(value)  # the UI's JavaScript numbers would round it (64-bit row keys)
    if isinstance(value, (bool, int, float, str)):
        return value
    if hasattr(value, "item"):  # numpy scalar
        return _cell(value.item())
    return str(value)


def frame_table(frame: pd.DataFrame, limit: int = 20, index: bool = True) -> dg.TableMetadataValue:
    """The first `limit` rows of `frame` as a UI table (with `index`, the row index becomes a `row` column)."""
    shown = frame.head(limit)
    if index and "row" not in shown.columns:
        shown = shown.rename_axis("row").reset_index()
    columns = [str(c) for c in shown.columns]
    schema = dg.TableSchema(columns=[dg.TableColumn(c, "string") for c in columns])
    records = [
        dg.TableRecord({c: _cell(v) for c, v in zip(columns, row)})
        for row in shown.itertuples(index=False, name=None)
    ]
    return dg.MetadataValue.table(records=records, schema=schema)


def plain_metadata(metadata: Mapping[str, Any]) -> dict[str, Any]:
    """Check/asset metadata as JSON-able values (tables become lists of row dicts)."""
    plain: dict[str, Any] = {}
    for key, value in metadata.items():
        if isinstance(value, dg.TableMetadataValue):
            plain[key] = [dict(record.data) for record in value.records]
        elif isinstance(value, dg.MetadataValue):
            inner = value.value
            plain[key] = inner if isinstance(inner, (str, int, float, bool, list, dict, type(None))) else str(inner)
        else:
            plain[key] = value
    return plain
