"""A damaged registry is refused, never mistaken for a new one, and can be recovered."""

import json
import re
import shutil
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.model.registry import DamagedStateError, ModelRegistry, RegistryError


def fitted(constant: int, tag: int = 0) -> DummyClassifier:
    model = DummyClassifier(strategy="constant", constant=constant).fit([[0], [1]], [0, 1])
    model.tag = tag  # distinct bytes, so distinct sha256, per version
    return model


def promoted_four_times(root: Path) -> ModelRegistry:
    """v1..v4, each promoted in turn: production v4, previous v3, 4 history entries."""
    registry = ModelRegistry(root)
    for i in range(4):
        registry.register(fitted(i % 2, tag=i), {"features": ["x"], "metrics": {"accuracy": 0.8 + i / 100}})
    for version in ("v1", "v2", "v3", "v4"):
        registry.set_alias("production", version, reason=f"to {version}")
    return registry


@pytest.mark.parametrize(
    "content, problem",
    [
        (b"", "is empty"),
        (b"  \n", "is empty"),
        (b'{"aliases": {"production": "v4"}, "hist', "is not valid JSON (Unterminated string"),
        (b"\xff\xfe{}", "is not UTF-8 text"),
        (b"[]", "has the wrong shape (expected a JSON object with 'aliases' and 'history', found a JSON list)"),
        (b'{"aliases": {}}', "has the wrong shape (missing 'history')"),
        (b'{"aliases": {"production": 3}, "history": []}', "has the wrong shape ('aliases' must map"),
        (b'{"aliases": {}, "history": [{"alias": "production"}]}', "has the wrong shape (history entry 0 is not an alias change"),
        (b'{"aliases": {}, "history": [], "artifacts": {"v1": "abc"}}', "has the wrong shape ('artifacts' must map versions to sha256"),
    ],
)
def test_a_damaged_state_is_refused_by_readers_and_writers_and_left_as_it_is(
    tmp_path: Path, content: bytes, problem: str
) -> None:
    registry = promoted_four_times(tmp_path)
    state = tmp_path / "state.json"
    state.write_bytes(content)
    for action in (
        registry.history, registry.aliases, lambda: registry.load_alias("production"),
        lambda: registry.set_alias("production", "v2", reason="x"), lambda: registry.rollback(),
        lambda: registry.register(fitted(0), {}), lambda: registry.prune(1),
    ):
        with pytest.raises(DamagedStateError) as refused:
            action()
        assert str(refused.value).startswith(f"{state} {problem}") and "models recover" in str(refused.value)
    assert state.read_bytes() == content
    assert [v.version for v in registry.list_versions()] == ["v1", "v2", "v3", "v4"]  # nothing registered, nothing pruned


def test_recover_rebuilds_history_and_aliases_from_the_journal_and_keeps_the_damaged_file(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    before = json.loads((tmp_path / "state.json").read_text())
    (tmp_path / "state.json").write_text("")
    recovery = registry.recover()
    assert json.loads((tmp_path / "state.json").read_text()) == before
    assert recovery.versions == ["v1", "v2", "v3", "v4"] and recovery.history_entries == 4
    assert recovery.aliases == {"production": "v4", "previous": "v3"}
    assert recovery.problem == f"{tmp_path / 'state.json'} is empty" and recovery.not_recovered == []
    [kept] = tmp_path.glob("state.json.damaged-*")
    assert recovery.damaged_copy == str(kept) and kept.read_bytes() == b""
    assert registry.load_alias("production").predict([[0]])[0] == 1
    with pytest.raises(RegistryError, match="is sound: nothing to recover"):
        registry.recover()
    # The next promotion builds on the recovered history: nothing was wiped.
    registry.set_alias("production", "v1", reason="back")
    assert len(registry.history()) == 5


def test_a_vanished_state_with_a_journal_is_refused_and_recovered(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    (tmp_path / "state.json").unlink()
    with pytest.raises(DamagedStateError, match="state.json is missing but the registry's journal is not"):
        registry.history()
    recovery = registry.recover()
    assert recovery.damaged_copy is None and recovery.aliases["production"] == "v4" and len(registry.history()) == 4


def test_recover_says_what_it_could_not_recover(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    (tmp_path / "state.json").write_text("{")
    (tmp_path / "journal" / "000002.json").write_text("")  # entries 2 and 3 cannot be replayed
    shutil.rmtree(tmp_path / "versions" / "v1")
    shutil.copytree(tmp_path / "versions" / "v2", tmp_path / "versions" / "v1")
    recovery = registry.recover()
    assert recovery.versions == ["v2", "v3", "v4"] and recovery.history_entries == 2
    assert recovery.not_recovered == [
        "model version v1: its metadata says it is v2 (a version folder copied over another?); refusing it",
        "history entries from 2 on (2 in the journal): entry 2 is missing or unreadable",
        "alias previous: it named v1, which could not be verified; left unset",
    ]
    assert registry.aliases() == recovery.aliases == {"production": "v2"} and len(registry.history()) == 2


def test_a_registry_older_than_the_journal_gets_one_at_its_next_write(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    shutil.rmtree(tmp_path / "journal")
    registry.set_alias("staging", "v2", reason="try")
    assert sorted(p.name for p in (tmp_path / "journal").iterdir()) == [f"00000{i}.json" for i in range(5)]
    assert json.loads((tmp_path / "journal" / "000001.json").read_text()) == registry.history()[1]
    # Without any journal, recovery keeps the versions and says the aliases are lost.
    shutil.rmtree(tmp_path / "journal")
    (tmp_path / "state.json").write_text("")
    recovery = registry.recover()
    assert recovery.aliases == {} and recovery.versions == ["v1", "v2", "v3", "v4"]
    assert recovery.not_recovered == [
        "aliases and history: the registry has no journal (it predates it); promote a version again"
    ]


def test_a_version_folder_copied_over_another_is_refused(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    shutil.rmtree(tmp_path / "versions" / "v3")
    shutil.copytree(tmp_path / "versions" / "v1", tmp_path / "versions" / "v3")
    with pytest.raises(RegistryError, match="model version v3: its metadata says it is v1"):
        registry.load("v3")
    # Even with its metadata made to say v3, the sha256 kept in the state (outside the folder) differs.
    metadata = tmp_path / "versions" / "v3" / "metadata.json"
    metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "version": "v3"}))
    kept_in_state = r"model version v3: artifact integrity check failed \(sha256 .* kept in state.json\)"
    with pytest.raises(RegistryError, match=kept_in_state):
        registry.load("v3")
    with pytest.raises(RegistryError, match="v3: artifact integrity check failed"):
        registry.rollback(to="v3")
    assert registry.alias("production") == "v4"


def test_versions_registered_before_the_state_kept_checksums_still_load(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    state = json.loads((tmp_path / "state.json").read_text())
    del state["artifacts"]
    (tmp_path / "state.json").write_text(json.dumps(state))
    assert registry.load("v2").predict([[0]])[0] == 1
    (tmp_path / "versions" / "v2" / "model.pkl").write_bytes(b"tampered")
    with pytest.raises(RegistryError, match="model version v2: artifact integrity check failed"):
        registry.load("v2")


@pytest.mark.parametrize(
    "content, problem",
    [("{", "is not valid JSON"), ("[1, 2]", "has the wrong shape (needs version, created_at, sha256)"),
     ('{"version": "v2"}', "has the wrong shape")],
)
def test_damaged_metadata_is_refused_naming_the_version_and_file(tmp_path: Path, content: str, problem: str) -> None:
    registry = promoted_four_times(tmp_path)
    (tmp_path / "versions" / "v2" / "metadata.json").write_text(content)
    with pytest.raises(RegistryError, match=rf"model version v2: .*versions/v2/metadata.json {re.escape(problem)}"):
        registry.list_versions()


def test_state_leftovers_of_a_crash_are_removed_by_the_next_writer(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    (tmp_path / "state.json.tmp-0123abcd").write_text('{"aliases": {}')
    (tmp_path / "journal" / "000009.json.tmp-0123abcd").write_text("{")
    registry.history()  # readers leave them alone
    assert len(list(tmp_path.glob("state.json.tmp-*"))) == 1
    registry.set_alias("staging", "v1", reason="s")
    assert not list(tmp_path.glob("state.json.tmp-*")) and not list(tmp_path.glob("journal/*.tmp-*"))


def test_promoting_what_an_alias_already_names_is_refused_and_not_recorded(tmp_path: Path) -> None:
    registry = promoted_four_times(tmp_path)
    with pytest.raises(RegistryError, match="model version v4 is already in production"):
        registry.set_alias("production", "v4", reason="again")
    registry.set_alias("staging", "v2", reason="s")
    with pytest.raises(RegistryError, match="model version v2 is already staging"):
        registry.set_alias("staging", "v2", reason="s")
    assert len(registry.history()) == 5


def test_writes_to_a_registry_that_does_not_exist_create_nothing(tmp_path: Path) -> None:
    registry = ModelRegistry(tmp_path / "typo" / "churn")
    writes = (lambda: registry.set_alias("production", "v1", reason="x"), registry.rollback, registry.prune, registry.recover)
    for write in writes:
        with pytest.raises(RegistryError, match=f"no registry at {tmp_path / 'typo' / 'churn'}"):
            write()
    assert list(tmp_path.iterdir()) == []
