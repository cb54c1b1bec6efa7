"""Shared fixtures: a real, temporary Dagster instance (SQLite under a fresh DAGSTER_HOME)."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ml_platform.model.registry import ModelRegistry
from ml_platform.orchestration.assets import ASSETS
from ml_platform.orchestration.alerting import alerting_resource
from ml_platform.orchestration.resources import DataSourceResource, ModelRegistryResource

REPO_ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    for var in ("ML_PLATFORM_REGISTRY", "ML_PLATFORM_SOURCE", "ML_PLATFORM_SOURCE_PATH", "ML_PLATFORM_TARGET"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as inst:
        yield inst


@pytest.fixture
def registry(dagster_home: Path) -> ModelRegistry:
    return ModelRegistry(dagster_home / "ml_platform" / "registry")


def pipeline_resources(source: DataSourceResource | None = None, **overrides: Any) -> dict[str, Any]:
    return {
        "data_source": source or DataSourceResource(),
        "model_registry": ModelRegistryResource(),
        "alerting": alerting_resource(),
        **overrides,
    }


def run_pipeline(
    instance: dg.DagsterInstance,
    source: DataSourceResource | None = None,
    run_config: dict[str, Any] | None = None,
    selection: str | None = None,
) -> dg.ExecuteInProcessResult:
    """Materialize the four assets (or `selection`) on `instance`, without raising on failure."""
    return dg.materialize(
        ASSETS,
        instance=instance,
        resources=pipeline_resources(source),
        run_config=run_config or {},
        selection=selection,
        raise_on_error=False,
    )


def run_job(
    instance: dg.DagsterInstance,
    job_name: str,
    source: DataSourceResource | None = None,
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """Run one of the platform's jobs exactly as defined, with `source` as the data source."""
    from ml_platform.definitions import build_definitions

    job = build_definitions(pipeline_resources(source)).resolve_job_def(job_name)
    return job.execute_in_process(instance=instance, run_config=run_config or {}, raise_on_error=False)
