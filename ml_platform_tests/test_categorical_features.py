"""Categorical features, missing values by policy and unlabelled rows, from validation to the served model."""

from dataclasses import replace
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.sources import DatasetSpec, FeatureSpec, load_churn_source
from ml_platform.data.validation import OTHER_CATEGORY, DataValidationError, ValidationPolicy, validate_frame
from ml_platform.declaration import read_declarations
from ml_platform.model.registry import load_production_model
from ml_platform.model.training import TrainingSettings, train_candidate, training_identity
from ml_platform_tests.conftest import declared, materialize, op_config, platform, registry_of, source_config, train

CHURN = next(m for m in read_declarations() if m.name == "churn")
PLAN_SPEC = DatasetSpec(
    features=(FeatureSpec("usage", min_value=0.0), FeatureSpec("plan", kind="categorical", categories=("basic", "pro"))),
    target="target",
    classes=(0, 1),
)


def plans(rows: int = 200, seed: int = 0) -> pd.DataFrame:
    """A learnable table: `pro` customers with high usage are positive."""
    rng = np.random.default_rng(seed)
    plan = rng.choice(["basic", "pro"], rows)
    usage = rng.uniform(0, 10, rows)
    target = ((plan == "pro") & (usage > 4) | (usage > 8)).astype(int)
    return pd.DataFrame({"usage": usage, "plan": plan, "target": target})


def test_an_unseen_category_fails_naming_the_column_and_value_or_goes_to_the_other_bucket_counted() -> None:
    frame = plans().astype({"plan": object})
    frame.loc[[3, 7], "plan"] = "platinum"
    with pytest.raises(DataValidationError) as info:
        validate_frame(frame, PLAN_SPEC, ValidationPolicy(min_rows=10))
    assert "plan: 'platinum' is not one of the production model's categories ['basic', 'pro'] x2" in str(info.value)
    assert sorted(info.value.failures.query("column == 'plan'")["row"]) == [3, 7]

    result = validate_frame(frame, PLAN_SPEC, ValidationPolicy(min_rows=10, unseen_categories="other"))
    assert result.remapped == {"plan": 2} and result.failures.empty
    assert list(result.valid.loc[[3, 7], "plan"]) == [OTHER_CATEGORY] * 2
    # Before the first model no category is known: any is accepted, as text.
    first = DatasetSpec(features=(FeatureSpec("usage"), FeatureSpec("plan", kind="categorical")), target="target")
    assert set(validate_frame(frame, first, ValidationPolicy(min_rows=10)).valid["plan"]) == {"basic", "pro", "platinum"}


def test_gaps_are_rejected_unless_imputed_and_unlabelled_rows_are_kept() -> None:
    frame = plans().astype({"target": float})
    frame.loc[[1, 2], "usage"] = np.nan
    frame.loc[[5, 6, 9], "target"] = np.nan
    with pytest.raises(DataValidationError, match=r"usage: not_nullable x2"):
        validate_frame(frame, PLAN_SPEC, ValidationPolicy(min_rows=10))
    imputed = DatasetSpec(features=(FeatureSpec("usage", nullable=True, impute="median"), PLAN_SPEC.features[1]), target="target")
    result = validate_frame(frame, imputed, ValidationPolicy(min_rows=10))
    assert len(result.valid) == 200 and result.unlabelled_rows == 3
    candidate = train_candidate(result.valid, imputed, TrainingSettings())
    assert len(candidate.train) + len(candidate.holdout) == 197  # labelled rows only
    assert candidate.imputation == {"usage": "median"} and candidate.categories == {"plan": ["basic", "pro"]}


@pytest.mark.parametrize("estimator", ["logistic_regression", "hist_gradient_boosting"])
def test_the_fitted_pipeline_encodes_imputes_and_predicts_on_unseen_categories(estimator: str) -> None:
    spec = DatasetSpec(features=(FeatureSpec("usage", nullable=True, impute="median"),
                                 FeatureSpec("plan", kind="categorical", nullable=True, impute="most_frequent")),
                       target="target")
    candidate = train_candidate(plans(400), spec, TrainingSettings(estimator=estimator))
    assert candidate.metrics["accuracy"] > 0.9
    assert candidate.feature_types == {"usage": "numeric", "plan": "categorical"}
    served = pd.DataFrame({"usage": [9.0, np.nan, 1.0, 6.0], "plan": ["pro", "basic", None, "platinum"]})
    assert candidate.pipeline.predict(served).shape == (4,)
    assert candidate.pipeline.predict(served.head(1))[0] == 1


def test_a_numeric_model_without_imputation_keeps_its_pipeline_and_training_identity() -> None:
    source = load_churn_source()
    numeric = DatasetSpec(features=tuple(f for f in source.spec.features if f.kind == "numeric" and f.name != "total_charges"),
                          target=source.spec.target, classes=(0, 1))
    settings = TrainingSettings()
    candidate = train_candidate(source.frame, numeric, settings)
    assert [name for name, _ in candidate.pipeline.steps] == ["scaler", "model"]
    identity = training_identity("data", numeric, settings, "code", {})
    assert training_identity("data", source.spec, settings, "code", {}) != identity  # declared kinds count
    # The categories the production model knows are validation's, not part of what is trained on.
    known = replace(source.spec, features=tuple(replace(f, categories=("x",)) for f in source.spec.features))
    assert training_identity("data", known, settings, "code", {}) == training_identity("data", source.spec, settings, "code", {})


def test_the_churn_example_trains_promotes_and_serves_rows_with_gaps(instance, dagster_home: Path) -> None:
    result = train(instance, CHURN)
    assert result.success
    validated = result.asset_materializations_for_node("churn__validated_data")[0].metadata
    assert validated["unlabelled_rows"].value == 0 and validated["dropped_columns"].value == "customer_id"
    registry = registry_of(dagster_home, "churn")
    metadata = registry.get(registry.alias("production")).metadata
    assert metadata["feature_types"]["contract"] == "categorical" and metadata["feature_types"]["tenure_months"] == "numeric"
    assert metadata["categories"]["contract"] == ["month-to-month", "one_year", "two_year"]
    assert metadata["imputation"] == {"total_charges": "median", "internet_service": "most_frequent"}
    card = registry.model_card(registry.alias("production"))
    assert "| `contract` | categorical | month-to-month, one_year, two_year | reject |" in card
    assert "| `total_charges` | numeric | - | median |" in card

    model = load_production_model("churn")
    rows = load_churn_source().frame.head(3)[model.feature_names_in_].copy()
    rows.loc[0, "total_charges"] = np.nan
    rows.loc[1, "internet_service"] = np.nan
    assert model.predict_proba(rows).shape == (3, 2)


def test_unseen_categories_after_the_first_model_follow_the_declared_policy(instance, tmp_path: Path) -> None:
    model = declared("plans", source={"kind": "csv", "path": str(tmp_path / "plans.csv"), "target": "target",
                                      "categorical": ["plan"]})
    defs = platform(model)
    plans(300).to_csv(tmp_path / "plans.csv", index=False)
    assert train(instance, model, defs=defs).success
    newer = plans(300, seed=1).astype({"plan": object})
    newer.loc[:4, "plan"] = "platinum"
    newer.to_csv(tmp_path / "newer.csv", index=False)
    newer_source = source_config("plans", path=str(tmp_path / "newer.csv"))

    refused = materialize(instance, defs, "plans/raw_data,plans/validated_data", newer_source)
    assert not refused.success
    [failure] = [e for e in refused.get_step_failure_events() if e.step_key == "plans__validated_data"]
    assert "plan: 'platinum' is not one of the production model's categories ['basic', 'pro'] x5" in (
        failure.step_failure_data.user_failure_data.description
    )
    mapped = materialize(instance, defs, "plans/raw_data,plans/validated_data",
                         {**newer_source, **op_config("plans", "validated_data", unseen_categories="other")})
    assert mapped.success
    metadata = mapped.asset_materializations_for_node("plans__validated_data")[0].metadata
    assert metadata["remapped_categories"].data == {"plan": 5}


def test_training_refuses_too_few_labelled_rows(instance, tmp_path: Path) -> None:
    frame = plans(120).astype({"target": float})
    frame.loc[30:, "target"] = np.nan  # 30 labelled rows; validation's minimum is 50
    frame.to_csv(tmp_path / "late.csv", index=False)
    model = declared("late", source={"kind": "csv", "path": str(tmp_path / "late.csv"), "target": "target",
                                     "categorical": ["plan"]})
    result = train(instance, model)
    [failure] = [e for e in result.get_step_failure_events() if e.step_key == "late__trained_model"]
    assert failure.step_failure_data.user_failure_data.description == (
        "trained_model: 30 labelled rows of 120, fewer than the minimum of 50 (validation.min_rows in the model's declaration)"
    )
    validated = result.asset_materializations_for_node("late__validated_data")[0].metadata
    assert validated["unlabelled_rows"].value == 90


def test_a_drifted_unlabelled_month_of_churn_is_judged_on_a_real_instance(instance, tmp_path: Path) -> None:
    """The README's demo: train churn, then monitor a month whose contract mix moved, whose billing
    export lost charges and whose labels have not arrived yet."""
    from ml_platform.data.churn import generate_churn_month, monitoring_run_config
    from ml_platform_tests.conftest import run_job

    defs = platform(CHURN)
    assert train(instance, CHURN, defs=defs).success
    month = tmp_path / "churn-month-2.csv"
    generate_churn_month(2).to_csv(month, index=False)
    result = run_job(instance, defs, "churn_monitoring", monitoring_run_config(str(month)))
    assert result.success
    evaluations = {e.check_name: e for e in result.get_asset_check_evaluations()}

    drift = evaluations["data_drift"]
    rows = {r.data["feature"]: r.data for r in drift.metadata["features"].records}
    assert not drift.passed and rows["contract"]["kind"] == "categorical" and rows["contract"]["drifted"]
    assert "contract" in drift.description and not rows["senior_citizen"]["drifted"]
    missing = evaluations["missing_values"]
    assert not missing.passed and "total_charges" in missing.description and "internet_service" not in missing.description
    estimated = evaluations["estimated_accuracy"]
    assert estimated.metadata["evaluated"].value and estimated.metadata["rows"].value == 2_000
    # No label has arrived: the realized accuracy cannot be measured, and says so.
    realized = evaluations["production_model_accuracy"]
    assert not realized.passed and realized.description == "not evaluated: the newest data has no labelled rows yet (see estimated_accuracy)"
    assert realized.metadata["alert_severity"].value == "LOW"  # expected while labels are on their way: nobody is paged
