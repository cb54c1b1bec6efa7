"""Intermediate outputs that belong to their run.

Dagster's default filesystem IO manager keeps one file per asset, shared by every run: two runs
at once read each other's frames (seen: versions trained on another run's data). Here each run
writes under `<storage>/runs/<run_id>/<asset key>`, so a run reads what it produced itself; a
re-execution reads what its parent run produced for the steps it skips. Any other input (e.g.
in a run of `production_model` alone) is read from the run that materialized that asset last.
An output appears whole or not at all (an atomic rename).

Each output is a folder of Parquet files and JSON (see ml_platform.data.stored_outputs): no
pickle, so loading runs no code, and the frames open with `pandas.read_parquet`.

Writing is off the steps' path when a later step of the same run, in the same process (the
in-process executor: `dagster asset materialize`, a run of the default executor), reads the
output: the step encodes it (so what cannot be stored fails the step), one writer thread per
process stores it while the run goes on, and the later steps take the value from memory instead
of reading it back: DataFrames and frozen dataclasses, each consumer getting shallow copies of
the frames (pandas' copy-on-write keeps a consumer's changes its own). Otherwise (the last
steps of a run, other executors) the step writes before it ends, as before. Every reader of a
write in progress waits for it: another process (the multiprocess executor, another run) while
the folder's temporary sibling is held by a live writer, this process for its own writes. A
write that fails fails the run's next step that stores an output (and the teardown of the run's
resources), naming the output. At 1e7 x 10 rows this moved two Parquet writes (~8 s) off the
steps' path and removed two reads (~5 s); see docs/scaling.md.

Run folders older than `keep_hours` are removed, except those holding some asset's latest
output (which later runs may still load). This IO manager also tags each run with its worker
(host, pid, start), which the run launcher's health check needs (see run_launcher.py).
"""

import copy
import dataclasses
import shutil
import threading
import time
from concurrent.futures import Future, ThreadPoolExecutor
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
from dagster._core.definitions.executor_definition import execute_in_process_executor  # dg.materialize's

from ml_platform.data.stored_outputs import (
    MANIFEST,
    StoredOutputError,
    being_written,
    encode_output,
    read_output,
    start_output,
    write_encoded,
    write_output,
)
from ml_platform.orchestration.names import WORKER_TAG
from ml_platform.orchestration.run_launcher import worker_tag_value

_PRUNED_ROOTS: set[str] = set()  # prune once per process and storage root
WAIT_FOR_WRITER_S = 1800.0  # how long a reader waits for another process's write in progress


@dataclasses.dataclass(frozen=True)
class _Write:
    run_id: str
    asset: str
    future: Future[None]


class _Handoff:
    """This process's outputs on their way to disk (one writer thread), and for the later steps of
    the same run in this process, the values themselves; both by output folder."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._writer: ThreadPoolExecutor | None = None
        self._writes: dict[Path, _Write] = {}
        self._values: dict[Path, tuple[str, Any]] = {}

    def write_later(self, run_id: str, asset: str, path: Path, value: Any) -> None:
        encoded = encode_output(value)  # what cannot be stored fails here, in the step
        tmp = start_output(path)  # from now on a reader elsewhere sees the write in progress
        with self._lock:
            if self._writer is None:
                self._writer = ThreadPoolExecutor(max_workers=1, thread_name_prefix="ml_platform-output-writer")
            self._writes[path] = _Write(run_id, asset, self._writer.submit(write_encoded, encoded, path, tmp))
            if isinstance(value, pd.DataFrame) or dataclasses.is_dataclass(value) and value.__dataclass_params__.frozen:
                self._values[path] = (run_id, value)

    def value(self, path: Path) -> tuple[bool, Any]:
        """(True, the value) when a step of this process output it and its write has not failed."""
        write = self._writes.get(path)
        if path not in self._values or write is not None and write.future.done() and write.future.exception():
            return False, None
        return True, _own_copy(self._values[path][1])

    def wait(self, path: Path) -> None:
        """Until this process's pending write of `path` (if any) ends; StoredOutputError if it failed."""
        write = self._writes.get(path)
        if write is not None and write.future.exception() is not None:
            raise StoredOutputError(f"run {write.run_id}: could not store {write.asset} ({write.future.exception()})")

    def wait_for_run(self, run_id: str, forget: bool = False) -> None:
        """Until every pending write of the run ends (forgetting its values if `forget`);
        StoredOutputError naming the outputs that could not be stored."""
        with self._lock:
            writes = {p: w for p, w in self._writes.items() if w.run_id == run_id}
            if forget:
                self._values = {p: v for p, v in self._values.items() if v[0] != run_id}
        failed = [f"{w.asset} ({w.future.exception()})" for w in writes.values() if w.future.exception() is not None]
        with self._lock:
            for path, write in writes.items():
                if self._writes.get(path) is write and (forget or write.future.exception() is None):
                    del self._writes[path]
        if failed:
            raise StoredOutputError(f"run {run_id}: could not store " + "; ".join(failed))


_HANDOFF = _Handoff()


def _own_copy(value: Any) -> Any:
    """Each consumer's own view of a handed-over value: its frames (and a dataclass's frame fields)
    as shallow copies, which share the data until either side changes it (pandas' copy-on-write),
    so a consumer that assigns a column changes nobody else's input."""
    if isinstance(value, pd.DataFrame):
        return value.copy(deep=False)
    if dataclasses.is_dataclass(value):
        clone = copy.copy(value)
        for field in dataclasses.fields(value):
            if isinstance(frame := getattr(value, field.name), pd.DataFrame):
                object.__setattr__(clone, field.name, frame.copy(deep=False))  # frozen: set as its __init__ does
        return clone
    return value


def _await_stored(path: Path) -> None:
    """Return once `path` is stored or no write of it is in progress anywhere on this host; a
    Failure naming the run and the output if this process's write of it failed."""
    try:
        _HANDOFF.wait(path)
    except StoredOutputError as exc:
        raise dg.Failure(str(exc), allow_retries=False) from exc
    deadline = time.monotonic() + WAIT_FOR_WRITER_S
    while not path.exists() and being_written(path) and time.monotonic() < deadline:
        time.sleep(0.05)


def _consumed_later_in_this_process(context: dg.OutputContext) -> bool:
    """Whether a later step of this run reads the step's outputs in this process: the in-process
    executor, and a step of the plan that depends on this one."""
    step_context = context.step_context
    if step_context.job_def.executor_def not in (dg.in_process_executor, execute_in_process_executor):
        return False
    deps = step_context.execution_plan.get_executable_step_deps()
    return any(context.step_key in upstream for upstream in deps.values())


def _source_run_id(upstream: dg.OutputContext | None) -> str | None:
    """The run Dagster says produced an input (the parent run, for a step a re-execution skips)."""
    try:
        return upstream.run_id if upstream is not None else None
    except dg.DagsterInvariantViolationError:
        return None


class RunScopedIOManager(dg.ConfigurableIOManager):
    """Stores each output as the folder <base_dir>/<run_id>/<asset key path> (Parquet and JSON);
    base_dir defaults to the instance's storage directory."""

    base_dir: str = ""
    keep_hours: float = 24.0

    def setup_for_execution(self, context: dg.InitResourceContext) -> None:
        run, instance = context.run, context.instance
        if run is not None and instance is not None and WORKER_TAG not in run.tags:
            worker = worker_tag_value(instance, run.run_id)
            if worker:
                instance.add_run_tags(run.run_id, {WORKER_TAG: worker})

    def teardown_after_execution(self, context: dg.InitResourceContext) -> None:
        if context.run is not None:
            _HANDOFF.wait_for_run(context.run.run_id, forget=True)  # raises, naming what was not stored

    def _root(self, instance: dg.DagsterInstance) -> Path:
        return Path(self.base_dir or instance.storage_directory()) / "runs"

    @staticmethod
    def _path(root: Path, run_id: str, key: dg.AssetKey) -> Path:
        return root.joinpath(run_id, *key.path)

    def handle_output(self, context: dg.OutputContext, obj: Any) -> None:
        instance = context.step_context.instance
        root = self._root(instance)
        # An op's output (not an asset's) is keyed by its step and output name.
        key = context.asset_key if context.has_asset_key else dg.AssetKey(["_ops", context.step_key, context.name])
        path = self._path(root, context.run_id, key)
        try:
            # An earlier step's write that failed fails this step, so no run shows success without its outputs.
            _HANDOFF.wait_for_run(context.run_id)
        except StoredOutputError as exc:
            raise dg.Failure(str(exc), allow_retries=False) from exc
        try:
            if _consumed_later_in_this_process(context):
                _HANDOFF.write_later(context.run_id, key.to_user_string(), path, obj)
            else:
                write_output(obj, path)  # a reader sees the whole output or none
        except StoredOutputError as exc:
            raise dg.Failure(f"{key.to_user_string()}: its output cannot be stored: {exc}", allow_retries=False) from exc
        if str(root) not in _PRUNED_ROOTS:
            _PRUNED_ROOTS.add(str(root))
            self.prune(instance, root, keep_run_id=context.run_id)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        key = context.asset_key if context.has_asset_key else dg.AssetKey(["_ops", upstream.step_key, upstream.name])
        root = self._root(context.instance)
        own = self._path(root, context.step_context.run_id, key)
        in_memory, value = _HANDOFF.value(own)
        if in_memory:  # output by an earlier step of this run, in this process
            return value
        # This run's own output; else, in a re-execution, the parent run's (Dagster names it).
        for run_id in dict.fromkeys([context.step_context.run_id, _source_run_id(upstream)]):
            path = self._path(root, run_id, key) if run_id else None
            if path is not None:
                _await_stored(path)
                if path.exists():
                    break
        else:
            # Not produced by this run or its parent: read the output of the run that materialized it last.
            event = context.instance.get_latest_materialization_event(key)
            if event is None:
                raise dg.Failure(
                    f"{key.to_user_string()} has never been materialized; materialize it (or select it in this run) first",
                    allow_retries=False,
                )
            path = self._path(root, event.run_id, key)
            _await_stored(path)
            if not path.exists():
                raise dg.Failure(
                    f"the output of {key.to_user_string()} from run {event.run_id} is no longer stored "
                    f"(run folders are kept {self.keep_hours:g} h); materialize {key.to_user_string()} again",
                    allow_retries=False,
                )
            context.log.info(f"loading {key.to_user_string()} as run {event.run_id} stored it")
            run_id = event.run_id
        try:
            return read_output(path)
        except StoredOutputError as exc:
            raise dg.Failure(
                f"{key.to_user_string()} as run {run_id} stored it cannot be loaded: {exc}; "
                f"materialize {key.to_user_string()} again",
                allow_retries=False,
            ) from exc

    def prune(self, instance: dg.DagsterInstance, root: Path, keep_run_id: str) -> list[str]:
        """Remove run folders older than keep_hours unless they hold an asset's latest output."""
        cutoff = time.time() - self.keep_hours * 3600
        latest_runs: dict[dg.AssetKey, str | None] = {}
        removed = []
        for run_dir in root.iterdir() if root.exists() else []:
            if run_dir.name == keep_run_id or not run_dir.is_dir() or run_dir.stat().st_mtime > cutoff:
                continue
            keys = [dg.AssetKey(list(p.parent.relative_to(run_dir).parts)) for p in run_dir.rglob(MANIFEST)]
            for key in keys:
                if key not in latest_runs:
                    event = instance.get_latest_materialization_event(key)
                    latest_runs[key] = event.run_id if event else None
            if any(latest_runs[key] == run_dir.name for key in keys):
                continue
            shutil.rmtree(run_dir, ignore_errors=True)
            removed.append(run_dir.name)
        return removed
