"""Training a candidate: a scikit-learn Pipeline, a stratified holdout split, holdout metrics.

A model with only numeric features and no imputation is today's Pipeline (scaler, model), so its
params and training identity are unchanged. Any categorical feature or imputation adds a
ColumnTransformer in front of the model: imputation (as declared), scaling (linear models), and
one-hot encoding with infrequent categories grouped, or HistGradientBoosting's native
categorical support. Preprocessing lives in the Pipeline, so serving imputes and encodes the same way.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import numpy as np
import pandas as pd
from sklearn.base import ClassifierMixin
from sklearn.compose import ColumnTransformer
from sklearn.impute import SimpleImputer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, f1_score, precision_score, recall_score, roc_auc_score
from sklearn.pipeline import Pipeline
from sklearn.preprocessing import FunctionTransformer, OneHotEncoder, OrdinalEncoder, StandardScaler
from sklearn.utils import check_array, check_random_state
from sklearn.utils.extmath import _approximate_mode  # the split's own draws, so its rows are train_test_split's

from ml_platform.data.sources import DatasetSpec
from ml_platform.data.validation import as_category_text

# Categories seen in fewer than this share of the training rows share one "infrequent" one-hot column
# (an unseen category at serving time joins it too), so rare values do not each get a weight.
MIN_CATEGORY_FREQUENCY = 0.01
# Estimators that need scaled inputs (the tree ensembles do not).
SCALED_ESTIMATORS = {"logistic_regression"}

def _ensemble(name: str) -> type[ClassifierMixin]:
    import sklearn.ensemble  # ~0.1 s of import time, paid only when an ensemble is chosen

    return getattr(sklearn.ensemble, name)


ESTIMATORS: dict[str, Callable[[], type[ClassifierMixin]]] = {
    "logistic_regression": lambda: LogisticRegression,
    "random_forest": lambda: _ensemble("RandomForestClassifier"),
    "gradient_boosting": lambda: _ensemble("GradientBoostingClassifier"),
    "hist_gradient_boosting": lambda: _ensemble("HistGradientBoostingClassifier"),
}
DEFAULT_PARAMS: dict[str, dict[str, Any]] = {"logistic_regression": {"max_iter": 1000}}


@dataclass(frozen=True)
class TrainingSettings:
    estimator: str = "logistic_regression"
    params: dict[str, Any] | None = None
    holdout_fraction: float = 0.2
    seed: int = 42


@dataclass(frozen=True)
class TrainedCandidate:
    pipeline: Pipeline
    metrics: dict[str, float]
    params: dict[str, Any]
    train: pd.DataFrame
    holdout: pd.DataFrame
    # Recorded with the version: {name: numeric|categorical}, {name: [known values]}, {name: strategy}.
    feature_types: dict[str, str]
    categories: dict[str, list[str]]
    imputation: dict[str, str]


def labelled_rows(frame: pd.DataFrame, spec: DatasetSpec) -> pd.DataFrame:
    """The rows whose label has arrived: what a model is trained and evaluated on. Labels read as
    floats because of the gaps (1.0) are integers again (1)."""
    labelled = frame[frame[spec.target].notna()]
    target = labelled[spec.target]
    if pd.api.types.is_float_dtype(target) and (target == target.round()).all():
        labelled = labelled.assign(**{spec.target: target.astype(np.int64)})
    return labelled


def _category_frame(x: pd.DataFrame) -> pd.DataFrame:
    # Module-level (not a lambda) so that the fitted Pipeline pickles.
    return x.apply(as_category_text)


def known_classes(frame: pd.DataFrame, spec: DatasetSpec) -> tuple[Any, ...]:
    """The declared classes, else the labels seen in `frame` (recorded with the model version)."""
    if spec.classes:
        return tuple(spec.classes)
    return tuple(_jsonable(v) for v in sorted(frame[spec.target].dropna().unique()))


def training_identity(
    data_fingerprint: str, spec: DatasetSpec, settings: TrainingSettings, code: str, libraries: dict[str, str]
) -> str:
    """What makes two trainings the same: data, features, target and classes, estimator and
    params, split, code and library versions. Equal identities would fit equal models."""
    payload: dict[str, Any] = {
        "data": data_fingerprint,
        "features": spec.feature_names,
        "target": spec.target,
        "classes": list(spec.classes) if spec.classes else None,
        "estimator": settings.estimator,
        "params": settings.params or {},
        "holdout_fraction": settings.holdout_fraction,
        "seed": settings.seed,
        "code": code,
        "libraries": libraries,
    }
    # Only when used, so that the identities of numeric, non-imputed models stay what they were.
    if spec.categorical_names:
        payload["categorical"] = spec.categorical_names
    imputation = {f.name: f.impute for f in spec.features if f.impute}
    if imputation:
        payload["imputation"] = imputation
    return hashlib.sha256(json.dumps(payload, sort_keys=True, default=str).encode()).hexdigest()[:16]


def _column_transformer(spec: DatasetSpec, estimator: str) -> ColumnTransformer:
    """Numeric columns first, then categorical ones (hist_gradient_boosting's categorical_features
    are the last columns)."""
    native = estimator == "hist_gradient_boosting"
    transformers = []
    for feature in spec.features:
        if feature.kind == "categorical":
            continue
        steps: list[tuple[str, Any]] = []
        if feature.impute:
            steps.append(("impute", SimpleImputer(strategy=feature.impute)))
        if estimator in SCALED_ESTIMATORS:
            steps.append(("scale", StandardScaler()))
        transformers.append((feature.name, Pipeline(steps) if steps else "passthrough", [feature.name]))
    for feature in spec.features:
        if feature.kind != "categorical":
            continue
        steps = [("text", FunctionTransformer(_category_frame, feature_names_out="one-to-one"))]
        if feature.impute:
            steps.append(("impute", SimpleImputer(strategy="most_frequent", missing_values=np.nan)))
        if native:
            # Unseen at serving: treated as missing, which the trees route natively.
            steps.append(("encode", OrdinalEncoder(handle_unknown="use_encoded_value", unknown_value=np.nan,
                                                   encoded_missing_value=np.nan)))
        else:
            steps.append(("encode", OneHotEncoder(handle_unknown="infrequent_if_exist",
                                                  min_frequency=MIN_CATEGORY_FREQUENCY, sparse_output=False)))
        transformers.append((feature.name, Pipeline(steps), [feature.name]))
    return ColumnTransformer(transformers, verbose_feature_names_out=False)


def build_pipeline(estimator: str, params: dict[str, Any] | None, seed: int, spec: DatasetSpec | None = None) -> Pipeline:
    """The estimator behind today's scaler, or behind a ColumnTransformer when `spec` has
    categorical or imputed features."""
    if estimator not in ESTIMATORS:
        raise ValueError(f"unknown estimator {estimator!r}; choose one of {sorted(ESTIMATORS)}")
    cls = ESTIMATORS[estimator]()
    merged = {**DEFAULT_PARAMS.get(estimator, {}), **(params or {})}
    if "random_state" in cls().get_params():
        merged.setdefault("random_state", seed)
    # Only categorical or imputed features need the ColumnTransformer (and the native categorical flags).
    preprocessed = spec if spec is not None and any(f.kind == "categorical" or f.impute for f in spec.features) else None
    if preprocessed is not None and estimator == "hist_gradient_boosting":
        numeric = len(preprocessed.features) - len(preprocessed.categorical_names)
        merged.setdefault("categorical_features", list(range(numeric, len(preprocessed.features))) or None)
    try:
        model = cls(**merged)
    except TypeError as exc:
        raise ValueError(f"bad hyper-parameters for {estimator}: {exc}") from exc
    if preprocessed is not None:
        return Pipeline([("features", _column_transformer(preprocessed, estimator)), ("model", model)])
    return Pipeline([("scaler", StandardScaler()), ("model", model)])


def split_holdout(frame: pd.DataFrame, target: str, fraction: float, seed: int) -> tuple[pd.DataFrame, pd.DataFrame]:
    """Stratified and seeded, so the same data always yields the same holdout rows."""
    if not 0.0 < fraction < 1.0:
        raise ValueError(f"holdout_fraction must be in (0, 1), got {fraction}")
    counts = frame[target].value_counts()
    rare = counts[counts < 2]
    if len(rare):
        raise ValueError(
            f"{target}: class(es) {list(rare.index)} have a single row; a stratified holdout needs at least 2 rows per class"
        )
    train_rows, holdout_rows = stratified_split_rows(frame[target], fraction, seed)
    return frame.take(train_rows), frame.take(holdout_rows)


def stratified_split_rows(labels: pd.Series, fraction: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """The row positions `train_test_split(..., test_size=fraction, random_state=seed,
    stratify=labels)` picks, in its order, with the same draws from the same generator; without
    its Python list of every index and its sorts (3.9 s of 6.7 s at 10,000,000 rows)."""
    y = check_array(labels, input_name="y", ensure_2d=False, dtype=None)
    n_test = math.ceil(fraction * len(y))
    n_train = len(y) - n_test
    # np.unique's sorted classes and inverse, by hashing instead of sorting; each class's rows in order.
    codes, classes = pd.factorize(y, sort=True)
    class_counts = np.bincount(codes, minlength=len(classes))
    class_rows = [np.flatnonzero(codes == k) for k in range(len(classes))]
    rng = check_random_state(seed)
    train_counts = _approximate_mode(class_counts, n_train, rng)
    test_counts = _approximate_mode(class_counts - train_counts, n_test, rng)
    train, test = [], []
    for rows, count, n_i, t_i in zip(class_rows, class_counts, train_counts, test_counts):
        permuted = rows.take(rng.permutation(count), mode="clip")
        train.append(permuted[:n_i])
        test.append(permuted[n_i : n_i + t_i])
    return rng.permutation(np.concatenate(train)), rng.permutation(np.concatenate(test))


def evaluate(pipeline: Pipeline, holdout: pd.DataFrame, spec: DatasetSpec) -> dict[str, float]:
    """Holdout accuracy, precision, recall, F1 and ROC AUC (macro averages for >2 classes)."""
    x, y = holdout[spec.feature_names], holdout[spec.target]
    predicted = pipeline.predict(x)
    binary = y.nunique() <= 2 and len(pipeline.classes_) == 2
    average = "binary" if binary else "macro"
    pos_label = pipeline.classes_[1] if binary else 1
    metrics = {
        "accuracy": accuracy_score(y, predicted),
        "precision": precision_score(y, predicted, average=average, pos_label=pos_label, zero_division=0),
        "recall": recall_score(y, predicted, average=average, pos_label=pos_label, zero_division=0),
        "f1": f1_score(y, predicted, average=average, pos_label=pos_label, zero_division=0),
    }
    if hasattr(pipeline, "predict_proba"):
        proba = pipeline.predict_proba(x)
        try:
            if binary:
                metrics["roc_auc"] = roc_auc_score(y == pos_label, proba[:, 1])
            else:
                metrics["roc_auc"] = roc_auc_score(y, proba, multi_class="ovr", labels=pipeline.classes_)
        except ValueError:
            metrics["roc_auc"] = float("nan")  # a holdout with one class has no AUC
    return {k: round(float(v), 6) for k, v in metrics.items()}


def train_candidate(frame: pd.DataFrame, spec: DatasetSpec, settings: TrainingSettings) -> TrainedCandidate:
    """Trained and evaluated on the labelled rows of `frame`."""
    labelled = labelled_rows(frame, spec)
    train, holdout = split_holdout(labelled, spec.target, settings.holdout_fraction, settings.seed)
    pipeline = build_pipeline(settings.estimator, settings.params, settings.seed, spec)
    pipeline.fit(train[spec.feature_names], train[spec.target])
    params = {k: _jsonable(v) for k, v in pipeline.named_steps["model"].get_params().items()}
    return TrainedCandidate(
        pipeline=pipeline,
        metrics=evaluate(pipeline, holdout, spec),
        params={"estimator": settings.estimator, **params},
        train=train,
        holdout=holdout,
        feature_types={f.name: f.kind for f in spec.features},
        categories={
            name: sorted(as_category_text(train[name]).dropna().unique().tolist()) for name in spec.categorical_names
        },
        imputation={f.name: f.impute for f in spec.features if f.impute},
    )


def _jsonable(value: Any) -> Any:
    if isinstance(value, np.generic):
        return value.item()
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)
