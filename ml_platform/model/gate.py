"""The promotion gate: may this candidate replace the production model?"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class GatePolicy:
    metric: str = "accuracy"
    # The candidate may be at most this much worse than the champion and still promote
    # (0.0: never worse). Retraining on fresh data with equal quality still promotes.
    tolerance: float = 0.0
    allow_feature_change: bool = False


@dataclass(frozen=True)
class PromotionDecision:
    promote: bool
    reason: str


def decide_promotion(
    *,
    candidate_version: str,
    check_results: Mapping[str, bool | None],
    candidate_metrics: Mapping[str, float],
    champion_version: str | None,
    champion_metrics_on_candidate_holdout: Mapping[str, float] | None,
    features_match: bool,
    policy: GatePolicy,
    demoted_by: Mapping[str, object] | None = None,
) -> PromotionDecision:
    """`check_results` maps each required check to passed (True), failed (False) or not run (None).

    Every required check must have passed for this very candidate; then the candidate must
    be no worse than the champion, both measured on the candidate's holdout. A version that a
    rollback took out of production (`demoted_by`, its history entry) is not promoted again
    automatically: a person decided against it.
    """
    not_run = sorted(name for name, passed in check_results.items() if passed is None)
    failed = sorted(name for name, passed in check_results.items() if passed is False)
    if failed:
        return PromotionDecision(False, f"candidate {candidate_version} failed checks: {', '.join(failed)}")
    if not_run:
        return PromotionDecision(
            False, f"candidate {candidate_version} has no result for checks: {', '.join(not_run)}"
        )
    if champion_version is None:
        return PromotionDecision(True, f"no production model yet; {candidate_version} passed all checks")
    if champion_version == candidate_version:
        return PromotionDecision(False, f"{candidate_version} is already in production")
    if demoted_by is not None:
        return PromotionDecision(
            False,
            f"{candidate_version} was rolled back from production at {demoted_by.get('at')} "
            f"({demoted_by.get('reason')}); promote it by hand to use it again",
        )
    if not features_match:
        if not policy.allow_feature_change:
            return PromotionDecision(
                False,
                f"candidate {candidate_version} uses a different feature set than {champion_version}; "
                "set allow_feature_change to promote it anyway",
            )
        return PromotionDecision(True, f"feature set changed (allowed); {candidate_version} passed all checks")

    metric = policy.metric
    if metric not in candidate_metrics:
        return PromotionDecision(False, f"candidate {candidate_version} has no {metric!r} metric")
    candidate_score = candidate_metrics[metric]
    champion_score = (champion_metrics_on_candidate_holdout or {}).get(metric)
    if champion_score is None:
        return PromotionDecision(True, f"champion {champion_version} could not be scored; candidate passed all checks")
    if candidate_score + policy.tolerance < champion_score:
        return PromotionDecision(
            False,
            f"candidate {candidate_version} {metric}={candidate_score:.4f} is worse than champion "
            f"{champion_version} {metric}={champion_score:.4f} on the same holdout "
            f"(tolerance {policy.tolerance})",
        )
    return PromotionDecision(
        True,
        f"candidate {candidate_version} {metric}={candidate_score:.4f} >= champion {champion_version} "
        f"{metric}={champion_score:.4f} - tolerance {policy.tolerance} on the same holdout",
    )
