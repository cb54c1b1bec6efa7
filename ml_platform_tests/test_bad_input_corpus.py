"""The bad-input corpus: every bad input gets one line naming the culprit and changes nothing.

Each case damages a copy of a healthy tree (a registry with v1..v3, production v2, previous
v1; an alert outbox; a non-outbox SQLite file; a fresh Dagster instance), or points a
trained pipeline at bad data or run config, then asserts:
- exit status 1 (or a failed run) with ONE line containing `expected`, and no traceback (for
  a run: its failed step's one-line description; for a run Dagster refuses to launch, the line
  of its config error naming the field);
- the production alias and the history unchanged;
- no file created, changed or removed (a listing of the tree, with content hashes, before and after).

To add a case, append a CliCase (ml-platform arguments) or a RunCase (a pipeline run) below.
`{tmp}` in arguments is the case's folder: registries under {tmp}/registry, the outbox
{tmp}/alerts.db, Dagster's run database copy {tmp}/runs.db, the instance {tmp}/home.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import sqlite3
import subprocess
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import dagster as dg
import numpy as np
import pandas as pd
import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.cli import main
from ml_platform.model.registry import ModelRegistry
from ml_platform_tests.conftest import REPO_ROOT, materialize, op_config, platform, registry_of, source_config, train

ML_PLATFORM = str(Path(sys.executable).with_name("ml-platform"))
DAGSTER = str(Path(sys.executable).with_name("dagster"))


# -- the healthy tree each CLI case starts from ------------------------------------------------


def registry_at(tmp: Path) -> ModelRegistry:
    return ModelRegistry(tmp / "registry" / "breast_cancer")


def build_registry(tmp: Path, promotions: tuple[str, ...] = ("v1", "v2")) -> None:
    registry = registry_at(tmp)
    for i in range(3):
        model = DummyClassifier(strategy="constant", constant=i % 2).fit([[0], [1]], [0, 1])
        model.tag = i  # distinct bytes per version
        registry.register(model, {"metrics": {"accuracy": 0.9 + i / 100}, "features": ["x"], "row_count": 10})
    for version in promotions:
        registry.set_alias("production", version, reason=f"to {version}")


def build_outbox(path: Path) -> None:
    """An outbox with one alert and one dead letter, made by the real dispatcher."""
    from ml_platform.alerting.alert import alert_for_failed_check
    from ml_platform.alerting.channels import JsonlFileChannel, PermanentDeliveryError
    from ml_platform.alerting.dispatch import AlertDispatcher
    from ml_platform.alerting.outbox import AlertOutbox

    class Refusing:
        name = "webhook"

        def send(self, alerts: Any) -> None:
            raise PermanentDeliveryError("HTTP 404 from http://127.0.0.1:9")

    dispatcher = AlertDispatcher(
        AlertOutbox(path), [JsonlFileChannel(path.with_suffix(".jsonl")), Refusing()],
        {"HIGH": ["jsonl", "webhook"], "MEDIUM": ["jsonl"], "LOW": []},
    )
    dispatcher.submit([
        alert_for_failed_check(asset="trained_model", check="accuracy_above_threshold", dagster_severity="ERROR",
                               description="Model accuracy dropped", metadata={"model_version": "v3"},
                               run_id="r", event_id=1),
    ])
    dispatcher.deliver_due()


@pytest.fixture(scope="module")
def healthy_tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    tmp = tmp_path_factory.mktemp("healthy")
    build_registry(tmp)
    build_outbox(tmp / "alerts.db")
    with sqlite3.connect(tmp / "runs.db") as runs:  # stands for Dagster's own runs.db
        runs.execute("CREATE TABLE runs (run_id TEXT PRIMARY KEY, status TEXT)")
        runs.execute("INSERT INTO runs VALUES ('r1', 'SUCCESS')")
    runs.close()
    (tmp / "home").mkdir()  # a fresh instance: no outbox, no registry yet
    (tmp / "data.txt").write_text("not a registry\n")
    return tmp


# -- damage --------------------------------------------------------------------------------------

STATE = "registry/breast_cancer/state.json"
VERSIONS = "registry/breast_cancer/versions"


def write(relative: str, content: bytes | str) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        path = tmp / relative
        path.write_bytes(content if isinstance(content, bytes) else content.encode())
    return setup


def truncate(relative: str, keep: float = 0.5) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        data = (tmp / relative).read_bytes()
        (tmp / relative).write_bytes(data[: int(len(data) * keep)])
    return setup


def copy_version(source: str, target: str, claim: bool = False) -> Callable[[Path], None]:
    """Copy a version's folder over another; `claim`: and make its metadata say it is the target."""
    def setup(tmp: Path) -> None:
        versions = tmp / VERSIONS
        shutil.rmtree(versions / target)
        shutil.copytree(versions / source, versions / target)
        if claim:
            metadata = versions / target / "metadata.json"
            metadata.write_text(json.dumps({**json.loads(metadata.read_text()), "version": target}))
    return setup


def rebuild_registry(promotions: tuple[str, ...]) -> Callable[[Path], None]:
    def setup(tmp: Path) -> None:
        shutil.rmtree(tmp / "registry" / "breast_cancer")
        build_registry(tmp, promotions)
    return setup


def remove(relative: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / relative).unlink()


def make_dir(relative: str) -> Callable[[Path], None]:
    return lambda tmp: (tmp / relative).mkdir(parents=True)


def registry_replaced_by_file(tmp: Path) -> None:
    shutil.rmtree(tmp / "registry" / "breast_cancer")
    (tmp / "registry" / "breast_cancer").write_text("x")


def state_replaced_by_folder(tmp: Path) -> None:
    (tmp / STATE).unlink()
    (tmp / STATE).mkdir()


def nothing(tmp: Path) -> None:
    """The healthy tree as it is: the bad input is in the arguments."""


@dataclass(frozen=True)
class CliCase:
    name: str
    setup: Callable[[Path], None]
    args: tuple[str, ...]
    expected: str  # a fragment of the one-line error
    in_subprocess: bool = False  # through the installed console script: proves no traceback reaches stderr


# The project declares two models: a command on one model's registry names it.
MODEL = ("--model", "breast_cancer")
REGISTRY = ("--registry", "{tmp}/registry", *MODEL)
OUTBOX = ("alerts", "--outbox")

CLI_CASES = [
    # Arguments naming what is not there.
    CliCase("show-unknown-version", nothing, (*REGISTRY, "models", "show", "v9"),
            "model version 'v9' not found in registry"),
    CliCase("show-not-a-version-name", nothing, (*REGISTRY, "models", "show", "../v1"),
            "model version '../v1' not found"),
    CliCase("promote-unknown-version", nothing, (*REGISTRY, "models", "promote", "v7"),
            "model version 'v7' not found"),
    CliCase("promote-production", nothing, (*REGISTRY, "models", "promote", "v2"),
            "model version v2 is already in production"),
    CliCase("promote-staging-twice", lambda tmp: registry_at(tmp).set_alias("staging", "v3", reason="s"),
            (*REGISTRY, "models", "promote", "v3", "--alias", "staging"), "model version v3 is already staging"),
    CliCase("rollback-to-production", nothing, (*REGISTRY, "models", "rollback", "--to", "v2"),
            "v2 is already in production"),
    CliCase("rollback-with-no-previous", rebuild_registry(("v1",)), (*REGISTRY, "models", "rollback"),
            "nothing to roll back to"),
    CliCase("rollback-with-nothing-promoted", rebuild_registry(()), (*REGISTRY, "models", "rollback"),
            "nothing to roll back to"),
    CliCase("unknown-model", nothing, ("--registry", "{tmp}/registry", "--model", "nope", "models", "list"),
            "no model 'nope' is declared"),
    CliCase("bad-model-name", nothing, ("--registry", "{tmp}/registry", "--model", "Bad-Name", "models", "history"),
            "model name 'Bad-Name'"),
    CliCase("registry-root-missing", nothing, ("--registry", "{tmp}/typo", *MODEL, "models", "list", "--json"),
            "registry root {tmp}/typo does not exist"),
    CliCase("rollback-on-mistyped-registry", nothing, ("--registry", "{tmp}/typo", *MODEL, "models", "rollback"),
            "registry root {tmp}/typo does not exist"),
    CliCase("promote-on-mistyped-registry", nothing, ("--registry", "{tmp}/typo", *MODEL, "models", "promote", "v1"),
            "registry root {tmp}/typo does not exist"),
    CliCase("status-on-mistyped-registry", nothing, ("--registry", "{tmp}/typo", "status"),
            "registry root {tmp}/typo does not exist"),
    CliCase("registry-root-is-a-file", nothing, ("--registry", "{tmp}/data.txt", *MODEL, "models", "list"),
            "registry root {tmp}/data.txt is a file, not a folder"),
    CliCase("model-registry-is-a-file", registry_replaced_by_file, (*REGISTRY, "models", "history"),
            "part of this path is a file, not a folder"),
    CliCase("rollback-on-a-model-never-trained", lambda tmp: shutil.rmtree(tmp / "registry" / "breast_cancer"),
            (*REGISTRY, "models", "rollback"), "no registry at {tmp}/registry/breast_cancer"),
    CliCase("recover-a-model-never-trained", lambda tmp: shutil.rmtree(tmp / "registry" / "breast_cancer"),
            (*REGISTRY, "models", "recover"), "no registry at {tmp}/registry/breast_cancer"),
    # s3fs is installed for the tests (the S3 registry test): a protocol whose library is not, instead.
    CliCase("abfs-without-adlfs", nothing, ("--registry", "abfs://bucket/models", *MODEL, "models", "list"), "Install adlfs"),
    CliCase("gcs-without-gcsfs", nothing, ("--registry", "gcs://bucket/models", *MODEL, "models", "history"), "install gcsfs"),
    # Damaged registry files.
    CliCase("state-empty", write(STATE, ""), (*REGISTRY, "models", "history"),
            "state.json is empty; refusing to treat it as a new registry"),
    CliCase("state-empty-then-promote", write(STATE, ""), (*REGISTRY, "models", "promote", "v3"),
            "state.json is empty"),
    CliCase("state-truncated", truncate(STATE), (*REGISTRY, "models", "promote", "v3"),
            "state.json is not valid JSON"),
    CliCase("state-a-list", write(STATE, "[]"), (*REGISTRY, "models", "list"),
            "state.json has the wrong shape (expected a JSON object"),
    CliCase("state-alias-not-a-version", write(STATE, '{"aliases": {"production": 2}, "history": []}'),
            (*REGISTRY, "models", "rollback"), "state.json has the wrong shape ('aliases' must map"),
    CliCase("state-history-not-a-list", write(STATE, '{"aliases": {}, "history": {}}'), (*REGISTRY, "status"),
            "'history' must be a list"),
    CliCase("state-vanished", remove(STATE), (*REGISTRY, "models", "promote", "v3"),
            "state.json is missing but the registry's journal is not"),
    CliCase("state-is-a-folder", state_replaced_by_folder, (*REGISTRY, "models", "history"),
            "state.json is a folder, not a file"),
    CliCase("recover-a-sound-state", nothing, (*REGISTRY, "models", "recover"),
            "state.json is sound: nothing to recover"),
    CliCase("version-copied-over-another", copy_version("v1", "v3"), (*REGISTRY, "models", "promote", "v3"),
            "model version v3: its metadata says it is v1"),
    CliCase("version-copied-and-renamed", copy_version("v1", "v3", claim=True), (*REGISTRY, "models", "promote", "v3"),
            "model version v3: artifact integrity check failed"),
    CliCase("model-pkl-tampered", write(f"{VERSIONS}/v1/model.pkl", b"tampered"), (*REGISTRY, "models", "rollback"),
            "model version v1: artifact integrity check failed"),
    CliCase("model-pkl-missing", remove(f"{VERSIONS}/v3/model.pkl"), (*REGISTRY, "models", "promote", "v3"),
            "model version v3: artifact"),
    CliCase("metadata-wrong-shape", write(f"{VERSIONS}/v2/metadata.json", '["v2"]'), (*REGISTRY, "models", "list"),
            "model version v2: {tmp}/registry/breast_cancer/versions/v2/metadata.json has the wrong shape"),
    CliCase("metadata-truncated", truncate(f"{VERSIONS}/v2/metadata.json"), (*REGISTRY, "models", "show", "v2"),
            "metadata.json is not valid JSON"),
    # Damaged or wrong outboxes.
    CliCase("outbox-is-a-folder", make_dir("outbox.db"), (*OUTBOX, "{tmp}/outbox.db", "list"),
            "{tmp}/outbox.db is a folder, not an alert outbox"),
    CliCase("outbox-is-dagsters-runs-db", nothing, (*OUTBOX, "{tmp}/runs.db", "list", "--json"),
            "{tmp}/runs.db is not an alert outbox (a SQLite file without the table(s) alerts, fingerprints, deliveries)"),
    CliCase("requeue-in-dagsters-runs-db", nothing, (*OUTBOX, "{tmp}/runs.db", "requeue", "1"),
            "{tmp}/runs.db is not an alert outbox"),
    CliCase("outbox-truncated", truncate("alerts.db", keep=0.3), (*OUTBOX, "{tmp}/alerts.db", "dead-letters"),
            "{tmp}/alerts.db is not"),
    CliCase("outbox-is-text", write("alerts.db", "hello"), (*OUTBOX, "{tmp}/alerts.db", "outbox"),
            "{tmp}/alerts.db is not an alert outbox (file is not a database)"),
    CliCase("outbox-empty-file", write("alerts.db", b""), (*OUTBOX, "{tmp}/alerts.db", "list"),
            "{tmp}/alerts.db is not an alert outbox"),
    CliCase("outbox-missing", nothing, (*OUTBOX, "{tmp}/none.db", "list", "--json"),
            "no alert outbox at {tmp}/none.db"),
    CliCase("requeue-on-a-fresh-instance", nothing, ("alerts", "requeue", "1"),
            "no alert outbox at {tmp}/home/ml_platform/alerts.db yet"),
    CliCase("requeue-not-a-dead-letter", nothing, (*OUTBOX, "{tmp}/alerts.db", "requeue", "999"),
            "delivery 999 is not a dead letter"),
    # Through the installed command: nothing but the one line reaches stderr.
    CliCase("console-state-wrong-shape", write(STATE, '{"aliases": []}'), (*REGISTRY, "models", "history"),
            "state.json has the wrong shape", in_subprocess=True),
    CliCase("console-outbox-is-a-folder", make_dir("outbox.db"), (*OUTBOX, "{tmp}/outbox.db", "list"),
            "is a folder, not an alert outbox", in_subprocess=True),
    CliCase("console-abfs-without-adlfs", nothing, ("--registry", "abfs://bucket/models", *MODEL, "models", "list"),
            "Install adlfs", in_subprocess=True),
    CliCase("console-registry-root-is-a-file", nothing, ("--registry", "{tmp}/data.txt", *MODEL, "models", "rollback"),
            "is a file, not a folder", in_subprocess=True),
]


def tree_listing(root: Path) -> dict[str, str]:
    """Every file and folder under root, with a hash of each file's content."""
    listing = {}
    for path in sorted(root.rglob("*")):
        relative = str(path.relative_to(root))
        listing[relative] = "folder" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return listing


def production_and_history(tmp: Path) -> object:
    """The production alias and the history, or the state file's bytes when it is not readable."""
    state = tmp / STATE
    try:
        parsed = json.loads(state.read_text())
        return parsed["aliases"].get("production"), parsed["history"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError):
        return state.read_bytes() if state.is_file() else None


def run_cli(case: CliCase, tmp: Path, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    args = [arg.replace("{tmp}", str(tmp)) for arg in case.args]
    if case.in_subprocess:
        env = {"PATH": "/usr/bin:/bin", "DAGSTER_HOME": str(tmp / "home")}
        done = subprocess.run([ML_PLATFORM, *args], capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=60)
        return done.returncode, done.stdout, done.stderr
    code = main(args)
    out, err = capsys.readouterr()
    return code, out, err


@pytest.mark.parametrize("case", CLI_CASES, ids=[c.name for c in CLI_CASES])
def test_cli_bad_input_gets_one_line_and_changes_nothing(
    case: CliCase, healthy_tree: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    tmp = tmp_path / "case"
    shutil.copytree(healthy_tree, tmp)
    monkeypatch.setenv("DAGSTER_HOME", str(tmp / "home"))
    monkeypatch.delenv("ML_PLATFORM_REGISTRY", raising=False)
    case.setup(tmp)
    listing, state = tree_listing(tmp), production_and_history(tmp)

    code, out, err = run_cli(case, tmp, capsys)

    assert (code, out) == (1, ""), err
    assert err.count("\n") == 1 and err.startswith("ml-platform: ") and "Traceback" not in err, err
    assert case.expected.replace("{tmp}", str(tmp)) in err
    assert production_and_history(tmp) == state
    assert tree_listing(tmp) == listing


# -- pipeline runs on bad data and bad run config ------------------------------------------------


def bundled_like(rows: slice = slice(None)) -> pd.DataFrame:
    """The bundled data as a CSV would carry it: the shipped model's 30 features and a `label`."""
    from ml_platform.data.sources import load_breast_cancer_source

    return load_breast_cancer_source().frame.iloc[rows].rename(columns={"target": "label"})


def csv_source(path: Path) -> dict[str, Any]:
    """Run config pointing the shipped model (for one run) at a file with its declared features."""
    features = [c for c in bundled_like().columns if c != "label"]
    return source_config("breast_cancer", kind=path.suffix.lstrip("."), path=str(path), target="label", classes=None,
                         features=features)


def data_file(name: str, frame: Callable[[], pd.DataFrame]) -> Callable[[Path], dict[str, Any]]:
    def setup(tmp: Path) -> dict[str, Any]:
        path = tmp / name
        data = frame()
        data.to_parquet(path) if path.suffix == ".parquet" else data.to_csv(path, index=False)
        return csv_source(path)
    return setup


def raw_file(name: str, content: Callable[[], bytes]) -> Callable[[Path], dict[str, Any]]:
    def setup(tmp: Path) -> dict[str, Any]:
        (tmp / name).write_bytes(content())
        return csv_source(tmp / name)
    return setup


def csv_bytes(rows: slice = slice(None)) -> bytes:
    return bundled_like(rows).to_csv(index=False).encode()


def parquet_bytes() -> bytes:
    import io

    buffer = io.BytesIO()
    bundled_like().to_parquet(buffer)
    return buffer.getvalue()


def folder_source(tmp: Path) -> dict[str, Any]:
    (tmp / "folder.csv").mkdir()
    return csv_source(tmp / "folder.csv")


def with_value(column: str, row: int, value: object) -> Callable[[], pd.DataFrame]:
    def frame() -> pd.DataFrame:
        data = bundled_like()
        data = data.astype({column: object}) if isinstance(value, str) else data
        data.loc[row, column] = value
        return data
    return frame


@dataclass(frozen=True)
class RunCase:
    name: str
    setup: Callable[[Path], dict[str, Any]]  # writes its files under the folder given; returns the run config
    expected: str  # a fragment of the failure's one-line description
    via_dagster_cli: bool = False  # `dagster asset materialize` in a subprocess instead of in-process
    # Refused by Dagster's config schema when the run is launched: nothing ran at all.
    refused_at_launch: bool = False
    extra_config: dict[str, Any] = field(default_factory=dict)


RUN_CASES = [
    # Data files.
    RunCase("csv-missing", lambda tmp: csv_source(tmp / "nope.csv"), "nope.csv' could not be read: file not found"),
    RunCase("csv-a-folder", folder_source, "folder.csv' could not be read: not a regular file"),
    RunCase("csv-empty", raw_file("empty.csv", lambda: b""), "empty.csv' could not be read: the file is empty"),
    RunCase("csv-header-only", raw_file("header.csv", lambda: csv_bytes().splitlines(keepends=True)[0]),
            "header.csv' could not be read: the file has no data rows"),
    RunCase("csv-truncated", raw_file("cut.csv", lambda: csv_bytes()[: len(csv_bytes()) // 2 + 7]), "not_nullable x1"),
    RunCase("csv-utf16", raw_file("utf16.csv", lambda: csv_bytes().decode().encode("utf-16")),
            "utf16.csv' could not be read: unreadable (UnicodeDecodeError"),
    RunCase("csv-text-in-numeric-column", data_file("text.csv", with_value("mean_radius", 4, "twelve")),
            "mean_radius: numeric x1"),
    RunCase("csv-infinity", data_file("inf.csv", with_value("mean_area", 9, np.inf)), "mean_area: finite x1"),
    RunCase("csv-missing-value", data_file("nan.csv", with_value("mean_area", 9, np.nan)), "mean_area: not_nullable x1"),
    RunCase("csv-missing-column", data_file("mc.csv", lambda: bundled_like().drop(columns=["mean_area"])),
            "missing column(s) 'mean_area'"),
    RunCase("csv-missing-target", data_file("mt.csv", lambda: bundled_like().drop(columns=["label"])),
            "target column 'label' not found"),
    RunCase("csv-unseen-label", data_file("ul.csv", with_value("label", 3, 2)),
            "label: 2 is not one of the production model's classes [0, 1]"),
    RunCase("csv-single-class", data_file("sc.csv", lambda: bundled_like().assign(label=1)), "single class"),
    # Rows whose label has not arrived are kept (for monitoring), but training needs min_rows labelled ones.
    RunCase("csv-labels-not-arrived",
            data_file("late.csv", lambda: bundled_like().assign(label=lambda f: f["label"].where(np.arange(len(f)) < 40))),
            "trained_model: 40 labelled rows of 569, fewer than the minimum of 50"),
    RunCase("csv-too-few-rows", data_file("few.csv", lambda: bundled_like(slice(0, 20))),
            "20 rows, fewer than the minimum of 50"),
    RunCase("csv-every-row-invalid-under-quarantine", data_file("bad.csv", lambda: bundled_like().assign(mean_area=np.inf)),
            "569 of 569 rows invalid (100.0%, allowed 99.0%)",
            extra_config=op_config("breast_cancer", "validated_data", max_invalid_fraction=0.99)),
    RunCase("parquet-garbage", raw_file("garbage.parquet", lambda: b"garbage"),
            "garbage.parquet' could not be read: unreadable"),
    RunCase("parquet-truncated", raw_file("cut.parquet", lambda: parquet_bytes()[: len(parquet_bytes()) // 2]),
            "cut.parquet' could not be read: unreadable (ArrowInvalid"),
    # Run config: out-of-range values are refused by the run's first step, before any work.
    RunCase("config-min-rows-negative", lambda tmp: op_config("breast_cancer", "validated_data", min_rows=-5),
            "run config ops.breast_cancer__validated_data.config.min_rows: Input should be greater than or equal to 1"),
    RunCase("config-invalid-fraction-above-1",
            lambda tmp: op_config("breast_cancer", "validated_data", max_invalid_fraction=2.0),
            "run config ops.breast_cancer__validated_data.config.max_invalid_fraction: Input should be less than 1"),
    RunCase("config-tolerance-negative", lambda tmp: op_config("breast_cancer", "staging_model", tolerance=-1),
            "run config ops.breast_cancer__staging_model.config.tolerance: Input should be greater than or equal to 0"),
    RunCase("config-rollout-steps-unordered", lambda tmp: op_config("breast_cancer", "production_model", steps=[50, 10, 100]),
            "run config ops.breast_cancer__production_model.config: steps: [50, 10, 100] must rise strictly"),
    RunCase("config-holdout-fraction-above-1",
            lambda tmp: op_config("breast_cancer", "trained_model", holdout_fraction=1.5),
            "run config ops.breast_cancer__trained_model.config.holdout_fraction: Input should be less than 1"),
    RunCase("config-min-accuracy-above-1",
            lambda tmp: op_config("breast_cancer", "trained_model", accuracy_check={"min_accuracy": 3}),
            "run config ops.breast_cancer__trained_model.config.accuracy_check.min_accuracy: Input should be less than"),
    RunCase("config-negative-C", lambda tmp: op_config("breast_cancer", "trained_model", params={"C": -1}),
            "trained_model: The 'C' parameter of LogisticRegression must be a float in the range (0.0, inf]. Got -1"),
    RunCase("config-unknown-param", lambda tmp: op_config("breast_cancer", "trained_model", params={"bogus": 1}),
            "bad hyper-parameters for logistic_regression: LogisticRegression.__init__() got an unexpected keyword "
            "argument 'bogus'"),
    RunCase("config-metric-nonexistent", lambda tmp: op_config("breast_cancer", "staging_model", metric="nonexistent"),
            "breast_cancer__staging_model:config:metric not in enum", refused_at_launch=True),
    RunCase("config-estimator-nonexistent", lambda tmp: op_config("breast_cancer", "trained_model", estimator="xgb"),
            "breast_cancer__trained_model:config:estimator not in enum", refused_at_launch=True),
    # The README's way: `dagster asset materialize` on the instance.
    RunCase("dagster-cli-missing-column", data_file("mc.csv", lambda: bundled_like().drop(columns=["mean_area"])),
            "missing column(s) 'mean_area'", via_dagster_cli=True),
    # (An unreadable source through the Dagster CLI: test_dagster_cli.py.)
]


@pytest.fixture(scope="module")
def trained_home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A Dagster instance on which the shipped model was trained once: production v1."""
    home = tmp_path_factory.mktemp("trained") / "dagster_home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DAGSTER_HOME", str(home))
        patch.delenv("ML_PLATFORM_REGISTRY", raising=False)
        with dg.DagsterInstance.get() as instance:
            assert train(instance).success
    return home


def failure_line(result: dg.ExecuteInProcessResult) -> str:
    """The failed step's description (ours), else its error's message."""
    [failure] = result.get_step_failure_events()
    data = failure.step_failure_data
    return data.user_failure_data.description if data.user_failure_data else data.error.message.strip()


def run_in_process(case: RunCase, run_config: dict[str, Any]) -> str:
    with dg.DagsterInstance.get() as instance:
        defs = platform()
        if case.refused_at_launch:
            with pytest.raises(dg.DagsterInvalidConfigError) as refused:
                materialize(instance, defs, "*", run_config=run_config)
            assert not instance.get_runs()[1:], "a run started"  # only the one that trained v1
            return next(line.strip() for line in str(refused.value).splitlines() if case.expected in line)
        result = materialize(instance, defs, "*", run_config=run_config)
        assert not result.success
        return failure_line(result)


def run_dagster_cli(home: Path, tmp: Path, run_config: dict[str, Any]) -> str:
    config = tmp / "run.json"
    config.write_text(json.dumps(run_config))
    env = {**os.environ, "DAGSTER_HOME": str(home)}
    # The cases break breast_cancer's source or config: its group, as the in-process runs (whose
    # Definitions hold breast_cancer only) run it; `*` would also train churn, the cost without the point.
    done = subprocess.run([DAGSTER, "asset", "materialize", "-m", "ml_platform", "--select", "group:breast_cancer", "-c", str(config)],
                          capture_output=True, text=True, env=env, cwd=REPO_ROOT, timeout=300)
    assert done.returncode != 0
    return done.stderr


@pytest.mark.parametrize("case", RUN_CASES, ids=[c.name for c in RUN_CASES])
def test_a_run_on_bad_input_fails_with_one_line_and_production_is_unchanged(
    case: RunCase, trained_home: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "dagster_home"
    shutil.copytree(trained_home, home)
    monkeypatch.setenv("DAGSTER_HOME", str(home))
    monkeypatch.delenv("ML_PLATFORM_REGISTRY", raising=False)
    data = tmp_path / "data"
    data.mkdir()
    run_config = {**case.setup(data), **case.extra_config}
    registry = registry_of(home)
    listing, aliases, history = tree_listing(Path(registry.url)), registry.aliases(), registry.history()

    if case.via_dagster_cli:
        assert case.expected in run_dagster_cli(home, data, run_config)
    else:
        message = run_in_process(case, run_config)
        assert "\n" not in message and case.expected in message, message

    assert registry.aliases() == aliases == {"production": "v1", "staging": "v1"} and registry.history() == history
    assert tree_listing(Path(registry.url)) == listing  # no version registered, nothing rewritten


# -- settings: environment variables and declarations ------------------------------------------


@dataclass(frozen=True)
class SettingCase:
    """A bad setting that must name itself in one line and take nothing else down: the code
    location still loads, and only what the setting governs is switched off."""

    name: str
    env: dict[str, str]
    expected: str


SMTP_ON = {"ML_PLATFORM_SMTP_HOST": "127.0.0.1", "ML_PLATFORM_SMTP_TO": "oncall@example.com"}
SETTING_CASES = [
    SettingCase("smtp-port-text", {**SMTP_ON, "ML_PLATFORM_SMTP_PORT": "abc"},
                "email switched off: ML_PLATFORM_SMTP_PORT='abc' is not a whole number in 1..65535"),
    SettingCase("smtp-port-out-of-range", {**SMTP_ON, "ML_PLATFORM_SMTP_PORT": "70000"},
                "email switched off: ML_PLATFORM_SMTP_PORT='70000' is not a whole number in 1..65535"),
    SettingCase("smtp-starttls-misspelt", {**SMTP_ON, "ML_PLATFORM_SMTP_STARTTLS": "flase"},
                "email switched off: ML_PLATFORM_SMTP_STARTTLS='flase' is not true or false"),
    SettingCase("smtp-password-without-tls", {**SMTP_ON, "ML_PLATFORM_SMTP_USERNAME": "ops", "ML_PLATFORM_SMTP_STARTTLS": "false"},
                "email switched off: EmailChannel: refusing to send a password without STARTTLS (set allow_plain_auth=True)"),
    SettingCase("sensor-interval-text", {"ML_PLATFORM_ALERT_SENSOR_INTERVAL": "soon"},
                "sensors switched off: ML_PLATFORM_ALERT_SENSOR_INTERVAL='soon' is not a whole number in 1..86400"),
]

TICK = """
import dagster as dg
from ml_platform.definitions import defs
definitions = defs()
sensor = definitions.resolve_sensor_def("check_alert_sensor")
with dg.DagsterInstance.get() as instance, dg.build_sensor_context(instance=instance, resources=definitions.resources) as context:
    print(sensor(context).skip_message)
"""


@pytest.mark.parametrize("case", SETTING_CASES, ids=[c.name for c in SETTING_CASES])
def test_a_bad_setting_names_itself_in_the_sensor_tick_and_the_code_location_still_loads(
    case: SettingCase, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home = tmp_path / "home"
    home.mkdir()
    shutil.copy(REPO_ROOT / "dagster_home" / "dagster.yaml", home / "dagster.yaml")
    env = {k: v for k, v in os.environ.items() if not k.startswith("ML_PLATFORM_")}
    if "ML_PLATFORM_ALERT_SENSOR_INTERVAL" in case.env:
        # Read when the code location is imported: a fresh process loads it as the daemon would.
        done = subprocess.run([sys.executable, "-c", TICK], capture_output=True, text=True, cwd=REPO_ROOT, timeout=120,
                              env={**env, **case.env, "DAGSTER_HOME": str(home)})
        assert done.returncode == 0, done.stderr[-2000:]
        assert "Traceback" not in done.stderr
        reason = done.stdout
    else:
        from ml_platform.orchestration.alerting import alerting_from_environment
        from ml_platform.orchestration.sensors import build_alert_sensors

        for name in [k for k in os.environ if k.startswith("ML_PLATFORM_")]:
            monkeypatch.delenv(name)
        for name, value in {**case.env, "DAGSTER_HOME": str(home)}.items():
            monkeypatch.setenv(name, value)
        resources = platform(alerting=alerting_from_environment()).resources  # the code location loads
        with dg.DagsterInstance.get() as instance, dg.build_sensor_context(instance=instance, resources=resources) as context:
            reason = build_alert_sensors({})[0](context).skip_message
    assert case.expected in reason
    assert "\n" not in reason.strip()


def test_a_declaration_keeping_no_versions_is_refused_before_anything_is_registered(tmp_path: Path) -> None:
    from ml_platform.declaration import DeclarationError, read_declaration

    path = tmp_path / "defs" / "churn" / "defs.yaml"
    path.parent.mkdir(parents=True)
    path.write_text("type: ml_platform.ModelPipeline\nattributes:\n  registry: {keep_last: 0}\n")
    with pytest.raises(DeclarationError) as refused:
        read_declaration(path, tmp_path)
    assert str(refused.value) == f"{path}: attributes.registry.keep_last: Input should be greater than or equal to 1"
    assert sorted(p.name for p in tmp_path.rglob("*")) == ["churn", "defs", "defs.yaml"]
