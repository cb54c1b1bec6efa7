"""One declared model's release path on the training run: <model>/trained_model -> staging_model ->
production_model.

- staging_model: the promotion gate (checks passed, no worse than the champion on the same
  holdout); a candidate it passes gets the `staging` alias, and the blocking `smoke_test` check
  loads that artifact in a fresh process and predicts on a sample of its holdout. A failed smoke
  test stops the run there: nothing is promoted, and the failed check is alerted.
- production_model: a staged candidate that passed becomes production at once when there is no
  champion yet (or the declaration has no rollout steps); otherwise it starts a canary rollout,
  which `<model>/batch_predictions` runs (serving.py) and which promotes it or rolls it back.
"""

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta, timezone
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform.alerting.alert import DEFAULT_CHECK_RULES
from ml_platform.data.sources import DatasetSpec
from ml_platform.declaration import DeclaredModel, ModelDeclaration
from ml_platform.model.gate import GatePolicy, decide_promotion
from ml_platform.model.registry import ModelRegistry, RegistryError
from ml_platform.model.rollout import RolloutPolicy, describe, is_open, new_rollout
from ml_platform.model.smoke import SmokePolicy, run_smoke_test
from ml_platform.model.training import evaluate
from ml_platform.orchestration.config import check_run_config, config_class
from ml_platform.orchestration.names import ACCURACY_CHECK, SMOKE_TEST, ModelNames
from ml_platform.orchestration.resources import ModelRegistryResource

# Checks on trained_model that a candidate must have passed to be promoted.
GATE_CHECKS = (ACCURACY_CHECK,)
DECLARATION_METADATA = "ml_platform/declaration"


@dataclass(frozen=True)
class CandidateModel:
    """What trained_model hands to staging_model: the version, its holdout, and the run whose
    check results judge it."""

    version: str
    metrics: dict[str, float]
    spec: DatasetSpec
    holdout: pd.DataFrame
    run_id: str
    reused: bool = False  # an existing version trained on the same data, params and code


@dataclass(frozen=True)
class StagedModel:
    """What staging_model hands to production_model."""

    candidate: str
    staged: bool  # the gate passed it and this run put it in staging (and it passed the smoke test)
    gate_reason: str
    metrics: dict[str, float]
    champion_metrics: dict[str, float]  # the champion on the candidate's holdout (empty: not compared)
    checks: dict[str, bool | None]


def candidate_check_result(instance: dg.DagsterInstance, key: dg.AssetCheckKey, candidate: CandidateModel) -> bool | None:
    """Did check `key` pass for this candidate, in the run that produced it? None: no result."""
    for record in instance.event_log_storage.get_asset_check_execution_history(key, limit=100):
        if record.run_id != candidate.run_id or record.event is None or record.event.dagster_event is None:
            continue
        evaluation = record.event.dagster_event.event_specific_data
        if not isinstance(evaluation, dg.AssetCheckEvaluation):
            return None  # planned but never ran
        version = evaluation.metadata.get("model_version")
        if version is not None and version.value == candidate.version:
            return evaluation.passed
    return None


def declared_settings(declaration: ModelDeclaration) -> dict[str, Any]:
    """The declaration as the UI shows it (the synthetic generator's knobs only for that source)."""
    exclude = {"source": {"synthetic"}} if declaration.source.kind != "synthetic" else None
    return declaration.model_dump(mode="json", exclude=exclude)


def registry_link(registry: ModelRegistry, version: str) -> dg.MetadataValue:
    location = registry.location(version)
    return dg.MetadataValue.path(location) if "://" not in location else dg.MetadataValue.url(location)


def build_release_assets(
    model: DeclaredModel, run_config_classes: Mapping[str, type[dg.Config]]
) -> tuple[dg.AssetsDefinition, dg.AssetsDefinition, dict[str, dg.Config]]:
    """staging_model and production_model, and their op configs (the declaration's values)."""
    names = ModelNames(model.name)
    declaration = model.declaration
    StagingConfig = config_class("StagingConfig", declaration.gate, extra={"smoke_test": declaration.release.smoke_test})
    PromotionConfig = config_class("PromotionConfig", declaration.release.rollout)
    of_the_model: dict[str, Any] = {"key_prefix": [model.name], "group_name": model.name}

    @dg.asset(
        name="staging_model",
        **of_the_model,
        kinds={"scikit-learn"},
        ins={"trained_model": dg.AssetIn(key=names.trained_model)},
        pool=names.registry_pool,
        check_specs=[
            dg.AssetCheckSpec(
                SMOKE_TEST,
                asset=names.staging_model,
                blocking=True,
                description="The staged version, loaded in a fresh process, predicts sanely on a sample of its holdout.",
            )
        ],
    )
    def staging_model(
        context: dg.AssetExecutionContext,
        config: StagingConfig,  # type: ignore[valid-type]
        trained_model: CandidateModel,
        model_registry: ModelRegistryResource,
    ) -> Any:
        """The candidate the gate passed, in the `staging` alias, smoke-tested before it goes further."""
        check_run_config(context.run.run_config, run_config_classes)
        registry = model_registry.registry(model.name)
        candidate = trained_model
        # The gate reads its own candidate's check results, from the run that produced it: a
        # run of this asset alone cannot promote a candidate whose checks failed or never ran.
        check_results = {
            name: candidate_check_result(context.instance, dg.AssetCheckKey(names.trained_model, name), candidate)
            for name in GATE_CHECKS
        }
        champion = registry.alias("production")
        champion_metrics: dict[str, float] | None = None
        features_match = True
        if champion is not None and champion != candidate.version:
            try:
                features_match = registry.get(champion).features == candidate.spec.feature_names
                if features_match:
                    champion_metrics = evaluate(registry.load(champion), candidate.holdout, candidate.spec)
            except RegistryError as exc:
                context.log.warning(f"champion {champion} cannot be loaded, so cannot be compared: {exc}")
        decision = decide_promotion(
            candidate_version=candidate.version,
            check_results=check_results,
            candidate_metrics=candidate.metrics,
            champion_version=champion,
            champion_metrics_on_candidate_holdout=champion_metrics,
            features_match=features_match,
            policy=GatePolicy(config.metric, config.tolerance, config.allow_feature_change),
            demoted_by=registry.demotion(candidate.version) if candidate.reused else None,
        )
        rollout = registry.rollout()
        released = rollout is not None and rollout["candidate"] == candidate.version
        if released and is_open(rollout):
            reason = f"{candidate.version} is already in rollout ({describe(rollout)})"  # type: ignore[arg-type]
        elif released and rollout["status"] in ("rolled_back", "aborted"):  # type: ignore[index]
            # Like a rollback from production: a guardrail or a person decided against it.
            last = rollout["decisions"][-1]["reason"] if rollout["decisions"] else ""  # type: ignore[index]
            reason = f"{candidate.version}'s canary rollout was {rollout['status']} ({last}); promote it by hand to use it again"  # type: ignore[index]
        else:
            released, reason = False, decision.reason
        staged = decision.promote and not released
        result = StagedModel(
            candidate.version, staged, reason, dict(candidate.metrics), dict(champion_metrics or {}), check_results
        )
        metadata: dict[str, Any] = {
            "candidate_version": candidate.version,
            "staged": staged,
            "decision": reason,
            "checks": dg.MetadataValue.json(dict(check_results)),
            "champion_on_candidate_holdout": dg.MetadataValue.json(champion_metrics or {}),
        }
        if not staged:
            context.log.info(f"nothing staged: {reason}")
            yield dg.Output(result, metadata={**metadata, "staging_version": registry.alias("staging") or "none"})
            # Nothing new to test: a skip, not a pass (`evaluated: false` resolves no earlier failure).
            yield dg.AssetCheckResult(
                check_name=SMOKE_TEST, passed=True, severity=dg.AssetCheckSeverity.WARN,
                description=f"skipped: nothing staged ({reason})",
                metadata={"evaluated": False, "model_version": candidate.version},
            )
            return

        if registry.alias("staging") != candidate.version:
            registry.set_alias(
                "staging", candidate.version, reason=f"staged: {reason}", run_id=context.run.run_id,
                metrics=candidate.metrics, action="stage",
            )
        smoke = config.smoke_test
        outcome = run_smoke_test(
            registry.url, candidate.version, candidate.holdout, candidate.spec.feature_names,
            list(candidate.spec.classes or ()) or None,
            SmokePolicy(sample_rows=smoke.sample_rows, max_row_latency_ms=smoke.max_row_latency_ms),
        )
        context.log.info(
            f"staged {candidate.version}; smoke test "
            + ("passed" if outcome.passed else f"FAILED: {'; '.join(outcome.failures)}")
        )
        yield dg.Output(
            result,
            metadata={**metadata, "staging_version": candidate.version, "smoke_test": dg.MetadataValue.json(outcome.to_dict())},
        )
        yield dg.AssetCheckResult(
            check_name=SMOKE_TEST,
            passed=outcome.passed,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{candidate.version} loaded in a fresh process and predicted {outcome.figures.get('rows')} holdout rows sanely"
                if outcome.passed else f"smoke test of staged {candidate.version} failed: {'; '.join(outcome.failures)}"
            ),
            metadata={
                **{k: v for k, v in outcome.figures.items() if isinstance(v, (int, float, str, bool))},
                "failures": dg.MetadataValue.json(list(outcome.failures)),
                "model_version": candidate.version,
                "evaluated": True,
                "alert_severity": "HIGH",
                "recommended_action": DEFAULT_CHECK_RULES[SMOKE_TEST].recommended_action,
            },
        )

    freshness = declaration.checks.freshness

    @dg.asset(
        name="production_model",
        **of_the_model,
        kinds={"scikit-learn"},
        ins={"staging_model": dg.AssetIn(key=names.staging_model)},
        pool=names.registry_pool,
        freshness_policy=dg.FreshnessPolicy.time_window(
            fail_window=timedelta(hours=freshness.fail_hours), warn_window=timedelta(hours=freshness.warn_hours),
        ),
        metadata={DECLARATION_METADATA: dg.MetadataValue.json(declared_settings(declaration))},
    )
    def production_model(
        context: dg.AssetExecutionContext,
        config: PromotionConfig,  # type: ignore[valid-type]
        staging_model: StagedModel,
        model_registry: ModelRegistryResource,
    ) -> dg.Output[dict[str, Any]]:
        """The champion. A staged candidate replaces it at once only when there is none yet (or
        rollout is off); otherwise it goes through a canary rollout over batch_predictions runs."""
        registry = model_registry.registry(model.name)
        staged = staging_model
        champion = registry.alias("production")
        promoted = False
        reason = staged.gate_reason
        rollout = registry.rollout()
        # A run of this asset alone reads the staging_model output of an earlier run: act on it
        # only while its candidate is still what staging names, and not released since.
        if staged.staged:
            if staged.candidate == champion:
                reason = f"{champion} is already in production"
            elif rollout is not None and rollout["candidate"] == staged.candidate:
                reason = f"{staged.candidate} was staged by an earlier run and is in a rollout since ({rollout['status']})"
            elif registry.alias("staging") != staged.candidate:
                reason = f"{staged.candidate} was staged by an earlier run; staging is {registry.alias('staging') or 'empty'} now"
            if reason != staged.gate_reason:
                staged = replace(staged, staged=False, gate_reason=reason)
        if staged.staged and (champion is None or not config.steps):
            reason = f"{staged.gate_reason}; smoke test passed"
            registry.set_alias(
                "production", staged.candidate, reason=reason, run_id=context.run.run_id, metrics=staged.metrics,
            )
            promoted = True
            context.log.info(f"promoted {staged.candidate}: {reason}")
        elif staged.staged:
            assert champion is not None
            started = new_rollout(staged.candidate, champion, RolloutPolicy.from_dict(config.model_dump()), context.run.run_id)
            replaced = registry.start_rollout(started)
            reason = f"{staged.gate_reason}; smoke test passed; canary rollout started: {describe(started)}"
            if replaced:
                context.log.warning(f"the rollout of {replaced['candidate']} was superseded by {staged.candidate}'s")
            context.log.info(reason)
        elif staged.candidate == champion:
            context.log.info(f"kept {champion} in production: {reason}")
        else:
            context.log.warning(f"kept {champion or 'no model'} in production: {reason}")

        current = registry.alias("production")
        current_metrics = registry.get(current).metrics if current else {}
        rollout = registry.rollout()  # as this step left it
        card = {"model_card": registry_link(registry, current)} if current else {}
        return dg.Output(
            {
                "version": current,
                "candidate": staged.candidate,
                "promoted": promoted,
                "reason": reason,
                "rollout": describe(rollout) if is_open(rollout) else None,
                "decided_at": datetime.now(timezone.utc).isoformat(timespec="seconds"),
            },
            metadata={
                "production_version": current or "none",
                "candidate_version": staged.candidate,
                "promoted": promoted,
                "decision": reason,
                "rollout": describe(rollout) if is_open(rollout) and rollout else "none in progress",
                "checks": dg.MetadataValue.json(dict(staged.checks)),
                "champion_on_candidate_holdout": dg.MetadataValue.json(staged.champion_metrics),
                **{f"production_{k}": v for k, v in current_metrics.items()},
                **card,
            },
        )

    return staging_model, production_model, {
        staging_model.op.name: StagingConfig(),
        production_model.op.name: PromotionConfig(),
    }
