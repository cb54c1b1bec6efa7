"""A canary rollout of a staged version over batch scoring runs (no Dagster import).

A rollout is a plain JSON-able dict kept in the model registry's state (so it survives restarts
and moves atomically with the aliases): the candidate, the champion it is measured against, the
steps (the share of rows, in percent, the candidate serves; 0 is shadow: it scores every row and
serves none), where it stands, and every decision with the figures it was made on.

Each batch run measures both models on the same rows and `decide()` says what follows:
- rollback: the candidate's outputs were invalid, its agreement with the champion fell below the
  minimum, or on enough labelled rows its accuracy is worse than the champion's beyond the tolerance;
- advance: the step has had its minimum of runs and rows (reaching the last step, 100%, the
  candidate becomes production);
- stay: otherwise, or while paused (a paused rollout keeps its split and still rolls back on a
  guardrail: pausing stops progress, not protection; its runs do not count towards the step).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from typing import Any, Literal

ACTIVE = "active"
PAUSED = "paused"
# Where a rollout ends: promoted (the candidate is production), rolled_back (a guardrail fired),
# aborted (by hand), superseded (a newer candidate was staged, or production changed under it).
FINISHED = ("promoted", "rolled_back", "aborted", "superseded")
Action = Literal["stay", "advance", "promote", "rollback"]


class RolloutError(ValueError):
    """A rollout command that cannot apply (e.g. resuming one that is not paused); says why."""


@dataclass(frozen=True)
class RolloutPolicy:
    steps: tuple[int, ...] = (0, 10, 50, 100)
    min_runs_per_step: int = 2
    min_rows_per_step: int = 1_000
    min_agreement: float = 0.90
    accuracy_tolerance: float = 0.02
    min_labelled_rows: int = 100

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> RolloutPolicy:
        known = {k: v for k, v in values.items() if k in cls.__dataclass_fields__}
        return cls(**{**known, "steps": tuple(known.get("steps", cls.steps))})


@dataclass(frozen=True)
class RunFigures:
    """What one batch run measured of the two models (from serving.score_batch's figures)."""

    rows: int
    agreement: float
    labelled_rows: int = 0
    champion_accuracy: float | None = None
    candidate_accuracy: float | None = None
    problems: Sequence[str] = field(default_factory=tuple)  # the candidate's invalid outputs

    def to_dict(self) -> dict[str, Any]:
        return {**asdict(self), "problems": list(self.problems)}


@dataclass(frozen=True)
class Decision:
    action: Action
    reason: str


def _now() -> str:
    return datetime.now(timezone.utc).isoformat(timespec="seconds")


def new_rollout(candidate: str, champion: str, policy: RolloutPolicy, run_id: str | None = None) -> dict[str, Any]:
    at = _now()
    return {
        "candidate": candidate,
        "champion": champion,
        "status": ACTIVE,
        "policy": {**asdict(policy), "steps": list(policy.steps)},
        "step": 0,
        "started_at": at,
        "started_by_run": run_id,
        "updated_at": at,
        "revision": 0,
        "steps_history": [{"step": 0, "share": policy.steps[0], "entered_at": at, "runs": 0, "rows": 0}],
        "decisions": [],
    }


def is_open(rollout: Mapping[str, Any] | None) -> bool:
    return rollout is not None and rollout.get("status") in (ACTIVE, PAUSED)


def candidate_share(rollout: Mapping[str, Any]) -> float:
    """The share of rows (0-1) the candidate serves now."""
    return rollout["policy"]["steps"][rollout["step"]] / 100


def describe(rollout: Mapping[str, Any]) -> str:
    """One line: 'v5 vs v3: step 2 of 4 (10% of rows), active, 1 run and 569 rows at this step'."""
    steps = rollout["policy"]["steps"]
    share = steps[rollout["step"]]
    at_step = rollout["steps_history"][-1]
    where = "shadow" if share == 0 else f"{share}% of rows"
    runs = at_step["runs"]
    return (
        f"{rollout['candidate']} vs {rollout['champion']}: step {rollout['step'] + 1} of {len(steps)} ({where}), "
        f"{rollout['status']}, {runs} run{'s' * (runs != 1)} and {at_step['rows']} rows at this step"
    )


def decide(rollout: Mapping[str, Any], figures: RunFigures) -> Decision:
    """What this run's figures mean for an open rollout (the counts include this run)."""
    policy = RolloutPolicy.from_dict(rollout["policy"])
    candidate, champion = rollout["candidate"], rollout["champion"]
    if figures.problems:
        return Decision("rollback", f"{candidate}'s outputs are invalid: {'; '.join(figures.problems)}")
    if figures.agreement < policy.min_agreement:
        return Decision(
            "rollback",
            f"{candidate} agrees with {champion} on {figures.agreement:.1%} of {figures.rows} rows, "
            f"below the minimum {policy.min_agreement:.1%}",
        )
    if (
        figures.labelled_rows >= policy.min_labelled_rows
        and figures.candidate_accuracy is not None
        and figures.champion_accuracy is not None
        and figures.candidate_accuracy < figures.champion_accuracy - policy.accuracy_tolerance
    ):
        return Decision(
            "rollback",
            f"{candidate}'s accuracy {figures.candidate_accuracy:.2%} on {figures.labelled_rows} labelled rows is below "
            f"{champion}'s {figures.champion_accuracy:.2%} by more than the tolerance {policy.accuracy_tolerance:.2%}",
        )
    if rollout["status"] == PAUSED:
        return Decision("stay", "paused: the split is kept, the step does not advance")
    at_step = rollout["steps_history"][-1]
    runs, rows = at_step["runs"] + 1, at_step["rows"] + figures.rows
    if runs < policy.min_runs_per_step or rows < policy.min_rows_per_step:
        return Decision(
            "stay",
            f"{runs} of {policy.min_runs_per_step} runs and {rows} of {policy.min_rows_per_step} rows at this step "
            f"(agreement {figures.agreement:.1%})",
        )
    nxt = rollout["step"] + 1
    share = policy.steps[nxt]
    if nxt == len(policy.steps) - 1:
        return Decision(
            "promote",
            f"canary rollout completed: {candidate} agreed with {champion} on {figures.agreement:.1%} of rows"
            + _accuracy_clause(figures)
            + f", after {len(rollout['steps_history'])} step(s) of at least {policy.min_runs_per_step} runs "
            f"and {policy.min_rows_per_step} rows; now serves {share}%",
        )
    return Decision("advance", f"{runs} runs and {rows} rows at this step, agreement {figures.agreement:.1%}; next: {share}%")


def _accuracy_clause(figures: RunFigures) -> str:
    if figures.candidate_accuracy is None or figures.champion_accuracy is None:
        return " (no labelled rows to compare accuracy)"
    return (
        f", accuracy {figures.candidate_accuracy:.2%} against {figures.champion_accuracy:.2%} "
        f"on {figures.labelled_rows} labelled rows"
    )


def apply(rollout: Mapping[str, Any], decision: Decision, figures: RunFigures, run_id: str | None) -> dict[str, Any]:
    """The rollout after this run: counts, the decision with its figures, and the new step or end."""
    updated = _copy(rollout)
    at = _now()
    at_step = updated["steps_history"][-1]
    if updated["status"] == ACTIVE:  # runs while paused do not count towards the step
        at_step["runs"] += 1
        at_step["rows"] += figures.rows
    updated["decisions"].append(
        {"at": at, "run_id": run_id, "step": updated["step"], "share": updated["policy"]["steps"][updated["step"]],
         "action": decision.action, "reason": decision.reason, "figures": figures.to_dict()}
    )
    if decision.action == "advance":
        at_step["left_at"] = at
        updated["step"] += 1
        updated["steps_history"].append(
            {"step": updated["step"], "share": updated["policy"]["steps"][updated["step"]], "entered_at": at, "runs": 0, "rows": 0}
        )
    elif decision.action == "promote":
        at_step["left_at"] = at
        updated["step"] = len(updated["policy"]["steps"]) - 1
        updated["status"] = "promoted"
    elif decision.action == "rollback":
        at_step["left_at"] = at
        updated["status"] = "rolled_back"
    updated["updated_at"] = at
    return updated


def control(rollout: Mapping[str, Any] | None, command: Literal["pause", "resume", "abort"], reason: str) -> dict[str, Any]:
    """The rollout after a command from its operator; RolloutError when it does not apply."""
    if not is_open(rollout):
        state = f"the last one is {rollout['status']} ({rollout['candidate']})" if rollout else "there is none"
        raise RolloutError(f"no rollout in progress to {command}: {state}")
    assert rollout is not None
    status = rollout["status"]
    if command == "pause" and status == PAUSED:
        raise RolloutError(f"the rollout of {rollout['candidate']} is already paused")
    if command == "resume" and status != PAUSED:
        raise RolloutError(f"the rollout of {rollout['candidate']} is not paused (it is {status})")
    return end(rollout, {"pause": PAUSED, "resume": ACTIVE, "abort": "aborted"}[command], command, reason)


def end(rollout: Mapping[str, Any], status: str, action: str, reason: str, run_id: str | None = None) -> dict[str, Any]:
    """The rollout with a new status (and the decision that set it) recorded."""
    updated = _copy(rollout)
    at = _now()
    updated["status"] = status
    updated["updated_at"] = at
    if status in FINISHED:
        updated["steps_history"][-1].setdefault("left_at", at)
    updated["decisions"].append(
        {"at": at, "run_id": run_id, "step": updated["step"], "share": updated["policy"]["steps"][updated["step"]],
         "action": action, "reason": reason, "figures": {}}
    )
    return updated


def _copy(rollout: Mapping[str, Any]) -> dict[str, Any]:
    return {
        **rollout,
        "steps_history": [dict(s) for s in rollout["steps_history"]],
        "decisions": list(rollout["decisions"]),
    }
