"""Intermediate outputs that belong to their run.

Dagster's default filesystem IO manager keeps one file per asset, shared by every run: two runs
at once read each other's frames (seen: versions trained on another run's data). Here each run
writes under `<storage>/runs/<run_id>/<asset key>`, so a run reads what it produced itself; a
re-execution reads what its parent run produced for the steps it skips. Any other input (e.g.
in a run of `production_model` alone) is read from the run that materialized that asset last:
the output is stored (whole, by an atomic rename) before Dagster records the materialization.

Each output is a folder of Parquet files and JSON (see ml_platform.data.stored_outputs): no
pickle, so loading runs no code, and the frames open with `pandas.read_parquet`.

Run folders older than `keep_hours` are removed, except those holding some asset's latest
output (which later runs may still load). This IO manager also tags each run with its worker
(host, pid, start), which the run launcher's health check needs (see run_launcher.py).
"""

import shutil
import time
from pathlib import Path
from typing import Any

import dagster as dg

from ml_platform.data.stored_outputs import MANIFEST, StoredOutputError, read_output, write_output
from ml_platform.orchestration.names import WORKER_TAG
from ml_platform.orchestration.run_launcher import worker_tag_value

_PRUNED_ROOTS: set[str] = set()  # prune once per process and storage root


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
        try:
            write_output(obj, self._path(root, context.run_id, key))  # a reader sees the whole output or none
        except StoredOutputError as exc:
            raise dg.Failure(f"{key.to_user_string()}: its output cannot be stored: {exc}", allow_retries=False) from exc
        if str(root) not in _PRUNED_ROOTS:
            _PRUNED_ROOTS.add(str(root))
            self.prune(instance, root, keep_run_id=context.run_id)

    def load_input(self, context: dg.InputContext) -> Any:
        upstream = context.upstream_output
        key = context.asset_key if context.has_asset_key else dg.AssetKey(["_ops", upstream.step_key, upstream.name])
        root = self._root(context.instance)
        # This run's own output; else, in a re-execution, the parent run's (Dagster names it).
        for run_id in dict.fromkeys([context.step_context.run_id, _source_run_id(upstream)]):
            path = self._path(root, run_id, key) if run_id else None
            if path is not None and path.exists():
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
