"""What produced a model: the code version, a digest of the code, and the library versions."""

from __future__ import annotations

import hashlib
import platform
import subprocess
from functools import lru_cache
from importlib import metadata
from pathlib import Path

_LIBRARIES = ("ml_platform", "scikit-learn", "pandas", "numpy", "pandera", "dagster")


@lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the source tree when there is one (marked -dirty if modified), else the package version."""
    package_dir = Path(__file__).resolve().parents[2]
    try:
        commit = subprocess.run(
            ["git", "-C", str(package_dir), "rev-parse", "--short=12", "HEAD"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "-C", str(package_dir), "status", "--porcelain", "--untracked-files=no"],
            capture_output=True, text=True, timeout=5, check=True,
        ).stdout.strip()
        return f"git:{commit}{'-dirty' if dirty else ''}"
    except (OSError, subprocess.SubprocessError):
        return f"ml_platform=={_version('ml_platform')}"


@lru_cache(maxsize=1)
def code_digest() -> str:
    """A hash of the package's Python sources: unlike a git commit, it changes with any edit,
    committed or not, so "same code" means the same code."""
    package_dir = Path(__file__).resolve().parents[1]
    digest = hashlib.sha256()
    for path in sorted(package_dir.rglob("*.py")):
        digest.update(path.relative_to(package_dir).as_posix().encode() + b"\0" + path.read_bytes())
    return digest.hexdigest()[:16]


def _version(dist: str) -> str:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return "unknown"


def library_versions() -> dict[str, str]:
    return {"python": platform.python_version(), **{name: _version(name) for name in _LIBRARIES}}
