"""One declared model's pipeline on a real (temporary, SQLite) Dagster instance."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.declaration import DeclaredModel
from ml_platform.model.registry import ModelRegistry, load_production_model
from ml_platform.orchestration.pipeline import build_pipeline_assets
from ml_platform.orchestration.release import CandidateModel, candidate_check_result
from ml_platform_tests.conftest import (
    declared,
    materialize,
    op_config,
    platform,
    promote_at_once,
    registry_of,
    run_job,
    source_config,
    train,
)

WEAK_MODEL = op_config("breast_cancer", "trained_model", estimator="random_forest", params={"n_estimators": 1, "max_depth": 1})
# A new candidate (other params) held to an accuracy it cannot reach.
STRICT_ACCURACY = op_config("breast_cancer", "trained_model", params={"C": 0.9}, accuracy_check={"min_accuracy": 0.999})


def failure_message(result: dg.ExecuteInProcessResult, step: str) -> str:
    failures = [e for e in result.get_step_failure_events() if e.step_key == step]
    assert failures, f"expected {step} to fail"
    data = failures[0].step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def checks_by_name(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_training_job_materializes_the_five_assets_and_promotes_the_first_model(
    instance: dg.DagsterInstance, registry: ModelRegistry
) -> None:
    result = train(instance)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assets = ("raw_data", "validated_data", "trained_model", "staging_model", "production_model")
    assert materialized == {f"breast_cancer/{a}" for a in assets}

    raw_meta = result.asset_materializations_for_node("breast_cancer__raw_data")[0].metadata
    assert raw_meta["dagster/row_count"].value == 569 and raw_meta["column_count"].value == 31
    assert len(raw_meta["preview"].value.records) == 5
    raw_event = instance.get_latest_materialization_event(dg.AssetKey(["breast_cancer", "raw_data"]))
    assert raw_event.asset_materialization.tags["dagster/data_version"] == raw_meta["fingerprint"].value

    # Monitoring is not on the training path: only the checks of the training assets ran.
    checks = checks_by_name(result)
    assert set(checks) == {"pandera_schema", "accuracy_above_threshold", "smoke_test"}
    assert all(check.passed for check in checks.values())
    assert checks["accuracy_above_threshold"].metadata["threshold"].value == 0.70

    version = registry.get("v1")
    assert version.metrics["accuracy"] > 0.9
    assert version.metadata["row_count"] == 569 and len(version.features) == 30
    assert version.metadata["classes"] == [0, 1] and version.metadata["model"] == "breast_cancer"
    assert version.metadata["data_fingerprint"] and version.metadata["code_version"] and version.metadata["code_digest"]
    assert version.metadata["library_versions"]["scikit-learn"]
    assert version.metadata["run_id"] == result.run_id
    assert registry.alias("production") == "v1"

    prod = result.output_for_node("breast_cancer__production_model")
    assert prod["version"] == "v1" and prod["promoted"]
    # The one documented call, outside Dagster, uses the same default location.
    model = load_production_model("breast_cancer")
    frame = result.output_for_node("breast_cancer__validated_data").frame
    assert model.predict(frame[version.features]).shape == (569,)


def test_retraining_on_unchanged_data_registers_nothing_and_says_so(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert train(instance).success
    again = train(instance)
    assert again.success
    assert [v.version for v in registry.list_versions()] == ["v1"]
    assert [h["alias"] for h in registry.history()] == ["staging", "production"]  # nothing new staged or promoted
    metadata = again.asset_materializations_for_node("breast_cancer__trained_model")[0].metadata
    assert metadata["registered"].value is False and metadata["model_version"].value == "v1"
    assert metadata["training"].value == "nothing new registered: v1 was trained on the same data, params and code"
    decision = again.asset_materializations_for_node("breast_cancer__production_model")[0].metadata["decision"].value
    assert decision == "v1 is already in production"
    # Other params are another training: a new version.
    assert train(instance, run_config=op_config("breast_cancer", "trained_model", params={"C": 0.5})).success
    assert [v.version for v in registry.list_versions()] == ["v1", "v2"]


def test_a_rolled_back_version_is_not_promoted_again_by_retraining_on_its_data(
    instance: dg.DagsterInstance, registry: ModelRegistry
) -> None:
    c05 = op_config("breast_cancer", "trained_model", params={"C": 0.5})
    assert train(instance).success and train(instance, run_config=promote_at_once(run_config=c05)).success
    registry.rollback(reason="v2 misbehaves in serving")
    assert registry.alias("production") == "v1"
    result = train(instance, run_config=c05)  # same data, params, code: v2 again, not a new version
    decision = result.asset_materializations_for_node("breast_cancer__production_model")[0].metadata["decision"].value
    assert decision.startswith("v2 was rolled back from production at ") and "(v2 misbehaves in serving)" in decision
    assert registry.alias("production") == "v1"


def test_a_worse_candidate_leaves_the_champion_in_production(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert train(instance).success
    result = train(instance, run_config=WEAK_MODEL)
    assert result.success  # the weak model still clears 0.70, so it reaches the gate
    assert checks_by_name(result)["accuracy_above_threshold"].passed
    assert registry.alias("production") == "v1"
    metadata = result.asset_materializations_for_node("breast_cancer__production_model")[0].metadata
    assert metadata["promoted"].value is False
    assert "candidate v2 accuracy=" in metadata["decision"].value and "worse than champion v1" in metadata["decision"].value
    assert [h["to_version"] for h in registry.history() if h["alias"] == "production"] == ["v1"]
    assert registry.alias("staging") == "v1"  # a refused candidate is not staged


def test_a_candidate_failing_its_blocking_check_is_never_promoted(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    defs = platform()
    assert train(instance, defs=defs).success
    result = train(instance, run_config=STRICT_ACCURACY, defs=defs)
    assert not result.success
    assert not checks_by_name(result)["accuracy_above_threshold"].passed
    assert "breast_cancer/production_model" not in {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}

    # Running the gate alone later must look at the candidate's own check and refuse.
    alone = materialize(instance, defs, "breast_cancer/staging_model,breast_cancer/production_model")
    assert alone.success
    decision = alone.asset_materializations_for_node("breast_cancer__production_model")[0].metadata["decision"].value
    assert decision == "candidate v2 failed checks: accuracy_above_threshold"
    assert registry.alias("production") == "v1"


def test_gate_reads_check_results_of_its_own_candidate_in_its_own_run(instance: dg.DagsterInstance) -> None:
    key = dg.AssetCheckKey(dg.AssetKey(["breast_cancer", "trained_model"]), "accuracy_above_threshold")
    first = train(instance)
    candidate = first.output_for_node("breast_cancer__trained_model")
    assert isinstance(candidate, CandidateModel) and candidate.run_id == first.run_id
    assert candidate_check_result(instance, key, candidate) is True
    # The same version claimed by another run, or another version in this run: no result.
    assert candidate_check_result(instance, key, CandidateModel("v1", {}, candidate.spec, candidate.holdout, "other-run")) is None
    assert candidate_check_result(instance, key, CandidateModel("v9", {}, candidate.spec, candidate.holdout, first.run_id)) is None
    failed = train(instance, run_config=STRICT_ACCURACY)
    assert candidate_check_result(instance, key, failed.output_for_node("breast_cancer__trained_model")) is False


def test_gate_alone_promotes_a_checked_candidate_from_an_earlier_run(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    defs = platform()
    upstream = materialize(instance, defs, "breast_cancer/raw_data,breast_cancer/validated_data,breast_cancer/trained_model")
    assert upstream.success and registry.alias("production") is None
    assert materialize(instance, defs, "breast_cancer/staging_model,breast_cancer/production_model").success
    assert registry.alias("production") == "v1"
    # Once more, alone: the stored staging output is not acted on twice.
    again = materialize(instance, defs, "breast_cancer/production_model")
    assert again.success and [h["alias"] for h in registry.history()] == ["staging", "production"]
    decision = again.asset_materializations_for_node("breast_cancer__production_model")[0].metadata["decision"].value
    assert decision == "v1 is already in production"


def good_frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (x[:, 0] + x[:, 1] > 0).astype(int)})


def csv_model(path: Path, frame: pd.DataFrame, **sections) -> DeclaredModel:
    frame.to_csv(path, index=False)
    return declared("churn", source={"kind": "csv", "path": str(path), "target": "label"}, **sections)


def test_a_csv_model_records_the_classes_it_saw_and_refuses_an_unseen_label_naming_it(
    instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path
) -> None:
    model = csv_model(tmp_path / "churn.csv", good_frame())
    defs = platform(model)
    assert train(instance, model, defs=defs).success
    registry = registry_of(dagster_home, "churn")
    assert registry.get("v1").metadata["classes"] == [0, 1]

    third = good_frame().assign(label=lambda f: f["label"].where(f.index % 10 != 7, 2))
    third.to_csv(tmp_path / "churn.csv", index=False)
    result = train(instance, model, defs=defs)
    assert not result.success
    message = failure_message(result, "churn__validated_data")
    assert "label: 2 is not one of the production model's classes [0, 1] x20" in message
    assert [v.version for v in registry.list_versions()] == ["v1"]

    # The declaration may allow new classes: then the 3-class data trains a candidate.
    allowing = run_job(instance, defs, "churn_training", op_config("churn", "validated_data", allow_new_classes=True))
    assert allowing.success
    assert registry.get("v2").metadata["classes"] == [0, 1, 2]


def test_a_feature_set_change_is_promoted_when_the_declaration_allows_it(
    instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path
) -> None:
    path = tmp_path / "churn.csv"
    assert train(instance, csv_model(path, good_frame())).success
    registry = registry_of(dagster_home, "churn")
    wider = good_frame().assign(d=lambda f: f["a"] * 2 + 1)
    refused = train(instance, csv_model(path, wider))
    assert refused.success and registry.alias("production") == "v1"
    decision = refused.asset_materializations_for_node("churn__production_model")[0].metadata["decision"].value
    assert "uses a different feature set than v1; set allow_feature_change" in decision

    allowed = train(instance, csv_model(path, wider, gate={"allow_feature_change": True}), promote_at_once("churn"))
    assert allowed.success
    assert registry.alias("production") == "v2" and registry.get("v2").features == ["a", "b", "c", "d"]


def write_csv(path: Path, frame: pd.DataFrame) -> dict:
    """The shipped model pointed (for one run) at a CSV with its 30 declared features."""
    frame.to_csv(path, index=False)
    features = [c for c in bundled_like().columns if c != "label"]
    return source_config("breast_cancer", kind="csv", path=str(path), target="label", classes=None, features=features)


def file_source(path: Path, content: bytes) -> dict:
    path.write_bytes(content)
    return source_config("breast_cancer", kind=path.suffix.lstrip("."), path=str(path))


def bundled_like(rows: slice = slice(None)) -> pd.DataFrame:
    """The bundled data as a CSV would carry it: the same features and labels."""
    from ml_platform.data.sources import load_breast_cancer_source

    return load_breast_cancer_source().frame.iloc[rows].rename(columns={"target": "label"})


@pytest.mark.parametrize(
    "make_config, step, phrase",
    [
        (lambda p: source_config("breast_cancer", kind="csv", path=str(p / "nope.csv")), "raw_data", "nope.csv' could not be read: file not found"),
        (lambda p: file_source(p / "e.csv", b""), "raw_data", "e.csv' could not be read: the file is empty"),
        (lambda p: file_source(p / "b.parquet", b"garbage"), "raw_data", "b.parquet' could not be read: unreadable"),
        (lambda p: write_csv(p / "t.csv", bundled_like().astype({"mean_radius": object}).assign(mean_radius=lambda f: f["mean_radius"].where(f.index != 4, "twelve"))), "validated_data", "mean_radius: numeric x1"),
        (lambda p: write_csv(p / "i.csv", bundled_like().assign(mean_area=lambda f: f["mean_area"].where(f.index != 9, np.inf))), "validated_data", "mean_area: finite x1"),
        (lambda p: write_csv(p / "u.csv", bundled_like().assign(label=lambda f: f["label"].where(f.index != 3, 2))), "validated_data", "label: 2 is not one of the production model's classes [0, 1]"),
        (lambda p: write_csv(p / "m.csv", bundled_like().drop(columns=["mean_area"])), "validated_data", "missing column(s) 'mean_area'"),
        (lambda p: write_csv(p / "s.csv", bundled_like().assign(label=1)), "validated_data", "single class"),
        (lambda p: write_csv(p / "f.csv", bundled_like(slice(0, 20))), "validated_data", "20 rows, fewer than the minimum of 50"),
    ],
    ids=["missing-file", "empty-file", "unreadable", "non-numeric", "infinity", "unseen-label", "missing-column",
         "single-class", "too-few-rows"],
)
def test_bad_input_fails_at_its_step_with_a_clear_error_and_production_is_unchanged(
    instance: dg.DagsterInstance, registry: ModelRegistry, tmp_path: Path, make_config, step: str, phrase: str
) -> None:
    defs = platform()
    assert train(instance, defs=defs).success
    history_before = registry.history()
    # Everything, as `dagster asset materialize --select '*'` runs it: monitoring checks included.
    result = materialize(instance, defs, "*", run_config=make_config(tmp_path))
    assert not result.success
    assert phrase in failure_message(result, f"breast_cancer__{step}")
    failed_steps = {e.step_key for e in result.get_step_failure_events()}
    assert failed_steps == {f"breast_cancer__{step}"}  # nothing else crashed, validation spoke first
    assert registry.alias("production") == "v1" and registry.history() == history_before
    assert [v.version for v in registry.list_versions()] == ["v1"]
    features = registry.get("v1").features
    assert load_production_model("breast_cancer").predict(pd.DataFrame(np.zeros((1, 30)), columns=features)).shape == (1,)


def test_validation_failure_table_is_in_the_failure_metadata(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    frame = good_frame().astype({"a": object})
    frame.loc[3, "a"] = "x"
    frame.loc[8, "c"] = np.nan
    result = train(instance, csv_model(tmp_path / "d.csv", frame))
    failure = [e for e in result.get_step_failure_events() if e.step_key == "churn__validated_data"][0]
    table = failure.step_failure_data.user_failure_data.metadata["failures"].value
    rows = {(r.data["column"], r.data["check"], r.data["row"]) for r in table.records}
    assert rows == {("a", "numeric", 3), ("c", "not_nullable", 8)}


def test_quarantine_policy_saves_and_shows_invalid_rows(instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path) -> None:
    frame = good_frame()
    frame.loc[[5, 6], "b"] = np.inf
    model = csv_model(tmp_path / "q.csv", frame, validation={"max_invalid_fraction": 0.05})
    result = train(instance, model)
    assert result.success
    metadata = result.asset_materializations_for_node("churn__validated_data")[0].metadata
    assert metadata["quarantined_rows"].value == 2 and metadata["dagster/row_count"].value == 198
    saved = pd.read_csv(metadata["quarantine_path"].value)
    assert list(saved["row"]) == [5, 6]
    schema_check = checks_by_name(result)["pandera_schema"]
    assert not schema_check.passed and schema_check.severity == dg.AssetCheckSeverity.WARN
    assert registry_of(dagster_home, "churn").alias("production") == "v1"  # a WARN check does not block the gate


def test_transient_read_errors_are_retried_with_backoff(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    from ml_platform.orchestration.resources import DataSourceResource

    marker = tmp_path / "attempts"

    class FlakySource(DataSourceResource):
        def load(self):
            attempts = int(marker.read_text()) if marker.exists() else 0
            marker.write_text(str(attempts + 1))
            if attempts == 0:
                raise OSError("connection reset by peer")
            return super().load()

    raw = build_pipeline_assets(declared("flaky")).raw_data
    result = dg.materialize([raw], instance=instance, resources={"flaky_data_source": FlakySource()}, raise_on_error=False)
    assert result.success and marker.read_text() == "2"
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 1


def test_permanent_source_errors_are_not_retried(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    result = train(instance, run_config=source_config("breast_cancer", kind="csv", path=str(tmp_path / "missing.csv")))
    assert not result.success
    assert not any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)


def test_launchpad_override_of_one_source_field_keeps_the_rest_of_the_declaration(
    instance: dg.DagsterInstance, dagster_home: Path
) -> None:
    model = declared("synth", source={"kind": "synthetic", "synthetic": {"rows": 777, "features": 5, "seed": 3}})
    result = train(instance, model, run_config=source_config("synth", synthetic={"rows": 900}))
    assert result.success
    version = registry_of(dagster_home, "synth").get("v1")
    # rows overridden for this run; features (5) and the kind still as declared.
    assert version.metadata["row_count"] == 900 and len(version.features) == 5
