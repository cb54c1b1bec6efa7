"""Where batch predictions are written (no Dagster import): a Parquet file, written whole or not at
all, and for SQL sources a table of the source's database."""

from __future__ import annotations

import os
import uuid
from pathlib import Path

import pandas as pd

from ml_platform.data.sources import masked_first_line, sql_source_name


class PredictionSinkError(RuntimeError):
    """Predictions could not be written; the message names where and why (password masked)."""


def write_parquet_atomic(frame: pd.DataFrame, path: Path) -> Path:
    """`frame` at `path`: written to a temporary file and renamed, so readers see all of it or none."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f"{path.name}.tmp-{uuid.uuid4().hex}")
    try:
        frame.to_parquet(tmp, index=False)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    return path


def append_sql_table(url: str, password: str | None, table: str, frame: pd.DataFrame) -> None:
    """Append `frame` to `table` (created when missing) in one transaction: all rows or none.
    A failure is one PredictionSinkError naming the database (password masked) and the table."""
    import sqlalchemy as sa

    where = sql_source_name(url, password, table)
    schema, _, name = table.rpartition(".")
    try:
        engine = sa.create_engine(sa.engine.make_url(url).set(password=password or None))
    except Exception as exc:  # noqa: BLE001 - bad URL, driver not installed
        raise PredictionSinkError(f"{where}: cannot write predictions: {masked_first_line(exc, password)}") from None
    try:
        with engine.begin() as connection:
            frame.to_sql(name, connection, schema=schema or None, if_exists="append", index=False, chunksize=50_000)
    except Exception as exc:  # noqa: BLE001 - connection, permission, schema mismatch: the driver's reason
        raise PredictionSinkError(f"{where}: cannot write predictions: {masked_first_line(exc, password)}") from None
    finally:
        engine.dispose()
