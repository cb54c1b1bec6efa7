"""The release path on a real instance: staging and the smoke test on the training run, then
batch_predictions stepping a canary rollout over scheduled runs, to production or back."""

import json
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import dagster as dg
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier
from sklearn.pipeline import make_pipeline

from ml_platform.alerting.alert import JsonlAlertFile
from ml_platform.cli import main as cli
from ml_platform.model.registry import ModelRegistry
from ml_platform.model.rollout import RolloutPolicy, new_rollout
from ml_platform.orchestration.alerting import JsonlChannelResource, alerting_resource
from ml_platform.orchestration.sensors import build_alert_sensors
from ml_platform_tests.conftest import op_config, platform, registry_of, run_job, source_config, synthetic, train

# Advance after one run of at least 1,000 rows: a 2,000-row synthetic batch steps once per run.
QUICK = {"steps": [0, 10, 50, 100], "min_runs_per_step": 1, "min_rows_per_step": 1_000}
CANARY = synthetic("canary", rows=2_000, seed=1, gate={"tolerance": 0.05}, release={"rollout": QUICK})
OTHER_DATA = source_config("canary", synthetic={"rows": 2_000, "seed": 7})


def batch_run(instance: dg.DagsterInstance, defs: dg.Definitions) -> dg.ExecuteInProcessResult:
    """One run of the model's batch job as its schedule requests it."""
    schedule = defs.resolve_schedule_def("canary_batch_schedule")
    with dg.build_schedule_context(instance=instance, scheduled_execution_time=datetime.now(timezone.utc)) as context:
        [request] = schedule.evaluate_tick(context).run_requests or []
    return run_job(instance, defs, "canary_batch", request.run_config)


def predictions(result: dg.ExecuteInProcessResult) -> pd.DataFrame:
    [materialization] = result.asset_materializations_for_node("canary__batch_predictions")
    return pd.read_parquet(materialization.metadata["predictions_path"].value)


def check(result: dg.ExecuteInProcessResult, name: str) -> dg.AssetCheckEvaluation:
    [evaluation] = [e for e in result.get_asset_check_evaluations() if e.check_name == name]
    return evaluation


def alerted(instance: dg.DagsterInstance, tmp_path: Path, check_name: str) -> list[dict[str, Any]]:
    """The alerts one tick of the check alert sensor sends (to a JSONL file) for this check."""
    alerts_file = tmp_path / "alerts.jsonl"
    alerting = alerting_resource(jsonl=JsonlChannelResource(path=str(alerts_file)), outbox_path=str(tmp_path / "alerts.db"))
    check_alert_sensor, _ = build_alert_sensors({})
    with dg.build_sensor_context(instance=instance, resources={"alerting": alerting}) as context:
        check_alert_sensor(context)
    return [a for a in JsonlAlertFile(alerts_file).read() if a["check"] == check_name]


@pytest.fixture
def champion_and_rollout(instance: dg.DagsterInstance, dagster_home: Path) -> tuple[dg.Definitions, ModelRegistry]:
    """v1 in production (promoted at once: nothing to canary against), then v2, trained on other
    data, staged, smoke-tested and in rollout."""
    defs = platform(CANARY)
    first = train(instance, CANARY, defs=defs)
    assert first.success
    assert check(first, "smoke_test").passed
    registry = registry_of(dagster_home, "canary")
    assert registry.aliases() == {"production": "v1", "staging": "v1"}
    second = train(instance, CANARY, OTHER_DATA, defs=defs)
    assert second.success
    production = second.asset_materializations_for_node("canary__production_model")[0].metadata
    assert production["promoted"].value is False
    assert "canary rollout started: v2 vs v1: step 1 of 4 (shadow)" in production["decision"].value
    assert registry.aliases() == {"production": "v1", "staging": "v2"}
    return defs, registry


def test_a_rollout_steps_from_shadow_to_production_over_scheduled_runs(
    instance: dg.DagsterInstance, champion_and_rollout: tuple[dg.Definitions, ModelRegistry]
) -> None:
    defs, registry = champion_and_rollout
    shares = []
    for _ in range(3):
        result = batch_run(instance, defs)
        assert result.success
        served = predictions(result)
        assert len(served) == 2_000 and served["row_key"].is_unique
        [materialization] = result.asset_materializations_for_node("canary__batch_predictions")
        shown = materialization.metadata["preview"].value.records[0].data["row_key"]
        assert shown == str(served["row_key"].iloc[0])  # 64-bit keys shown whole, not rounded by the UI
        # Never two versions within an arm.
        assert served.groupby("arm", observed=True)["model_version"].nunique().max() == 1
        assert set(served.loc[served["arm"] == "candidate", "model_version"]) <= {"v2"}
        shares.append((served["arm"] == "candidate").mean())
        assert check(result, "canary_rollout").passed
    assert shares[0] == 0.0  # shadow: the candidate serves nothing
    assert abs(shares[1] - 0.10) < 0.03 and abs(shares[2] - 0.50) < 0.04
    assert registry.aliases() == {"production": "v2", "previous": "v1", "staging": "v2"}
    entry = registry.history()[-1]
    assert entry["action"] == "promote" and entry["reason"].startswith("canary rollout completed: v2 agreed with v1")
    rollout = registry.rollout()
    assert rollout is not None and rollout["status"] == "promoted"
    assert [d["action"] for d in rollout["decisions"]] == ["advance", "advance", "promote"]
    # Then the new production model serves every row.
    after = predictions(batch_run(instance, defs))
    assert set(after["model_version"]) == {"v2"} and set(after["arm"]) == {"champion"}


def test_a_candidate_that_disagrees_is_rolled_back_and_alerted(
    instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path
) -> None:
    defs = platform(CANARY)
    assert train(instance, CANARY, defs=defs).success
    registry = registry_of(dagster_home, "canary")
    # A deliberately bad candidate (it always answers class 1), put in rollout by hand.
    frame = pd.DataFrame({f"f{i}": [0.0, 1.0] for i in range(8)})
    bad = make_pipeline(DummyClassifier(strategy="constant", constant=1)).fit(frame, [0, 1])
    registry.register(bad, {"features": list(frame.columns), "metrics": {"accuracy": 0.5}})
    registry.start_rollout(new_rollout("v2", "v1", RolloutPolicy(**{**QUICK, "steps": (0, 10, 50, 100)})))

    result = batch_run(instance, defs)
    assert result.success  # the champion served; the failed canary check is not blocking
    canary = check(result, "canary_rollout")
    assert not canary.passed and canary.severity == dg.AssetCheckSeverity.ERROR
    assert "canary rollout of v2 rolled back: v2 agrees with v1 on" in (canary.description or "")
    assert set(predictions(result)["model_version"]) == {"v1"}  # nothing served by the rolled-back candidate
    assert registry.alias("production") == "v1" and registry.rollout()["status"] == "rolled_back"  # type: ignore[index]

    [alert] = alerted(instance, tmp_path, "canary_rollout")
    assert (alert["severity"], alert["asset"], alert["model"]) == ("HIGH", "canary/batch_predictions", "canary")
    assert "below the minimum 90.0%" in alert["message"] and alert["metadata"]["agreement"] < 0.9


def test_a_failed_smoke_test_stops_the_release_keeps_production_and_is_alerted(
    instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path
) -> None:
    defs = platform(CANARY)
    assert train(instance, CANARY, defs=defs).success
    impossible = op_config("canary", "staging_model", smoke_test={"max_row_latency_ms": 1e-6})
    result = train(instance, CANARY, {**OTHER_DATA, **impossible}, defs=defs)
    assert not result.success  # a blocking check
    smoke = check(result, "smoke_test")
    assert not smoke.passed and "smoke test of staged v2 failed" in (smoke.description or "")
    assert "latency" in (smoke.description or "")
    assert not result.asset_materializations_for_node("canary__production_model")
    assert registry_of(dagster_home, "canary").aliases() == {"production": "v1", "staging": "v2"}
    assert registry_of(dagster_home, "canary").rollout() is None
    # ... and it is alerted HIGH, with its reason.
    [alert] = alerted(instance, tmp_path, "smoke_test")
    assert alert["severity"] == "HIGH" and alert["message"].startswith("smoke test of staged v2 failed: v2 ")


def test_a_promotion_requests_a_batch_run_and_a_rollout_start_does_not(
    instance: dg.DagsterInstance, dagster_home: Path
) -> None:
    defs = platform(CANARY)
    sensor = defs.resolve_sensor_def("canary_batch_after_promotion")

    def requested() -> list[Any]:
        with dg.build_sensor_context(instance=instance, definitions=defs, cursor=cursor) as context:
            data = sensor.evaluate_tick(context)
            return [r.job_name or "canary_batch" for r in data.run_requests or []], data.cursor

    assert train(instance, CANARY, defs=defs).success  # v1 promoted
    cursor = None
    jobs, cursor = requested()
    assert jobs == ["canary_batch"]
    assert train(instance, CANARY, OTHER_DATA, defs=defs).success  # v2 only starts a rollout
    jobs, cursor = requested()
    assert jobs == []


def test_the_rollout_commands(
    instance: dg.DagsterInstance, champion_and_rollout: tuple[dg.Definitions, ModelRegistry],
    capsys: pytest.CaptureFixture[str], tmp_path: Path,
) -> None:
    defs, registry = champion_and_rollout
    monitoring = run_job(instance, defs, "canary_monitoring")
    [report] = monitoring.asset_materializations_for_node("canary__monitoring_report")
    assert "## Canary rollout" in report.metadata["report"].value
    assert report.metadata["rollout"].value.startswith("v2 vs v1: step 1 of 4 (shadow), active")
    defs_dir = tmp_path / "defs" / "canary"
    defs_dir.mkdir(parents=True)
    (defs_dir / "defs.yaml").write_text("type: ml_platform.ModelPipeline\nattributes: {}\n")
    args = ["--defs", str(tmp_path / "defs")]
    assert cli(["rollout", "status", *args]) == 0
    assert "canary: v2 vs v1: step 1 of 4 (shadow), active, 0 runs" in capsys.readouterr().out
    assert cli(["rollout", "pause", *args, "--reason", "checking the new data"]) == 0
    assert "paused" in capsys.readouterr().out
    assert batch_run(instance, defs).success
    assert registry.rollout()["step"] == 0  # type: ignore[index]  # paused: no advance
    assert cli(["rollout", "resume", *args]) == 0
    assert cli(["rollout", "resume", *args]) == 1
    assert "is not paused (it is active)" in capsys.readouterr().err
    assert cli(["rollout", "abort", *args]) == 0
    assert "aborted: v1 serves every row again" in capsys.readouterr().out
    served = predictions(batch_run(instance, defs))
    assert set(served["model_version"]) == {"v1"}
    assert cli(["rollout", "status", "--json", *args]) == 0
    status = json.loads(capsys.readouterr().out)
    assert status["rollout"]["status"] == "aborted"
    assert [d["action"] for d in status["rollout"]["decisions"]] == ["pause", "stay", "resume", "abort"]
    # Retraining on the same data gives v2 again: it is not staged again by itself.
    again = train(instance, CANARY, OTHER_DATA, defs=defs)
    assert again.success
    decision = again.asset_materializations_for_node("canary__staging_model")[0].metadata["decision"].value
    assert decision.startswith("v2's canary rollout was aborted (abort from the command line); promote it by hand")
    assert registry.rollout()["status"] == "aborted"  # type: ignore[index]


def test_a_sql_source_gets_its_predictions_as_a_table_keyed_by_its_id_column(
    instance: dg.DagsterInstance, tmp_path: Path
) -> None:
    import sqlalchemy as sa

    from ml_platform.data.sources import generate_synthetic
    from ml_platform_tests.conftest import declared

    frame = generate_synthetic(rows=600, features=4, seed=3).frame
    frame.insert(0, "customer_id", [f"c{i:04d}" for i in range(len(frame))])
    database = tmp_path / "shop.db"
    engine = sa.create_engine(f"sqlite:///{database}")
    frame.to_sql("customers", engine, index=False)
    features = [f"f{i}" for i in range(4)]
    model = declared(
        "shop", source={"kind": "sql", "url": f"sqlite:///{database}", "table": "customers", "features": features},
        release={"batch": {"id_column": "customer_id"}},
    )
    defs = platform(model)
    assert train(instance, model, defs=defs).success
    result = run_job(instance, defs, "shop_batch")
    assert result.success
    [materialization] = result.asset_materializations_for_node("shop__batch_predictions")
    assert materialization.metadata["predictions_table"].value == "shop_predictions"
    stored = pd.read_sql("SELECT * FROM shop_predictions", engine)
    engine.dispose()
    assert sorted(stored["row_key"]) == sorted(frame["customer_id"])
    assert set(stored["model_version"]) == {"v1"} and stored["run_id"].nunique() == 1
    assert stored.filter(like="proba_").sum(axis=1).round(9).eq(1).all()


def test_an_id_column_among_the_features_is_refused_when_declared() -> None:
    from ml_platform.declaration import ModelDeclaration

    with pytest.raises(ValueError, match="release.batch.id_column 'f0' must be a column apart from the features"):
        ModelDeclaration.model_validate({
            "source": {"kind": "csv", "path": "x.csv", "features": ["f0", "f1"]},
            "release": {"batch": {"id_column": "f0"}},
        })
