"""The run-scoped IO manager: a re-execution reads its parent run's outputs, old run folders
are pruned except those holding an asset's latest output, and outputs are Parquet and JSON
(dtypes kept exactly, nothing unpickled on load)."""

import json
import os
import pickle
import subprocess
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.data.sources import DatasetSpec, FeatureSpec, SourceData
from ml_platform.data.stored_outputs import MANIFEST, StoredOutputError, encode_output, read_output, write_encoded, write_output
from ml_platform.orchestration.io_manager import RunScopedIOManager
from ml_platform.orchestration.pipeline import CandidateModel
from ml_platform_tests.conftest import platform, registry_of, run_job, source_config, synthetic

MODEL = synthetic("reexec", rows=1_500, seed=1)
BAD_PARAMS = {"ops": {"reexec__trained_model": {"config": {"params": {"C": -1.0}}}}}


def training_job() -> dg.JobDefinition:
    """Module-level, so Dagster can reconstruct the job for a re-execution."""
    return platform(MODEL).resolve_job_def("reexec_training")


def fingerprint(instance: dg.DagsterInstance, run_id: str, asset: str) -> str:
    [event] = [e for e in instance.all_logs(run_id, of_type=dg.DagsterEventType.ASSET_MATERIALIZATION)
               if e.dagster_event.asset_key.to_user_string() == f"reexec/{asset}"]
    return event.dagster_event.materialization.metadata["fingerprint"].value


def test_re_execution_from_failure_reads_the_parent_runs_data_not_a_newer_runs(instance: dg.DagsterInstance, dagster_home: Path) -> None:
    with dg.execute_job(dg.reconstructable(training_job), instance, run_config=BAD_PARAMS) as failed:
        assert not failed.success  # trained_model refused C=-1; validated_data was stored by this run
        parent = failed.run_id
    # Meanwhile the hourly monitoring validates newer data.
    newer = run_job(instance, platform(MODEL), "reexec_monitoring", source_config("reexec", synthetic={"seed": 2}))
    assert newer.success and fingerprint(instance, newer.run_id, "validated_data") != fingerprint(instance, parent, "validated_data")

    options = dg.ReexecutionOptions.from_failure(parent, instance)
    fixed = {"ops": {"reexec__trained_model": {"config": {"params": {"C": 1.0}}}}}
    with dg.execute_job(dg.reconstructable(training_job), instance, run_config=fixed, reexecution_options=options) as retried:
        assert retried.success
    version = registry_of(dagster_home, "reexec").get("v1")
    assert version.metadata["data_fingerprint"] == fingerprint(instance, parent, "validated_data")


def test_prune_removes_old_run_folders_but_keeps_each_assets_latest_output(instance: dg.DagsterInstance, dagster_home: Path) -> None:
    defs = platform(MODEL)
    first = run_job(instance, defs, "reexec_training")
    second = run_job(instance, defs, "reexec_monitoring")  # re-materializes raw_data and validated_data
    assert first.success and second.success
    root = Path(instance.storage_directory()) / "runs"
    old = time.time() - 48 * 3600
    for run in (first.run_id, second.run_id):
        os.utime(root / run, (old, old))
    stray = root / "an-old-run"
    (stray / "reexec").mkdir(parents=True)
    (stray / "reexec" / "raw_data").write_bytes(b"")
    os.utime(stray, (old, old))

    # Every output is stored as Parquet and JSON, each run's under its own folder.
    stored = [p for p in root.rglob("*") if p.is_file()]
    assert stored and {p.suffix for p in stored} == {".parquet", ".json", ""}  # "": the stray file
    assert {p.parent.name for p in stored if p.name == MANIFEST} >= {"raw_data", "validated_data", "trained_model"}
    for run in (first.run_id, second.run_id):  # each run reads back what it stored itself
        stored_data = read_output(root / run / "reexec" / "raw_data")
        assert isinstance(stored_data, SourceData) and stored_data.frame.shape == (1_500, 9)

    removed = RunScopedIOManager().prune(instance, root, keep_run_id="none")
    # The first run still holds the latest trained_model and production_model; the second the latest data.
    assert removed == ["an-old-run"]
    assert {p.name for p in root.iterdir()} == {first.run_id, second.run_id}
    run_job(instance, defs, "reexec_training")  # now newer outputs of every asset exist
    removed = RunScopedIOManager().prune(instance, root, keep_run_id="none")
    assert sorted(removed) == sorted([first.run_id, second.run_id])


@dataclass(frozen=True)
class NotOurs:
    """A dataclass outside ml_platform: never resolved on load, so refused on store."""

    value: int


def every_dtype() -> pd.DataFrame:
    rows = 4
    return pd.DataFrame(
        {
            "i8": np.arange(rows, dtype="int8"),
            "i64": np.arange(rows, dtype="int64") * 10**12,
            "f32": np.linspace(0, 1, rows, dtype="float32"),
            "f64": [0.5, np.nan, np.inf, -1.0],
            "flag": [True, False, True, True],
            "at": pd.to_datetime(["2026-01-01 00:00", "2026-02-01 08:30", None, "2026-03-01 12:00"]),
            "at_us_paris": pd.date_range("2026-01-01", periods=rows, freq="h", tz="Europe/Paris").as_unit("us"),
            "text": ["a", None, "c", "d"],
            "objects": np.array(["x", "y", "z", "w"], dtype=object),
            # Ordered, with a category no row uses: both kept.
            "size": pd.Categorical(["lo", "hi", "lo", None], categories=["lo", "mid", "hi"], ordered=True),
            "colour": pd.Categorical(["red", "blue", "red", "red"], categories=["red", "green", "blue"]),
            "codes": pd.Categorical([3, 1, 3, 2]),
            "count": pd.array([1, None, 3, 4], dtype="Int64"),
            "ok": pd.array([True, None, False, True], dtype="boolean"),
            "name": pd.array(["u", None, "w", "v"], dtype="string"),
            "ratio": pd.array([1.5, None, 2.0, 0.0], dtype="Float64"),
            "wait": pd.to_timedelta([1, 2, 3, 4], unit="s"),
        },
        index=pd.Index([10, 30, 20, 40], name="row_id"),
    )


def test_dataclasses_of_frames_round_trip_with_dtypes_categories_and_index_exactly(tmp_path: Path) -> None:
    spec = DatasetSpec(
        features=(FeatureSpec("f64", nullable=True, impute="median"), FeatureSpec("colour", kind="categorical",
                  categories=("red", "green", "blue"))),
        target="flag",
        classes=(0, 1),
    )
    source = SourceData(every_dtype(), spec, description="all dtypes", fingerprint="abc")
    candidate = CandidateModel("v3", {"accuracy": np.float64(0.9), "f1": 0.8}, spec, every_dtype().reset_index(), "run-1")
    outputs = {"source": source, "candidate": candidate, "plain": {"__tag__": (1, [2.5, None]), "n": 3}}
    for name, value in outputs.items():
        write_output(value, tmp_path / name)

    back = read_output(tmp_path / "source")
    assert type(back) is SourceData and back.spec == spec and type(back.spec.features) is tuple
    assert (back.description, back.fingerprint) == ("all dtypes", "abc")
    pd.testing.assert_frame_equal(back.frame, source.frame, check_exact=True)  # dtypes, values, index
    assert list(back.frame["size"].cat.categories) == ["lo", "mid", "hi"] and back.frame["size"].cat.ordered
    assert list(back.frame["colour"].cat.categories) == ["red", "green", "blue"]

    back = read_output(tmp_path / "candidate")
    assert type(back) is CandidateModel and (back.version, back.metrics, back.run_id, back.reused) == (
        "v3", {"accuracy": 0.9, "f1": 0.8}, "run-1", False
    )
    pd.testing.assert_frame_equal(back.holdout, candidate.holdout, check_exact=True)
    assert read_output(tmp_path / "plain") == outputs["plain"]
    by_code = every_dtype().set_index("codes")  # a CategoricalIndex of ints
    write_output(by_code, tmp_path / "by_code")
    pd.testing.assert_frame_equal(read_output(tmp_path / "by_code"), by_code, check_exact=True)


def test_stored_outputs_are_parquet_and_json_and_load_without_unpickling(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    write_output(SourceData(every_dtype(), DatasetSpec(features=(), target="flag")), tmp_path / "out")
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["frame-0.parquet", MANIFEST]
    assert (tmp_path / "out" / "frame-0.parquet").read_bytes()[:4] == b"PAR1"
    assert list(tmp_path.iterdir()) == [tmp_path / "out"]  # no temporary folder left behind

    def no_unpickling(*args: object, **kwargs: object) -> None:
        raise AssertionError("a stored output was unpickled")

    for name in ("load", "loads", "Unpickler"):
        monkeypatch.setattr(pickle, name, no_unpickling)
    pd.testing.assert_frame_equal(read_output(tmp_path / "out").frame, every_dtype())


def test_what_cannot_be_stored_or_loaded_is_refused_naming_it(tmp_path: Path) -> None:
    with pytest.raises(StoredOutputError, match=r"the output\.fingerprint: a builtins\.set cannot be stored"):
        write_output(SourceData(every_dtype(), DatasetSpec(features=(), target="flag"), fingerprint={1}), tmp_path / "a")
    with pytest.raises(StoredOutputError, match=r"the output: a .*NotOurs cannot be stored \(only dataclasses .* in ml_platform"):
        write_output(NotOurs(1), tmp_path / "b")
    with pytest.raises(StoredOutputError, match=r"the output\.frame: the DataFrame cannot be stored as Parquet"):
        write_output(SourceData(pd.DataFrame({"mixed": [1, "a"]}), DatasetSpec(features=(), target="x")), tmp_path / "c")
    assert not list(tmp_path.iterdir())  # nothing half-written

    (tmp_path / "d").mkdir()
    (tmp_path / "d" / MANIFEST).write_text(json.dumps(
        {"format": "ml_platform.stored-output/1", "value": {"__dataclass__": "os:system", "fields": {}}}
    ))
    with pytest.raises(StoredOutputError, match=r"names the class 'os:system', outside ml_platform; refusing to load it"):
        read_output(tmp_path / "d")
    (tmp_path / "e").write_bytes(pickle.dumps({"stored": "by the pickling IO manager"}))
    with pytest.raises(StoredOutputError, match="an output stored by an older version of ml_platform \\(a pickle\\)"):
        read_output(tmp_path / "e")


@dg.asset
def frame() -> pd.DataFrame:
    return every_dtype()


@dg.asset
def summary(frame: pd.DataFrame) -> dict:
    return {"rows": len(frame)}


@dg.asset
def unstorable() -> set:
    return {1, 2}


def test_through_dagster_a_damaged_parquet_file_or_an_unstorable_output_fails_naming_asset_and_run(
    instance: dg.DagsterInstance,
) -> None:
    resources = {"io_manager": RunScopedIOManager()}
    first = dg.materialize([frame, summary], instance=instance, resources=resources)
    root = Path(instance.storage_directory()) / "runs"
    assert read_output(root / first.run_id / "summary") == {"rows": 4}
    parquet = root / first.run_id / "frame" / "frame-0.parquet"
    parquet.write_bytes(parquet.read_bytes()[:-40])  # truncated, as a full disk would leave it

    second = dg.materialize([frame, summary], selection=["summary"], instance=instance, resources=resources,
                            raise_on_error=False)
    [failure] = [e for e in second.all_events if e.is_step_failure]
    message = failure.step_failure_data.error.message
    assert f"frame as run {first.run_id} stored it cannot be loaded" in message
    assert "frame-0.parquet (the output) is not a readable Parquet file" in message

    third = dg.materialize([unstorable], instance=instance, resources=resources, raise_on_error=False)
    [failure] = [e for e in third.all_events if e.is_step_failure]
    error = failure.step_failure_data.error
    messages = [error.message] + [c.message for c in (error.cause, error.cause and error.cause.cause) if c]
    assert any("unstorable: its output cannot be stored: the output: a builtins.set cannot be stored" in m for m in messages)


SEEN: dict[str, Any] = {}  # what the handoff assets below produced and received, by name


@dg.asset(name="handoff_frame")
def handoff_frame() -> pd.DataFrame:
    SEEN["produced"] = every_dtype()
    return SEEN["produced"]


@dg.asset(name="handoff_counts")
def handoff_counts(handoff_frame: pd.DataFrame) -> dict:
    SEEN["received"] = handoff_frame
    handoff_frame["flag"] = ~handoff_frame["flag"]  # a consumer's change stays its own (copy-on-write)
    return {"rows": len(handoff_frame)}


@dg.asset(name="handoff_reader")
def handoff_reader(handoff_frame: pd.DataFrame, handoff_counts: dict) -> int:
    SEEN["read_again"], SEEN["counts"] = handoff_frame, handoff_counts
    return handoff_counts["rows"]


HANDOFF_ASSETS = [handoff_frame, handoff_counts, handoff_reader]


def test_a_later_step_of_the_run_takes_the_frame_from_memory_while_it_is_stored_whole(instance: dg.DagsterInstance) -> None:
    SEEN.clear()
    result = dg.materialize(HANDOFF_ASSETS, instance=instance, resources={"io_manager": RunScopedIOManager()})
    assert result.success
    # Not read back from disk: the consumers share the producer's data ...
    assert np.shares_memory(SEEN["received"]["i64"].to_numpy(), SEEN["produced"]["i64"].to_numpy())
    assert np.shares_memory(SEEN["read_again"]["i64"].to_numpy(), SEEN["produced"]["i64"].to_numpy())
    # ... yet handoff_counts' change of its input is its own.
    pd.testing.assert_frame_equal(SEEN["read_again"], every_dtype(), check_exact=True)
    pd.testing.assert_frame_equal(SEEN["produced"], every_dtype(), check_exact=True)
    assert SEEN["counts"] == {"rows": len(every_dtype())}  # a dict goes through its stored copy
    # Every output is on disk, whole, once the run has ended; no temporary folder is left.
    run_dir = Path(instance.storage_directory()) / "runs" / result.run_id
    pd.testing.assert_frame_equal(read_output(run_dir / "handoff_frame"), every_dtype(), check_exact=True)
    assert read_output(run_dir / "handoff_counts") == {"rows": len(every_dtype())}
    assert read_output(run_dir / "handoff_reader") == len(every_dtype())
    assert not [p.name for p in run_dir.iterdir() if ".tmp-" in p.name]


def test_a_write_that_fails_after_its_step_fails_the_next_step_naming_the_output(
    instance: dg.DagsterInstance, monkeypatch: pytest.MonkeyPatch
) -> None:
    import ml_platform.orchestration.io_manager as io_manager

    def full_disk(encoded: Any, folder: Path, tmp: Path | None = None) -> None:
        if folder.name == "handoff_frame":
            raise OSError(28, "No space left on device")
        write_encoded(encoded, folder, tmp)

    monkeypatch.setattr(io_manager, "write_encoded", full_disk)  # the disk filling up under the writer thread
    result = dg.materialize(HANDOFF_ASSETS, instance=instance, resources={"io_manager": RunScopedIOManager()},
                            raise_on_error=False)
    assert not result.success
    [failure] = [e for e in result.all_events if e.is_step_failure]
    assert failure.step_key == "handoff_counts"
    # (Whether the write had failed by the time handoff_counts loaded its input or only when it stored
    # its output, the message is the same.)
    assert (f"Failure: run {result.run_id}: could not store handoff_frame ([Errno 28] No space left on device)"
            in failure.step_failure_data.error.message)
    assert not (Path(instance.storage_directory()) / "runs" / result.run_id / "handoff_frame").exists()


def test_a_reader_waits_for_a_write_in_progress_by_a_live_process_only(tmp_path: Path) -> None:
    from ml_platform.data.stored_outputs import being_written, start_output
    from ml_platform.orchestration.io_manager import _await_stored

    folder = tmp_path / "runs" / "r1" / "frame"
    tmp = start_output(folder)  # this (live) process is writing it
    assert being_written(folder)
    writer = threading.Timer(0.5, write_encoded, args=(encode_output({"rows": 3}), folder, tmp))
    started = time.monotonic()
    writer.start()
    _await_stored(folder)
    assert time.monotonic() - started >= 0.4 and read_output(folder) == {"rows": 3} and not being_written(folder)

    # A writer that died mid-write (its pid gone) is not waited for.
    dead = subprocess.Popen(["true"])
    dead.wait()
    other = tmp_path / "runs" / "r2" / "frame"
    other.parent.mkdir(parents=True)
    (other.parent / f"frame.tmp-{dead.pid}-0123").mkdir()
    started = time.monotonic()
    _await_stored(other)
    assert not being_written(other) and not other.exists() and time.monotonic() - started < 0.5
