"""The schema on clean and dirty frames: every failure reported, in one table."""

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.sources import DatasetSpec, FeatureSpec
from ml_platform.data.validation import DataValidationError, ValidationPolicy, validate_frame

SPEC = DatasetSpec(
    features=(FeatureSpec("size", min_value=0.0), FeatureSpec("weight", min_value=0.0, max_value=100.0)),
    target="target",
    classes=(0, 1),
)
POLICY = ValidationPolicy(min_rows=10)


def clean_frame(rows: int = 40) -> pd.DataFrame:
    rng = np.random.default_rng(0)
    return pd.DataFrame(
        {"size": rng.uniform(0, 10, rows), "weight": rng.uniform(0, 100, rows), "target": np.arange(rows) % 2}
    )


def test_clean_frame_passes_and_undeclared_columns_are_dropped() -> None:
    frame = clean_frame().assign(customer_id="c")
    result = validate_frame(frame, SPEC, POLICY)
    assert list(result.valid.columns) == ["size", "weight", "target"]
    assert result.dropped_columns == ["customer_id"]
    assert result.failures.empty and result.quarantined.empty


def test_integer_features_are_coerced_to_float() -> None:
    frame = clean_frame().assign(size=lambda f: f["size"].round().astype(int))
    result = validate_frame(frame, SPEC, POLICY)
    assert result.valid["size"].dtype == np.float64


def dirty_frame() -> pd.DataFrame:
    frame = clean_frame().astype({"size": object})
    frame.loc[3, "size"] = "abc"  # non-numeric
    frame.loc[5, "weight"] = np.inf  # infinity
    frame.loc[7, "weight"] = 250.0  # above the declared bound
    frame.loc[9, "size"] = None  # null in a non-nullable feature
    frame.loc[11, "target"] = 2  # not a declared class
    return frame


def test_all_failures_are_reported_at_once_with_column_check_case_and_row() -> None:
    with pytest.raises(DataValidationError) as info:
        validate_frame(dirty_frame(), SPEC, POLICY)
    failures = info.value.failures
    assert list(failures.columns) == ["column", "check", "failure_case", "row"]
    found = {(r.column, r.row) for r in failures.itertuples()}
    assert found == {("size", 3), ("weight", 5), ("weight", 7), ("size", 9), ("target", 11)}
    by_row = failures.set_index("row")
    assert by_row.loc[3, "check"] == "numeric" and by_row.loc[3, "failure_case"] == "abc"
    # An infinite weight breaks two rules: finiteness and the upper bound.
    assert sorted(by_row.loc[[5], "check"]) == ["finite", "less_than_or_equal_to(100.0)"]
    assert by_row.loc[7, "check"] == "less_than_or_equal_to(100.0)"
    assert by_row.loc[9, "check"] == "not_nullable"
    assert by_row.loc[11, "check"] == "one of the declared classes [0, 1]"
    assert "5 of 40 rows invalid" in str(info.value)
    assert "target: 2 is not one of the declared classes [0, 1]" in str(info.value)


def test_quarantine_keeps_invalid_rows_aside_when_within_the_allowed_fraction() -> None:
    result = validate_frame(dirty_frame(), SPEC, ValidationPolicy(min_rows=10, max_invalid_fraction=0.2))
    assert sorted(result.quarantined.index) == [3, 5, 7, 9, 11]
    assert len(result.valid) == 35
    assert result.valid["size"].dtype == np.float64
    assert len(result.failures) == 6
    # Quarantined rows are the original rows, unchanged, so they can be inspected and fixed.
    assert result.quarantined.loc[3, "size"] == "abc"


def test_quarantine_refuses_when_too_many_rows_are_invalid() -> None:
    with pytest.raises(DataValidationError, match=r"5 of 40 rows invalid \(12.5%, allowed 10.0%\)"):
        validate_frame(dirty_frame(), SPEC, ValidationPolicy(min_rows=10, max_invalid_fraction=0.1))


def test_missing_column_fails_even_with_quarantine() -> None:
    frame = clean_frame().drop(columns=["weight"])
    with pytest.raises(DataValidationError, match="whole columns") as info:
        validate_frame(frame, SPEC, ValidationPolicy(min_rows=10, max_invalid_fraction=0.5))
    assert info.value.failures.loc[0, "check"] == "column_in_dataframe"
    assert info.value.failures.loc[0, "failure_case"] == "weight"


def test_fewer_rows_than_the_minimum_is_rejected() -> None:
    with pytest.raises(DataValidationError, match="5 rows, fewer than the minimum of 10"):
        validate_frame(clean_frame(5), SPEC, POLICY)


def test_single_class_target_is_rejected() -> None:
    frame = clean_frame().assign(target=1)
    with pytest.raises(DataValidationError, match="target column 'target' has a single class"):
        validate_frame(frame, SPEC, POLICY)


def test_too_few_rows_left_after_quarantine_is_rejected() -> None:
    frame = clean_frame(12)
    frame.loc[[0, 1, 2], "weight"] = -1.0
    with pytest.raises(DataValidationError, match="9 valid rows after quarantine"):
        validate_frame(frame, SPEC, ValidationPolicy(min_rows=10, max_invalid_fraction=0.5))


UNDECLARED = DatasetSpec(features=SPEC.features, target="target")


def test_without_declared_classes_a_label_the_production_model_never_saw_is_named() -> None:
    frame = clean_frame().assign(target=lambda f: f["target"].where(~f.index.isin([4, 8]), 2))
    with pytest.raises(DataValidationError) as info:
        validate_frame(frame, UNDECLARED, POLICY, production_classes=[0, 1])
    assert "target: 2 is not one of the production model's classes [0, 1] x2" in str(info.value)
    failures = info.value.failures
    assert set(failures["row"]) == {4, 8} and set(failures["failure_case"]) == {"2"}


def test_several_unseen_labels_are_all_named_and_text_labels_work() -> None:
    frame = clean_frame().assign(target=np.where(np.arange(40) % 2, "yes", "no"))
    frame.loc[1, "target"], frame.loc[2, "target"] = "maybe", "unknown"
    with pytest.raises(DataValidationError, match=r"target: maybe, unknown are not one of the production model's classes \['no', 'yes'\]"):
        validate_frame(frame, UNDECLARED, POLICY, production_classes=["no", "yes"])


def test_any_label_is_accepted_when_no_classes_are_known_yet_or_new_ones_are_allowed() -> None:
    frame = clean_frame().assign(target=np.arange(40) % 3)
    assert set(validate_frame(frame, UNDECLARED, POLICY).valid["target"]) == {0, 1, 2}
    assert set(validate_frame(frame, UNDECLARED, POLICY, production_classes=None).valid["target"]) == {0, 1, 2}


def test_every_row_invalid_under_a_lenient_quarantine_fails_with_the_reason_not_an_index_error() -> None:
    frame = clean_frame().assign(weight=-1.0)  # every row breaks weight >= 0
    with pytest.raises(DataValidationError) as caught:
        validate_frame(frame, SPEC, ValidationPolicy(min_rows=10, max_invalid_fraction=1.0))
    message = str(caught.value)
    assert message.startswith("validated_data: 0 valid rows after quarantine, fewer than the minimum of 10: weight:")
    assert "\n" not in message
