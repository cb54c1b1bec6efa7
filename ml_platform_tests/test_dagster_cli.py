"""The README's way of running the pipeline: the Dagster CLI on a persistent instance."""

import os
import subprocess
import sys
from pathlib import Path

import dagster as dg
import pytest

from ml_platform.model.registry import ModelRegistry

DAGSTER = str(Path(sys.executable).with_name("dagster"))


def materialize(dagster_home: Path, select: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "DAGSTER_HOME": str(dagster_home)}
    return subprocess.run(
        [DAGSTER, "asset", "materialize", "-m", "ml_platform", "--select", select],
        capture_output=True, text=True, env=env, timeout=300,
    )


@pytest.mark.slow
def test_cli_runs_land_in_the_persistent_instance_and_reuse_stored_outputs(dagster_home: Path) -> None:
    first = materialize(dagster_home, "*")
    assert first.returncode == 0, first.stderr[-3000:]
    # A second process runs only the gate: it loads trained_model as the first run stored it.
    second = materialize(dagster_home, "production_model")
    assert second.returncode == 0, second.stderr[-3000:]
    assert "kept v1 in production: v1 is already in production" in second.stderr

    with dg.DagsterInstance.get() as instance:
        runs = instance.get_runs()
        assert len(runs) == 2 and all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs)
    assert ModelRegistry(dagster_home / "ml_platform" / "registry").alias("production") == "v1"


@pytest.mark.slow
def test_cli_exits_non_zero_and_names_the_source_when_it_cannot_be_read(dagster_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ML_PLATFORM_SOURCE", "csv")
    monkeypatch.setenv("ML_PLATFORM_SOURCE_PATH", str(dagster_home / "missing.csv"))
    result = materialize(dagster_home, "*")
    assert result.returncode != 0
    assert "missing.csv' could not be read: file not found" in result.stderr
