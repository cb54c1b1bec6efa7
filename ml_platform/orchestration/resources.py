"""The data source and the model registry as Dagster ConfigurableResources (alert channels: alerting.py).

Each declared model gets its own DataSourceResource (resource key `<model>_data_source`) whose
config defaults are the declaration's `source` section, so the Launchpad shows them and a run
that overrides one field (say `path`) keeps the others. The registry resource is shared: every
model has its own namespace below its root.
"""

import os
from typing import Any

import dagster as dg
import pandas as pd
import pydantic

from ml_platform.data.sinks import PredictionSinkError, append_sql_table
from ml_platform.data.sources import (
    DataSourceError,
    SourceData,
    generate_synthetic,
    load_bundled_source,
    read_sql_source,
    read_table_file,
    sql_source_name,
    with_declared_classes,
)
from ml_platform.declaration import BundledDataset, DeclaredModel, SourceKind, SyntheticSection
from ml_platform.model.registry import ModelRegistry
from ml_platform.orchestration.config import config_class
from ml_platform.paths import model_registry_url

# The synthetic generator's knobs, as the declaration defines them (SyntheticSection).
SyntheticSourceConfig = config_class("SyntheticSourceConfig", SyntheticSection())


def _secret_field(default: Any) -> Any:
    """A config field the UI shows masked."""
    return pydantic.Field(default, json_schema_extra={"dagster__is_secret": True})


class DataSourceResource(dg.ConfigurableResource):
    """Where a model's `raw_data` comes from: its declaration's `source` section, field for field."""

    kind: SourceKind = "bundled"
    dataset: BundledDataset = "breast_cancer"  # bundled
    path: str | None = None  # csv / parquet; the declaration's relative path is resolved against the project
    # sql: a SQLAlchemy URL without the password (a relative sqlite path resolved against the project),
    # the password (from dg.EnvVar(password_env): resolved at run time, never in run config or logs),
    # and a table or a query.
    url: str | None = None
    password_env: str | None = None  # the variable's name only, for the message when it is not set
    password: str | None = _secret_field(None)
    table: str | None = None
    query: str | None = None
    target: str = "target"
    features: list[str] | None = None
    classes: list[str] | None = None
    # Applied to whatever load() returns (pipeline.raw_data, with_declared_kinds).
    categorical: list[str] = []
    impute: dict[str, str] = {}  # Dagster config has no dict of Literal: checked by with_declared_kinds
    synthetic: SyntheticSourceConfig = SyntheticSourceConfig()

    @classmethod
    def for_model(cls, model: DeclaredModel) -> "DataSourceResource":
        """This model's data source: a subclass whose config defaults are its declaration."""
        source = model.declaration.source
        declared: dict[str, Any] = {
            "kind": source.kind,
            "dataset": source.dataset,
            "path": model.source_path(),
            "url": model.source_url(),
            "password_env": source.password_env,
            "table": source.table,
            "query": source.query,
            "target": source.target,
            "features": source.features,
            # Dagster config has no int-or-text lists: text here, typed again by with_declared_classes.
            "classes": [str(c) for c in source.classes] if source.classes is not None else None,
            "categorical": source.categorical,
            "impute": source.impute,
        }
        fields: dict[str, Any] = {name: (cls.model_fields[name].annotation, value) for name, value in declared.items()}
        synthetic = config_class("SyntheticSourceConfig", source.synthetic)
        fields["synthetic"] = (synthetic, synthetic())
        if source.password_env and os.environ.get(source.password_env):
            # dg.EnvVar(name) as config spells it, {"env": name}, and as the default rather than a value passed
            # to the constructor: a run that overrides another field (the Launchpad's way) replaces the passed
            # values but keeps the defaults. Resolved when a run starts; the value is never in the config
            # schema, the run config or the Launchpad. Only when set (as alerting's secrets): an unset one
            # would refuse every job using this resource at launch, the rollback job included; load() names it.
            fields["password"] = (str | None, _secret_field({"env": source.password_env}))
        return pydantic.create_model(f"{cls.__name__}_{model.name}", __base__=cls, **fields)()

    def describe(self) -> str:
        if self.kind == "sql":
            return sql_source_name(self.url or "", self.password, self.table, self.query)
        return f"{self.kind}:{self.path}" if self.kind in ("csv", "parquet") else self.kind

    def load(self) -> SourceData:
        if self.kind == "bundled":
            return load_bundled_source(self.dataset)
        if self.kind == "synthetic":
            return generate_synthetic(**self.synthetic.model_dump())
        if self.kind == "sql":
            if not self.url:
                raise DataSourceError("sql", "no url configured (set source.url in the declaration)")
            if self.password_env and self.password is None:
                raise DataSourceError(self.describe(), f"the environment variable {self.password_env} (the password) is not set")
            source = read_sql_source(self.url, self.password, self.table, self.query, self.target, self.features)
        else:
            if not self.path:
                raise DataSourceError(self.kind, "no path configured (set source.path in the declaration)")
            source = read_table_file(self.path, self.kind, self.target, self.features)
        return with_declared_classes(source, self.classes) if self.classes else source


    def append_table(self, table: str, frame: pd.DataFrame) -> None:
        """SQL sources: append `frame` to `table` in the source's database (batch predictions)."""
        if self.password_env and self.password is None:
            raise PredictionSinkError(f"{self.describe()}: the environment variable {self.password_env} (the password) is not set")
        append_sql_table(self.url or "", self.password, table, frame)


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registries. `root` is a path or fsspec URL (s3://bucket/prefix needs s3fs);
    empty means $ML_PLATFORM_REGISTRY, else $DAGSTER_HOME/ml_platform/registry. Each model's
    registry is <root>/<model>."""

    root: str = ""

    def registry(self, model: str) -> ModelRegistry:
        return ModelRegistry(model_registry_url(model, self.root or None))
