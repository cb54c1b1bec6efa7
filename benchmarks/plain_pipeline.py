"""The ML pipeline's work as one plain script: pandas + scikit-learn, no orchestration.

The baseline that `pipeline_benchmark.py` compares `dagster asset materialize` against. It does
what the four assets do, minus Dagster (no event log, no IO manager, no asset checks) and minus
Pandera (the same checks written in plain pandas), and imports nothing from ml_platform:

    1. load       bundled breast-cancer data (columns snake_cased), the synthetic generator
                  (same algorithm and seed as ml_platform.data.sources.generate_synthetic,
                  so identical data), or a CSV/Parquet file
    2. validate   declared columns present, numeric (coerced to float), non-null, finite,
                  non-negative (bundled), target in the declared classes, >= --min-rows rows,
                  two classes; undeclared columns are dropped; a content fingerprint of the
                  raw and the validated frame (as the assets record as data versions)
    3. train      stratified 80/20 split (seed 42), StandardScaler + LogisticRegression(max_iter=1000)
    4. evaluate   holdout accuracy, precision, recall, F1, ROC AUC
    5. register   pickle to <out>/versions/v1/model.pkl, metadata.json with metrics and sha256
    6. promote    write the alias file atomically (temp file, fsync, os.replace)

    python benchmarks/plain_pipeline.py --source bundled
    python benchmarks/plain_pipeline.py --source synthetic --rows 1000000 --features 10

Prints one JSON line: metrics, row counts and per-stage seconds (measured inside the process,
so without interpreter start-up and imports, which are reported as `import_s`).
"""

from __future__ import annotations

import time

_T0 = time.perf_counter()

import argparse  # noqa: E402
import hashlib  # noqa: E402
import json  # noqa: E402
import os  # noqa: E402
import pickle  # noqa: E402
import re  # noqa: E402
import shutil  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
from datetime import datetime, timezone  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import pandas as pd  # noqa: E402
from sklearn.linear_model import LogisticRegression  # noqa: E402
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score  # noqa: E402
from sklearn.model_selection import train_test_split  # noqa: E402
from sklearn.pipeline import Pipeline  # noqa: E402
from sklearn.preprocessing import StandardScaler  # noqa: E402

IMPORT_S = time.perf_counter() - _T0
SEED = 42


class ValidationFailed(ValueError):
    pass


# -- 1. load ---------------------------------------------------------------------------------
def snake_case(name: str) -> str:
    return re.sub(r"[^0-9a-zA-Z]+", "_", name).strip("_").lower()


def load_bundled() -> tuple[pd.DataFrame, list[str], str, tuple, float | None]:
    from sklearn.datasets import load_breast_cancer

    bunch = load_breast_cancer(as_frame=True)
    frame = bunch.frame.rename(columns=snake_case)
    features = [snake_case(c) for c in bunch.feature_names]
    return frame, features, "target", (0, 1), 0.0  # all 30 measurements are non-negative


def load_synthetic(rows: int, features: int, positive_fraction: float = 0.5, seed: int = SEED):
    """Same algorithm as ml_platform.data.sources.generate_synthetic (no drift)."""
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((rows, features))
    concept = np.random.default_rng(20_240_613)  # as ml_platform.data.sources.CONCEPT_SEED
    weights = concept.uniform(0.5, 1.5, features) * concept.choice([-1.0, 1.0], features)
    logits = x @ weights / np.sqrt(features) * 3.0
    threshold = np.quantile(logits, 1.0 - positive_fraction)
    probabilities = 1.0 / (1.0 + np.exp(-(logits - threshold) * 2.0))
    target = (rng.random(rows) < probabilities).astype(np.int64)
    names = [f"f{i}" for i in range(features)]
    frame = pd.DataFrame(x, columns=names)
    frame["target"] = target
    return frame, names, "target", (0, 1), None


def load_file(path: str, kind: str, target: str):
    frame = pd.read_csv(path) if kind == "csv" else pd.read_parquet(path)
    features = [c for c in frame.columns if c != target]
    return frame, features, target, None, None


def fingerprint(frame: pd.DataFrame) -> str:
    """Content hash (names, dtypes, values in order), as ml_platform.data.sources.fingerprint_frame."""
    digest = hashlib.sha256()
    digest.update("\x1f".join(f"{c}:{t}" for c, t in frame.dtypes.astype(str).items()).encode())
    digest.update(pd.util.hash_pandas_object(frame, index=False).to_numpy().tobytes())
    return digest.hexdigest()[:16]


# -- 2. validate -----------------------------------------------------------------------------
def validate(frame: pd.DataFrame, features: list[str], target: str, classes, min_value, min_rows: int) -> pd.DataFrame:
    if len(frame) < min_rows:
        raise ValidationFailed(f"{len(frame)} rows, fewer than the minimum of {min_rows}")
    missing = [c for c in [*features, target] if c not in frame.columns]
    if missing:
        raise ValidationFailed(f"declared columns missing: {missing}")
    valid = frame[[*features, target]].copy()  # undeclared columns are dropped
    problems: list[str] = []
    for name in features:
        column = pd.to_numeric(valid[name], errors="coerce").astype(float)
        not_numeric = int((column.isna() & valid[name].notna()).sum())
        if not_numeric:
            problems.append(f"{name}: {not_numeric} non-numeric values")
        values = column.to_numpy()
        if int(np.isnan(values).sum()) > not_numeric:
            problems.append(f"{name}: nulls")
        if np.isinf(values).any():
            problems.append(f"{name}: infinite values")
        if min_value is not None and (values < min_value).any():
            problems.append(f"{name}: values below {min_value}")
        valid[name] = column
    if valid[target].isna().any():
        problems.append(f"{target}: nulls")
    if classes is not None and not valid[target].isin(classes).all():
        problems.append(f"{target}: values outside {list(classes)}")
    if problems:
        raise ValidationFailed("; ".join(problems))
    if valid[target].nunique() < 2:
        raise ValidationFailed(f"target {target!r} has a single class; a classifier needs two")
    return valid.reset_index(drop=True)


# -- 3./4. train and evaluate -------------------------------------------------------------------
def train(frame: pd.DataFrame, features: list[str], target: str):
    train_frame, holdout = train_test_split(frame, test_size=0.2, random_state=SEED, stratify=frame[target])
    model = Pipeline([("scaler", StandardScaler()), ("model", LogisticRegression(max_iter=1000, random_state=SEED))])
    model.fit(train_frame[features], train_frame[target])
    return model, train_frame, holdout


def evaluate(model: Pipeline, holdout: pd.DataFrame, features: list[str], target: str) -> dict[str, float]:
    x, y = holdout[features], holdout[target]
    predicted = model.predict(x)
    positive = model.classes_[1]
    metrics = {
        "accuracy": accuracy_score(y, predicted),
        "precision": precision_score(y, predicted, pos_label=positive, zero_division=0),
        "recall": recall_score(y, predicted, pos_label=positive, zero_division=0),
        "f1": f1_score(y, predicted, pos_label=positive, zero_division=0),
        "roc_auc": roc_auc_score(y == positive, model.predict_proba(x)[:, 1]),
    }
    return {k: round(float(v), 6) for k, v in metrics.items()}


# -- 5./6. register and promote -------------------------------------------------------------
def write_durably(path: Path, data: bytes) -> None:
    with path.open("wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())


def register(root: Path, model: Pipeline, metadata: dict) -> tuple[str, str]:
    version_dir = root / "versions" / "v1"
    version_dir.mkdir(parents=True)
    artifact = version_dir / "model.pkl"
    write_durably(artifact, pickle.dumps(model, protocol=pickle.HIGHEST_PROTOCOL))
    digest = hashlib.sha256()
    with artifact.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    sha = digest.hexdigest()
    record = {**metadata, "version": "v1", "created_at": datetime.now(timezone.utc).isoformat(), "sha256": sha}
    write_durably(version_dir / "metadata.json", json.dumps(record, indent=2, default=str).encode())
    return "v1", sha


def promote(root: Path, version: str, metrics: dict[str, float]) -> None:
    state = {"aliases": {"production": version}, "history": [{"alias": "production", "to_version": version, "metrics": metrics}]}
    tmp = root / f".state-{os.getpid()}.tmp"
    write_durably(tmp, json.dumps(state, indent=1).encode())
    os.replace(tmp, root / "state.json")  # atomic on POSIX


# -- main ----------------------------------------------------------------------------------
def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--source", choices=["bundled", "synthetic", "csv", "parquet"], default="bundled")
    parser.add_argument("--rows", type=int, default=1_000)
    parser.add_argument("--features", type=int, default=10)
    parser.add_argument("--path", help="file for --source csv/parquet")
    parser.add_argument("--target", default="target")
    parser.add_argument("--min-rows", type=int, default=50)
    parser.add_argument("--out-dir", help="registry root to write (default: a temporary directory, removed at exit)")
    args = parser.parse_args(argv)

    stages: dict[str, float] = {}
    t = time.perf_counter()

    def lap(name: str) -> None:
        nonlocal t
        now = time.perf_counter()
        stages[name] = round(now - t, 4)
        t = now

    if args.source == "bundled":
        frame, features, target, classes, min_value = load_bundled()
    elif args.source == "synthetic":
        frame, features, target, classes, min_value = load_synthetic(args.rows, args.features)
    else:
        if not args.path:
            parser.error("--path is required for csv/parquet")
        frame, features, target, classes, min_value = load_file(args.path, args.source, args.target)
    raw_fingerprint = fingerprint(frame)
    lap("load")

    try:
        valid = validate(frame, features, target, classes, min_value, args.min_rows)
    except ValidationFailed as exc:
        print(f"validation failed: {exc}", file=sys.stderr)
        return 1
    valid_fingerprint = fingerprint(valid)
    lap("validate")

    model, train_frame, holdout = train(valid, features, target)
    lap("train")
    metrics = evaluate(model, holdout, features, target)
    lap("evaluate")

    temporary = args.out_dir is None
    root = Path(tempfile.mkdtemp(prefix="plain_pipeline_")) if temporary else Path(args.out_dir)
    try:
        version, sha = register(
            root,
            model,
            {
                "metrics": metrics,
                "data_fingerprint": valid_fingerprint,
                "raw_fingerprint": raw_fingerprint,
                "row_count": len(valid),
                "train_rows": len(train_frame),
                "holdout_rows": len(holdout),
                "features": features,
                "target": target,
            },
        )
        lap("register")
        promote(root, version, metrics)
        lap("promote")
    finally:
        if temporary:
            shutil.rmtree(root, ignore_errors=True)

    print(json.dumps({"source": args.source, "rows": len(valid), "features": len(features), "metrics": metrics,
                      "version": version, "sha256": sha, "import_s": round(IMPORT_S, 4), "stages_s": stages}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
