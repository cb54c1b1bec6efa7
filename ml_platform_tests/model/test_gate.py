from typing import Any

import pytest

from ml_platform.model.gate import GatePolicy, decide_promotion


def decide(**overrides: Any):
    arguments: dict[str, Any] = dict(
        candidate_version="v2",
        check_results={"accuracy_above_threshold": True},
        candidate_metrics={"accuracy": 0.90},
        champion_version="v1",
        champion_metrics_on_candidate_holdout={"accuracy": 0.90},
        features_match=True,
        policy=GatePolicy(),
    )
    arguments.update(overrides)
    return decide_promotion(**arguments)


def test_first_candidate_with_passed_checks_is_promoted() -> None:
    decision = decide(champion_version=None, champion_metrics_on_candidate_holdout=None)
    assert decision.promote and "no production model yet" in decision.reason


def test_equal_candidate_is_promoted_and_worse_one_is_refused() -> None:
    assert decide().promote
    refused = decide(candidate_metrics={"accuracy": 0.89})
    assert not refused.promote
    assert "worse than champion v1" in refused.reason and "0.8900" in refused.reason


def test_tolerance_admits_a_slightly_worse_candidate() -> None:
    assert decide(candidate_metrics={"accuracy": 0.885}, policy=GatePolicy(tolerance=0.02)).promote
    assert not decide(candidate_metrics={"accuracy": 0.87}, policy=GatePolicy(tolerance=0.02)).promote


@pytest.mark.parametrize(
    "checks, phrase",
    [
        ({"accuracy_above_threshold": False}, "failed checks: accuracy_above_threshold"),
        ({"accuracy_above_threshold": None}, "no result for checks: accuracy_above_threshold"),
        ({"accuracy_above_threshold": True, "data_drift": False}, "failed checks: data_drift"),
    ],
)
def test_failed_or_missing_check_blocks_even_a_better_candidate(checks: dict, phrase: str) -> None:
    decision = decide(check_results=checks, candidate_metrics={"accuracy": 0.99})
    assert not decision.promote and phrase in decision.reason


def test_the_configured_metric_decides() -> None:
    policy = GatePolicy(metric="f1")
    better_f1 = decide(candidate_metrics={"accuracy": 0.5, "f1": 0.9}, champion_metrics_on_candidate_holdout={"f1": 0.8}, policy=policy)
    assert better_f1.promote
    missing = decide(candidate_metrics={"accuracy": 0.9}, policy=policy)
    assert not missing.promote and "no 'f1' metric" in missing.reason


def test_feature_change_needs_explicit_permission() -> None:
    assert not decide(features_match=False).promote
    assert decide(features_match=False, policy=GatePolicy(allow_feature_change=True)).promote


def test_candidate_already_in_production_is_not_promoted_again() -> None:
    decision = decide(candidate_version="v1")
    assert not decision.promote and "already in production" in decision.reason


def test_a_version_taken_out_of_production_by_a_rollback_is_not_promoted_again() -> None:
    rollback = {"at": "2026-11-27T10:00:00+00:00", "reason": "bad predictions in serving"}
    decision = decide(candidate_metrics={"accuracy": 0.99}, demoted_by=rollback)
    assert not decision.promote
    assert decision.reason == (
        "v2 was rolled back from production at 2026-11-27T10:00:00+00:00 (bad predictions in serving); "
        "promote it by hand to use it again"
    )
