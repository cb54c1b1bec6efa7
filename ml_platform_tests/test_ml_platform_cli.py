"""`ml-platform`: tables, --json, exit codes, --model, status and new-model."""

import json
import subprocess
import sys
from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.cli import main
from ml_platform.model.registry import ModelRegistry

ML_PLATFORM = str(Path(sys.executable).with_name("ml-platform"))
# The project declares two models (breast_cancer, churn): commands on one name it.
BREAST_CANCER = ("--model", "breast_cancer")


@pytest.fixture
def root(tmp_path: Path) -> str:
    """The root of the registries, holding the shipped breast_cancer model's."""
    registry = ModelRegistry(tmp_path / "registry" / "breast_cancer")
    for i, accuracy in enumerate([0.91, 0.93, 0.92]):
        model = DummyClassifier(strategy="constant", constant=i % 2).fit([[0], [1]], [0, 1])
        registry.register(model, {"metrics": {"accuracy": accuracy, "f1": accuracy - 0.01}, "features": ["x"], "row_count": 10})
    registry.set_alias("production", "v1", reason="first", run_id="run-a")
    registry.set_alias("production", "v2", reason="better", run_id="run-b")
    return str(tmp_path / "registry")


def run(root: str, *args: str, capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    code = main(["--registry", root, *(BREAST_CANCER if args[0] == "models" else ()), *args])
    out, err = capsys.readouterr()
    return code, out, err


def test_list_shows_versions_with_aliases(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(root, "models", "list", capsys=capsys)
    lines = out.splitlines()
    assert code == 0 and lines[0].split()[:4] == ["version", "created_at", "aliases", "accuracy"]
    rows = {line.split()[0]: line for line in lines[2:]}
    assert set(rows) == {"v1", "v2", "v3"}
    assert "previous" in rows["v1"] and "production" in rows["v2"] and "0.93" in rows["v2"]
    code, out, _ = run(root, "models", "list", "--json", capsys=capsys)
    assert [(r["version"], r["aliases"]) for r in json.loads(out)] == [("v1", "previous"), ("v2", "production"), ("v3", "")]


def test_show_prints_the_model_card_or_metadata(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(root, "models", "show", "v2", capsys=capsys)
    assert code == 0 and out.startswith("# Model v2") and "| accuracy | 0.9300 |" in out
    code, out, _ = run(root, "models", "show", "v2", "--json", capsys=capsys)
    assert json.loads(out)["metrics"]["accuracy"] == 0.93


def test_history_answers_who_what_when_and_why(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(root, "models", "history", "--json", capsys=capsys)
    history = json.loads(out)
    assert [(h["from_version"], h["to_version"], h["run_id"], h["reason"]) for h in history] == [
        (None, "v1", "run-a", "first"), ("v1", "v2", "run-b", "better"),
    ]
    code, out, _ = run(root, "models", "history", capsys=capsys)
    assert code == 0 and "better" in out.splitlines()[-1] and "run-b" in out.splitlines()[-1]


def test_rollback_and_promote_change_production_and_are_recorded(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(root, "models", "rollback", capsys=capsys)
    assert code == 0 and out.strip() == "production rolled back: v2 -> v1"
    code, out, _ = run(root, "models", "promote", "v3", "--reason", "hotfix", "--json", capsys=capsys)
    entry = json.loads(out)
    assert code == 0 and (entry["from_version"], entry["to_version"], entry["action"]) == ("v1", "v3", "manual-promote")
    code, out, _ = run(root, "models", "rollback", "--to", "v2", capsys=capsys)
    registry = ModelRegistry(f"{root}/breast_cancer")
    assert code == 0 and registry.aliases() == {"production": "v2", "previous": "v3"}
    assert [h["action"] for h in registry.history()][2:] == ["rollback", "manual-promote", "rollback"]


@pytest.mark.parametrize(
    "args, message",
    [
        (["models", "show", "v9"], "ml-platform: model version 'v9' not found"),
        (["models", "rollback", "--to", "v2"], "ml-platform: model version v2 is already in production"),
        (["models", "promote", "v7"], "ml-platform: model version 'v7' not found"),
    ],
)
def test_failures_exit_non_zero_with_one_line(root: str, capsys: pytest.CaptureFixture[str], args: list[str], message: str) -> None:
    code, out, err = run(root, *args, capsys=capsys)
    assert code == 1 and out == "" and err.startswith(message) and err.count("\n") == 1


def test_installed_console_script_reads_the_default_registry_location(root: str, tmp_path: Path) -> None:
    env = {"PATH": "/usr/bin:/bin", "ML_PLATFORM_REGISTRY": root}
    ok = subprocess.run([ML_PLATFORM, *BREAST_CANCER, "models", "list", "--json"], capture_output=True, text=True, env=env)
    assert ok.returncode == 0 and len(json.loads(ok.stdout)) == 3
    (Path(root) / "breast_cancer" / "versions" / "v1" / "model.pkl").write_bytes(b"tampered")
    refused = subprocess.run([ML_PLATFORM, *BREAST_CANCER, "models", "rollback"], capture_output=True, text=True, env=env)
    assert refused.returncode == 1
    assert refused.stderr.strip() == (
        "ml-platform: model version v1: artifact integrity check failed "
        f"(sha256 {refused.stderr.split('sha256 ')[1].split('...')[0]}... != recorded "
        f"{ModelRegistry(f'{root}/breast_cancer').get('v1').sha256[:12]}...); refusing to load"
    )
    usage = subprocess.run([ML_PLATFORM, "models", "frobnicate"], capture_output=True, text=True, env=env)
    assert usage.returncode == 2


@pytest.fixture
def outbox_path(tmp_path: Path) -> Path:
    """An outbox with one delivered alert and one dead letter, made by the real dispatcher."""
    from ml_platform.alerting.channels import JsonlFileChannel, PermanentDeliveryError
    from ml_platform.alerting.dispatch import AlertDispatcher
    from ml_platform.alerting.outbox import AlertOutbox
    from ml_platform.alerting.alert import alert_for_failed_check

    class Refusing:
        name = "webhook"

        def send(self, alerts, delivery_key=None) -> None:
            raise PermanentDeliveryError("HTTP 404 from http://127.0.0.1:9")

    path = tmp_path / "alerts.db"
    dispatcher = AlertDispatcher(
        AlertOutbox(path), [JsonlFileChannel(tmp_path / "a.jsonl"), Refusing()],
        {"HIGH": ["jsonl", "webhook"], "MEDIUM": ["jsonl"], "LOW": []},
    )
    dispatcher.submit([
        alert_for_failed_check(asset="trained_model", check="accuracy_above_threshold", dagster_severity="ERROR",
                               description="Model accuracy dropped to 61.00% (threshold: 70.00%)",
                               metadata={"model_version": "v3"}, run_id="run-1", event_id=11),
    ])
    dispatcher.deliver_due()
    return path


def test_alerts_list_outbox_and_dead_letters(outbox_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run("unused", "alerts", "--outbox", str(outbox_path), "list", capsys=capsys)
    assert code == 0 and "accuracy_above_threshold" in out and "HIGH" in out and "firing" in out
    code, out, _ = run("unused", "alerts", "--outbox", str(outbox_path), "dead-letters", "--json", capsys=capsys)
    [dead] = json.loads(out)
    assert dead["channel"] == "webhook" and "HTTP 404" in dead["last_error"]
    code, out, _ = run("unused", "alerts", "--outbox", str(outbox_path), "outbox", capsys=capsys)
    assert code == 0 and out.strip() == "(none)"
    code, out, _ = run("unused", "alerts", "--outbox", str(outbox_path), "requeue", str(dead["id"]), capsys=capsys)
    assert code == 0
    code, out, _ = run("unused", "alerts", "--outbox", str(outbox_path), "outbox", "--json", capsys=capsys)
    assert [d["id"] for d in json.loads(out)] == [dead["id"]]
    code, _, err = run("unused", "alerts", "--outbox", str(outbox_path), "requeue", "999", capsys=capsys)
    assert code == 1 and err.strip() == "ml-platform: delivery 999 is not a dead letter"


def test_alerts_without_an_outbox_say_so(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run("unused", "alerts", "--outbox", str(tmp_path / "none.db"), "list", capsys=capsys)
    assert code == 1 and "no alert outbox at" in err


def two_models(tmp_path: Path) -> Path:
    """A defs folder declaring two models, with a registry each under tmp_path/registry."""
    from ml_platform.scaffold import declaration_yaml

    defs = tmp_path / "project" / "pkg" / "defs"
    for name, constant in (("churn", 0), ("fraud", 1)):
        (defs / name).mkdir(parents=True)
        (defs / name / "defs.yaml").write_text(declaration_yaml(name))
        registry = ModelRegistry(tmp_path / "registry" / name)
        registry.register(DummyClassifier(strategy="constant", constant=constant).fit([[0], [1]], [0, 1]),
                          {"metrics": {"accuracy": 0.8 + constant / 10}, "features": ["x"]})
        registry.set_alias("production", "v1", reason=f"first {name}")
    return defs


def test_with_several_models_the_model_must_be_named_and_the_error_lists_them(tmp_path: Path, capsys) -> None:
    defs = two_models(tmp_path)
    base = ["--registry", str(tmp_path / "registry"), "--defs", str(defs)]
    assert main([*base, "models", "list"]) == 1
    assert capsys.readouterr().err.strip() == (
        "ml-platform: several models are declared (churn, fraud): name one (on the command line: --model NAME)"
    )
    # --model before or after the subcommand.
    assert main([*base, "--model", "fraud", "models", "list", "--json"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["accuracy"] == 0.9
    assert main(["models", "history", "--json", *base, "--model", "churn"]) == 0
    assert json.loads(capsys.readouterr().out)[0]["reason"] == "first churn"
    assert main([*base, "--model", "nope", "models", "list", "--json"]) == 1
    assert capsys.readouterr().err.strip().endswith("no model 'nope' is declared in " + str(defs) + "; declared: churn, fraud")
    assert main([*base, "--model", "nope", "status"]) == 1
    assert "declared: churn, fraud" in capsys.readouterr().err
    assert main([*base, "--model", "Bad-Name", "models", "list"]) == 1
    assert "model name 'Bad-Name'" in capsys.readouterr().err


def test_status_says_what_is_in_production_where_and_what_to_try_next(tmp_path: Path, capsys) -> None:
    defs = two_models(tmp_path)
    assert main(["--registry", str(tmp_path / "registry"), "--defs", str(defs), "status"]) == 0
    out = capsys.readouterr().out
    assert "churn: v1 in production (holdout accuracy 0.8000)" in out and "fraud: v1 in production (holdout accuracy 0.9000)" in out
    assert f"model card: {tmp_path / 'registry' / 'fraud' / 'versions' / 'v1' / 'model_card.md'}" in out
    assert "Next:" in out and "ml-platform models list --model churn" in out


def test_the_cli_finds_the_projects_instance_from_a_plain_shell(tmp_path: Path) -> None:
    """No DAGSTER_HOME, no ML_PLATFORM_REGISTRY: run from the project folder (or below it), as after `make run`."""
    project = tmp_path / "checkout"
    (project / "dagster_home").mkdir(parents=True)
    (project / "dagster_home" / "dagster.yaml").write_text("telemetry: {enabled: false}\n")
    registry = ModelRegistry(project / "dagster_home" / "ml_platform" / "registry" / "breast_cancer")
    registry.register(DummyClassifier(strategy="constant", constant=1).fit([[0], [1]], [0, 1]), {"metrics": {"accuracy": 0.97}})
    registry.set_alias("production", "v1", reason="first")
    (project / "notebooks").mkdir()
    env = {"PATH": "/usr/bin:/bin"}
    for cwd in (project, project / "notebooks"):
        listed = subprocess.run([ML_PLATFORM, *BREAST_CANCER, "models", "list", "--json"], capture_output=True, text=True, env=env, cwd=cwd)
        assert listed.returncode == 0, listed.stderr
        assert [r["aliases"] for r in json.loads(listed.stdout)] == ["production"]
    status = subprocess.run([ML_PLATFORM, "status"], capture_output=True, text=True, env=env, cwd=project)
    assert "breast_cancer: v1 in production (holdout accuracy 0.9700)" in status.stdout


def test_new_model_writes_a_reviewed_declaration_from_a_csv(tmp_path: Path, capsys) -> None:
    import pandas as pd

    from ml_platform.declaration import read_declarations

    defs = tmp_path / "project" / "pkg" / "defs"
    data = tmp_path / "project" / "data"
    data.mkdir(parents=True)
    pd.DataFrame({"tenure": [1, 5, 9, 2] * 20, "charges": [9.5, None, 31.2, 4.1] * 20, "plan": ["a", "b", "a", "c"] * 20,
                  "paperless": [True, False] * 40, "note": [f"called on day {i}" for i in range(80)],
                  "churned": ["yes", "no", "no", "yes"] * 20}).to_csv(data / "churn.csv", index=False)
    assert main(["--defs", str(defs), "new-model", "churn", "--csv", str(data / "churn.csv"), "--target", "churned"]) == 0
    out = capsys.readouterr().out
    assert f"wrote {defs / 'churn' / 'defs.yaml'}" in out
    assert "2 numeric and 2 categorical feature(s); 1 with missing values (see impute); left out: note" in out
    text = (defs / "churn" / "defs.yaml").read_text()
    assert "path: data/churn.csv" in text and "- tenure   # int64, 4 distinct values: categorical if it is a code" in text
    assert "categorical: [plan, paperless]   # inferred" in text
    assert "#   charges: median   # 25.0% missing" in text
    assert "# left out: note (free text or an identifier: 80 distinct values (> 50))" in text
    [model] = read_declarations(defs)
    source = model.declaration.source
    assert (source.kind, source.target, source.classes) == ("csv", "churned", ["no", "yes"])
    assert source.features == ["tenure", "charges", "plan", "paperless"] and source.categorical == ["plan", "paperless"]
    assert source.impute == {}  # a suggestion, for review: missing values are rejected until declared
    assert model.source_path() == str(data / "churn.csv")
    # Not twice by accident; a target that is not there is named.
    assert main(["--defs", str(defs), "new-model", "churn", "--csv", str(data / "churn.csv"), "--target", "churned"]) == 1
    assert "exists already (pass --force to replace it)" in capsys.readouterr().err
    assert main(["--defs", str(defs), "new-model", "other", "--csv", str(data / "churn.csv"), "--target", "label"]) == 1
    assert "no column 'label'; columns are ['tenure', 'charges', 'plan', 'paperless', 'note', 'churned']" in capsys.readouterr().err


def test_reading_an_empty_registry_or_outbox_or_a_fresh_instance_prints_an_empty_list(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from ml_platform.alerting.outbox import AlertOutbox

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path / "home"))  # a fresh instance: nothing there yet
    monkeypatch.delenv("ML_PLATFORM_REGISTRY", raising=False)
    (tmp_path / "home").mkdir()
    (tmp_path / "registry" / "breast_cancer").mkdir(parents=True)  # an existing but empty registry
    AlertOutbox(tmp_path / "empty.db")
    before = sorted(tmp_path.rglob("*"))
    for args in (
        ["models", "list", "--json"], ["models", "history", "--json"],
        ["--registry", str(tmp_path / "registry"), "models", "list", "--json"],
        ["--registry", str(tmp_path / "registry"), "models", "history", "--json"],
        ["alerts", "list", "--json"], ["alerts", "dead-letters", "--json"],
        ["alerts", "--outbox", str(tmp_path / "empty.db"), "list", "--json"],
        ["alerts", "--outbox", str(tmp_path / "empty.db"), "outbox", "--json"],
    ):
        assert main([*BREAST_CANCER, *args] if "models" in args else args) == 0, args  # models: of one model
        assert json.loads(capsys.readouterr().out) == [], args
    assert sorted(tmp_path.rglob("*")) == before  # read commands never write


def test_recover_rebuilds_an_emptied_state_and_says_what_it_recovered(root: str, capsys: pytest.CaptureFixture[str]) -> None:
    state = Path(root) / "breast_cancer" / "state.json"
    history = json.loads(state.read_text())["history"]
    state.write_text("")
    code, _, err = run(root, "models", "promote", "v3", capsys=capsys)
    assert code == 1 and f"{state} is empty; refusing to treat it as a new registry" in err
    code, out, _ = run(root, "models", "recover", capsys=capsys)
    [kept] = state.parent.glob("state.json.damaged-*")
    assert code == 0 and out.splitlines() == [
        f"recovered the state of {root}/breast_cancer: {state} is empty",
        f"  damaged file kept at: {kept}",
        "  versions:     v1, v2, v3 (metadata matching its folder and artifact)",
        "  history:      2 entries, from the journal",
        "  aliases:      previous=v1, production=v2 (replayed from that history)",
    ]
    code, out, _ = run(root, "models", "history", "--json", capsys=capsys)
    assert json.loads(out) == history
    # The next promotion appends to the recovered history: nothing was wiped.
    assert run(root, "models", "promote", "v3", capsys=capsys)[0] == 0
    assert len(ModelRegistry(f"{root}/breast_cancer").history()) == 3


def test_output_cut_short_by_a_closed_pipe_is_not_a_traceback(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os
    import sys

    from ml_platform.cli import main

    monkeypatch.setenv("DAGSTER_HOME", str(tmp_path))
    read_end, write_end = os.pipe()
    os.close(read_end)  # `ml-platform alerts list | head -1`: the reader went away
    closed = os.fdopen(write_end, "w")
    monkeypatch.setattr(sys, "stdout", closed)
    try:
        assert main(["alerts", "list", "--json"]) == 0
    finally:
        closed.close()


def test_new_model_refuses_a_column_of_numbers_with_stray_text_naming_the_line(tmp_path: Path, capsys) -> None:
    import pandas as pd

    defs = tmp_path / "defs"
    rows = 300
    frame = pd.DataFrame({"alpha": [i / 10 for i in range(rows)], "beta": [str(i * 0.5) for i in range(rows)],
                          "label": [i % 2 for i in range(rows)]})
    frame.loc[7, "beta"] = "oops"
    frame.to_csv(tmp_path / "mine.csv", index=False)
    assert main(["--defs", str(defs), "new-model", "mine", "--csv", str(tmp_path / "mine.csv"), "--target", "label"]) == 1
    err = capsys.readouterr().err
    assert "column 'beta' holds numbers but 1 of its 300 values are not (e.g. 'oops' on line 9)" in err
    assert "fix the file (or declare the columns yourself)" in err
    assert not (defs / "mine").exists()
    assert (tmp_path / "mine.csv").read_text().splitlines()[8].split(",")[1] == "oops"  # line 9 of the file, as named
