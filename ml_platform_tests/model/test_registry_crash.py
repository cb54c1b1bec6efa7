"""A crash at any point of a promotion leaves the previous production model loadable."""

import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.model.registry import ModelRegistry

# Runs one promotion in a child process that dies (os._exit, like a kill -9: no cleanup,
# no finally blocks) at the N-th durable-write step: each fsync and the atomic rename.
PROMOTE_AND_CRASH = """
import os, sys
from ml_platform.model.registry import ModelRegistry

root, crash_at = sys.argv[1], int(sys.argv[2])
steps = 0

def crash_point(real):
    def wrapper(*args, **kwargs):
        global steps
        steps += 1
        if steps == crash_at:
            os._exit(137)
        result = real(*args, **kwargs)
        steps += 1
        if steps == crash_at:
            os._exit(137)
        return result
    return wrapper

os.fsync = crash_point(os.fsync)
os.replace = crash_point(os.replace)
ModelRegistry(root).set_alias("production", "v2", reason="crash test", run_id="r2")
print("completed")
"""


@pytest.fixture(scope="module")
def template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    root = tmp_path_factory.mktemp("registry")
    registry = ModelRegistry(root)
    for constant in (0, 1):
        registry.register(DummyClassifier(strategy="constant", constant=constant).fit([[0], [1]], [0, 1]), {})
    registry.set_alias("production", "v1", reason="initial", run_id="r1")
    return root


def test_crash_at_every_step_of_promotion_leaves_old_or_new_never_partial(template: Path, tmp_path: Path) -> None:
    outcomes = []
    for crash_at in range(1, 50):
        root = tmp_path / f"trial{crash_at}"
        shutil.copytree(template, root)
        child = subprocess.run(
            [sys.executable, "-c", PROMOTE_AND_CRASH, str(root), str(crash_at)], capture_output=True, text=True
        )
        registry = ModelRegistry(root)
        production = registry.alias("production")
        assert production in ("v1", "v2"), child.stderr
        assert registry.load(production).predict([[0]])[0] == int(production[1:]) - 1
        history = registry.history()
        assert history[-1]["to_version"] == production
        assert len(history) == (1 if production == "v1" else 2)
        assert registry.aliases().get("previous") == ("v1" if production == "v2" else None)
        outcomes.append(production)
        if "completed" in child.stdout:
            assert child.returncode == 0 and production == "v2"
            break
    else:
        pytest.fail("the promotion never completed")
    # The crash points really covered both sides of the atomic switch.
    assert "v1" in outcomes[:-1] and outcomes[-1] == "v2" and len(outcomes) >= 4
