"""Real processes racing on one registry, and kill -9 in the middle of promotions."""

import json
import random
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.model.registry import ModelRegistry

PROMOTE_LOOP = """
import sys
from ml_platform.model.registry import ModelRegistry
root, name, count = sys.argv[1], sys.argv[2], int(sys.argv[3])
registry = ModelRegistry(root)
print("ready", flush=True)
for i in range(count):
    # Swaps production and previous under the lock: never a no-op, which is refused.
    registry.rollback(reason=f"{name}-{i}", run_id=name)
"""


@pytest.fixture
def two_versions(tmp_path: Path) -> Path:
    registry = ModelRegistry(tmp_path / "registry")
    for constant in (0, 1):
        registry.register(DummyClassifier(strategy="constant", constant=constant).fit([[0], [1]], [0, 1]), {})
    registry.set_alias("production", "v1", reason="initial")
    registry.set_alias("production", "v2", reason="second")
    return tmp_path / "registry"


def test_two_processes_promoting_at_once_lose_no_history_entry(two_versions: Path) -> None:
    per_process = 40
    children = [
        subprocess.Popen([sys.executable, "-c", PROMOTE_LOOP, str(two_versions), name, str(per_process)], text=True)
        for name in ("alpha", "beta")
    ]
    assert [c.wait(timeout=120) for c in children] == [0, 0]
    registry = ModelRegistry(two_versions)
    history = registry.history()
    assert len(history) == 2 + 2 * per_process
    for name in ("alpha", "beta"):
        # Each writer's entries are all there, in its own order.
        assert [h["reason"] for h in history if h["run_id"] == name] == [f"{name}-{i}" for i in range(per_process)]
    # Every entry starts where the previous one ended: no write was based on a stale state.
    for before, after in zip(history, history[1:]):
        assert after["from_version"] == before["to_version"]
    assert registry.alias("production") == history[-1]["to_version"]


def test_kill_9_at_random_points_of_promotion_never_leaves_a_partial_state(two_versions: Path) -> None:
    rng = random.Random(20261127)
    trials = 25
    completed_promotions = []
    for _ in range(trials):
        child = subprocess.Popen(
            [sys.executable, "-c", PROMOTE_LOOP, str(two_versions), "killed", "100000"],
            stdout=subprocess.PIPE, text=True,
        )
        assert child.stdout.readline().strip() == "ready"
        time.sleep(rng.uniform(0.0, 0.05))
        child.send_signal(signal.SIGKILL)
        child.wait()

        registry = ModelRegistry(two_versions)
        state = json.loads((two_versions / "state.json").read_text())  # always parseable
        production = registry.alias("production")
        assert production in ("v1", "v2")
        assert registry.load(production).predict([[0]])[0] == int(production[1:]) - 1
        assert state["history"][-1]["to_version"] == production
        completed_promotions.append(len(state["history"]))
    # The kills really landed mid-loop: promotions happened between and before them.
    assert completed_promotions == sorted(completed_promotions) and completed_promotions[-1] > trials
