"""Shared fixtures: a real, temporary Dagster instance (SQLite under a fresh DAGSTER_HOME) and
declared models built the way the ModelPipeline component builds them."""

from __future__ import annotations

import shutil
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import pytest

from ml_platform.declaration import DeclaredModel, ModelDeclaration, read_declarations
from ml_platform.model.registry import ModelRegistry
from ml_platform.orchestration.alerting import alerting_resource
from ml_platform.orchestration.platform import build_model_definitions, build_platform_definitions
from ml_platform_tests.postgres import postgres_server  # noqa: F401 - a session fixture: a real PostgreSQL server

REPO_ROOT = Path(__file__).resolve().parents[1]
# The model the project ships (ml_platform/defs/breast_cancer/defs.yaml), as its YAML declares it.
BREAST_CANCER = next(m for m in read_declarations() if m.name == "breast_cancer")


@pytest.fixture
def dagster_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("ML_PLATFORM_REGISTRY", raising=False)
    return home


@pytest.fixture
def instance(dagster_home: Path) -> Iterator[dg.DagsterInstance]:
    with dg.DagsterInstance.get() as inst:
        yield inst


def registry_of(dagster_home: Path, model: str = "breast_cancer") -> ModelRegistry:
    return ModelRegistry(dagster_home / "ml_platform" / "registry" / model)


@pytest.fixture
def registry(dagster_home: Path) -> ModelRegistry:
    """The shipped breast_cancer model's registry."""
    return registry_of(dagster_home)


def declared(name: str, root: Path = REPO_ROOT, **sections: Any) -> DeclaredModel:
    """A model declared in code, as its defs.yaml `attributes` would declare it."""
    return DeclaredModel(name, ModelDeclaration.model_validate(sections), root)


def synthetic(name: str = "synth", rows: int = 2_000, seed: int = 1, features: int = 8, **sections: Any) -> DeclaredModel:
    return declared(name, source={"kind": "synthetic", "synthetic": {"rows": rows, "seed": seed, "features": features}}, **sections)


def platform(*models: DeclaredModel, **resources: Any) -> dg.Definitions:
    """The platform's Definitions for these models (default: the shipped one), alerting to the log
    and a JSONL file only unless `alerting` is given."""
    models = models or (BREAST_CANCER,)
    return build_platform_definitions(
        dg.Definitions.merge(*(build_model_definitions(m) for m in models)),
        resources={"alerting": alerting_resource(), **resources},
    )


def run_job(
    instance: dg.DagsterInstance, defs: dg.Definitions, job_name: str, run_config: dict[str, Any] | None = None
) -> dg.ExecuteInProcessResult:
    """Run one of the platform's jobs exactly as defined, without raising on failure."""
    job = defs.resolve_job_def(job_name)
    return job.execute_in_process(instance=instance, run_config=run_config or {}, raise_on_error=False)


def materialize(
    instance: dg.DagsterInstance,
    defs: dg.Definitions,
    selection: str | dg.AssetSelection = "*",
    run_config: dict[str, Any] | None = None,
) -> dg.ExecuteInProcessResult:
    """What `dagster asset materialize --select <selection>` (comma-separated) runs, in this process."""
    job = defs.resolve_implicit_global_asset_job_def()
    chosen = dg.AssetSelection.from_coercible(selection.split(",")) if isinstance(selection, str) else selection
    keys = chosen.resolve(defs.resolve_asset_graph())
    return job.execute_in_process(instance=instance, asset_selection=list(keys), run_config=run_config or {}, raise_on_error=False)


def train(instance: dg.DagsterInstance, model: DeclaredModel = BREAST_CANCER, run_config: dict[str, Any] | None = None,
          defs: dg.Definitions | None = None) -> dg.ExecuteInProcessResult:
    """One run of the model's training job."""
    return run_job(instance, defs or platform(model), f"{model.name}_training", run_config)


def op_config(model: str, asset: str, **config: Any) -> dict[str, Any]:
    return {"ops": {f"{model}__{asset}": {"config": config}}}


def promote_at_once(model: str = "breast_cancer", run_config: dict[str, Any] | None = None) -> dict[str, Any]:
    """`run_config` plus no canary rollout: a staged candidate that passes its smoke test is promoted
    in the same run (what tests of the gate and the registry need; test_release.py tests rollouts)."""
    run_config = dict(run_config or {})
    run_config["ops"] = {**run_config.get("ops", {}), **op_config(model, "production_model", steps=[])["ops"]}
    return run_config


def source_config(model: str, **config: Any) -> dict[str, Any]:
    """Run config overriding some of a model's data source fields for one run (the Launchpad's way)."""
    return {"resources": {f"{model}_data_source": {"config": config}}}
