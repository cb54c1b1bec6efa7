"""Outputs handed between assets, stored as Parquet and JSON: nothing is pickled, so loading one
runs no code, and a user can read the frames with pandas.

An output is a folder holding `output.json` (the value as JSON) and one `frame-N.parquet` per
DataFrame in it. What can be stored: DataFrames; dataclasses defined in ml_platform (frozen or
not) whose fields are storable, recorded by their import path and resolved on load only among
ml_platform's own modules; and JSON values (str, int, float, bool, None, lists, tuples, dicts
with string keys) holding any of these. Parquet with pandas' metadata keeps the dtypes exactly:
ints, floats, bools, datetimes (and their unit and zone), strings, `category` (categories and
their order), nullable dtypes, and the index. Parquet keeps categories of strings only, so each
categorical column's categories, their dtype and order are also recorded in `output.json`
(categories must be numbers, bools or strings; a categorical level of a MultiIndex is refused).

A folder is written beside its place and renamed into it, `output.json` last: a reader sees
the whole output or none. Encoding (where what cannot be stored is refused) and writing are
separate steps, so a caller may write in the background (see the run-scoped IO manager).
"""

from __future__ import annotations

import dataclasses
import glob
import importlib
import json
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq

MANIFEST = "output.json"
FORMAT = "ml_platform.stored-output/1"
_FRAME_FILE = re.compile(r"^frame-\d+\.parquet$")
# Tags of the JSON nodes that are not plain JSON values.
_FRAME, _DATACLASS, _TUPLE, _DICT = "__frame__", "__dataclass__", "__tuple__", "__dict__"
_OWN_PACKAGE = "ml_platform"


class StoredOutputError(ValueError):
    """An output cannot be stored, or a stored one cannot be read; the message says where."""


def _is_own_module(module: str) -> bool:
    return module == _OWN_PACKAGE or module.startswith(f"{_OWN_PACKAGE}.")


def _categorical(dtype: pd.CategoricalDtype, where: str) -> dict[str, Any]:
    """A categorical dtype as JSON: its categories, their dtype, and whether they are ordered."""
    categories = dtype.categories
    values = categories.tolist()
    if not all(isinstance(v, str | bool | int | float) for v in values):
        raise StoredOutputError(
            f"{where}: categories of dtype {categories.dtype} cannot be stored (numbers, bools or strings can)"
        )
    return {"categories": values, "categories_dtype": str(categories.dtype), "ordered": bool(dtype.ordered)}


def _frame_node(frame: pd.DataFrame, where: str, frames: list[tuple[str, pd.DataFrame]]) -> dict[str, Any]:
    if isinstance(frame.index, pd.MultiIndex) and any(isinstance(lv.dtype, pd.CategoricalDtype) for lv in frame.index.levels):
        raise StoredOutputError(f"{where}: a MultiIndex with a categorical level cannot be stored")
    categoricals = [
        {"column": position, **_categorical(dtype, f"{where} column {name!r}")}
        for position, (name, dtype) in enumerate(frame.dtypes.items())
        if isinstance(dtype, pd.CategoricalDtype)
    ]
    if isinstance(frame.index.dtype, pd.CategoricalDtype):
        categoricals.append({"column": "index", **_categorical(frame.index.dtype, f"{where} index")})
    frames.append((where, frame))
    return {_FRAME: f"frame-{len(frames) - 1}.parquet", "categoricals": categoricals}


def _with_categoricals(frame: pd.DataFrame, categoricals: list[dict[str, Any]]) -> pd.DataFrame:
    """Put back the categorical dtypes Parquet did not keep (categories that are not strings)."""
    for recorded in categoricals:
        dtype = pd.CategoricalDtype(
            pd.Index(recorded["categories"], dtype=recorded["categories_dtype"]), ordered=recorded["ordered"]
        )
        if recorded["column"] == "index":
            if frame.index.dtype != dtype:
                frame.index = frame.index.astype(dtype)
        elif frame.dtypes.iloc[recorded["column"]] != dtype:
            frame.isetitem(recorded["column"], frame.iloc[:, recorded["column"]].astype(dtype))
    return frame


def _encode(value: Any, where: str, frames: list[tuple[str, pd.DataFrame]]) -> Any:
    """`value` as a JSON node; its DataFrames appended to `frames` (with where they were)."""
    if value is None or isinstance(value, str | bool | int | float) and not isinstance(value, np.generic):
        return value
    if isinstance(value, np.bool_ | np.integer | np.floating):
        return value.item()  # e.g. a metric numpy computed: loaded back as the Python number
    if isinstance(value, pd.DataFrame):
        return _frame_node(value, where, frames)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        cls = type(value)
        if not _is_own_module(cls.__module__) or "<locals>" in cls.__qualname__:
            raise StoredOutputError(
                f"{where}: a {cls.__module__}.{cls.__qualname__} cannot be stored (only dataclasses defined at "
                f"module level in {_OWN_PACKAGE} are loaded back)"
            )
        return {
            _DATACLASS: f"{cls.__module__}:{cls.__qualname__}",
            "fields": {
                f.name: _encode(getattr(value, f.name), f"{where}.{f.name}", frames)
                for f in dataclasses.fields(value)
                if f.init  # the others are derived by the class itself
            },
        }
    if type(value) in (list, tuple):
        items = [_encode(item, f"{where}[{i}]", frames) for i, item in enumerate(value)]
        return {_TUPLE: items} if isinstance(value, tuple) else items
    if type(value) is dict:
        bad_keys = [k for k in value if not isinstance(k, str)]
        if bad_keys:
            raise StoredOutputError(f"{where}: dict keys must be strings, found {bad_keys[0]!r}")
        encoded = {k: _encode(v, f"{where}[{k!r}]", frames) for k, v in value.items()}
        # A dict that could pass for a tagged node is wrapped, so it reads back as itself.
        return {_DICT: encoded} if any(k.startswith("__") for k in value) else encoded
    raise StoredOutputError(
        f"{where}: a {type(value).__module__}.{type(value).__qualname__} cannot be stored between assets "
        f"(DataFrames, dataclasses of {_OWN_PACKAGE}, and JSON values can)"
    )


def _parquet_options(schema: pa.Schema) -> dict[str, Any]:
    """Speed over size: these files live for one run (pruned after `keep_hours`). Dictionary
    encoding only for text (on numbers it doubled write and read times of 1e6 x 10 floats),
    no compression (random floats don't shrink; reading got 2-5x slower), no statistics
    (nothing filters these files)."""
    text = (pa.types.is_string, pa.types.is_large_string, pa.types.is_binary, pa.types.is_dictionary)
    return {
        "compression": "none",
        "use_dictionary": [f.name for f in schema if any(is_text(f.type) for is_text in text)],
        "write_statistics": False,
    }


@dataclasses.dataclass(frozen=True)
class EncodedOutput:
    """An output ready to be written: its manifest and its frames as Arrow tables (which share the
    frames' memory where Arrow can). Encoding raises StoredOutputError for what cannot be stored,
    so a caller can encode in the step and write later."""

    manifest: bytes
    tables: tuple[pa.Table, ...]


def encode_output(value: Any) -> EncodedOutput:
    frames: list[tuple[str, pd.DataFrame]] = []
    manifest = json.dumps({"format": FORMAT, "value": _encode(value, "the output", frames)}).encode()
    tables = []
    for where, frame in frames:
        try:
            tables.append(pa.Table.from_pandas(frame, preserve_index=None))
        except (pa.ArrowException, ValueError, TypeError) as exc:
            raise StoredOutputError(f"{where}: the DataFrame cannot be stored as Parquet ({exc})") from exc
    return EncodedOutput(manifest, tuple(tables))


def start_output(folder: Path) -> Path:
    """The temporary folder `folder` is written into, created now. Its name holds the writer's
    pid: while it exists and that process lives, `folder` is on its way (see `being_written`)."""
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.with_name(f"{folder.name}.tmp-{os.getpid()}-{uuid.uuid4().hex}")
    tmp.mkdir()
    return tmp


def being_written(folder: Path) -> bool:
    """Whether a live process on this host is writing `folder` (a temporary folder of its exists)."""
    for tmp in folder.parent.glob(f"{glob.escape(folder.name)}.tmp-*"):
        pid = tmp.name.rsplit(".tmp-", 1)[1].split("-", 1)[0]
        if pid.isdigit() and _alive(int(pid)):
            return True
    return False


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        pass
    return True


def write_encoded(encoded: EncodedOutput, folder: Path, tmp: Path | None = None) -> None:
    """Write `encoded` as the folder `folder` (through `tmp`, from start_output, or a new one),
    replacing what was there; whole or not at all."""
    tmp = tmp or start_output(folder)
    try:
        for index, table in enumerate(encoded.tables):
            pq.write_table(table, tmp / f"frame-{index}.parquet", **_parquet_options(table.schema))
        (tmp / MANIFEST).write_bytes(encoded.manifest)
        if folder.exists():  # a step retried within its run: the old output goes once the new is whole
            old = folder.with_name(f"{folder.name}.old-{uuid.uuid4().hex}")
            os.rename(folder, old)
            os.rename(tmp, folder)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.rename(tmp, folder)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)


def write_output(value: Any, folder: Path) -> None:
    """Store `value` as the folder `folder`, replacing what was there; whole or not at all."""
    write_encoded(encode_output(value), folder)


def _resolve(path: str, where: str) -> type:
    """The ml_platform dataclass named "module:qualname"; never anything outside ml_platform."""
    module_name, _, qualname = path.partition(":")
    if not _is_own_module(module_name) or not qualname:
        raise StoredOutputError(f"{where}: names the class {path!r}, outside {_OWN_PACKAGE}; refusing to load it")
    try:
        found: Any = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise StoredOutputError(f"{where}: its class {path} no longer exists ({exc})") from exc
    if not (isinstance(found, type) and dataclasses.is_dataclass(found)):
        raise StoredOutputError(f"{where}: {path} is not a dataclass; refusing to load it")
    return found


def _decode(node: Any, folder: Path, where: str) -> Any:
    if isinstance(node, list):
        return [_decode(item, folder, f"{where}[{i}]") for i, item in enumerate(node)]
    if not isinstance(node, dict):
        return node
    if set(node) == {_FRAME, "categoricals"}:
        name = node[_FRAME]
        if not isinstance(name, str) or not _FRAME_FILE.match(name):
            raise StoredOutputError(f"{folder / MANIFEST}: {where} names {name!r}, not a frame file")
        try:
            frame = pq.read_table(folder / name).to_pandas()
        except (pa.ArrowException, OSError) as exc:
            raise StoredOutputError(f"{folder / name} ({where}) is not a readable Parquet file: {exc}") from exc
        try:
            return _with_categoricals(frame, node["categoricals"])
        except (KeyError, IndexError, TypeError, ValueError) as exc:
            raise StoredOutputError(f"{folder / MANIFEST}: the categories of {where} do not fit its frame ({exc})") from exc
    if set(node) == {_DATACLASS, "fields"} and isinstance(node["fields"], dict):
        cls = _resolve(node[_DATACLASS], where)
        fields = {k: _decode(v, folder, f"{where}.{k}") for k, v in node["fields"].items()}
        try:
            return cls(**fields)
        except TypeError as exc:  # stored by code whose class had other fields
            raise StoredOutputError(f"{where}: its fields do not fit {node[_DATACLASS]} ({exc})") from exc
    if set(node) == {_TUPLE} and isinstance(node[_TUPLE], list):
        return tuple(_decode(item, folder, f"{where}[{i}]") for i, item in enumerate(node[_TUPLE]))
    if set(node) == {_DICT} and isinstance(node[_DICT], dict):
        node = node[_DICT]
    return {k: _decode(v, folder, f"{where}[{k!r}]") for k, v in node.items()}


def read_output(folder: Path) -> Any:
    """The value `write_output` stored as `folder`."""
    if folder.is_file():
        raise StoredOutputError(
            f"{folder} is a file: an output stored by an older version of ml_platform (a pickle), which is "
            "no longer loaded"
        )
    manifest = folder / MANIFEST
    try:
        stored = json.loads(manifest.read_bytes().decode("utf-8"))
    except FileNotFoundError as exc:
        raise StoredOutputError(f"{folder} is incomplete: it has no {MANIFEST}") from exc
    except ValueError as exc:  # UnicodeDecodeError included
        raise StoredOutputError(f"{manifest} is not valid JSON ({exc})") from exc
    if not isinstance(stored, dict) or stored.get("format") != FORMAT or "value" not in stored:
        raise StoredOutputError(f"{manifest} is not a stored output of this version (expected format {FORMAT})")
    return _decode(stored["value"], folder, "the output")
