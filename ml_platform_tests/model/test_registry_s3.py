"""The registry on S3 (a real moto server on 127.0.0.1, through s3fs): concurrent writers in
separate processes lose no update, because state.json is replaced conditionally (If-Match /
If-None-Match) and a lost race is re-read and re-applied."""

import json
import os
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from ml_platform.model import registry as registry_module
from ml_platform.model.registry import ModelRegistry, RegistryError, aliases_after

pytest.importorskip("s3fs", reason="s3fs (the `s3` extra) is needed to reach an S3 server")
pytest.importorskip("moto.server", reason="moto[server] (the `test` extra) provides the S3 server")

BUCKET = "registries"
# Dummy credentials and no user AWS config: nothing but the local server is ever asked.
S3_ENV = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_DEFAULT_REGION": "us-east-1",
    "AWS_CONFIG_FILE": os.devnull,
    "AWS_SHARED_CREDENTIALS_FILE": os.devnull,
    "AWS_EC2_METADATA_DISABLED": "true",
}
# A writer process: only the registry (no Dagster, no pandas), so it starts fast.
PROMOTER = """
import os, sys, time
from ml_platform.model.registry import ModelRegistry
url, name, alias, count, go = sys.argv[1:6]
registry = ModelRegistry(url)
registry.aliases()  # imports done, connection open
print("ready", flush=True)
while not os.path.exists(go):  # both start together, however long each took to get here
    time.sleep(0.01)
started = time.time()
for i in range(int(count)):
    registry.set_alias(alias, ("v1", "v2")[i % 2], reason=f"{name} #{i}", run_id=name)
print(started, time.time())
"""
REGISTERER = """
import sys
from ml_platform.model.registry import ModelRegistry
url, name, count = sys.argv[1:4]
registry = ModelRegistry(url)
print(" ".join(registry.register({"by": name, "n": i}, {"features": ["x"]}).version for i in range(int(count))))
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="module")
def s3_endpoint() -> Iterator[str]:
    """A moto S3 server on 127.0.0.1, its endpoint in AWS_ENDPOINT_URL (for s3fs here and in
    the writer processes), and one bucket."""
    port = free_port()
    endpoint = f"http://127.0.0.1:{port}"
    server = subprocess.Popen(
        [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)],
        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
    )
    try:
        with pytest.MonkeyPatch.context() as env:
            for key, value in {**S3_ENV, "AWS_ENDPOINT_URL": endpoint}.items():
                env.setenv(key, value)
            import s3fs

            fs = s3fs.S3FileSystem(skip_instance_cache=True)
            deadline = time.monotonic() + 20
            while True:
                try:
                    fs.mkdir(BUCKET)
                    break
                except OSError:
                    if time.monotonic() > deadline or server.poll() is not None:
                        raise
                    time.sleep(0.1)
            yield endpoint
    finally:
        server.terminate()
        server.wait(10)


def fresh_url() -> str:
    return f"s3://{BUCKET}/{uuid.uuid4().hex[:8]}/churn"


def spawn(script: str, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen([sys.executable, "-c", script, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def finished(process: subprocess.Popen[str]) -> str:
    out, err = process.communicate(timeout=120)
    assert process.returncode == 0, err
    return out


def test_two_writer_processes_making_40_promotions_each_lose_no_history_entry(s3_endpoint: str, tmp_path: Path) -> None:
    url = fresh_url()
    registry = ModelRegistry(url)
    for constant in (0, 1):
        registry.register({"constant": constant}, {"features": ["x"]})
    go = tmp_path / "go"
    writers = {name: spawn(PROMOTER, url, name, alias, "40", str(go)) for name, alias in (("A", "production"), ("B", "staging"))}
    for writer in writers.values():
        assert writer.stdout is not None and writer.stdout.readline().strip() == "ready"
    go.touch()
    reads = 0
    while any(w.poll() is None for w in writers.values()):
        registry.history()  # a reader meanwhile: the state is always whole and well-formed
        reads += 1
        time.sleep(0.5)  # leaves the server to the writers
    spans = {name: [float(t) for t in finished(w).split()[-2:]] for name, w in writers.items()}
    assert spans["A"][0] < spans["B"][1] and spans["B"][0] < spans["A"][1], "the writers did not overlap"

    history = registry.history()
    assert len(history) == 80
    for name in writers:
        assert [e["reason"] for e in history if e["run_id"] == name] == [f"{name} #{i}" for i in range(40)]
    writer_order = [e["run_id"] for e in history]
    assert writer_order != sorted(writer_order), "the writers' entries never interleaved"
    assert registry.aliases() == aliases_after(history) == {"production": "v2", "staging": "v2", "previous": "v1"}
    assert registry._journal_entries() == (history, None)  # the journal holds the same 80 entries
    assert reads > 0


def test_concurrent_registrations_in_two_processes_get_distinct_versions(s3_endpoint: str) -> None:
    url = fresh_url()
    first, second = spawn(REGISTERER, url, "A", "4"), spawn(REGISTERER, url, "B", "4")
    taken = finished(first).split() + finished(second).split()
    assert sorted(taken, key=lambda v: int(v[1:])) == [f"v{n}" for n in range(1, 9)]
    registry = ModelRegistry(url)
    assert {v.version: v.sha256 for v in registry.list_versions()} == registry._read_state()["artifacts"]
    assert sorted(registry.load(v)["by"] for v in taken) == ["A"] * 4 + ["B"] * 4


def test_a_lost_race_is_re_read_and_re_applied_and_endless_ones_give_up_naming_the_state(
    s3_endpoint: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = fresh_url()
    registry, other_writer = ModelRegistry(url), ModelRegistry(url)
    registry.register({"constant": 0}, {})
    registry.register({"constant": 1}, {})
    calls = []

    def promote_after_another_writer(state: dict) -> None:
        calls.append(json.loads(json.dumps(state)))
        if len(calls) == 1:  # another writer replaces state.json between this read and its write
            other_writer.set_alias("staging", "v2", reason="other")
        registry._apply_alias_move(
            state, "production", "v1", reason="mine", run_id=None, metrics=None, action="promote", expected_features=None
        )

    registry._update_state(promote_after_another_writer)
    assert len(calls) == 2 and calls[1]["aliases"] == {"staging": "v2"}  # the retry saw the other change
    assert [e["reason"] for e in registry.history()] == ["other", "mine"]
    assert registry.aliases() == {"staging": "v2", "production": "v1"}

    monkeypatch.setattr(registry_module, "STATE_UPDATE_ATTEMPTS", 3)
    flips = iter(["v1", "v2", "v1"])

    def always_overtaken(state: dict) -> None:
        other_writer.set_alias("staging", next(flips), reason="other")
        state["aliases"]["previous"] = "v2"

    with pytest.raises(RegistryError, match=r"state\.json: other writers replaced it 3 times .* nothing was changed"):
        registry._update_state(always_overtaken)
    assert "previous" not in registry.aliases() and len(registry.history()) == 5


def test_register_load_rollback_prune_and_integrity_on_s3(s3_endpoint: str) -> None:
    url = fresh_url()
    registry = ModelRegistry(url)
    for constant in range(4):
        registry.register({"constant": constant}, {"metrics": {"accuracy": constant / 10}, "features": ["x"]})
    assert registry.load("v3") == {"constant": 2}
    assert registry.location("v3").startswith(f"s3://{BUCKET}/")
    registry.set_alias("production", "v2", reason="first")
    registry.set_alias("production", "v3", reason="better")
    with pytest.raises(RegistryError, match="model version v3 is already in production"):
        registry.set_alias("production", "v3", reason="again")
    entry = registry.rollback(reason="v3 misbehaves")
    assert (entry["from_version"], entry["to_version"], entry["action"]) == ("v3", "v2", "rollback")
    assert registry.aliases() == {"production": "v2", "previous": "v3"}

    artifact = registry._path("versions", "v4", "model.pkl")
    registry.fs.pipe_file(artifact, registry.fs.cat_file(artifact)[:-3])
    with pytest.raises(RegistryError, match="model version v4: artifact integrity check failed"):
        registry.load("v4")

    assert registry.prune(keep_last=1) == ["v1"]  # v2 and v3 have aliases; v4 is the newest
    assert [v.version for v in registry.list_versions()] == ["v2", "v3", "v4"]
    assert "v1" not in registry._read_state()["artifacts"]
    assert registry.register({"constant": 9}, {}).version == "v5"
    with pytest.raises(RegistryError, match=r"no registry at s3://.* \(nothing was ever registered there\)"):
        ModelRegistry(fresh_url()).set_alias("production", "v1", reason="a mistyped registry")
