from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from ml_platform.data.sources import (
    DatasetSpec,
    DataSourceError,
    FeatureSpec,
    SourceData,
    fingerprint_frame,
    generate_synthetic,
    load_breast_cancer_source,
    read_table_file,
    with_declared_classes,
)


def test_bundled_dataset_is_the_breast_cancer_data_with_a_declared_spec() -> None:
    source = load_breast_cancer_source()
    assert source.frame.shape == (569, 31)
    assert len(source.spec.features) == 30
    assert "mean_radius" in source.spec.feature_names
    assert source.spec.classes == (0, 1)
    assert all(f.min_value == 0.0 for f in source.spec.features)


def test_synthetic_source_honours_rows_features_balance_and_seed() -> None:
    a = generate_synthetic(rows=20_000, features=6, positive_fraction=0.3, seed=7)
    b = generate_synthetic(rows=20_000, features=6, positive_fraction=0.3, seed=7)
    c = generate_synthetic(rows=20_000, features=6, positive_fraction=0.3, seed=8)
    assert a.frame.shape == (20_000, 7)
    assert a.spec.feature_names == [f"f{i}" for i in range(6)]
    assert a.frame["target"].mean() == pytest.approx(0.3, abs=0.02)
    pd.testing.assert_frame_equal(a.frame, b.frame)
    assert fingerprint_frame(a.frame) != fingerprint_frame(c.frame)


def test_synthetic_drift_knob_shifts_only_the_chosen_features() -> None:
    base = generate_synthetic(rows=50_000, features=4, seed=1).frame
    drifted = generate_synthetic(rows=50_000, features=4, seed=1, drift_features=["f2"], drift_shift=1.5).frame
    shift = (drifted.mean() - base.mean()).round(6)
    assert shift["f2"] == pytest.approx(1.5)
    assert (shift.drop(["f2"]) == 0).all()
    # The labels come from the undrifted features, so they are unchanged.
    assert (base["target"] == drifted["target"]).all()


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"rows": 0}, "rows must be >= 1"),
        ({"positive_fraction": 1.0}, "positive_fraction"),
        ({"drift_features": ["f99"]}, "drift_features ['f99']"),
    ],
)
def test_synthetic_rejects_bad_knobs(kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message.replace("[", r"\[").replace("]", r"\]")):
        generate_synthetic(**kwargs)


def test_csv_and_parquet_read_by_path_with_a_configurable_target(tmp_path: Path) -> None:
    frame = pd.DataFrame({"a": [1.0, 2.0, 3.0], "b": [4.0, 5.0, 6.0], "label": [0, 1, 0]})
    frame.to_csv(tmp_path / "d.csv", index=False)
    frame.to_parquet(tmp_path / "d.parquet")
    for fmt in ("csv", "parquet"):
        source = read_table_file(tmp_path / f"d.{fmt}", fmt, target_column="label")
        assert source.spec.target == "label"
        assert source.spec.feature_names == ["a", "b"]
        pd.testing.assert_frame_equal(source.frame, frame)
    only_a = read_table_file(tmp_path / "d.csv", "csv", target_column="label", feature_columns=["a"])
    assert only_a.spec.feature_names == ["a"]


@pytest.mark.parametrize(
    "content, reason",
    [
        (None, "file not found"),
        (b"", "the file is empty"),
        (b"a,b,label\n", "no data rows"),
        (b"a,label\n1,0\n", None),  # readable; used below for the missing-target case
    ],
)
def test_unreadable_sources_name_the_source_and_the_reason(tmp_path: Path, content: bytes | None, reason: str | None) -> None:
    path = tmp_path / "data.csv"
    if content is not None:
        path.write_bytes(content)
    if reason is None:
        with pytest.raises(DataSourceError, match=r"target column 'y' not found"):
            read_table_file(path, "csv", target_column="y")
        return
    with pytest.raises(DataSourceError) as info:
        read_table_file(path, "csv", target_column="label")
    assert str(path) in str(info.value) and reason in str(info.value)


def test_corrupt_parquet_is_reported_as_unreadable(tmp_path: Path) -> None:
    path = tmp_path / "broken.parquet"
    path.write_bytes(b"PAR1 this is not parquet")
    with pytest.raises(DataSourceError, match=r"parquet:.*broken.parquet.*unreadable"):
        read_table_file(path, "parquet", target_column="target")


def test_fingerprint_changes_with_any_value_and_ignores_the_index() -> None:
    frame = pd.DataFrame({"x": np.arange(100.0), "y": np.arange(100) % 2})
    fp = fingerprint_frame(frame)
    assert fingerprint_frame(frame.set_axis(range(100, 200))) == fp
    changed = frame.copy()
    changed.loc[57, "x"] = 57.000001
    assert fingerprint_frame(changed) != fp
    assert fingerprint_frame(frame.rename(columns={"x": "z"})) != fp


@pytest.mark.parametrize(
    "labels, declared, expected",
    [
        ([0, 1] * 5, ["0", "1"], (0, 1)),
        ([0.0, 1.0] * 5, ["0", "1"], (0.0, 1.0)),          # a label column with gaps reads as float
        ([0.0, 1.0] * 5, ["0.0", "1.0"], (0.0, 1.0)),
        ([True, False] * 5, ["0", "1"], (False, True)),     # YAML's [false, true] arrives as 0 and 1
        ([True, False] * 5, ["false", "true"], (False, True)),
        (["no", "yes"] * 5, ["no", "yes"], ("no", "yes")),
    ],
)
def test_declared_classes_take_the_type_of_the_target_column(labels, declared, expected) -> None:
    frame = pd.DataFrame({"x": range(len(labels)), "y": labels})
    source = SourceData(frame, DatasetSpec((FeatureSpec("x"),), "y"), "csv:t.csv")
    assert with_declared_classes(source, declared).spec.classes == expected


def test_declared_classes_that_cannot_be_labels_of_the_target_are_named() -> None:
    frame = pd.DataFrame({"x": range(4), "y": [0, 1, 0, 1]})
    source = SourceData(frame, DatasetSpec((FeatureSpec("x"),), "y"), "csv:t.csv")
    with pytest.raises(DataSourceError, match=r"declared classes \['no', 'yes'\] are not values of the target column's type \(int64\)"):
        with_declared_classes(source, ["no", "yes"])
