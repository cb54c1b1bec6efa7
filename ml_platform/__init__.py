"""ml_platform: a scikit-learn model from data to production as Dagster assets.

`defs` (the Dagster Definitions) is loaded lazily, so `load_production_model` can be
used in a serving process without importing Dagster.
"""

from typing import Any

from ml_platform.model.registry import load_production_model

__all__ = ["defs", "load_production_model"]


def __getattr__(name: str) -> Any:
    if name == "defs":
        from ml_platform.definitions import defs

        return defs
    raise AttributeError(f"module 'ml_platform' has no attribute {name!r}")


def __dir__() -> list[str]:
    # Dagster finds the Definitions object by listing the module's attributes.
    return sorted([*globals(), "defs"])
