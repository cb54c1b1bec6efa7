"""Deliberately faulty classifiers for the smoke tests. They live in an importable module (not in a
test module) because the smoke test unpickles them in a fresh process, which imports them by name."""

from __future__ import annotations

import os
import time

import numpy as np
import pandas as pd


class NaNClassifier:
    """Two classes; every probability is NaN."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.full((len(x), 2), np.nan)


class UnderOneClassifier:
    """Two classes whose probabilities sum to 0.6."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        return np.tile([0.2, 0.4], (len(x), 1))


class SleepyClassifier:
    """Sleeps far longer than any smoke timeout before answering."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        time.sleep(60)
        return np.full((len(x), 2), 0.5)


class CrashingClassifier:
    """Ends its process abruptly, the way a segfaulting native library would."""

    classes_ = np.array([0, 1])

    def predict_proba(self, x: pd.DataFrame) -> np.ndarray:
        os._exit(3)


class Unpicklable:
    """Pickles fine, but unpickling it raises (as an artifact pickled by an incompatible library would)."""

    def __reduce__(self) -> tuple[object, tuple[()]]:
        return (_refuse_unpickling, ())


def _refuse_unpickling() -> None:
    raise RuntimeError("this artifact was pickled by an incompatible library version")
