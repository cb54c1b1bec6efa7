"""The model registry: immutable versions, aliases (production, previous, staging), and an
append-only history of every alias change. Each declared model has its own registry, at
<registry root>/<model> (see ml_platform.paths).

Layout under a model's registry (a local path, or any fsspec URL such as s3://bucket/prefix/churn):

    versions/v7/model.pkl       the artifact (pickle), never rewritten
    versions/v7/model_card.md   a human-readable card: metrics, params, data, lineage
    versions/v7/metadata.json   params, metrics, data fingerprint, sha256 of model.pkl, ...
                                (written last: a version exists once its metadata does)
    state.json                  {"aliases": {...}, "history": [...]}
    .lock                       flock(2) target serialising local writers across processes

Aliases and history live in one object that is replaced atomically (locally: write a
temporary file, fsync, rename; on object stores: one PUT, which readers see whole or not
at all), so a crash at any point leaves either the old or the new state, never a mix:
production always names a complete version and the history always agrees with it.

Concurrency: on a local filesystem an exclusive flock serialises every writer, across
processes. Object stores have no portable lock, so there writers are serialised within a
process, and across processes by the model's Dagster concurrency pool `<model>_registry`,
which every op that writes the registry runs in.

Trust boundary: artifacts are pickles, and unpickling runs code. Load only from a registry
you control; the recorded sha256 is checked before every load (on the very bytes then
unpickled), so a tampered, truncated or swapped artifact is refused rather than executed.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import pickle
import re
import threading
import uuid
from collections import defaultdict
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any

import fsspec
from fsspec.implementations.local import LocalFileSystem

from ml_platform.paths import model_registry_url

ALIASES = ("production", "previous", "staging")
DEFAULT_KEEP_LAST = 20
_RESERVED_FILES = ("model.pkl", "model_card.md", "metadata.json")
_VERSION_NAME = re.compile(r"^v(\d+)$")
_IN_PROCESS_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)


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


def _utc_now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def _fsync_dir(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def render_model_card(record: dict[str, Any]) -> str:
    """The Markdown card stored beside each version."""
    metrics = "\n".join(f"| {k} | {v:.4f} |" for k, v in record.get("metrics", {}).items())
    params = "\n".join(f"| {k} | `{v}` |" for k, v in record.get("params", {}).items())
    libraries = ", ".join(f"{k} {v}" for k, v in record.get("library_versions", {}).items())
    features = ", ".join(f"`{f}`" for f in record.get("features", []))
    return f"""# Model {record['version']}

Created {record['created_at']} by run `{record.get('run_id')}`; code `{record.get('code_version')}`.

## Holdout metrics

| metric | value |
| --- | --- |
{metrics}

## Training data

- source: {record.get('data_source')}
- data version (fingerprint): `{record.get('data_fingerprint')}`
- rows: {record.get('row_count')} ({record.get('train_rows')} train, {record.get('holdout_rows')} holdout)
- target: `{record.get('target')}`, classes: {record.get('classes')}
- features ({len(record.get('features', []))}): {features}

## Parameters

| parameter | value |
| --- | --- |
{params}

## Integrity and environment

- artifact sha256: `{record['sha256']}`
- libraries: {libraries}
"""


class ModelRegistry:
    def __init__(self, root: str | os.PathLike[str]) -> None:
        self.url = os.fspath(root)
        self.fs, base = fsspec.core.url_to_fs(self.url)
        self.base = base.rstrip("/")
        self._local = isinstance(self.fs, LocalFileSystem)

    def _path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def location(self, version: str, name: str = "model_card.md") -> str:
        """Where a version's file lives, as a path or URL the user can open."""
        path = self._path("versions", version, name)
        return path if self._local else self.fs.unstrip_protocol(path)

    # -- low-level I/O --------------------------------------------------------------------
    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        if not self._local:
            with _IN_PROCESS_LOCKS[self.url]:
                yield
            return
        os.makedirs(self.base, exist_ok=True)
        with open(self._path(".lock"), "a") as lock_file:
            fcntl.flock(lock_file, fcntl.LOCK_EX)
            try:
                yield
            finally:
                fcntl.flock(lock_file, fcntl.LOCK_UN)

    def _write_atomic(self, path: str, data: bytes) -> None:
        if not self._local:
            self.fs.pipe_file(path, data)  # one object PUT: seen whole or not at all
            return
        tmp = f"{path}.tmp-{uuid.uuid4().hex}"
        try:
            with open(tmp, "wb") as f:
                f.write(data)
                f.flush()
                os.fsync(f.fileno())
            os.replace(tmp, path)  # atomic on POSIX
            _fsync_dir(os.path.dirname(path))
        finally:
            if os.path.exists(tmp):
                os.unlink(tmp)

    def _read(self, path: str) -> bytes | None:
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None

    # -- versions -------------------------------------------------------------------------
    def _version_numbers(self) -> list[int]:
        try:
            names = [p.rstrip("/").rsplit("/", 1)[-1] for p in self.fs.ls(self._path("versions"), detail=False)]
        except FileNotFoundError:
            return []
        return sorted(int(m.group(1)) for n in names if (m := _VERSION_NAME.match(n)))

    def register(
        self, model: object, metadata: dict[str, Any], attachments: dict[str, bytes] | None = None
    ) -> ModelVersion:
        """Store a new immutable version; returns it with its assigned id.

        `attachments` are extra files kept with the version (e.g. the drift reference summary).
        """
        bad_names = [n for n in attachments or {} if n in _RESERVED_FILES or "/" in n or n.startswith(".")]
        if bad_names:
            raise RegistryError(f"attachment names {bad_names} are reserved or invalid")
        data = pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL)
        with self._locked():
            version = f"v{max(self._version_numbers(), default=0) + 1}"
            version_dir = self._path("versions", version)
            self.fs.makedirs(version_dir, exist_ok=True)
            # Claims the number even on object stores, where directories don't exist by themselves.
            self.fs.pipe_file(self._path("versions", version, ".claimed"), b"")
        record = {
            **metadata,
            "version": version,
            "created_at": _utc_now(),
            "sha256": hashlib.sha256(data).hexdigest(),
        }
        self._write_atomic(self._path("versions", version, "model.pkl"), data)
        for name, content in (attachments or {}).items():
            self._write_atomic(self._path("versions", version, name), content)
        self._write_atomic(self._path("versions", version, "model_card.md"), render_model_card(record).encode())
        self._write_atomic(
            self._path("versions", version, "metadata.json"), json.dumps(record, indent=2, default=str).encode()
        )
        return self.get(version)

    def get(self, version: str) -> ModelVersion:
        raw = self._read(self._path("versions", version, "metadata.json")) if _VERSION_NAME.match(version) else None
        if raw is None:
            raise RegistryError(f"model version {version!r} not found in registry {self.url}")
        record = json.loads(raw)
        return ModelVersion(record["version"], record["created_at"], record["sha256"], record)

    def list_versions(self) -> list[ModelVersion]:
        """Complete versions, oldest first (a version whose write was interrupted is skipped)."""
        versions = []
        for number in self._version_numbers():
            with contextlib.suppress(RegistryError):
                versions.append(self.get(f"v{number}"))
        return versions

    def find_version(self, key: str, value: object) -> ModelVersion | None:
        """The newest version whose metadata has `key` == `value` (e.g. its training identity)."""
        return next((v for v in reversed(self.list_versions()) if v.metadata.get(key) == value), None)

    def model_card(self, version: str) -> str:
        raw = self._read(self._path("versions", version, "model_card.md"))
        if raw is None:
            raise RegistryError(f"model version {version}: model card is missing")
        return raw.decode()

    def attachment(self, version: str, name: str) -> bytes | None:
        """An extra file stored with the version, or None when it has none by that name."""
        return self._read(self._path("versions", self.get(version).version, name))

    def _verified_artifact(self, version: str) -> tuple[ModelVersion, bytes]:
        model_version = self.get(version)
        data = self._read(self._path("versions", version, "model.pkl"))
        if data is None:
            raise RegistryError(f"model version {version}: artifact {self.location(version, 'model.pkl')} is missing")
        actual = hashlib.sha256(data).hexdigest()
        if actual != model_version.sha256:
            raise RegistryError(
                f"model version {version}: artifact integrity check failed "
                f"(sha256 {actual[:12]}... != recorded {model_version.sha256[:12]}...); refusing to load"
            )
        return model_version, data

    def verify(self, version: str) -> ModelVersion:
        """Refuse a version whose artifact is missing or differs from its recorded sha256."""
        return self._verified_artifact(version)[0]

    def load(self, version: str) -> Any:
        _, data = self._verified_artifact(version)
        return pickle.loads(data)  # noqa: S301 - integrity-checked bytes from our own registry

    def exists(self) -> bool:
        return bool(self.fs.exists(self.base))

    def load_alias(self, alias: str = "production") -> Any:
        version = self.alias(alias)
        if version is None:
            raise RegistryError(f"no model has the alias {alias!r} yet in registry {self.url}")
        return self.load(version)

    # -- aliases and history ----------------------------------------------------------------
    def _read_state(self) -> dict[str, Any]:
        raw = self._read(self._path("state.json"))
        return json.loads(raw) if raw else {"aliases": {}, "history": []}

    def aliases(self) -> dict[str, str]:
        return dict(self._read_state()["aliases"])

    def aliases_by_version(self) -> dict[str, str]:
        """Each aliased version with its aliases, comma-joined and sorted ("previous,staging")."""
        grouped: dict[str, list[str]] = {}
        for alias, version in self.aliases().items():
            grouped.setdefault(version, []).append(alias)
        return {version: ",".join(sorted(names)) for version, names in grouped.items()}

    def alias(self, name: str) -> str | None:
        return self.aliases().get(name)

    def history(self) -> list[dict[str, Any]]:
        return list(self._read_state()["history"])

    def demotion(self, version: str) -> dict[str, Any] | None:
        """The rollback that took `version` out of production, unless it was put back since."""
        for entry in reversed(self.history()):
            if entry.get("alias") != "production":
                continue
            if entry.get("to_version") == version:
                return None
            if entry.get("from_version") == version and entry.get("action") == "rollback":
                return entry
        return None

    def set_alias(
        self,
        alias: str,
        version: str,
        *,
        reason: str,
        run_id: str | None = None,
        metrics: dict[str, Any] | None = None,
        action: str = "promote",
        expected_features: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Point `alias` at `version`, recording the change in the history, atomically.

        Moving `production` also moves `previous` to the old production version.
        """
        with self._locked():
            return self._move_alias(
                self._read_state(), alias, version, reason=reason, run_id=run_id, metrics=metrics,
                action=action, expected_features=expected_features,
            )

    def rollback(
        self,
        to: str | None = None,
        *,
        reason: str | None = None,
        run_id: str | None = None,
        expected_features: Sequence[str] | None = None,
    ) -> dict[str, Any]:
        """Put `to` (default: the `previous` alias) back in production, atomically.

        Refused when the target's artifact fails integrity or its features differ from
        `expected_features` (default: those of the current production model).
        """
        with self._locked():
            state = self._read_state()
            current = state["aliases"].get("production")
            target = to or state["aliases"].get("previous")
            if target is None:
                raise RegistryError("nothing to roll back to: no previous production version (pass a version)")
            if target == current:
                raise RegistryError(f"model version {target} is already in production")
            if expected_features is None and current is not None:
                expected_features = self.get(current).features
            return self._move_alias(
                state, "production", target,
                reason=reason or f"rollback from {current} to {target}",
                run_id=run_id, metrics=self.get(target).metrics, action="rollback",
                expected_features=expected_features,
            )

    def _move_alias(
        self,
        state: dict[str, Any],
        alias: str,
        version: str,
        *,
        reason: str,
        run_id: str | None,
        metrics: dict[str, Any] | None,
        action: str,
        expected_features: Sequence[str] | None,
    ) -> dict[str, Any]:
        if alias not in ALIASES:
            raise RegistryError(f"unknown alias {alias!r}; aliases are {ALIASES}")
        target = self.verify(version)
        if expected_features is not None and list(expected_features) != target.features:
            missing = sorted(set(expected_features) - set(target.features))
            extra = sorted(set(target.features) - set(expected_features))
            raise RegistryError(
                f"model version {version}: feature list does not match the current schema "
                f"(missing {missing}, unexpected {extra}{', different order' if not (missing or extra) else ''})"
            )
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
        self._write_atomic(self._path("state.json"), json.dumps(state, indent=1).encode())
        return entry

    # -- retention ------------------------------------------------------------------------
    def prune(self, keep_last: int = DEFAULT_KEEP_LAST) -> list[str]:
        """Delete all but the newest `keep_last` versions; never one that an alias names."""
        if keep_last < 1:
            raise RegistryError(f"keep_last must be >= 1, got {keep_last}")
        with self._locked():
            protected = set(self._read_state()["aliases"].values())
            numbers = self._version_numbers()
            doomed = [f"v{n}" for n in numbers[:-keep_last] if f"v{n}" not in protected]
            for version in doomed:
                self.fs.rm(self._path("versions", version), recursive=True)
        return doomed


def load_production_model(model: str | None = None, registry_root: str | os.PathLike[str] | None = None) -> Any:
    """The one call to use a production model outside Dagster: a fitted sklearn Pipeline.

    >>> from ml_platform import load_production_model
    >>> model = load_production_model("breast_cancer")   # the only declared model if omitted
    >>> model.predict(frame[model.feature_names_in_])

    `registry_root` is the root of all models' registries (default as the pipeline's).
    """
    from ml_platform.declaration import resolve_model_name

    if model is not None and not isinstance(model, str):
        raise TypeError(f"load_production_model takes a model name, not {model!r}; pass the registries' root as registry_root=")
    # A serving process may not carry the declarations: a named model need not be declared here.
    name = resolve_model_name(model, declared_only=False)
    root = os.fspath(registry_root) if registry_root is not None else None
    registry = ModelRegistry(model_registry_url(name, root))
    if not registry.exists():
        raise RegistryError(
            f"no registry of model {name!r} at {registry.url}: train it first, or say where the registries are "
            "(DAGSTER_HOME, ML_PLATFORM_REGISTRY, or registry_root=)"
        )
    return registry.load_alias("production")
