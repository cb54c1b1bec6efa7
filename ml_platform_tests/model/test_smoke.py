"""The smoke test of a staged version, in a fresh process, against real registries in tmp_path."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.data.sources import DatasetSpec, FeatureSpec
from ml_platform.model.registry import ModelRegistry
from ml_platform.model.smoke import SmokePolicy, SmokeResult, _SERVER, prestart, run_smoke_test
from ml_platform.model.training import TrainedCandidate, TrainingSettings, train_candidate
from ml_platform_tests.model.smoke_models import CrashingClassifier, NaNClassifier, SleepyClassifier, UnderOneClassifier, Unpicklable

FEATURES = ["a", "b", "c"]
SPEC = DatasetSpec(features=tuple(FeatureSpec(f) for f in FEATURES), target="label")
POLICY = SmokePolicy()


@pytest.fixture(scope="module")
def trained() -> TrainedCandidate:
    prestart()  # the fork server's imports overlap with this training
    rng = np.random.default_rng(0)
    frame = pd.DataFrame(rng.normal(size=(600, 3)), columns=FEATURES)
    return train_candidate(frame.assign(label=(frame.a + frame.b > 0).astype(int)), SPEC, TrainingSettings())


def registered(root: Path, model: Any) -> str:
    return ModelRegistry(root).register(model, {"target": "label", "features": FEATURES}).version


def smoke(root: Path, version: str, trained: TrainedCandidate, policy: SmokePolicy = POLICY, **kwargs: Any) -> SmokeResult:
    return run_smoke_test(str(root), version, trained.holdout, FEATURES, [0, 1], policy, **kwargs)


def test_a_good_model_passes_in_another_process(tmp_path: Path, trained: TrainedCandidate) -> None:
    version = registered(tmp_path, trained.pipeline)
    result = smoke(tmp_path, version, trained)
    assert result.passed, result.failures
    figures = result.figures
    assert figures["pid"] != os.getpid() and figures["rows"] == len(trained.holdout) == 120
    assert sum(figures["class_counts"].values()) == 120 and set(figures["class_counts"]) == {"0", "1"}
    assert 0 < figures["row_latency_ms"] < POLICY.max_row_latency_ms and figures["seconds"] > 0
    assert SmokeResult.from_dict(result.to_dict()) == result
    # Each smoke test runs in a process of its own, forked afresh; the sample is cut to the policy's rows.
    again = smoke(tmp_path, version, trained, SmokePolicy(sample_rows=50))
    assert again.passed and again.figures["rows"] == 50 and again.figures["pid"] not in (figures["pid"], os.getpid())


def test_an_artifact_changed_after_registration_is_refused(tmp_path: Path, trained: TrainedCandidate) -> None:
    version = registered(tmp_path, trained.pipeline)
    artifact = tmp_path / "versions" / version / "model.pkl"
    artifact.write_bytes(artifact.read_bytes()[:-1] + b"\0")
    result = smoke(tmp_path, version, trained)
    assert not result.passed
    assert result.failures[0].startswith("v1 artifact refused:") and "sha256" in result.failures[0]
    assert smoke(tmp_path, "v9", trained).failures == [f"v9 artifact refused: model version 'v9' not found in registry {tmp_path}"]


def test_a_model_predicting_one_class_only_is_refused(tmp_path: Path, trained: TrainedCandidate) -> None:
    x, y = trained.train[FEATURES], trained.train["label"]
    version = registered(tmp_path, DummyClassifier(strategy="constant", constant=1).fit(x, y))
    result = smoke(tmp_path, version, trained)
    assert result.failures == ["v1 predicts only class 1 on 120 holdout rows whose labels have 2 classes"]


def test_bad_probabilities_and_artifacts_without_predict_proba_are_refused(tmp_path: Path, trained: TrainedCandidate) -> None:
    registry = ModelRegistry(tmp_path)
    nan = registered(tmp_path, NaNClassifier())
    under_one = registered(tmp_path, UnderOneClassifier())
    no_proba = registry.register({"not": "a model"}, {"target": "label"}).version
    unpicklable = registry.register(Unpicklable(), {"target": "label"}).version
    assert "v1 gives NaN probabilities on 120 of 120 rows" in smoke(tmp_path, nan, trained).failures
    assert smoke(tmp_path, under_one, trained).failures == [
        "v2 gives probabilities not summing to 1 (tolerance 1e-06) on 120 of 120 rows",
        "v2 predicts only class 1 on 120 holdout rows whose labels have 2 classes"]
    assert smoke(tmp_path, no_proba, trained).failures == ["v3 artifact (dict) has no predict_proba or classes_"]
    [failure] = smoke(tmp_path, unpicklable, trained).failures
    assert failure.startswith("v4 artifact could not be unpickled: RuntimeError: this artifact was pickled")


def test_a_too_low_latency_bound_fails(tmp_path: Path, trained: TrainedCandidate) -> None:
    version = registered(tmp_path, trained.pipeline)
    result = smoke(tmp_path, version, trained, SmokePolicy(max_row_latency_ms=0.001))
    [failure] = result.failures
    assert failure.startswith(f"v1 per-row latency {result.figures['row_latency_ms']} ms (median of 20 single-row calls)")
    assert failure.endswith("exceeds the bound of 0.001 ms")


def test_a_crash_a_timeout_and_a_dead_server_are_failed_results(tmp_path: Path, trained: TrainedCandidate) -> None:
    crashing = registered(tmp_path, CrashingClassifier())
    sleepy = registered(tmp_path, SleepyClassifier())
    good = registered(tmp_path, trained.pipeline)
    assert smoke(tmp_path, crashing, trained).failures == [
        "v1 smoke test did not complete: the smoke process exited with code 3"]
    assert smoke(tmp_path, sleepy, trained, timeout_s=1.0).failures == [
        "v2 smoke test did not complete: the smoke process was killed after 1 s"]
    # The server survives both; killed from outside, it is restarted by the next call.
    assert _SERVER._process is not None
    _SERVER._process.kill()
    _SERVER._process.wait()
    assert smoke(tmp_path, good, trained).passed
