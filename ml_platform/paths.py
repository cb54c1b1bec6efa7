"""Where the platform keeps local state by default: beside the Dagster instance.

The instance is $DAGSTER_HOME when it is set (as `make run` and `make ui` set it). In a plain
shell without it, the project's own `dagster_home/` (found from the current directory
upwards) is the instance, so `ml-platform` sees what `make run` wrote; with neither, state
goes to `./.ml_platform`.
"""

from __future__ import annotations

import os
from pathlib import Path

PROJECT_INSTANCE_DIR = "dagster_home"


def project_dagster_home(start: Path | None = None) -> Path | None:
    """The nearest `dagster_home/dagster.yaml` from `start` (default: the working directory) upwards."""
    here = (start or Path.cwd()).resolve()
    for folder in (here, *here.parents):
        if (folder / PROJECT_INSTANCE_DIR / "dagster.yaml").is_file():
            return folder / PROJECT_INSTANCE_DIR
    return None


def dagster_home() -> Path | None:
    """$DAGSTER_HOME, else the project's dagster_home/, else None (an ephemeral instance)."""
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"])
    return project_dagster_home()


def platform_home() -> Path:
    """<instance>/ml_platform, else ./.ml_platform: registries, alerts, quarantined rows."""
    home = dagster_home()
    return home / "ml_platform" if home else Path(".ml_platform")


def registry_root() -> str:
    """Where every model's registry lives: $ML_PLATFORM_REGISTRY (a path or fsspec URL), else
    <platform home>/registry. Each model has its own namespace below it."""
    return os.environ.get("ML_PLATFORM_REGISTRY") or str(platform_home() / "registry")


def model_registry_url(model: str, root: str | None = None) -> str:
    """The registry of one model: <root>/<model>."""
    return f"{(root or registry_root()).rstrip('/')}/{model}"


def predictions_dir(model: str) -> Path:
    """Where <model>/batch_predictions writes each run's predictions (<run_id>.parquet)."""
    return platform_home() / "predictions" / model
