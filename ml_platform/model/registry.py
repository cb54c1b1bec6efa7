"""The model registry: immutable versions, aliases (production, previous, staging), and an
append-only history of every alias change. Each declared model has its own registry, at
<registry root>/<model> (see ml_platform.paths).

Layout under a model's registry (a local path, or any fsspec URL such as s3://bucket/prefix/churn):

    versions/v7/model.pkl       the artifact (pickle), never rewritten
    versions/v7/model_card.md   a human-readable card: metrics, params, data, lineage
    versions/v7/metadata.json   params, metrics, data fingerprint, sha256 of model.pkl, ...
                                (written last: a version exists once its metadata does)
    state.json                  {"aliases": {...}, "history": [...], "artifacts": {"v7": sha256}}
    journal/000004.json         history entry 4, a copy kept outside state.json for `recover`
    .lock                       flock(2) target serialising local writers across processes

Aliases and history live in one object that is replaced atomically (locally: write a
temporary file, fsync, rename; on object stores: one PUT, which readers see whole or not
at all), so a crash at any point leaves either the old or the new state, never a mix:
production always names a complete version and the history always agrees with it.

A damaged state.json (empty, truncated, not the expected shape) is refused by every reader
and writer, never taken for a new registry. `recover()` rebuilds it: the versions and their
sha256 from each version's metadata (kept only where it matches its folder and its artifact),
the history from the journal, and the aliases by replaying that history; the damaged file is
kept beside it as state.json.damaged-<UTC time>. The journal is written after each state
replacement (the commit point), so it never holds a change that was not made; an entry a
crash skipped, and the history of a registry older than the journal, are written by the
next writer. What it cannot hold: a change made just before a crash, when the state file is
then damaged before any other write.

Identity: each version's metadata names its version (checked against its folder), and the
artifact's sha256 is kept both in the metadata and in state.json, outside the version folder,
so a folder copied over another, or an artifact and metadata swapped together, are refused.
Versions registered before the state kept their sha256 are checked against their metadata.

Concurrency: every change of state.json is a read-modify-write through `_update_state`.
On a local filesystem an exclusive flock serialises every writer, across processes. On S3
(s3fs) the replacement is conditional: state.json is read with its ETag and written with
`If-Match: <etag>` (`If-None-Match: *` when creating it); a writer that lost the race (412)
re-reads the state and re-applies its change, with backoff, a bounded number of times, then
fails naming the state. A new version number is taken by a conditional create of its
`.claimed` object, so two registrations never share a number. A store that ignores these
conditions (checked once per process and registry) is refused for writing, rather than
risking a lost update. Other object stores (no conditional writes through fsspec) serialise
writers within a process only, and across processes by the model's Dagster concurrency pool
`<model>_registry`, which every op that writes the registry runs in.

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
import random
import re
import threading
import time
import uuid
from collections import defaultdict
from collections.abc import Callable, Iterator, Sequence
from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from typing import Any, TypeVar

import fsspec
import fsspec.asyn
from fsspec.implementations.local import LocalFileSystem

from ml_platform.model.rollout import end, is_open
from ml_platform.paths import model_registry_url

ALIASES = ("production", "previous", "staging")
DEFAULT_KEEP_LAST = 20
STATE_FILE = "state.json"
JOURNAL_DIR = "journal"
_RESERVED_FILES = ("model.pkl", "model_card.md", "metadata.json")
_VERSION_NAME = re.compile(r"^v(\d+)$")
_JOURNAL_NAME = re.compile(r"^(\d{6,})\.json$")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")
_IN_PROCESS_LOCKS: defaultdict[str, threading.Lock] = defaultdict(threading.Lock)
_HELD = threading.local()  # .urls: the registries whose lock this thread holds (`_locked` nests)
STATE_UPDATE_ATTEMPTS = 25  # conditional writes of state.json lost to other writers before giving up
_FIRST_BACKOFF_S = 0.01  # doubled per lost attempt (jittered), at most _MAX_BACKOFF_S
_MAX_BACKOFF_S = 0.5
_CLAIM_ATTEMPTS = 100  # version numbers tried when other writers keep taking the next one
_CONDITIONAL_WRITES_CHECKED: set[str] = set()  # registries whose store was seen honouring conditions
_PROBE_FILE = ".conditional-write-probe"
T = TypeVar("T")


class RegistryError(RuntimeError):
    """A registry operation was refused; the message names the version and the reason."""


class DamagedStateError(RegistryError):
    """state.json is empty, truncated, of the wrong shape, or vanished while its journal remains."""

    def __init__(self, path: str, problem: str) -> None:
        super().__init__(
            f"{path} {problem}; refusing to treat it as a new registry (`ml-platform models recover` rebuilds it)"
        )
        self.problem = f"{path} {problem}"


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


def _empty_state() -> dict[str, Any]:
    return {"aliases": {}, "history": [], "artifacts": {}}


def state_problem(state: object) -> str | None:
    """What is wrong with the shape of a parsed state.json, or None when nothing is."""
    if not isinstance(state, dict):
        return f"expected a JSON object with 'aliases' and 'history', found a JSON {type(state).__name__}"
    missing = [key for key in ("aliases", "history") if key not in state]
    if missing:
        return f"missing {', '.join(repr(k) for k in missing)}"
    aliases = state["aliases"]
    if not isinstance(aliases, dict) or not all(
        alias in ALIASES and isinstance(version, str) and _VERSION_NAME.match(version)
        for alias, version in aliases.items()
    ):
        return f"'aliases' must map {', '.join(ALIASES)} to versions like 'v3', found {json.dumps(aliases)[:80]}"
    history = state["history"]
    if not isinstance(history, list):
        return f"'history' must be a list, found a JSON {type(history).__name__}"
    for index, entry in enumerate(history):
        if not (isinstance(entry, dict) and entry.get("alias") in ALIASES and isinstance(entry.get("to_version"), str)):
            return f"history entry {index} is not an alias change (needs 'alias' and 'to_version')"
    artifacts = state.get("artifacts", {})
    if not isinstance(artifacts, dict) or not all(isinstance(v, str) and _SHA256.match(v) for v in artifacts.values()):
        return "'artifacts' must map versions to sha256 digests"
    rollout = state.get("rollout")
    if rollout is not None and not (isinstance(rollout, dict) and {"candidate", "status", "revision"} <= rollout.keys()):
        return "'rollout' must be a rollout (with 'candidate', 'status' and 'revision') or null"
    if not isinstance(state.get("rollouts", []), list):
        return "'rollouts' must be a list of finished rollouts"
    return None


def _precondition_failed(exc: BaseException) -> bool:
    """Did S3 refuse a conditional write because the object changed (412), or because another
    conditional write to it was under way (409 ConditionalRequestConflict)?"""
    response = getattr(exc.__cause__, "response", None) or getattr(exc, "response", None)
    if not isinstance(response, dict):
        return False
    code = response.get("Error", {}).get("Code")
    status = response.get("ResponseMetadata", {}).get("HTTPStatusCode")
    return code in ("PreconditionFailed", "ConditionalRequestConflict") or status in (409, 412)


def _move(aliases: dict[str, str], alias: str, version: str) -> None:
    """Point `alias` at `version`; moving production also moves `previous` to the old production."""
    if alias == "production" and aliases.get("production") not in (None, version):
        aliases["previous"] = aliases["production"]
    aliases[alias] = version


def aliases_after(history: Sequence[dict[str, Any]]) -> dict[str, str]:
    """The aliases that a history of alias changes leaves, replayed from an empty registry."""
    aliases: dict[str, str] = {}
    for entry in history:
        _move(aliases, entry["alias"], entry["to_version"])
    return aliases


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
    types, categories, imputation = (record.get(k) or {} for k in ("feature_types", "categories", "imputation"))
    features = ", ".join(f"`{f}`" for f in record.get("features", []))
    feature_rows = "\n".join(
        f"| `{f}` | {types.get(f, 'numeric')} | {', '.join(categories.get(f, [])) or '-'} | {imputation.get(f, 'reject')} |"
        for f in record.get("features", [])
    )
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

## Features

| feature | type | known categories | missing values |
| --- | --- | --- | --- |
{feature_rows}

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
        try:
            self.fs, base = fsspec.core.url_to_fs(self.url)
        except ImportError as exc:  # e.g. s3:// without s3fs: fsspec's message says what to install
            raise RegistryError(f"registry {self.url}: {exc}") from exc
        self.base = base.rstrip("/")
        self._local = isinstance(self.fs, LocalFileSystem)
        # s3fs: state.json and version claims are written conditionally (see the module docstring).
        self._conditional = not self._local and hasattr(self.fs, "_call_s3")

    def _path(self, *parts: str) -> str:
        return "/".join([self.base, *parts])

    def location(self, version: str, name: str = "model_card.md") -> str:
        """Where a version's file lives, as a path or URL the user can open."""
        return self._shown(self._path("versions", version, name))

    # -- low-level I/O --------------------------------------------------------------------
    def _shown(self, path: str) -> str:
        """A path as the user can open it: the URL on object stores."""
        return path if self._local else self.fs.unstrip_protocol(path)

    def _no_registry(self) -> RegistryError:
        return RegistryError(f"no registry at {self.url} (nothing was ever registered there)")

    def _not_a_folder(self) -> RegistryError:
        return RegistryError(f"registry {self.url}: part of this path is a file, not a folder")

    @contextlib.contextmanager
    def _locked(self, create: bool = False) -> Iterator[None]:
        """Serialise writers. Only registration creates a registry: a write to one that does not
        exist (a mistyped path) is refused rather than leaving an empty tree and a lock file."""
        held: set[str] = _HELD.__dict__.setdefault("urls", set())
        if self.url in held:  # e.g. `_update_state` inside a `_locked` block of the same thread
            yield
            return
        if not create and not self.exists():
            raise self._no_registry()
        with contextlib.ExitStack() as stack:
            if self._local:
                os.makedirs(self.base, exist_ok=True)
                lock_file = stack.enter_context(open(self._path(".lock"), "a"))
                fcntl.flock(lock_file, fcntl.LOCK_EX)  # released when the file is closed
            else:
                stack.enter_context(_IN_PROCESS_LOCKS[self.url])
            held.add(self.url)
            try:
                yield
            finally:
                held.discard(self.url)

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
        if self._conditional:
            return self._s3_get(path)[0]  # one GET (s3fs's cat_file asks HEAD first)
        try:
            return self.fs.cat_file(path)
        except FileNotFoundError:
            return None
        except NotADirectoryError as exc:
            raise self._not_a_folder() from exc
        except IsADirectoryError as exc:
            raise RegistryError(f"{self._shown(path)} is a folder, not a file") from exc

    def _names(self, folder: str) -> list[str]:
        """The names in a folder of the registry (none when it does not exist)."""
        try:
            # Never a cached listing on object stores: other processes add versions and journal entries.
            listed = self.fs.ls(self._path(folder), detail=False, **({} if self._local else {"refresh": True}))
            return [p.rstrip("/").rsplit("/", 1)[-1] for p in listed]
        except FileNotFoundError:
            return []
        except NotADirectoryError as exc:
            raise self._not_a_folder() from exc

    def _remove_leftovers(self) -> None:
        """Under the lock: the temporary files of state and journal writes a crash interrupted
        (locally; object stores write in one PUT). No other such write can be under way."""
        if not self._local:
            return
        leftovers = [self._path(n) for n in os.listdir(self.base) if n.startswith(f"{STATE_FILE}.tmp-")]
        leftovers += [self._path(JOURNAL_DIR, n) for n in self._names(JOURNAL_DIR) if ".tmp-" in n]
        for path in leftovers:
            with contextlib.suppress(FileNotFoundError):
                os.unlink(path)

    # -- conditional writes (S3) ----------------------------------------------------------
    def _s3_get(self, path: str) -> tuple[bytes | None, str | None]:
        """An object's bytes and the ETag of those very bytes (None, None: no such object)."""
        bucket, key, _ = self.fs.split_path(path)

        async def get() -> tuple[bytes | None, str | None]:
            try:
                response = await self.fs._call_s3("get_object", Bucket=bucket, Key=key)
            except FileNotFoundError:
                return None, None
            return await response["Body"].read(), response["ETag"]

        return fsspec.asyn.sync(self.fs.loop, get)

    def _s3_put_if(self, path: str, data: bytes, etag: str | None) -> bool:
        """PUT only if the object still has `etag` (None: only if it does not exist); False when
        another writer got there first."""
        bucket, key, _ = self.fs.split_path(path)
        condition = {"IfMatch": etag} if etag is not None else {"IfNoneMatch": "*"}
        try:
            self.fs.call_s3("put_object", Bucket=bucket, Key=key, Body=data, **condition)
        except OSError as exc:
            if _precondition_failed(exc):
                return False
            raise
        finally:
            self.fs.invalidate_cache(path)
        return True

    def _check_conditional_writes(self) -> None:
        """Refuse to write through a store that ignores If-None-Match / If-Match (an S3 server
        older than those headers takes them for unconditional PUTs): there concurrent writers
        would lose updates silently."""
        if self.url in _CONDITIONAL_WRITES_CHECKED:
            return
        probe = self._path(_PROBE_FILE)
        self.fs.pipe_file(probe, b"probe")
        if self._s3_put_if(probe, b"probe", None) or self._s3_put_if(probe, b"probe", '"0"'):
            raise RegistryError(
                f"registry {self.url}: the object store ignores conditional writes (If-None-Match / If-Match), "
                "so concurrent writers could lose updates; refusing to write. Use a store that honours them "
                "(AWS S3, MinIO, recent moto) or a local path"
            )
        _CONDITIONAL_WRITES_CHECKED.add(self.url)

    # -- state updates --------------------------------------------------------------------
    def _state_object(self) -> tuple[bytes | None, str | None]:
        """state.json's bytes, and the ETag a conditional replacement must match (None locally,
        where the flock is held, and when there is no state.json yet)."""
        path = self._path(STATE_FILE)
        return self._s3_get(path) if self._conditional else (self._read(path), None)

    def _replace_state(self, state: dict[str, Any], etag: str | None) -> bool:
        """Replace state.json atomically (the commit point). On S3 only if it is still the
        object read with `etag`: False when another writer replaced it meanwhile."""
        data = json.dumps(state, indent=1).encode()
        if self._conditional:
            return self._s3_put_if(self._path(STATE_FILE), data, etag)
        self._remove_leftovers()
        self._write_atomic(self._path(STATE_FILE), data)
        return True

    def _update_state(self, mutate: Callable[[dict[str, Any]], T], *, create: bool = False) -> T:
        """THE way to change state.json: read it, apply `mutate` (which changes the dict in place
        and returns what the caller wants back), replace it, then journal the history.

        Locally the flock makes this one step. On S3 a writer that lost the race re-reads the
        state and runs `mutate` again on it, so `mutate` must derive everything from the state it
        is given (and may raise RegistryError to refuse, e.g. a version already in production);
        it must not change anything outside the state, as it may run more than once. A state
        that `mutate` left unchanged is not written. Gives up with a RegistryError after
        STATE_UPDATE_ATTEMPTS lost races, having changed nothing.
        """
        # On S3 the registry's existence is asked only when it has no state.json: one request less.
        with self._locked(create=create or self._conditional):
            for attempt in range(STATE_UPDATE_ATTEMPTS):
                raw, etag = self._state_object()
                if raw is None and self._conditional and not create and not self.exists():
                    raise self._no_registry()
                if self._conditional:
                    self._check_conditional_writes()
                state = self._parsed_state(raw)
                before = json.dumps(state, sort_keys=True)
                result = mutate(state)
                if json.dumps(state, sort_keys=True) == before:
                    return result
                if self._replace_state(state, etag):
                    self._write_journal(state)
                    return result
                time.sleep(min(_MAX_BACKOFF_S, _FIRST_BACKOFF_S * 2**attempt) * random.uniform(0.5, 1.5))
        raise RegistryError(
            f"{self._shown(self._path(STATE_FILE))}: other writers replaced it {STATE_UPDATE_ATTEMPTS} times "
            "while this change was being made; nothing was changed, try again"
        )

    # -- versions -------------------------------------------------------------------------
    def _version_numbers(self) -> list[int]:
        return sorted(int(m.group(1)) for n in self._names("versions") if (m := _VERSION_NAME.match(n)))

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
        sha256 = hashlib.sha256(data).hexdigest()
        with self._locked(create=True):
            self._read_state()  # a damaged state is refused before anything is written
            version = self._claim_version()
        record = {
            **metadata,
            "version": version,
            "created_at": _utc_now(),
            "sha256": sha256,
        }
        self._write_atomic(self._path("versions", version, "model.pkl"), data)
        for name, content in (attachments or {}).items():
            self._write_atomic(self._path("versions", version, name), content)
        self._write_atomic(self._path("versions", version, "model_card.md"), render_model_card(record).encode())
        # Before the metadata: a version that exists has its sha256 outside its folder too.
        self._update_state(lambda state: state["artifacts"].__setitem__(version, sha256), create=True)
        self._write_atomic(
            self._path("versions", version, "metadata.json"), json.dumps(record, indent=2, default=str).encode()
        )
        return self.get(version)

    def _claim_version(self) -> str:
        """Take the next version number: its `.claimed` object marks it taken, even on object
        stores, where folders don't exist by themselves. On S3 the claim is a conditional create,
        so a number another process claimed meanwhile is skipped, never shared."""
        number = max(self._version_numbers(), default=0) + 1
        if not self._conditional:
            self.fs.makedirs(self._path("versions", f"v{number}"), exist_ok=True)
            self.fs.pipe_file(self._path("versions", f"v{number}", ".claimed"), b"")
            return f"v{number}"
        self._check_conditional_writes()
        for candidate in range(number, number + _CLAIM_ATTEMPTS):
            if self._s3_put_if(self._path("versions", f"v{candidate}", ".claimed"), b"", None):
                return f"v{candidate}"
        raise RegistryError(
            f"registry {self.url}: versions v{number} to v{number + _CLAIM_ATTEMPTS - 1} were all claimed by other "
            "writers while this one registered; try again"
        )

    def _stored_version(self, version: str) -> ModelVersion | None:
        """The version from its metadata.json; None when it has none (not registered, or its write
        was interrupted). Refuses metadata that is damaged or names another version."""
        path = self._path("versions", version, "metadata.json")
        raw = self._read(path) if _VERSION_NAME.match(version) else None
        if raw is None:
            return None
        try:
            record = json.loads(raw.decode("utf-8"))
        except ValueError as exc:  # UnicodeDecodeError included
            raise RegistryError(f"model version {version}: {self._shown(path)} is not valid JSON ({exc})") from exc
        fields = ("version", "created_at", "sha256")
        if not isinstance(record, dict) or not all(isinstance(record.get(f), str) for f in fields):
            raise RegistryError(
                f"model version {version}: {self._shown(path)} has the wrong shape (needs {', '.join(fields)})"
            )
        if record["version"] != version:
            raise RegistryError(
                f"model version {version}: its metadata says it is {record['version']} "
                "(a version folder copied over another?); refusing it"
            )
        return ModelVersion(record["version"], record["created_at"], record["sha256"], record)

    def get(self, version: str) -> ModelVersion:
        found = self._stored_version(version)
        if found is None:
            raise RegistryError(f"model version {version!r} not found in registry {self.url}")
        return found

    def list_versions(self) -> list[ModelVersion]:
        """Complete versions, oldest first (a version whose write was interrupted is skipped; a
        damaged one is refused, naming it)."""
        return [v for n in self._version_numbers() if (v := self._stored_version(f"v{n}")) is not None]

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

    def _verified_artifact(
        self, version: str, state: dict[str, Any] | None = None
    ) -> tuple[ModelVersion, bytes]:
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
        # Versions registered before the state kept checksums have only their metadata's.
        kept = (state or self._read_state()).get("artifacts", {}).get(version)
        if kept is not None and kept != actual:
            raise RegistryError(
                f"model version {version}: artifact integrity check failed "
                f"(sha256 {actual[:12]}... != {kept[:12]}... kept in {STATE_FILE}); refusing to load"
            )
        return model_version, data

    def verify(self, version: str, state: dict[str, Any] | None = None) -> ModelVersion:
        """Refuse a version whose artifact is missing or differs from its recorded sha256 (the one
        kept in `state`, when the caller has just read it)."""
        return self._verified_artifact(version, state)[0]

    def load(self, version: str) -> Any:
        _, data = self._verified_artifact(version)
        return pickle.loads(data)  # noqa: S301 - integrity-checked bytes from our own registry

    def exists(self) -> bool:
        if self._conditional:  # one listing request (s3fs's exists asks HEAD first)
            bucket, key, _ = self.fs.split_path(self.base)
            listed = self.fs.call_s3("list_objects_v2", Bucket=bucket, Prefix=f"{key}/", MaxKeys=1)
            return listed.get("KeyCount", 0) > 0
        return bool(self.fs.exists(self.base))

    def load_alias(self, alias: str = "production") -> Any:
        version = self.alias(alias)
        if version is None:
            raise RegistryError(f"no model has the alias {alias!r} yet in registry {self.url}")
        return self.load(version)

    # -- aliases and history ----------------------------------------------------------------
    def _journal_indices(self) -> list[int]:
        return sorted(int(m.group(1)) for n in self._names(JOURNAL_DIR) if (m := _JOURNAL_NAME.match(n)))

    def _read_state(self) -> dict[str, Any]:
        """The aliases, history and checksums, for reading (to change them: `_update_state`)."""
        return self._parsed_state(self._read(self._path(STATE_FILE)))

    def _parsed_state(self, raw: bytes | None) -> dict[str, Any]:
        """state.json parsed. Only a registry with no state.json and no journal is new: a damaged
        or vanished state is refused, so that no write can replace it."""
        shown = self._shown(self._path(STATE_FILE))
        if raw is None:
            if self._journal_indices():
                raise DamagedStateError(shown, "is missing but the registry's journal is not")
            return _empty_state()
        if not raw.strip():
            raise DamagedStateError(shown, "is empty")
        try:
            state = json.loads(raw.decode("utf-8"))  # json.loads(bytes) would guess UTF-16 from a BOM
        except UnicodeDecodeError as exc:
            raise DamagedStateError(shown, "is not UTF-8 text") from exc
        except json.JSONDecodeError as exc:
            where = f"{exc.msg} at line {exc.lineno} column {exc.colno}"
            raise DamagedStateError(shown, f"is not valid JSON ({where}: truncated?)") from exc
        problem = state_problem(state)
        if problem is not None:
            raise DamagedStateError(shown, f"has the wrong shape ({problem})")
        state.setdefault("artifacts", {})
        return state

    def _write_journal(self, state: dict[str, Any]) -> None:
        """After state.json was replaced: copy to the journal each history entry it lacks, and the
        newest in any case (a journal entry of that index could only be one the state no longer
        has, e.g. after an older state.json was put back by hand). Entries are append-only, so
        two writers copying the same index copy the same entry."""
        history = state["history"]
        if not history:
            return
        present = set(self._journal_indices())
        if self._local:  # object stores have no folders to make
            os.makedirs(self._path(JOURNAL_DIR), exist_ok=True)
        for index, entry in enumerate(history):
            if index not in present or index == len(history) - 1:
                self._write_atomic(self._path(JOURNAL_DIR, f"{index:06d}.json"), json.dumps(entry, indent=1).encode())

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

        Moving `production` also moves `previous` to the old production version. Refused when
        `alias` already names `version`: a no-op would only add a misleading history entry.
        """
        return self._update_state(
            lambda state: self._apply_alias_move(
                state, alias, version, reason=reason, run_id=run_id, metrics=metrics,
                action=action, expected_features=expected_features,
            )
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

        def roll_back(state: dict[str, Any]) -> dict[str, Any]:
            current = state["aliases"].get("production")
            target = to or state["aliases"].get("previous")
            if target is None:
                raise RegistryError("nothing to roll back to: no previous production version (pass a version)")
            features = expected_features
            if features is None and current is not None:
                features = self.get(current).features
            return self._apply_alias_move(
                state, "production", target,
                reason=reason or f"rollback from {current} to {target}",
                run_id=run_id, metrics=self.get(target).metrics, action="rollback",
                expected_features=features,
            )

        return self._update_state(roll_back)

    def _apply_alias_move(
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
        if state["aliases"].get(alias) == version:
            already = "in production" if alias == "production" else alias
            raise RegistryError(f"model version {version} is already {already}")
        target = self.verify(version, state)
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
        _move(aliases, alias, version)
        state["history"].append(entry)
        return entry

    # -- rollouts (see model/rollout.py) ----------------------------------------------------
    def rollout(self) -> dict[str, Any] | None:
        """The newest rollout, open or finished (None: never one)."""
        return self._read_state().get("rollout")

    def past_rollouts(self) -> list[dict[str, Any]]:
        """Finished rollouts before the newest, oldest first."""
        return list(self._read_state().get("rollouts", []))

    def start_rollout(self, rollout: dict[str, Any]) -> dict[str, Any] | None:
        """Make `rollout` the newest; an open one it replaces ends as superseded, and is returned."""

        def mutate(state: dict[str, Any]) -> dict[str, Any] | None:
            replaced, current = None, state.get("rollout")
            if current is not None:
                if is_open(current):
                    current = replaced = end(
                        current, "superseded", "supersede", f"superseded by the rollout of {rollout['candidate']}"
                    )
                state["rollouts"] = [*state.get("rollouts", []), current]
            state["rollout"] = rollout
            return replaced

        return self._update_state(mutate)

    def save_rollout(
        self, rollout: dict[str, Any], *, promote_reason: str | None = None, run_id: str | None = None
    ) -> dict[str, Any]:
        """Replace the newest rollout with `rollout`, an update of the revision it was read at:
        refused when it changed since (paused, aborted or superseded meanwhile), so a run never
        undoes an operator's command. With `promote_reason`, its candidate becomes production in
        the same atomic write (the history entry gives the reason)."""

        def mutate(state: dict[str, Any]) -> dict[str, Any]:
            current = state.get("rollout")
            if current is None or current["candidate"] != rollout["candidate"] or current["revision"] != rollout["revision"]:
                now = f"{current['candidate']} {current['status']}, revision {current['revision']}" if current else "none"
                raise RegistryError(
                    f"the rollout of {rollout['candidate']} changed while it was being evaluated (now: {now}); "
                    "this run's decision is not saved"
                )
            saved = {**rollout, "revision": rollout["revision"] + 1}
            state["rollout"] = saved
            if promote_reason is not None:
                candidate = saved["candidate"]
                self._apply_alias_move(
                    state, "production", candidate, reason=promote_reason, run_id=run_id,
                    metrics=self.get(candidate).metrics, action="promote",
                    expected_features=self.get(saved["champion"]).features,
                )
            return saved

        return self._update_state(mutate)

    # -- retention ------------------------------------------------------------------------
    def prune(self, keep_last: int = DEFAULT_KEEP_LAST) -> list[str]:
        """Delete all but the newest `keep_last` versions; never one that an alias names."""
        if keep_last < 1:
            raise RegistryError(f"keep_last must be >= 1, got {keep_last}")

        def forget_doomed(state: dict[str, Any]) -> list[str]:
            protected = set(state["aliases"].values())
            doomed = [f"v{n}" for n in self._version_numbers()[:-keep_last] if f"v{n}" not in protected]
            for version in doomed:
                state["artifacts"].pop(version, None)
            return doomed

        with self._locked():
            # The state first (the versions' folders only once no alias can have moved to them):
            # a crash in between leaves folders that the next prune removes.
            doomed = self._update_state(forget_doomed)
            for version in doomed:
                self.fs.rm(self._path("versions", version), recursive=True)
        return doomed

    # -- recovery -------------------------------------------------------------------------
    def recover(self) -> Recovery:
        """Rebuild a damaged (empty, truncated, wrong-shaped or vanished) state.json, keeping the
        damaged file beside it. Refused when the state is sound: there is nothing to recover."""
        with self._locked():
            if self._conditional:
                self._check_conditional_writes()
            path = self._path(STATE_FILE)
            raw, etag = self._state_object()
            try:
                self._parsed_state(raw)
            except DamagedStateError as exc:
                problem = exc.problem
            else:
                raise RegistryError(f"{self._shown(path)} is sound: nothing to recover")
            artifacts, refused = self._recovered_artifacts()
            history, journal_problem = self._journal_entries()
            aliases = aliases_after(history)
            not_recovered = list(refused.values())
            if journal_problem:
                not_recovered.append(journal_problem)
            if not history and not journal_problem:
                not_recovered.append(
                    "aliases and history: the registry has no journal (it predates it); promote a version again"
                )
            for alias, version in sorted(aliases.items()):
                if version not in artifacts:
                    del aliases[alias]
                    not_recovered.append(f"alias {alias}: it named {version}, which could not be verified; left unset")
            kept = None
            if raw is not None:
                kept = self._path(f"{STATE_FILE}.damaged-{datetime.now(timezone.utc).strftime('%Y%m%dT%H%M%S%fZ')}")
                self._write_atomic(kept, raw)
            state = {"aliases": aliases, "history": history, "artifacts": artifacts}
            if not self._replace_state(state, etag):
                raise RegistryError(
                    f"{self._shown(path)} was replaced by another writer during recovery; nothing was recovered "
                    "(run recover again if it is still damaged)"
                )
            self._write_journal(state)
        return Recovery(
            problem=problem,
            damaged_copy=None if kept is None else self._shown(kept),
            versions=sorted(artifacts, key=lambda v: int(v[1:])),
            history_entries=len(history),
            aliases=aliases,
            not_recovered=not_recovered,
        )

    def _recovered_artifacts(self) -> tuple[dict[str, str], dict[str, str]]:
        """The sha256 of each version whose metadata names its folder and matches its artifact;
        and why each other version was left out."""
        artifacts: dict[str, str] = {}
        refused: dict[str, str] = {}
        for number in self._version_numbers():
            version = f"v{number}"
            try:
                found = self._stored_version(version)
            except RegistryError as exc:
                refused[version] = str(exc)
                continue
            if found is None:
                continue  # an interrupted registration: never a version
            data = self._read(self._path("versions", version, "model.pkl"))
            if data is None or hashlib.sha256(data).hexdigest() != found.sha256:
                refused[version] = f"model version {version}: artifact missing or not the one its metadata records"
            else:
                artifacts[version] = found.sha256
        return artifacts, refused

    def _journal_entries(self) -> tuple[list[dict[str, Any]], str | None]:
        """The journal's history entries from the first up to the first missing or unreadable one
        (what follows a gap cannot be replayed), and what stopped it, if anything did."""
        history: list[dict[str, Any]] = []
        indices = self._journal_indices()
        for index in indices:
            if index != len(history):
                break
            try:
                raw = self._read(self._path(JOURNAL_DIR, f"{index:06d}.json")) or b""
                entry = json.loads(raw.decode("utf-8"))
            except ValueError:  # UnicodeDecodeError included
                entry = None
            if state_problem({"aliases": {}, "history": [entry]}) is not None:
                break
            history.append(entry)
        if len(history) == len(indices):
            return history, None
        return history, (
            f"history entries from {len(history)} on ({len(indices) - len(history)} in the journal): "
            f"entry {len(history)} is missing or unreadable"
        )


@dataclass(frozen=True)
class Recovery:
    """What `ModelRegistry.recover` rebuilt, and what it could not."""

    problem: str  # what was wrong with state.json
    damaged_copy: str | None  # where the damaged state.json was kept (None: it had vanished)
    versions: list[str]  # versions kept, each with the sha256 its metadata and artifact agree on
    history_entries: int
    aliases: dict[str, str]
    not_recovered: list[str]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def check_registry_root(root: str) -> None:
    """Refuse a registries' root that is a file or does not exist (a mistyped --registry)."""
    try:
        fs, path = fsspec.core.url_to_fs(root)
    except ImportError as exc:  # e.g. s3:// without s3fs: fsspec's message says what to install
        raise RegistryError(f"registry root {root}: {exc}") from exc
    if fs.isfile(path):
        raise RegistryError(f"registry root {root} is a file, not a folder")
    if not fs.isdir(path):
        raise RegistryError(f"registry root {root} does not exist")


def load_production_model(model: str | None = None, registry_root: str | os.PathLike[str] | None = None) -> Any:
    """The one call to use a production model outside Dagster: a fitted sklearn Pipeline.

    >>> from ml_platform import load_production_model
    >>> model = load_production_model("churn")   # the only declared model if omitted
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
