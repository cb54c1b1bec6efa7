"""The canary rollout's decisions (model/rollout.py) and its state in the registry."""

from pathlib import Path

import pytest
from sklearn.dummy import DummyClassifier

from ml_platform.model.registry import ModelRegistry, RegistryError, state_problem
from ml_platform.model.rollout import (
    RolloutError,
    RolloutPolicy,
    RunFigures,
    apply,
    candidate_share,
    control,
    decide,
    describe,
    is_open,
    new_rollout,
)

POLICY = RolloutPolicy(steps=(0, 10, 50, 100), min_runs_per_step=2, min_rows_per_step=300, min_agreement=0.9,
                       accuracy_tolerance=0.02, min_labelled_rows=100)
GOOD = RunFigures(rows=200, agreement=0.97, labelled_rows=150, champion_accuracy=0.90, candidate_accuracy=0.91)


def run(rollout: dict, figures: RunFigures = GOOD) -> tuple[dict, str]:
    decision = decide(rollout, figures)
    return apply(rollout, decision, figures, run_id="r"), decision.action


def test_steps_advance_only_after_the_minimum_of_runs_and_rows_then_promote() -> None:
    rollout = new_rollout("v2", "v1", POLICY)
    actions, shares = [], []
    while is_open(rollout):
        shares.append(candidate_share(rollout))
        rollout, action = run(rollout)
        actions.append(action)
    # Two runs of 200 rows each step (400 >= 300 rows, 2 >= 2 runs); the last step (100%) is production.
    assert actions == ["stay", "advance", "stay", "advance", "stay", "promote"]
    assert shares == [0.0, 0.0, 0.1, 0.1, 0.5, 0.5]
    assert rollout["status"] == "promoted"
    assert [s["share"] for s in rollout["steps_history"]] == [0, 10, 50]
    assert all(s["runs"] == 2 and s["rows"] == 400 and "left_at" in s for s in rollout["steps_history"])
    assert len(rollout["decisions"]) == 6 and rollout["decisions"][-1]["figures"]["agreement"] == 0.97
    assert "canary rollout completed" in rollout["decisions"][-1]["reason"]


def test_rows_as_well_as_runs_are_needed_to_advance() -> None:
    rollout = new_rollout("v2", "v1", POLICY)
    small = RunFigures(rows=50, agreement=1.0)
    for _ in range(5):
        rollout, action = run(rollout, small)
        assert action == "stay"
    rollout, action = run(rollout, small)  # 6 runs, 300 rows
    assert action == "advance"


@pytest.mark.parametrize(
    ("figures", "named"),
    [
        (RunFigures(rows=200, agreement=0.80), "agrees with v1 on 80.0% of 200 rows, below the minimum 90.0%"),
        (RunFigures(rows=200, agreement=0.95, labelled_rows=150, champion_accuracy=0.90, candidate_accuracy=0.85),
         "accuracy 85.00% on 150 labelled rows is below v1's 90.00% by more than the tolerance 2.00%"),
        (RunFigures(rows=200, agreement=1.0, problems=("NaN probabilities in 3 rows",)), "outputs are invalid: NaN"),
    ],
)
def test_guardrails_roll_back_naming_the_figures(figures: RunFigures, named: str) -> None:
    rollout, action = run(new_rollout("v2", "v1", POLICY), figures)
    assert action == "rollback" and rollout["status"] == "rolled_back" and not is_open(rollout)
    assert named in rollout["decisions"][-1]["reason"]


def test_accuracy_is_not_judged_on_too_few_labelled_rows_or_within_the_tolerance() -> None:
    few = RunFigures(rows=200, agreement=0.95, labelled_rows=99, champion_accuracy=0.9, candidate_accuracy=0.5)
    within = RunFigures(rows=200, agreement=0.95, labelled_rows=150, champion_accuracy=0.9, candidate_accuracy=0.885)
    assert decide(new_rollout("v2", "v1", POLICY), few).action == "stay"
    assert decide(new_rollout("v2", "v1", POLICY), within).action == "stay"


def test_a_paused_rollout_keeps_its_step_but_still_rolls_back() -> None:
    rollout = control(new_rollout("v2", "v1", POLICY), "pause", "looking into it")
    for _ in range(4):
        rollout, action = run(rollout)
        assert action == "stay" and rollout["step"] == 0
    assert run(rollout, RunFigures(rows=200, agreement=0.5))[1] == "rollback"
    assert rollout["steps_history"][-1]["runs"] == 0  # the runs while paused do not count
    resumed = control(rollout, "resume", "ok")
    assert run(resumed)[1] == "stay" and run(run(resumed)[0])[1] == "advance"


def test_commands_that_do_not_apply_say_why() -> None:
    rollout = new_rollout("v2", "v1", POLICY)
    with pytest.raises(RolloutError, match="not paused"):
        control(rollout, "resume", "")
    paused = control(rollout, "pause", "")
    with pytest.raises(RolloutError, match="already paused"):
        control(paused, "pause", "")
    aborted = control(paused, "abort", "bad idea")
    assert aborted["status"] == "aborted" and aborted["decisions"][-1]["reason"] == "bad idea"
    with pytest.raises(RolloutError, match="no rollout in progress to pause: the last one is aborted"):
        control(aborted, "pause", "")
    with pytest.raises(RolloutError, match="there is none"):
        control(None, "abort", "")


def test_describe_says_where_it_stands() -> None:
    rollout, _ = run(new_rollout("v2", "v1", POLICY))
    assert describe(rollout) == "v2 vs v1: step 1 of 4 (shadow), active, 1 run and 200 rows at this step"


# -- stored with the registry ----------------------------------------------------------------------
@pytest.fixture
def two_versions(tmp_path: Path) -> ModelRegistry:
    registry = ModelRegistry(tmp_path / "registry")
    for label in (0, 1):
        model = DummyClassifier(strategy="constant", constant=label).fit([[0], [1]], [0, 1])
        registry.register(model, {"features": ["x"], "metrics": {"accuracy": 0.5 + label / 10}})
    registry.set_alias("production", "v1", reason="first")
    return registry


def test_the_rollout_survives_a_new_registry_object_and_promotes_atomically(two_versions: ModelRegistry) -> None:
    two_versions.start_rollout(new_rollout("v2", "v1", POLICY, run_id="train-1"))
    rollout = ModelRegistry(two_versions.url).rollout()  # another process, after a restart
    assert rollout is not None and rollout["candidate"] == "v2" and rollout["revision"] == 0
    rollout = dict(rollout, step=2)
    saved = two_versions.save_rollout(rollout, promote_reason="canary rollout completed: ...", run_id="batch-9")
    assert saved["revision"] == 1
    assert two_versions.aliases() == {"production": "v2", "previous": "v1"}
    entry = two_versions.history()[-1]
    assert (entry["action"], entry["to_version"], entry["reason"], entry["run_id"]) == (
        "promote", "v2", "canary rollout completed: ...", "batch-9")
    assert ModelRegistry(two_versions.url).rollout() == saved


def test_a_stale_rollout_is_never_saved_over_an_operators_command(two_versions: ModelRegistry) -> None:
    two_versions.start_rollout(new_rollout("v2", "v1", POLICY))
    read_by_run = two_versions.rollout()
    assert read_by_run is not None
    two_versions.save_rollout(control(read_by_run, "abort", "by hand"))
    with pytest.raises(RegistryError, match="changed while it was being evaluated .*v2 aborted, revision 1"):
        two_versions.save_rollout(run(read_by_run)[0], promote_reason="would promote")
    assert two_versions.alias("production") == "v1"
    assert two_versions.rollout()["status"] == "aborted"  # type: ignore[index]


def test_a_new_rollout_supersedes_an_open_one_and_keeps_it(two_versions: ModelRegistry) -> None:
    two_versions.start_rollout(new_rollout("v2", "v1", POLICY))
    replaced = two_versions.start_rollout(new_rollout("v2", "v1", POLICY, run_id="again"))
    assert replaced is not None and replaced["status"] == "superseded"
    assert [r["status"] for r in two_versions.past_rollouts()] == ["superseded"]
    assert two_versions.rollout()["started_by_run"] == "again"  # type: ignore[index]


def test_a_malformed_rollout_in_the_state_is_refused() -> None:
    state = {"aliases": {}, "history": [], "rollout": {"candidate": "v2"}}
    assert "'rollout' must be a rollout" in (state_problem(state) or "")
    assert state_problem({"aliases": {}, "history": [], "rollout": None, "rollouts": []}) is None
