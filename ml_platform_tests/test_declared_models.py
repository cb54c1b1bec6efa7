"""Models declared in YAML and loaded by `load_from_defs_folder`, in a project of one's own:
several side by side, scaffolded by `dg`, written by `ml-platform new-model`, or rejected by `dg check defs`."""

import subprocess
import sys
from pathlib import Path

import dagster as dg
import numpy as np
import pandas as pd
import pytest
import yaml

from ml_platform.cli import main as ml_platform
from ml_platform.declaration import DeclarationError, ModelDeclaration, read_declaration
from ml_platform.scaffold import declaration_yaml
from ml_platform_tests.conftest import registry_of, run_job, source_config
from ml_platform_tests.projects import make_project

BIN = Path(sys.executable).parent


def test_the_template_declares_exactly_the_defaults(tmp_path: Path) -> None:
    document = yaml.safe_load(declaration_yaml("churn"))
    assert ModelDeclaration.model_validate(document["attributes"]) == ModelDeclaration()


def test_two_models_side_by_side_train_promote_and_monitor_independently(
    instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path
) -> None:
    project = make_project(tmp_path / "project", {
        "cancer": {"source": {"kind": "bundled"}},
        "synth": {"source": {"kind": "synthetic", "synthetic": {"rows": 3_000, "features": 6}},
                  "training": {"estimator": "random_forest", "params": {"n_estimators": 20}}},
    })
    defs = project.load()
    assert {k.to_user_string() for k in defs.resolve_asset_graph().get_all_asset_keys()} == {
        f"{m}/{a}" for m in ("cancer", "synth")
        for a in ("raw_data", "validated_data", "trained_model", "staging_model", "production_model", "batch_predictions",
                  "monitoring_report")
    }
    assert run_job(instance, defs, "cancer_training").success
    assert run_job(instance, defs, "synth_training").success
    assert run_job(instance, defs, "synth_training", source_config("synth", synthetic={"seed": 5})).success
    cancer, synth = registry_of(dagster_home, "cancer"), registry_of(dagster_home, "synth")
    assert [v.version for v in cancer.list_versions()] == ["v1"] and len(cancer.get("v1").features) == 30
    assert [v.version for v in synth.list_versions()] == ["v1", "v2"] and synth.get("v1").features == [f"f{i}" for i in range(6)]
    assert cancer.get("v1").metadata["params"]["estimator"] == "logistic_regression"
    assert synth.get("v1").metadata["params"]["estimator"] == "random_forest"
    assert cancer.alias("production") == "v1" and synth.alias("production") in ("v1", "v2")

    # Monitoring one model reads only its own production model and reports only its own checks.
    drifted = run_job(instance, defs, "synth_monitoring", source_config("synth", synthetic={"drift_features": ["f1"], "drift_shift": 2.0}))
    clean = run_job(instance, defs, "cancer_monitoring")
    assert drifted.success and clean.success
    assert {e.asset_key.path[0] for e in drifted.get_asset_check_evaluations()} == {"synth"}
    assert not next(e for e in drifted.get_asset_check_evaluations() if e.check_name == "data_drift").passed
    assert next(e for e in clean.get_asset_check_evaluations() if e.check_name == "data_drift").passed
    report = clean.asset_materializations_for_node("cancer__monitoring_report")[0].metadata["report"].value
    assert "# Monitoring report: cancer" in report and "synth/" not in report


def test_a_declaration_is_read_with_its_project_root_and_a_bad_one_names_the_field(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    good = project.declare("churn", {"source": {"kind": "csv", "path": "data/churn.csv", "target": "y"}})
    model = read_declaration(good, project.root)
    assert model.source_path() == str(project.root / "data" / "churn.csv")
    cases = {
        "typo": ({"training": {"estimatr": "random_forest"}}, "attributes.training.estimatr: unknown field 'estimatr'"),
        "range": ({"validation": {"min_rows": -5}}, "attributes.validation.min_rows: Input should be greater than or equal to 1"),
        "choice": ({"gate": {"metric": "nonexistent"}}, "attributes.gate.metric: Input should be 'accuracy'"),
        "timezone": ({"schedules": {"timezone": "Mars/Olympus"}}, "attributes.schedules.timezone: 'Mars/Olympus' is not an IANA time zone"),
        "cron": ({"schedules": {"retrain": {"cron": "every day"}}}, "attributes.schedules.retrain.cron: 'every day' is not a cron expression"),
        "csv-path": ({"source": {"kind": "csv"}}, "attributes.source: path is required when kind is 'csv'"),
        "cron-range": ({"schedules": {"retrain": {"cron": "61 25 * * *"}}},
                       "attributes.schedules.retrain.cron: '61 25 * * *' is not a cron expression: minute '61' is not in 0-59"),
        "cron-fields": ({"schedules": {"monitoring": {"cron": "0 * * *"}}},
                        "attributes.schedules.monitoring.cron: '0 * * *' is not a cron expression: 4 fields, not 5"),
        "ignored-field": ({"source": {"kind": "bundled", "path": "x.csv", "classes": [0, 1]}},
                          "attributes.source: path, classes do not apply to kind 'bundled', which defines its own data"),
        "no-effect": ({"source": {"kind": "csv", "path": "x.csv", "classes": ["a", "b"]}, "validation": {"allow_new_classes": True}},
                      "attributes: validation.allow_new_classes has no effect when source.classes are declared"),
        "drift-feature": ({"source": {"kind": "synthetic", "synthetic": {"features": 3, "drift_features": ["f7"]}}},
                          "attributes.source.synthetic: drift_features ['f7'] are not among the generated features f0..f2"),
        "empty-features": ({"source": {"kind": "csv", "path": "x.csv", "features": []}}, "attributes.source.features: List should have at least 1 item"),
    }
    for name, (attributes, message) in cases.items():
        with pytest.raises(DeclarationError) as info:
            read_declaration(project.declare(name.replace("-", "_"), attributes), project.root)
        assert f"{name.replace('-', '_')}/defs.yaml: {message}" in str(info.value), (name, str(info.value))
    bad_name = project.declare("Churn-Model", {})
    with pytest.raises(DeclarationError, match="model name 'Churn-Model' \\(its folder under defs/\\) must start with a lowercase letter"):
        read_declaration(bad_name, project.root)


@pytest.mark.parametrize(
    "positive, negative, classes",
    [("yes", "no", ["no", "yes"]), (1.0, 0.0, [0.0, 1.0]), (True, False, [False, True]), (7, 3, [3, 7])],
    ids=["text", "float", "bool", "int"],
)
def test_new_model_on_a_csv_writes_a_declaration_that_trains_as_it_stands(
    instance: dg.DagsterInstance, dagster_home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str],
    positive: object, negative: object, classes: list,
) -> None:
    project = make_project(tmp_path / "project")
    rng = np.random.default_rng(3)
    x = rng.normal(size=(400, 3))
    frame = pd.DataFrame({"customer_id": [f"c{i}" for i in range(400)], "tenure": (x[:, 0] * 10 + 30).round().astype(int),
                          "charges": x[:, 1] * 5 + 50, "calls": x[:, 2],
                          "churned": np.where(x[:, 0] + x[:, 1] > 0, positive, negative)})
    (project.root / "data").mkdir()
    frame.to_csv(project.root / "data" / "churn.csv", index=False)
    code = ml_platform(["--defs", str(project.defs_dir), "new-model", "churn", "--csv", str(project.root / "data" / "churn.csv"),
                        "--target", "churned"])
    assert code == 0, capsys.readouterr().err
    result = run_job(instance, project.load(), "churn_training")
    assert result.success
    version = registry_of(dagster_home, "churn").get("v1")
    assert version.features == ["tenure", "charges", "calls"] and version.metadata["classes"] == classes
    assert version.metrics["accuracy"] > 0.8 and registry_of(dagster_home, "churn").alias("production") == "v1"


def dg_command(project, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(BIN / "dg"), *args], cwd=project.root, env=project.env(), capture_output=True, text=True, timeout=180)


@pytest.mark.slow
def test_dg_check_defs_names_a_misspelled_field_and_its_line(tmp_path: Path, dagster_home: Path) -> None:
    project = make_project(tmp_path / "project")
    text = declaration_yaml("churn").replace("    estimator: logistic_regression", "    estimatr: logistic_regression")
    project.declare("churn", text)
    result = dg_command(project, "check", "defs")
    assert result.returncode != 0
    out = result.stdout + result.stderr
    line = text.splitlines().index("    estimatr: logistic_regression   # logistic_regression | random_forest | gradient_boosting") + 1
    assert f"defs/churn/defs.yaml:{line} - ml_platform.ModelPipeline attributes.training.estimatr" in out
    assert "'estimatr' was unexpected" in out
    project.declare("churn", declaration_yaml("churn").replace("min_rows: 50", "min_rows: -5"))
    out = dg_command(project, "check", "defs")
    assert out.returncode != 0 and "attributes.validation.min_rows -5 is less than the minimum of 1" in out.stdout + out.stderr


@pytest.mark.slow
def test_dg_scaffold_writes_a_commented_declaration_that_loads(tmp_path: Path, dagster_home: Path) -> None:
    project = make_project(tmp_path / "project")
    scaffold = dg_command(project, "scaffold", "defs", "ml_platform.ModelPipeline", "fraud")
    assert scaffold.returncode == 0, scaffold.stdout + scaffold.stderr
    written = (project.defs_dir / "fraud" / "defs.yaml").read_text()
    assert written == declaration_yaml("fraud") and "# every 6 hours:" in written
    check = dg_command(project, "check", "defs")
    assert check.returncode == 0, check.stdout + check.stderr
    assert {j.name for j in project.load().jobs} >= {"fraud_training", "fraud_monitoring", "fraud_rollback"}


def test_a_model_declared_in_a_subfolder_is_refused_naming_the_file(tmp_path: Path) -> None:
    project = make_project(tmp_path / "project")
    (project.defs_dir / "team").mkdir()
    nested = project.declare("team/churn", {"source": {"kind": "bundled"}})
    with pytest.raises(Exception, match="team/churn") as info:
        project.load()
    cause = info.value.__cause__
    assert isinstance(cause, DeclarationError) and str(cause).startswith(f"{nested}: declare a model directly under the defs folder")
