"""Data sources: the bundled datasets, a synthetic generator, CSV/Parquet files and SQL databases.

Every source returns a frame plus the declared feature set (`DatasetSpec`) that the
validation schema is derived from. No Dagster import: the resource layer wraps these.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Literal

import numpy as np
import pandas as pd


CONCEPT_SEED = 20_240_613


class DataSourceError(RuntimeError):
    """A source could not be read; the message names the source and the reason."""

    def __init__(self, source: str, reason: str) -> None:
        super().__init__(f"data source {source!r} could not be read: {reason}")
        self.source = source
        self.reason = reason


FeatureKind = Literal["numeric", "categorical"]
IMPUTATIONS = ("median", "most_frequent")


@dataclass(frozen=True)
class FeatureSpec:
    """One feature: its column, its kind, whether nulls are allowed (and how they are imputed),
    known value bounds (numeric) and known categories (categorical, once recorded at training)."""

    name: str
    nullable: bool = False
    min_value: float | None = None
    max_value: float | None = None
    kind: FeatureKind = "numeric"
    impute: Literal["median", "most_frequent"] | None = None  # inside the model's Pipeline; implies nullable
    categories: tuple[str, ...] | None = None


@dataclass(frozen=True)
class DatasetSpec:
    """The declared feature set of a source: what `validated_data` enforces."""

    features: tuple[FeatureSpec, ...]
    target: str
    classes: tuple[int | str, ...] | None = None

    @property
    def feature_names(self) -> list[str]:
        return [f.name for f in self.features]

    @property
    def categorical_names(self) -> list[str]:
        return [f.name for f in self.features if f.kind == "categorical"]


@dataclass(frozen=True)
class SourceData:
    frame: pd.DataFrame
    spec: DatasetSpec
    description: str = ""
    # Content hash of `frame`, once computed (see fingerprint_frame); saves rehashing downstream.
    fingerprint: str | None = None


def _snake_case(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def load_breast_cancer_source() -> SourceData:
    """scikit-learn's bundled Wisconsin breast-cancer data (569 rows, 30 features, no network)."""
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=_snake_case)
    features = tuple(
        # All 30 measurements are non-negative physical quantities (radii, areas, ...).
        FeatureSpec(name=_snake_case(col), min_value=0.0)
        for col in bunch.feature_names
    )
    spec = DatasetSpec(features=features, target="target", classes=(0, 1))
    return SourceData(frame=frame, spec=spec, description="sklearn breast_cancer (bundled)")


def load_churn_source() -> SourceData:
    """The synthetic churn table shipped with ml_platform (data/churn.py): mixed types, with gaps."""
    from ml_platform.data.churn import CHURN_CATEGORICAL, CHURN_NUMERIC, CHURN_TARGET, generate_churn

    features = tuple(FeatureSpec(name, min_value=0.0) for name in CHURN_NUMERIC) + tuple(
        FeatureSpec(name, kind="categorical") for name in CHURN_CATEGORICAL
    )
    spec = DatasetSpec(features=features, target=CHURN_TARGET, classes=(0, 1))
    return SourceData(frame=generate_churn(), spec=spec, description="ml_platform churn (bundled, synthetic)")


BUNDLED_DATASETS = {"breast_cancer": load_breast_cancer_source, "churn": load_churn_source}


def load_bundled_source(dataset: str) -> SourceData:
    if dataset not in BUNDLED_DATASETS:
        raise DataSourceError(f"bundled:{dataset}", f"no such bundled dataset (choose one of {sorted(BUNDLED_DATASETS)})")
    return BUNDLED_DATASETS[dataset]()


def with_declared_kinds(source: SourceData, categorical: Sequence[str], impute: Mapping[str, str]) -> SourceData:
    """The declaration's categorical columns and imputation applied to the source's features
    (categorical unset: the source's own kinds). A column named that is not a feature is an error."""
    if not categorical and not impute:
        return source
    names = source.spec.feature_names
    unknown = [c for c in [*categorical, *impute] if c not in names]
    if unknown:
        raise DataSourceError(
            source.description, f"categorical/impute name column(s) {sorted(set(unknown))} that are not among the features {names}"
        )
    kinds = {
        f.name: ("categorical" if f.name in categorical else "numeric") if categorical else f.kind for f in source.spec.features
    }
    for column, strategy in impute.items():
        if strategy not in IMPUTATIONS:
            raise DataSourceError(source.description, f"impute.{column}: {strategy!r} is not one of {list(IMPUTATIONS)}")
        if kinds[column] == "categorical" and strategy == "median":
            raise DataSourceError(source.description, f"impute.{column}: a categorical column has no median (use most_frequent)")
    features = tuple(
        replace(
            feature,
            kind=kinds[feature.name],
            impute=impute.get(feature.name),  # type: ignore[arg-type]
            nullable=feature.nullable or feature.name in impute,
        )
        for feature in source.spec.features
    )
    return replace(source, spec=replace(source.spec, features=features))


def generate_synthetic(
    rows: int = 1_000,
    features: int = 10,
    positive_fraction: float = 0.5,
    seed: int = 42,
    drift_features: tuple[str, ...] | list[str] = (),
    drift_shift: float = 0.0,
    drift_scale: float = 1.0,
) -> SourceData:
    """A learnable binary-classification frame with an optional covariate-drift knob.

    Features `f0..f{n-1}` are standard normal; the label follows a logistic model of the
    *undrifted* features, with the intercept set so that `positive_fraction` of rows are
    positive. Drift then shifts (by `drift_shift` standard deviations) and scales the
    chosen features, so a model trained on undrifted data sees a changed input distribution.
    """
    if rows < 1:
        raise ValueError(f"synthetic source: rows must be >= 1, got {rows}")
    if features < 1:
        raise ValueError(f"synthetic source: features must be >= 1, got {features}")
    if not 0.0 < positive_fraction < 1.0:
        raise ValueError(
            f"synthetic source: positive_fraction must be in (0, 1), got {positive_fraction}"
        )
    names = [f"f{i}" for i in range(features)]
    unknown = sorted(set(drift_features) - set(names))
    if unknown:
        raise ValueError(f"synthetic source: drift_features {unknown} not among {names[0]}..{names[-1]}")

    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features))
    # The concept (weights) is fixed; `seed` draws a new sample of the same population, so a
    # model trained on one seed is valid on another unless the drift knob changes the inputs.
    concept = np.random.default_rng(CONCEPT_SEED)
    weights = concept.uniform(0.5, 1.5, features) * concept.choice([-1.0, 1.0], features)
    logits = x @ weights / np.sqrt(features) * 3.0
    # Intercept chosen so the expected share of positives matches the requested balance.
    threshold = np.quantile(logits, 1.0 - positive_fraction)
    probabilities = 1.0 / (1.0 + np.exp(-(logits - threshold) * 2.0))
    target = (rng.random(rows) < probabilities).astype(np.int64)

    for name in drift_features:
        i = names.index(name)
        x[:, i] = x[:, i] * drift_scale + drift_shift

    frame = pd.DataFrame(x, columns=names)
    frame["target"] = target
    spec = DatasetSpec(features=tuple(FeatureSpec(n) for n in names), target="target", classes=(0, 1))
    return SourceData(frame=frame, spec=spec, description=f"synthetic {rows}x{features} seed={seed}")


def read_table_file(
    path: str | Path,
    file_format: str,
    target_column: str,
    feature_columns: list[str] | None = None,
    classes: list[int | str] | None = None,
) -> SourceData:
    """A CSV or Parquet file by path; features default to every column but the target."""
    source = f"{file_format}:{path}"
    file_path = Path(path)
    if not file_path.exists():
        raise DataSourceError(source, "file not found")
    if not file_path.is_file():
        raise DataSourceError(source, "not a regular file")
    try:
        if file_format == "csv":
            frame = pd.read_csv(file_path)
        elif file_format == "parquet":
            frame = pd.read_parquet(file_path)
        else:
            raise DataSourceError(source, f"unknown format {file_format!r} (use csv or parquet)")
    except DataSourceError:
        raise
    except pd.errors.EmptyDataError:
        raise DataSourceError(source, "the file is empty") from None
    except Exception as exc:  # noqa: BLE001 - any parser failure is "unreadable", with its reason
        raise DataSourceError(source, f"unreadable ({type(exc).__name__}: {exc})") from exc

    return _checked_frame(source, frame, target_column, feature_columns, classes, "the file has no data rows")


def _checked_frame(source: str, frame: pd.DataFrame, target_column: str, feature_columns: list[str] | None,
                   classes: Sequence[int | str] | None, empty: str) -> SourceData:
    """A read frame as SourceData: rows and the target column present; features default to every other column."""
    if frame.empty:
        raise DataSourceError(source, empty)
    if target_column not in frame.columns:
        raise DataSourceError(
            source, f"target column {target_column!r} not found; columns are {list(frame.columns)}"
        )
    # A declared feature missing from the source is validation's to report, in its table.
    names = feature_columns or [c for c in frame.columns if c != target_column]
    spec = DatasetSpec(
        features=tuple(FeatureSpec(n) for n in names),
        target=target_column,
        classes=tuple(classes) if classes else None,
    )
    return SourceData(frame=frame, spec=spec, description=source)


def sql_source_name(url: str, password: str | None = None, table: str | None = None, query: str | None = None) -> str:
    """How a SQL source is named in messages, logs and metadata: its URL with the password masked
    (`***`), then its table or the start of its query. An unparseable URL is not echoed (it might
    hold a password)."""
    import sqlalchemy as sa

    try:
        shown = sa.engine.make_url(url).set(password=password or None).render_as_string(hide_password=True)
    except Exception:  # noqa: BLE001 - whatever make_url rejects
        shown = "<not a SQLAlchemy URL>"
    if table is not None:
        return f"sql:{shown} table {table}"
    text = " ".join((query or "").split())
    return f"sql:{shown} query {text[:60] + '...' if len(text) > 60 else text}"


def masked_first_line(exc: BaseException, password: str | None) -> str:
    """The database's own reason, on one line, without the password (even if the server echoed it)."""
    import sqlalchemy as sa

    cause: BaseException = exc
    while cause.__cause__ is not None and not isinstance(cause, sa.exc.DBAPIError):
        cause = cause.__cause__  # pandas wraps the SQLAlchemy error, which wraps the driver's
    if isinstance(cause, sa.exc.DBAPIError) and cause.orig is not None:
        cause = cause.orig
    lines = [line.strip() for line in str(cause).splitlines() if line.strip()]
    text = lines[0] if lines else type(cause).__name__
    return text.replace(password, "***") if password else text


def read_sql_source(
    url: str,
    password: str | None = None,
    table: str | None = None,
    query: str | None = None,
    target: str = "target",
    features: list[str] | None = None,
    classes: Sequence[int | str] | None = None,
) -> SourceData:
    """A table or a query's result from a SQL database (SQLAlchemy URL; the password given apart).

    `table` may be schema-qualified (`schema.table`); it is reflected and selected through
    SQLAlchemy, so its name is quoted by the dialect, never formatted into SQL. Every failure
    (bad URL, server down, wrong credentials, missing table, failing query, no rows, no target
    column) is one DataSourceError naming the source with the password masked.
    """
    import sqlalchemy as sa

    source = sql_source_name(url, password, table, query)
    if (table is None) == (query is None):
        raise DataSourceError(source, "give exactly one of table and query")
    try:
        full_url = sa.engine.make_url(url).set(password=password or None)
    except Exception as exc:  # noqa: BLE001 - ArgumentError and friends
        raise DataSourceError(source, f"not a SQLAlchemy URL ({type(exc).__name__})") from None
    if full_url.get_backend_name() == "sqlite" and full_url.database not in (None, "", ":memory:"):
        # SQLite would create a missing file (empty) and then report a missing table instead.
        if not Path(full_url.database).is_file():
            raise DataSourceError(source, f"database file {full_url.database} not found")
    # A server that does not answer fails in seconds, not at the TCP timeout (libpq drivers).
    libpq = full_url.drivername in ("postgresql", "postgresql+psycopg", "postgresql+psycopg2")
    connect_args = {"connect_timeout": 10} if libpq else {}
    try:
        engine = sa.create_engine(full_url, connect_args=connect_args)
    except Exception as exc:  # noqa: BLE001 - unknown dialect, driver not installed
        raise DataSourceError(source, f"cannot use this URL: {masked_first_line(exc, password)}") from None
    try:
        with engine.connect() as connection:
            if table is not None:
                schema, _, name = table.rpartition(".")
                if not sa.inspect(connection).has_table(name, schema=schema or None):
                    raise DataSourceError(source, f"table {table!r} not found")
                statement: sa.Executable = sa.select(
                    sa.Table(name, sa.MetaData(), schema=schema or None, autoload_with=connection)
                )
            else:
                statement = sa.text(query)
            frame = pd.read_sql(statement, connection)
    except DataSourceError:
        raise
    except Exception as exc:  # noqa: BLE001 - connection, authentication, SQL errors: the driver's reason
        raise DataSourceError(source, masked_first_line(exc, password)) from None
    finally:
        engine.dispose()
    empty = "the table has no rows" if table is not None else "the query returned no rows"
    return _checked_frame(source, frame, target, features, classes, empty)


_TRUE, _FALSE = {"true", "1", "yes"}, {"false", "0", "no"}


def _as_label(text: str, dtype: object) -> object:
    if pd.api.types.is_bool_dtype(dtype):
        if text.lower() in _TRUE | _FALSE:
            return text.lower() in _TRUE
        raise ValueError(text)
    if pd.api.types.is_integer_dtype(dtype):
        return int(float(text)) if float(text).is_integer() else int(text)
    if pd.api.types.is_float_dtype(dtype):
        return float(text)
    return text


def with_declared_classes(source: SourceData, classes: Sequence[str]) -> SourceData:
    """Declarations carry classes as text (YAML's 0, 0.0 and false all arrive as text here);
    match them to the type of the target column they must be compared with."""
    target = source.frame[source.spec.target]
    try:
        typed = tuple(_as_label(str(c), target.dtype) for c in classes)
    except ValueError:
        raise DataSourceError(
            source.description, f"declared classes {list(classes)} are not values of the target column's type ({target.dtype})"
        ) from None
    return replace(source, spec=replace(source.spec, classes=typed))


def fingerprint_frame(frame: pd.DataFrame) -> str:
    """A content hash of a frame: column names, dtypes and every value, row order included.

    Used as the asset's data version and recorded with each model version, so the same
    data always gets the same fingerprint and any changed value gets a new one.
    """
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    row_hashes = pd.util.hash_pandas_object(frame, index=False).to_numpy()
    digest.update(row_hashes.tobytes())
    return digest.hexdigest()[:16]
