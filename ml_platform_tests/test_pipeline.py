"""The whole graph on a real (temporary, SQLite) Dagster instance."""

from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest

from ml_platform.model.registry import ModelRegistry, load_production_model
from ml_platform.orchestration.assets import ACCURACY_CHECK, ASSETS, latest_check_result
from ml_platform.orchestration.resources import DataSourceResource
from ml_platform_tests.conftest import pipeline_resources, run_pipeline

WEAK_MODEL = {"ops": {"trained_model": {"config": {"estimator": "random_forest", "params": {"n_estimators": 1, "max_depth": 1}}}}}
STRICT_ACCURACY = {"ops": {"trained_model": {"config": {"min_accuracy": 0.999}}}}


def failure_message(result: dg.ExecuteInProcessResult, step: str) -> str:
    failures = [e for e in result.get_step_failure_events() if e.step_key == step]
    assert failures, f"expected {step} to fail"
    data = failures[0].step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message


def checks_by_name(result: dg.ExecuteInProcessResult) -> dict[str, dg.AssetCheckEvaluation]:
    return {e.check_name: e for e in result.get_asset_check_evaluations()}


def test_whole_graph_materializes_and_promotes_the_first_model(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    result = run_pipeline(instance)
    assert result.success
    materialized = {e.asset_key.to_user_string() for e in result.get_asset_materialization_events()}
    assert materialized == {"raw_data", "validated_data", "trained_model", "production_model"}

    raw_meta = result.asset_materializations_for_node("raw_data")[0].metadata
    assert raw_meta["dagster/row_count"].value == 569 and raw_meta["column_count"].value == 31
    assert len(raw_meta["preview"].value.records) == 5
    raw_event = instance.get_latest_materialization_event(dg.AssetKey("raw_data"))
    assert raw_event.asset_materialization.tags["dagster/data_version"] == raw_meta["fingerprint"].value

    checks = checks_by_name(result)
    assert checks["pandera_schema"].passed and checks["accuracy_above_threshold"].passed
    assert checks["accuracy_above_threshold"].metadata["threshold"].value == 0.70

    version = registry.get("v1")
    assert version.metrics["accuracy"] > 0.9
    assert version.metadata["row_count"] == 569 and len(version.features) == 30
    assert version.metadata["data_fingerprint"] and version.metadata["code_version"]
    assert version.metadata["library_versions"]["scikit-learn"]
    assert version.metadata["run_id"] == result.run_id
    assert registry.alias("production") == "v1"

    prod = result.output_for_node("production_model")
    assert prod["version"] == "v1" and prod["promoted"]
    # The one documented call, outside Dagster, uses the same default location.
    model = load_production_model()
    assert model.predict(result.output_for_node("validated_data").frame[version.features]).shape == (569,)


def test_a_worse_candidate_leaves_the_champion_in_production(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert run_pipeline(instance).success
    result = run_pipeline(instance, run_config=WEAK_MODEL)
    assert result.success  # the weak model still clears 0.70, so it reaches the gate
    assert checks_by_name(result)["accuracy_above_threshold"].passed
    assert registry.alias("production") == "v1"
    metadata = result.asset_materializations_for_node("production_model")[0].metadata
    assert metadata["promoted"].value is False
    assert "candidate v2 accuracy=" in metadata["decision"].value and "worse than champion v1" in metadata["decision"].value
    assert metadata["production_version"].value == "v1"
    assert [h["to_version"] for h in registry.history()] == ["v1"]


def test_a_candidate_failing_its_blocking_check_is_never_promoted(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    assert run_pipeline(instance).success
    result = run_pipeline(instance, run_config=STRICT_ACCURACY)
    assert not result.success
    assert not checks_by_name(result)["accuracy_above_threshold"].passed
    assert "production_model" not in {e.asset_key.path[-1] for e in result.get_asset_materialization_events()}

    # Running the gate alone later must look at the check itself and refuse.
    alone = run_pipeline(instance, selection="production_model")
    assert alone.success
    decision = alone.asset_materializations_for_node("production_model")[0].metadata["decision"].value
    assert decision == "candidate v2 failed checks: accuracy_above_threshold"
    assert registry.alias("production") == "v1"


def test_gate_reads_check_results_only_for_the_very_candidate(instance: dg.DagsterInstance) -> None:
    # A candidate whose check never ran (e.g. its run died between output and check) has
    # no result; neither does one whose latest result belongs to another version.
    assert latest_check_result(instance, ACCURACY_CHECK, "v1") is None
    assert run_pipeline(instance).success
    assert latest_check_result(instance, ACCURACY_CHECK, "v1") is True
    assert latest_check_result(instance, ACCURACY_CHECK, "v2") is None
    assert not run_pipeline(instance, run_config=STRICT_ACCURACY).success
    assert latest_check_result(instance, ACCURACY_CHECK, "v2") is False


def test_gate_alone_promotes_a_checked_candidate_from_an_earlier_run(instance: dg.DagsterInstance, registry: ModelRegistry) -> None:
    upstream = dg.AssetSelection.assets("raw_data", "validated_data", "trained_model")
    assert dg.materialize(ASSETS, instance=instance, resources=pipeline_resources(), selection=upstream).success
    assert registry.alias("production") is None
    assert run_pipeline(instance, selection="production_model").success
    assert registry.alias("production") == "v1"


def write_csv(path: Path, frame: pd.DataFrame) -> DataSourceResource:
    frame.to_csv(path, index=False)
    return DataSourceResource(kind="csv", path=str(path), target_column="label", classes=["0", "1"])


def file_source(path: Path, content: bytes) -> DataSourceResource:
    path.write_bytes(content)
    return DataSourceResource(kind=path.suffix.lstrip("."), path=str(path))


def good_frame(rows: int = 200) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    x = rng.normal(size=(rows, 3))
    return pd.DataFrame({"a": x[:, 0], "b": x[:, 1], "c": x[:, 2], "label": (x[:, 0] + x[:, 1] > 0).astype(int)})


@pytest.mark.parametrize(
    "make_source, step, phrase",
    [
        (lambda p: DataSourceResource(kind="csv", path=str(p / "nope.csv")), "raw_data", "nope.csv' could not be read: file not found"),
        (lambda p: file_source(p / "e.csv", b""), "raw_data", "e.csv' could not be read: the file is empty"),
        (lambda p: file_source(p / "b.parquet", b"garbage"), "raw_data", "b.parquet' could not be read: unreadable"),
        (lambda p: write_csv(p / "t.csv", good_frame().astype({"a": object}).assign(a=lambda f: f["a"].where(f.index != 4, "n/a"))), "validated_data", "1 of 200 rows invalid"),
        (lambda p: write_csv(p / "i.csv", good_frame().assign(b=lambda f: f["b"].where(f.index != 9, np.inf))), "validated_data", "b: finite x1"),
        (lambda p: write_csv(p / "s.csv", good_frame().assign(label=1)), "validated_data", "single class"),
        (lambda p: write_csv(p / "f.csv", good_frame(20)), "validated_data", "20 rows, fewer than the minimum of 50"),
    ],
    ids=["missing-file", "empty-file", "unreadable", "non-numeric", "infinity", "single-class", "too-few-rows"],
)
def test_bad_input_fails_with_a_clear_error_and_production_is_unchanged(
    instance: dg.DagsterInstance, registry: ModelRegistry, tmp_path: Path, make_source, step: str, phrase: str
) -> None:
    assert run_pipeline(instance).success
    history_before = registry.history()
    result = run_pipeline(instance, source=make_source(tmp_path))
    assert not result.success
    assert phrase in failure_message(result, step)
    assert registry.alias("production") == "v1" and registry.history() == history_before
    assert [v.version for v in registry.list_versions()] == ["v1"]
    features = registry.get("v1").features
    assert load_production_model().predict(pd.DataFrame(np.zeros((1, 30)), columns=features)).shape == (1,)


def test_validation_failure_table_is_in_the_failure_metadata(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    frame = good_frame().astype({"a": object})
    frame.loc[3, "a"] = "x"
    frame.loc[8, "c"] = np.nan
    result = run_pipeline(instance, source=write_csv(tmp_path / "d.csv", frame))
    failure = [e for e in result.get_step_failure_events() if e.step_key == "validated_data"][0]
    table = failure.step_failure_data.user_failure_data.metadata["failures"].value
    rows = {(r.data["column"], r.data["check"], r.data["row"]) for r in table.records}
    assert rows == {("a", "numeric", 3), ("c", "not_nullable", 8)}


def test_quarantine_policy_saves_and_shows_invalid_rows(instance: dg.DagsterInstance, registry: ModelRegistry, tmp_path: Path) -> None:
    frame = good_frame()
    frame.loc[[5, 6], "b"] = np.inf
    config = {"ops": {"validated_data": {"config": {"max_invalid_fraction": 0.05}}}}
    result = run_pipeline(instance, source=write_csv(tmp_path / "q.csv", frame), run_config=config)
    assert result.success
    metadata = result.asset_materializations_for_node("validated_data")[0].metadata
    assert metadata["quarantined_rows"].value == 2 and metadata["dagster/row_count"].value == 198
    saved = pd.read_csv(metadata["quarantine_path"].value)
    assert list(saved["row"]) == [5, 6]
    schema_check = checks_by_name(result)["pandera_schema"]
    assert not schema_check.passed and schema_check.severity == dg.AssetCheckSeverity.WARN
    assert registry.alias("production") == "v1"  # a WARN check does not block the gate


def test_transient_read_errors_are_retried_with_backoff(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    marker = tmp_path / "attempts"

    class FlakySource(DataSourceResource):
        def load(self):
            attempts = int(marker.read_text()) if marker.exists() else 0
            marker.write_text(str(attempts + 1))
            if attempts == 0:
                raise OSError("connection reset by peer")
            return super().load()

    result = dg.materialize(ASSETS[:1], instance=instance, resources={"data_source": FlakySource()}, raise_on_error=False)
    assert result.success and marker.read_text() == "2"
    retries = [e for e in result.all_events if e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY]
    assert len(retries) == 1


def test_permanent_source_errors_are_not_retried(instance: dg.DagsterInstance, tmp_path: Path) -> None:
    result = run_pipeline(instance, source=DataSourceResource(kind="csv", path=str(tmp_path / "missing.csv")))
    assert not any(e.event_type == dg.DagsterEventType.STEP_UP_FOR_RETRY for e in result.all_events)
