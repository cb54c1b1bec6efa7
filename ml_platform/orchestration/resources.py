"""The data source and the model registry as Dagster ConfigurableResources (alert channels: alerting.py).

Each declared model gets its own DataSourceResource (resource key `<model>_data_source`) whose
config defaults are the declaration's `source` section, so the Launchpad shows them and a run
that overrides one field (say `path`) keeps the others. The registry resource is shared: every
model has its own namespace below its root.
"""

from typing import Any

import dagster as dg
import pydantic

from ml_platform.data.sources import (
    DataSourceError,
    SourceData,
    generate_synthetic,
    load_bundled_source,
    read_table_file,
    with_declared_classes,
)
from ml_platform.declaration import BundledDataset, DeclaredModel, SourceKind, SyntheticSection
from ml_platform.model.registry import ModelRegistry
from ml_platform.orchestration.config import config_class
from ml_platform.paths import model_registry_url

# The synthetic generator's knobs, as the declaration defines them (SyntheticSection).
SyntheticSourceConfig = config_class("SyntheticSourceConfig", SyntheticSection())


class DataSourceResource(dg.ConfigurableResource):
    """Where a model's `raw_data` comes from: its declaration's `source` section, field for field."""

    kind: SourceKind = "bundled"
    dataset: BundledDataset = "breast_cancer"  # bundled
    path: str | None = None  # csv / parquet; the declaration's relative path is resolved against the project
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
        return pydantic.create_model(f"{cls.__name__}_{model.name}", __base__=cls, **fields)()

    def describe(self) -> str:
        return f"{self.kind}:{self.path}" if self.kind in ("csv", "parquet") else self.kind

    def load(self) -> SourceData:
        if self.kind == "bundled":
            return load_bundled_source(self.dataset)
        if self.kind == "synthetic":
            return generate_synthetic(**self.synthetic.model_dump())
        if not self.path:
            raise DataSourceError(self.kind, "no path configured (set source.path in the declaration)")
        source = read_table_file(self.path, self.kind, self.target, self.features)
        return with_declared_classes(source, self.classes) if self.classes else source


class ModelRegistryResource(dg.ConfigurableResource):
    """The model registries. `root` is a path or fsspec URL (s3://bucket/prefix needs s3fs);
    empty means $ML_PLATFORM_REGISTRY, else $DAGSTER_HOME/ml_platform/registry. Each model's
    registry is <root>/<model>."""

    root: str = ""

    def registry(self, model: str) -> ModelRegistry:
        return ModelRegistry(model_registry_url(model, self.root or None))
