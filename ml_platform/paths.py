"""Where the platform keeps local state by default: beside the Dagster instance."""

from __future__ import annotations

import os
from pathlib import Path


def platform_home() -> Path:
    """$DAGSTER_HOME/ml_platform, else ./.ml_platform (registry, alerts, quarantined rows)."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]) / "ml_platform"
    return Path(".ml_platform")


def default_registry_root() -> str:
    """$ML_PLATFORM_REGISTRY (a path or fsspec URL), else <platform home>/registry."""
    return os.environ.get("ML_PLATFORM_REGISTRY") or str(platform_home() / "registry")
