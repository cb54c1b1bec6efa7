import json
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.core.registry import ModelRegistry, RegistryError, load_production_model


def fitted(constant: int) -> DummyClassifier:
    return DummyClassifier(strategy="constant", constant=constant).fit([[0], [1]], [0, 1])


def test_versions_are_numbered_immutable_and_keep_their_metadata(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    v1 = registry.register(fitted(0), {"metrics": {"accuracy": 0.8}, "features": ["x"]})
    v2 = registry.register(fitted(1), {"metrics": {"accuracy": 0.9}, "features": ["x"]})
    assert (v1.version, v2.version) == ("v1", "v2")
    assert registry.get("v1").metrics == {"accuracy": 0.8} and registry.get("v2").features == ["x"]
    assert [v.version for v in registry.list_versions()] == ["v1", "v2"]
    assert registry.load("v2").predict([[5]])[0] == 1
    assert len(v1.sha256) == 64


def test_production_alias_moves_previous_and_history_records_every_change(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    for c in (0, 1):
        registry.register(fitted(c), {})
    registry.set_alias("production", "v1", reason="first", run_id="r1", metrics={"accuracy": 0.8})
    registry.set_alias("production", "v2", reason="better", run_id="r2")
    assert registry.aliases() == {"production": "v2", "previous": "v1"}
    history = registry.history()
    assert [(h["from_version"], h["to_version"], h["reason"], h["run_id"]) for h in history] == [
        (None, "v1", "first", "r1"),
        ("v1", "v2", "better", "r2"),
    ]
    assert history[0]["metrics"] == {"accuracy": 0.8}
    assert load_production_model(tmp_path).predict([[0]])[0] == 1


def test_tampered_truncated_or_missing_artifact_is_refused_naming_the_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(fitted(0), {})
    artifact = tmp_path / "versions" / "v1" / "model.pkl"
    data = artifact.read_bytes()
    artifact.write_bytes(data[:-10])
    with pytest.raises(RegistryError, match="model version v1: artifact integrity check failed"):
        registry.load("v1")
    with pytest.raises(RegistryError, match="v1"):
        registry.set_alias("production", "v1", reason="x")
    artifact.unlink()
    with pytest.raises(RegistryError, match="model version v1: artifact .* is missing"):
        registry.load("v1")
    assert registry.alias("production") is None


def test_unknown_version_and_alias_give_clear_errors(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    with pytest.raises(RegistryError, match="model version 'v9' not found"):
        registry.get("v9")
    with pytest.raises(RegistryError, match="no model has the alias 'production' yet"):
        load_production_model(tmp_path)
    registry.register(fitted(0), {})
    with pytest.raises(RegistryError, match="unknown alias 'champion'"):
        registry.set_alias("champion", "v1", reason="x")


def test_interrupted_version_write_leaves_no_visible_version(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)

    class Unpicklable:
        def __reduce__(self):
            raise RuntimeError("boom")

    with pytest.raises(RuntimeError, match="boom"):
        registry.register(Unpicklable(), {})
    assert registry.list_versions() == []
    assert list((tmp_path / "versions").iterdir()) == []
    assert registry.register(fitted(0), {}).version == "v1"


def test_state_file_is_plain_json_with_aliases_and_history(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(fitted(0), {})
    registry.set_alias("production", "v1", reason="first")
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["aliases"] == {"production": "v1"} and len(state["history"]) == 1
    assert not list(tmp_path.glob(".state-*"))
