"""The data source and the model registry as Dagster ConfigurableResources (alert channels: alerting.py)."""

import os
from dataclasses import replace
from typing import Literal

import dagster as dg
import pandas as pd

from ml_platform.data.sources import (
    DataSourceError,
    SourceData,
    generate_synthetic,
    load_breast_cancer_source,
    read_table_file,
)
from ml_platform.paths import default_registry_root
from ml_platform.model.registry import DEFAULT_KEEP_LAST, ModelRegistry


class DataSourceResource(dg.ConfigurableResource):
    """Where `raw_data` comes from. `kind` picks the source; the other fields configure it."""

    kind: Literal["bundled", "synthetic", "csv", "parquet"] = "bundled"
    # csv / parquet
    path: str | None = None
    target_column: str = "target"
    feature_columns: list[str] | None = None
    classes: list[str] | None = None
    # synthetic
    rows: int = 1_000
    features: int = 10
    positive_fraction: float = 0.5
    seed: int = 42
    drift_features: list[str] = []
    drift_shift: float = 0.0
    drift_scale: float = 1.0

    def describe(self) -> str:
        return f"{self.kind}:{self.path}" if self.kind in ("csv", "parquet") else self.kind

    def load(self) -> SourceData:
        if self.kind == "bundled":
            return load_breast_cancer_source()
        if self.kind == "synthetic":
            return generate_synthetic(
                rows=self.rows,
                features=self.features,
                positive_fraction=self.positive_fraction,
                seed=self.seed,
                drift_features=self.drift_features,
                drift_shift=self.drift_shift,
                drift_scale=self.drift_scale,
            )
        if not self.path:
            raise DataSourceError(self.kind, "no path configured (set data_source.path)")
        source = read_table_file(self.path, self.kind, self.target_column, self.feature_columns)
        if self.classes:
            return _with_classes(source, self.classes)
        return source


def _with_classes(source: SourceData, classes: list[str]) -> SourceData:
    """Config carries classes as text; match them to the target column's type."""
    target = source.frame[source.spec.target]
    typed: list[int | str] = list(classes)
    if pd.api.types.is_integer_dtype(target):
        try:
            typed = [int(c) for c in classes]
        except ValueError as exc:
            raise DataSourceError(source.description, f"classes {classes} are not integers like the target") from exc
    return replace(source, spec=replace(source.spec, classes=tuple(typed)))


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registry. `root` is a path or fsspec URL (s3://bucket/prefix needs s3fs);
    empty means $ML_PLATFORM_REGISTRY, else $DAGSTER_HOME/ml_platform/registry."""

    root: str = ""
    keep_last: int = DEFAULT_KEEP_LAST  # versions kept; aliased versions are never deleted

    def registry(self) -> ModelRegistry:
        return ModelRegistry(self.root or default_registry_root())


def source_from_environment() -> DataSourceResource:
    """Defaults for the CLI and `dagster dev`, so pointing at a CSV needs no YAML:
    ML_PLATFORM_SOURCE=csv ML_PLATFORM_SOURCE_PATH=data.csv ML_PLATFORM_TARGET=label."""
    kind = os.environ.get("ML_PLATFORM_SOURCE", "bundled")
    if kind not in ("bundled", "synthetic", "csv", "parquet"):
        raise ValueError(f"ML_PLATFORM_SOURCE={kind!r}: use bundled, synthetic, csv or parquet")
    return DataSourceResource(
        kind=kind,  # type: ignore[arg-type]
        path=os.environ.get("ML_PLATFORM_SOURCE_PATH") or None,
        target_column=os.environ.get("ML_PLATFORM_TARGET", "target"),
    )
