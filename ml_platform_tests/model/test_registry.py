import json
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.model.registry import ModelRegistry, RegistryError, load_production_model


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
    registry = ModelRegistry(tmp_path / "churn")
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
    # The one call a serving process makes: a model's production version from the registries' root.
    assert load_production_model("churn", registry_root=tmp_path).predict([[0]])[0] == 1


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
    registry = ModelRegistry(tmp_path / "churn")
    with pytest.raises(RegistryError, match="model version 'v9' not found"):
        registry.get("v9")
    with pytest.raises(RegistryError, match="no registry of model 'churn' at .*: train it first, or say where"):
        load_production_model("churn", registry_root=tmp_path)
    with pytest.raises(TypeError, match="takes a model name"):
        load_production_model(tmp_path)  # the pre-declaration signature took the registry path
    registry.register(fitted(0), {})
    with pytest.raises(RegistryError, match="no model has the alias 'production' yet"):
        load_production_model("churn", registry_root=tmp_path)
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
    assert not (tmp_path / "versions").exists()
    assert registry.register(fitted(0), {}).version == "v1"


def test_state_file_is_plain_json_with_aliases_and_history(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    registry.register(fitted(0), {})
    registry.set_alias("production", "v1", reason="first")
    state = json.loads((tmp_path / "state.json").read_text())
    assert state["aliases"] == {"production": "v1"} and len(state["history"]) == 1
    assert not list(tmp_path.glob("state.json.tmp-*"))


def registry_with(root: str | Path, count: int, features: list[str] | None = None) -> ModelRegistry:
    registry = ModelRegistry(root)
    for i in range(count):
        registry.register(fitted(i % 2), {"features": features or ["x"], "metrics": {"accuracy": 0.5 + i / 100}})
    return registry


def test_fsspec_memory_registry_behaves_like_the_local_one() -> None:
    import uuid

    root = f"memory://registry-{uuid.uuid4().hex}"
    url = f"{root}/churn"
    registry = registry_with(url, 3)
    assert [v.version for v in registry.list_versions()] == ["v1", "v2", "v3"]
    registry.set_alias("production", "v2", reason="first")
    registry.set_alias("production", "v3", reason="second")
    assert ModelRegistry(url).aliases() == {"production": "v3", "previous": "v2"}
    assert load_production_model("churn", registry_root=root).predict([[0]])[0] == 0
    location = registry.location("v3")
    assert location.startswith("memory://") and location.endswith(f"{url[9:]}/versions/v3/model_card.md")
    assert registry.rollback()["to_version"] == "v2"
    assert registry.prune(keep_last=1) == ["v1"]
    assert [v.version for v in registry.list_versions()] == ["v2", "v3"]


def test_model_card_records_metrics_params_data_and_lineage(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path)
    version = registry.register(
        fitted(0),
        {
            "metrics": {"accuracy": 0.91}, "params": {"C": 1.0}, "features": ["a", "b"], "run_id": "run-42",
            "data_fingerprint": "abc123", "data_source": "csv:/d.csv", "row_count": 100, "code_version": "git:1234",
        },
    )
    card = registry.model_card("v1")
    for expected in ("# Model v1", "| accuracy | 0.9100 |", "| C | `1.0` |", "`abc123`", "run `run-42`",
                     "csv:/d.csv", "features (2): `a`, `b`", version.sha256, "git:1234"):
        assert expected in card
    assert (tmp_path / "versions" / "v1" / "model_card.md").read_text() == card


def test_retention_keeps_the_newest_and_every_aliased_version(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 25)
    registry.set_alias("production", "v3", reason="p")
    registry.set_alias("production", "v2", reason="p")  # previous = v3
    registry.set_alias("staging", "v4", reason="s")
    deleted = registry.prune()  # default keep_last=20 keeps v6..v25
    assert deleted == ["v1", "v5"]
    assert [v.version for v in registry.list_versions()] == ["v2", "v3", "v4"] + [f"v{i}" for i in range(6, 26)]
    assert registry.register(fitted(0), {}).version == "v26"  # numbers are never reused


def test_rollback_defaults_to_previous_and_is_recorded(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 3)
    registry.set_alias("production", "v1", reason="a")
    registry.set_alias("production", "v2", reason="b")
    entry = registry.rollback(run_id="r9")
    assert (entry["action"], entry["from_version"], entry["to_version"], entry["run_id"]) == ("rollback", "v2", "v1", "r9")
    assert entry["reason"] == "rollback from v2 to v1" and entry["metrics"] == {"accuracy": 0.5}
    assert registry.aliases() == {"production": "v1", "previous": "v2"}
    registry.rollback(to="v3", reason="v3 is the good one")
    assert registry.alias("production") == "v3" and registry.history()[-1]["reason"] == "v3 is the good one"


def test_rollback_refusals_name_the_version_and_the_reason(tmp_path: Path) -> None:
    registry = registry_with(tmp_path, 2)
    with pytest.raises(RegistryError, match="nothing to roll back to"):
        registry.rollback()
    registry.set_alias("production", "v2", reason="a")
    with pytest.raises(RegistryError, match="v2 is already in production"):
        registry.rollback(to="v2")
    registry.register(fitted(0), {"features": ["x", "y"]})
    with pytest.raises(RegistryError, match=r"model version v3: feature list does not match the current schema \(missing \[\], unexpected \['y'\]"):
        registry.rollback(to="v3")
    with pytest.raises(RegistryError, match=r"model version v1: feature list .*missing \['z'\]"):
        registry.rollback(to="v1", expected_features=["x", "z"])
    (tmp_path / "versions" / "v1" / "model.pkl").write_bytes(b"not the model")
    with pytest.raises(RegistryError, match="model version v1: artifact integrity check failed"):
        registry.rollback(to="v1")
    assert registry.alias("production") == "v2" and len(registry.history()) == 1


def test_find_version_and_demotion_follow_metadata_and_history(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "reg")
    v1 = registry.register({"m": 1}, {"training_identity": "aaa"})
    v2 = registry.register({"m": 2}, {"training_identity": "bbb"})
    assert registry.find_version("training_identity", "bbb").version == v2.version == "v2"
    assert registry.find_version("training_identity", "ccc") is None
    registry.set_alias("production", "v1", reason="first")
    registry.set_alias("production", "v2", reason="better")
    assert registry.demotion("v2") is None
    registry.rollback(reason="v2 misbehaves")
    assert registry.demotion("v2")["reason"] == "v2 misbehaves" and registry.demotion("v1") is None
    registry.set_alias("production", "v2", reason="fixed upstream", action="manual-promote")
    assert registry.demotion("v2") is None and v1.version == "v1"
