"""The model registry: immutable versions, aliases (production, previous, staging), and an
append-only history of every alias change.

Layout under the registry root:

    versions/v7/model.pkl       the artifact (pickle), never rewritten
    versions/v7/metadata.json   params, metrics, data fingerprint, sha256 of model.pkl, ...
    state.json                  {"aliases": {...}, "history": [...]}
    .lock                       flock(2) target serialising writers across processes

Aliases and history live in one file that is replaced atomically (write a temporary file,
fsync, rename), so a crash at any point leaves either the old or the new state, never a
mix: production always names a complete version and the history always agrees with it.

Trust boundary: artifacts are pickles, and unpickling runs code. Load only from a registry
you control; the recorded sha256 is checked before every load so a tampered, truncated or
swapped artifact is refused rather than executed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import re
import shutil
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

ALIASES = ("production", "previous", "staging")
_VERSION_DIR = re.compile(r"^v(\d+)$")


class RegistryError(RuntimeError):
    """A registry operation was refused; the message names the version and the reason."""


@dataclass(frozen=True)
class ModelVersion:
    version: str
    created_at: str
    sha256: str
    metadata: dict[str, Any]

    @property
    def metrics(self) -> dict[str, float]:
        return self.metadata.get("metrics", {})

    @property
    def features(self) -> list[str]:
        return self.metadata.get("features", [])


def default_registry_root() -> Path:
    """$ML_PLATFORM_REGISTRY, else $DAGSTER_HOME/ml_platform/registry, else ./.ml_platform/registry."""
    if os.environ.get("ML_PLATFORM_REGISTRY"):
        return Path(os.environ["ML_PLATFORM_REGISTRY"])
    if os.environ.get("DAGSTER_HOME"):
        return Path(os.environ["DAGSTER_HOME"]) / "ml_platform" / "registry"
    return Path(".ml_platform") / "registry"


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _sha256_file(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


class ModelRegistry:
    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        self.versions_dir = self.root / "versions"
        self.state_path = self.root / "state.json"

    # -- writing -------------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        with (self.root / ".lock").open("a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def register(self, model: object, metadata: dict[str, Any]) -> ModelVersion:
        """Store a new immutable version; returns it with its assigned id."""
        self.versions_dir.mkdir(parents=True, exist_ok=True)
        staging_dir = self.versions_dir / f".tmp-{uuid.uuid4().hex}"
        staging_dir.mkdir()
        try:
            artifact = staging_dir / "model.pkl"
            _write_durably(artifact, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
            sha = _sha256_file(artifact)
            with self._locked():
                version = f"v{self._max_version_number() + 1}"
                record = {**metadata, "version": version, "created_at": _utc_now(), "sha256": sha}
                _write_durably(staging_dir / "metadata.json", json.dumps(record, indent=2, default=str).encode())
                _fsync_dir(staging_dir)
                # The version appears all at once: a crash before this rename leaves only a .tmp dir.
                os.rename(staging_dir, self.versions_dir / version)
                _fsync_dir(self.versions_dir)
        except BaseException:
            shutil.rmtree(staging_dir, ignore_errors=True)
            raise
        return self.get(version)

    def set_alias(
        self,
        alias: str,
        version: str,
        *,
        reason: str,
        run_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        action: str = "promote",
    ) -> dict[str, Any]:
        """Point `alias` at `version`, recording the change in the history, atomically.

        Moving `production` also moves `previous` to the old production version.
        """
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {ALIASES}")
        with self._locked():
            self.verify(version)
            state = self._read_state()
            aliases = state["aliases"]
            entry = {
                "at": _utc_now(),
                "action": action,
                "alias": alias,
                "from_version": aliases.get(alias),
                "to_version": version,
                "reason": reason,
                "run_id": run_id,
                "metrics": metrics or {},
            }
            if alias == "production" and aliases.get("production") not in (None, version):
                aliases["previous"] = aliases["production"]
            aliases[alias] = version
            state["history"].append(entry)
            self._write_state(state)
        return entry

    def _write_state(self, state: dict[str, Any]) -> None:
        tmp = self.root / f".state-{uuid.uuid4().hex}.tmp"
        try:
            _write_durably(tmp, json.dumps(state, indent=1).encode())
            os.replace(tmp, self.state_path)  # atomic on POSIX
            _fsync_dir(self.root)
        finally:
            tmp.unlink(missing_ok=True)

    # -- reading -------------------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        if not self.state_path.exists():
            return {"aliases": {}, "history": []}
        return json.loads(self.state_path.read_text())

    def _max_version_number(self) -> int:
        if not self.versions_dir.exists():
            return 0
        numbers = [int(m.group(1)) for p in self.versions_dir.iterdir() if (m := _VERSION_DIR.match(p.name))]
        return max(numbers, default=0)

    def list_versions(self) -> list[ModelVersion]:
        if not self.versions_dir.exists():
            return []
        names = [p.name for p in self.versions_dir.iterdir() if _VERSION_DIR.match(p.name)]
        return [self.get(n) for n in sorted(names, key=lambda n: int(n[1:]))]

    def get(self, version: str) -> ModelVersion:
        path = self.versions_dir / version / "metadata.json"
        if not _VERSION_DIR.match(version) or not path.exists():
            raise RegistryError(f"model version {version!r} not found in registry {self.root}")
        record = json.loads(path.read_text())
        return ModelVersion(record["version"], record["created_at"], record["sha256"], record)

    def aliases(self) -> dict[str, str]:
        return dict(self._read_state()["aliases"])

    def alias(self, name: str) -> str | None:
        return self.aliases().get(name)

    def history(self) -> list[dict[str, Any]]:
        return list(self._read_state()["history"])

    def verify(self, version: str) -> ModelVersion:
        """Refuse a version whose artifact is missing or differs from its recorded sha256."""
        model_version = self.get(version)
        artifact = self.versions_dir / version / "model.pkl"
        if not artifact.exists():
            raise RegistryError(f"model version {version}: artifact {artifact} is missing")
        actual = _sha256_file(artifact)
        if actual != model_version.sha256:
            raise RegistryError(
                f"model version {version}: artifact integrity check failed "
                f"(sha256 {actual[:12]}... != recorded {model_version.sha256[:12]}...); refusing to load"
            )
        return model_version

    def load(self, version: str) -> Any:
        self.verify(version)
        with (self.versions_dir / version / "model.pkl").open("rb") as f:
            return pickle.load(f)  # noqa: S301 - integrity-checked artifact from our own registry

    def load_alias(self, alias: str = "production") -> Any:
        version = self.alias(alias)
        if version is None:
            raise RegistryError(f"no model has the alias {alias!r} yet in registry {self.root}")
        return self.load(version)


def load_production_model(registry_root: str | Path | None = None) -> Any:
    """The one call to use the production model outside Dagster: a fitted sklearn Pipeline.

    >>> from ml_platform import load_production_model
    >>> model = load_production_model()          # same default location as the pipeline
    >>> model.predict(frame[model.feature_names_in_])
    """
    return ModelRegistry(registry_root or default_registry_root()).load_alias("production")
