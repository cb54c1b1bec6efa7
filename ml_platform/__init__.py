"""ml_platform: scikit-learn models from data to production as Dagster assets.

Dagster is imported lazily: `load_production_model` works in a serving process without it,
and `ml_platform.ModelPipeline` (the component type) and `ml_platform.platform` (the
Definitions, for `dagster ... -m ml_platform`) are loaded on first use.
"""

from typing import Any

from ml_platform.model.registry import load_production_model

__all__ = ["ModelPipeline", "load_production_model", "platform"]


def __getattr__(name: str) -> Any:
    if name == "platform":
        from ml_platform.definitions import defs

        return defs
    if name == "ModelPipeline":
        from ml_platform.components import ModelPipeline

        return ModelPipeline
    raise AttributeError(f"module 'ml_platform' has no attribute {name!r}")


def __dir__() -> list[str]:
    # Dagster finds the Definitions (and dg the component type) by listing the module's attributes.
    return sorted([*globals(), "platform", "ModelPipeline"])
