"""Batch scoring with a canary split: what `<model>/batch_predictions` stores (no Dagster import).

Every row gets a key (a declared id column, else a stable hash of its feature values). While a
candidate is in rollout, a salted hash of the key sends a share of the rows to the candidate and
the rest to the champion; both models score every row (shadow), so their agreement is known on
all rows and their accuracies wherever labels have arrived.

Speed: each model's predict_proba runs once, and everything around it is a handful of vectorised
passes (the content hash folds the columns' 64-bit patterns in cache-sized chunks rather than
calling pd.util.hash_pandas_object, ~4x faster at 1e6 x 10); see benchmarks/batch_benchmark.py.
"""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import pandas as pd

ARMS = ("champion", "candidate")
_ARM_DTYPE = pd.CategoricalDtype(list(ARMS))
PROBA_PREFIX = "proba_"
PROBA_TOLERANCE = 1e-6

_MIX_PRIME = np.uint64(0x100000001B3)  # FNV-1a's 64-bit prime: spreads each column's bits before the next
_SEED = np.uint64(0xCBF29CE484222325)
_HASH_CHUNK = 1 << 15  # rows per chunk: 256 KiB per temporary, within a core's L2 cache


def _fmix64(values: np.ndarray) -> np.ndarray:
    """MurmurHash3's 64-bit finaliser (a bijection with full avalanche), in place on a uint64 array."""
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xFF51AFD7ED558CCD)
    values ^= values >> np.uint64(33)
    values *= np.uint64(0xC4CEB9FE1A85EC53)
    values ^= values >> np.uint64(33)
    return values


def _column_values(column: pd.Series) -> tuple[np.ndarray, bool]:
    """The column as float64 (numbers: int, float, bool; True) or as pd.util.hash_pandas_object's
    uint64 hashes (text, categories: False; its fixed key makes them stable across processes).
    Numbers hash as float64 so that a column read as 3 in one batch and 3.0 in another (nulls
    turn ints into floats) keeps its keys."""
    if pd.api.types.is_numeric_dtype(column.dtype) or pd.api.types.is_bool_dtype(column.dtype):
        return column.to_numpy(dtype=np.float64, na_value=np.nan), True
    return pd.util.hash_pandas_object(column, index=False).to_numpy(), False


def _content_hash(frame: pd.DataFrame, features: Sequence[str]) -> np.ndarray:
    """A uint64 per row from its feature values: each column's 64-bit pattern is folded in by
    multiply-xor, then MurmurHash3's finaliser mixes the result. -0.0 counts as 0.0 and every
    NaN/NA as one NaN. Done in chunks of _HASH_CHUNK rows so the temporaries stay in cache
    (~1.6x faster than whole columns at 1e6 x 10)."""
    columns = [_column_values(frame[feature]) for feature in features]
    hashed = np.empty(len(frame), dtype=np.uint64)
    scratch = np.empty(_HASH_CHUNK, dtype=np.float64)
    nan = np.empty(_HASH_CHUNK, dtype=bool)
    for start in range(0, len(frame), _HASH_CHUNK):
        chunk = hashed[start:start + _HASH_CHUNK]
        chunk.fill(_SEED)
        values, is_nan = scratch[:len(chunk)], nan[:len(chunk)]
        for column, is_number in columns:
            part = column[start:start + _HASH_CHUNK]
            if is_number:
                np.add(part, 0.0, out=values)  # -0.0 + 0.0 is 0.0
                np.isnan(values, out=is_nan)
                if is_nan.any():
                    values[is_nan] = np.nan  # one bit pattern for every NaN
                part = values.view(np.uint64)
            chunk *= _MIX_PRIME
            chunk ^= part
        _fmix64(chunk)
    return hashed


def row_keys(frame: pd.DataFrame, id_column: str | None, features: Sequence[str]) -> pd.Series:
    """The key of each row, named "row_key": the id column's values, else a uint64 hash of the
    row's feature values (identical across processes and runs; column order matters)."""
    if id_column is not None:
        if id_column not in frame.columns:
            raise ValueError(f"id column {id_column!r} is not in the data (columns: {', '.join(map(str, frame.columns))})")
        ids = frame[id_column]
        nulls = ids.isna().to_numpy()
        if nulls.any():
            first = int(np.flatnonzero(nulls)[0])
            raise ValueError(f"id column {id_column!r} has {int(nulls.sum())} null value(s) (first at row {first});"
                             " every row needs a key")
        duplicated = ids.duplicated(keep="first").to_numpy()
        if duplicated.any():
            raise ValueError(f"id column {id_column!r} has {int(duplicated.sum())} repeated value(s) (first: "
                             f"{ids.to_numpy()[duplicated][0]!r}); every row needs a key of its own")
        return pd.Series(ids.to_numpy(), index=frame.index, name="row_key")
    missing = [f for f in features if f not in frame.columns]
    if missing:
        raise ValueError(f"cannot key rows by content: feature column(s) {missing} are not in the data")
    if not len(features):
        raise ValueError("cannot key rows by content without features; declare an id column")
    return pd.Series(_content_hash(frame, features), index=frame.index, name="row_key")


def _salt_bits(salt: str) -> np.uint64:
    return np.uint64(int.from_bytes(hashlib.blake2b(salt.encode(), digest_size=8).digest(), "little"))


def canary_mask(keys: pd.Series, share: float, salt: str) -> np.ndarray:
    """True where the candidate serves the row: the key's hash mixed with `salt` (the integrator
    passes "<model>:<candidate version>", so each rollout draws its own rows), mapped to [0, 1)
    and compared with `share`. Deterministic; share 0 selects none, 1 all; a row selected at
    one share is selected at every larger share."""
    if not 0.0 <= share <= 1.0:
        raise ValueError(f"canary share must be within [0, 1], got {share}")
    if pd.api.types.is_integer_dtype(keys.dtype) and not pd.api.types.is_extension_array_dtype(keys.dtype):
        bits = keys.to_numpy().astype(np.uint64, copy=True)  # int64 ids: their two's complement bits
    else:
        bits = pd.util.hash_pandas_object(keys, index=False).to_numpy().copy()
    if share == 1.0:
        return np.ones(len(keys), dtype=bool)
    bits ^= _salt_bits(salt)
    # The hash's top 53 bits as a fraction u in [0, 1); u < share, compared in integers (exact, no
    # float array): top53 < share * 2**53  <=>  top53 < ceil(share * 2**53)  <=>  hash < that * 2**11.
    return _fmix64(bits) < np.uint64(math.ceil(share * 2.0**53) << 11)


@dataclass
class ScoringModel:
    """A fitted scikit-learn estimator or Pipeline (predict_proba, classes_) and its registry version."""

    version: str
    model: Any


@dataclass(frozen=True)
class BatchScores:
    predictions: pd.DataFrame  # row_key, predicted, proba_<class>..., model_version, arm
    figures: dict[str, Any]  # JSON-able: rows, shares, versions; agreement and accuracies with a candidate
    # What is wrong with the candidate's outputs on every row it scored, served or shadow (a rollback).
    candidate_problems: list[str] = field(default_factory=list)


def _argmax_rows(proba: np.ndarray) -> np.ndarray:
    """proba.argmax(axis=1) (the first maximum wins ties) as small ints, by one pass per column:
    numpy's argmax over a short axis is several times slower for the usual 2 to 16 classes."""
    classes = proba.shape[1]
    if classes > 16:
        return proba.argmax(axis=1)
    if classes == 2:  # the common case: one comparison, its bools read as 0/1 without a copy
        return np.greater(proba[:, 1], proba[:, 0]).view(np.int8)
    best_index = np.zeros(proba.shape[0], dtype=np.int8)
    best = proba[:, 0]
    for j in range(1, classes):
        column = proba[:, j]
        np.copyto(best_index, j, where=column > best)  # no index compaction, unlike best_index[mask] = j
        if j < classes - 1:
            best = np.maximum(best, column)
    return best_index


def score_batch(
    frame: pd.DataFrame,
    features: Sequence[str],
    target: str | None,
    keys: pd.Series | Callable[[], pd.Series],
    champion: ScoringModel,
    candidate: ScoringModel | None,
    candidate_share: float,
    salt: str,
) -> BatchScores:
    """Score every row with the champion (and the candidate, in shadow); the candidate serves the
    rows in canary_mask(keys, candidate_share, salt), the champion the rest. Each model's
    predict_proba runs once; the predicted class is classes_[argmax], so it always agrees with
    the served probabilities. `keys` may be a function computing them (row_keys): it then runs in
    a thread while the champion's predict_proba runs (both release the GIL, so on two cores the
    content hash costs no wall time)."""
    classes = np.asarray(champion.model.classes_)
    if candidate is not None:
        candidate_classes = np.asarray(candidate.model.classes_)
        if candidate_classes.tolist() != classes.tolist():
            raise ValueError(f"champion {champion.version} has classes {classes.tolist()} but candidate "
                             f"{candidate.version} has {candidate_classes.tolist()}; both must answer with the same classes")
        if candidate.version == champion.version:
            raise ValueError(f"champion and candidate are both {champion.version}")
    rows = len(frame)
    x = frame[list(features)]

    def score(model: ScoringModel) -> tuple[np.ndarray, np.ndarray]:
        if not rows:  # scikit-learn refuses an empty array
            return np.empty((0, len(classes))), np.empty(0, dtype=np.int8)
        proba = np.asarray(model.model.predict_proba(x), dtype=np.float64)
        return proba, _argmax_rows(proba)

    if callable(keys):
        with ThreadPoolExecutor(max_workers=1) as pool:
            pending = pool.submit(keys)
            proba, served_index = score(champion)
            keys = pending.result()
    else:
        proba, served_index = score(champion)
    if len(keys) != len(frame):
        raise ValueError(f"{len(keys)} row keys for {len(frame)} rows")
    # One contiguous array per class: what the DataFrame and Parquet columns want.
    served_proba = [np.ascontiguousarray(proba[:, j]) for j in range(len(classes))]
    if candidate is not None:
        canary = canary_mask(keys, candidate_share, salt)
        candidate_proba, candidate_index = score(candidate)
        candidate_problems = [
            f"{int(bad.sum())} of {rows} rows have {what}" for what, bad in _probability_checks(candidate_proba) if bad.any()
        ]
        agree = served_index == candidate_index
        champion_index, served_index = served_index, served_index.copy()
        # The canary rows take the candidate's answer, written over the champion's (its
        # predict_proba's own fresh array): np.put/np.take on the rows' positions are several
        # times faster than boolean or 2-D fancy indexing.
        positions = np.flatnonzero(canary)
        np.put(served_index, positions, np.take(candidate_index, positions))
        for j, column in enumerate(served_proba):
            np.put(column, positions, np.take(candidate_proba[:, j], positions))
    else:
        canary = np.zeros(rows, dtype=bool)
        candidate_problems = []
    codes = canary.view(np.int8)  # 0 = champion, 1 = candidate
    versions = [champion.version] + ([candidate.version] if candidate is not None else [])
    # row_key is copied (the caller's Series stays theirs); every other array is this call's own.
    columns: dict[str, Any] = {"row_key": keys.to_numpy(copy=True), "predicted": np.take(classes, served_index)}
    columns.update({f"{PROBA_PREFIX}{c}": served_proba[j] for j, c in enumerate(classes.tolist())})
    # Categorical: one byte per row, and a dictionary-encoded Parquet column. Codes are 0/1 by construction.
    columns["model_version"] = pd.Categorical.from_codes(codes, dtype=pd.CategoricalDtype(versions), validate=False)
    columns["arm"] = pd.Categorical.from_codes(codes, dtype=_ARM_DTYPE, validate=False)
    predictions = pd.DataFrame(columns, copy=False)  # no second copy into consolidated blocks

    candidate_rows = int(np.count_nonzero(canary))
    if len(classes) == 2:  # counting the 1s is ~10x cheaper than bincount
        ones = int(np.count_nonzero(served_index))
        counts = np.array([rows - ones, ones])
    else:
        counts = np.bincount(served_index, minlength=len(classes))
    figures: dict[str, Any] = {
        "rows": rows,
        "class_shares": {str(c): round(float(n) / rows, 6) if rows else 0.0 for c, n in zip(classes.tolist(), counts)},
        "arm_shares": {"champion": round((rows - candidate_rows) / rows, 6) if rows else 0.0,
                       "candidate": round(candidate_rows / rows, 6) if rows else 0.0},
        "arm_rows": {"champion": rows - candidate_rows, "candidate": candidate_rows},
        "versions": {"champion": champion.version, "candidate": candidate.version if candidate else None},
    }
    if candidate is not None:
        figures["candidate_share"] = candidate_share
        figures["agreement"] = round(float(np.mean(agree)), 6) if rows else None
        labels = frame[target] if target is not None and target in frame.columns else pd.Series(np.nan, index=frame.index)
        labelled = labels.notna().to_numpy()
        truth = labels.to_numpy()
        figures["labelled_rows"] = labelled_rows = int(np.count_nonzero(labelled))
        for arm, index in (("champion", champion_index), ("candidate", candidate_index)):
            right = int(np.count_nonzero((np.take(classes, index) == truth) & labelled))
            figures[f"{arm}_accuracy"] = round(right / labelled_rows, 6) if labelled_rows else None
    return BatchScores(predictions=predictions, figures=figures, candidate_problems=candidate_problems)


def _probability_checks(proba: np.ndarray) -> list[tuple[str, np.ndarray]]:
    """(what, which rows) for each way a predict_proba output can be wrong."""
    nan = np.isnan(proba).any(axis=1)
    return [
        ("NaN probabilities", nan),
        ("probabilities outside [0, 1]", ((proba < 0.0) | (proba > 1.0)).any(axis=1)),
        (f"probabilities not summing to 1 (tolerance {PROBA_TOLERANCE:g})", ~nan & (np.abs(proba.sum(axis=1) - 1.0) > PROBA_TOLERANCE)),
    ]


def _first_keys(predictions: pd.DataFrame, where: np.ndarray, limit: int = 3) -> str:
    keys = predictions["row_key"].to_numpy()[where][:limit] if "row_key" in predictions else np.flatnonzero(where)[:limit]
    return ", ".join(map(str, keys.tolist()))


def prediction_problems(predictions: pd.DataFrame, classes: Sequence[Any]) -> list[str]:
    """One line per problem in a predictions table: NaN or out-of-[0, 1] probabilities, rows whose
    probabilities do not sum to 1, predicted classes outside `classes`, an arm answered by more
    than one model version. Empty when the table is sound."""
    problems: list[str] = []
    proba_columns = [f"{PROBA_PREFIX}{c}" for c in classes]
    missing = [c for c in proba_columns + ["predicted", "model_version", "arm"] if c not in predictions.columns]
    if missing:
        return [f"predictions lack column(s) {missing}"]
    proba = predictions[proba_columns].to_numpy(dtype=np.float64, na_value=np.nan)
    checks = [
        *_probability_checks(proba),
        (f"a predicted class outside {list(classes)}", ~predictions["predicted"].isin(list(classes)).to_numpy()),
    ]
    for what, bad in checks:
        if bad.any():
            problems.append(f"{int(bad.sum())} of {len(predictions)} rows have {what} (row_key {_first_keys(predictions, bad)})")
    versions_per_arm = predictions.groupby("arm", observed=True)["model_version"].unique()
    for arm, versions in versions_per_arm.items():
        if len(versions) > 1:
            problems.append(f"arm {arm} was answered by {len(versions)} versions ({', '.join(sorted(map(str, versions)))})")
    return problems
