"""<model>/batch_predictions: the platform's serving. The newest validated data, scored by the
production model, and during a canary rollout (model/rollout.py) also by the candidate: a
deterministic hash of each row's key sends the rollout step's share of rows to the candidate.

Each run measures the two models on every row (agreement; accuracy where labels have arrived)
and advances, promotes or rolls back the rollout, in the registry's state. A rollback is a failed
`canary_rollout` check alerted at the rollout's severity (HIGH), naming the figures; the run's
rows are then all served by the champion.
"""

from dataclasses import dataclass
from typing import Any

import dagster as dg
import pandas as pd

from ml_platform.alerting.alert import DEFAULT_CHECK_RULES
from ml_platform.data.sinks import PredictionSinkError, write_parquet_atomic
from ml_platform.data.sources import SourceData
from ml_platform.declaration import DeclaredModel
from ml_platform.model.registry import ModelRegistry, RegistryError
from ml_platform.model.rollout import RunFigures, apply, candidate_share, decide, describe, end, is_open
from ml_platform.model.serving import BatchScores, ScoringModel, prediction_problems, row_keys, score_batch
from ml_platform.orchestration.metadata import frame_table
from ml_platform.orchestration.names import CANARY_ROLLOUT, PREDICTION_OUTPUTS, ModelNames
from ml_platform.orchestration.resources import DataSourceResource, ModelRegistryResource
from ml_platform.paths import predictions_dir


@dataclass(frozen=True)
class Serving:
    """Who answers this run: the champion, and the candidate of an open rollout (if it loads)."""

    champion: ScoringModel
    candidate: ScoringModel | None
    rollout: dict[str, Any] | None  # open, as read (its revision guards the write back)
    load_problem: str | None = None  # the candidate could not be loaded: a rollback


def _serving(registry: ModelRegistry, run_id: str, log: Any) -> Serving:
    production = registry.alias("production")
    if production is None:
        raise dg.Failure("no production model yet: run the model's training job first", allow_retries=False)
    try:
        champion = ScoringModel(production, registry.load(production))
    except RegistryError as exc:
        raise dg.Failure(f"production {production} cannot be loaded: {exc}", allow_retries=False) from exc
    rollout = registry.rollout()
    if not is_open(rollout):
        return Serving(champion, None, None)
    assert rollout is not None
    if rollout["champion"] != production:
        # Production was changed by hand (a rollback, a promotion): this rollout measured the wrong model.
        reason = f"production changed from {rollout['champion']} to {production} outside the rollout"
        registry.save_rollout(end(rollout, "superseded", "supersede", reason, run_id))
        log.warning(f"rollout of {rollout['candidate']} ended: {reason}")
        return Serving(champion, None, None)
    try:
        return Serving(champion, ScoringModel(rollout["candidate"], registry.load(rollout["candidate"])), rollout)
    except RegistryError as exc:
        return Serving(champion, None, rollout, load_problem=f"{rollout['candidate']} cannot be loaded: {exc}")


def _run_figures(scores: BatchScores, problems: list[str]) -> RunFigures:
    figures = scores.figures
    return RunFigures(
        rows=int(figures["rows"]),
        agreement=float(figures["agreement"]),
        labelled_rows=int(figures.get("labelled_rows") or 0),
        champion_accuracy=figures.get("champion_accuracy"),
        candidate_accuracy=figures.get("candidate_accuracy"),
        problems=tuple(problems),
    )


def build_batch_predictions(model: DeclaredModel) -> dg.AssetsDefinition:
    names = ModelNames(model.name)
    declaration = model.declaration
    batch = declaration.release.batch
    severity = declaration.release.rollout.severity
    sql_table = (batch.table or f"{model.name}_predictions") if declaration.source.kind == "sql" else None

    @dg.asset(
        name="batch_predictions",
        key_prefix=[model.name],
        group_name=model.name,
        kinds={"pandas", "parquet"},
        ins={"raw_data": dg.AssetIn(key=names.raw_data), "validated_data": dg.AssetIn(key=names.validated_data)},
        deps=[names.production_model],
        pool=names.registry_pool,
        required_resource_keys={names.data_source, "model_registry"},
        check_specs=[
            dg.AssetCheckSpec(
                PREDICTION_OUTPUTS, asset=names.batch_predictions, blocking=True,
                description="Every served row has one version per arm, a known class and probabilities in [0, 1] summing to 1.",
            ),
            dg.AssetCheckSpec(
                CANARY_ROLLOUT, asset=names.batch_predictions,
                description="The candidate of a canary rollout agrees with the champion and is not less accurate.",
            ),
        ],
    )
    def batch_predictions(
        context: dg.AssetExecutionContext,
        raw_data: SourceData,
        validated_data: SourceData,
    ) -> dg.MaterializeResult:
        """One row per validated row: its key, the predicted class and class probabilities, the
        model version that answered, and the arm (champion or candidate)."""
        run_id = context.run.run_id
        model_registry: ModelRegistryResource = context.resources.model_registry
        registry = model_registry.registry(model.name)
        serving = _serving(registry, run_id, context.log)
        frame = validated_data.frame
        features = registry.get(serving.champion.version).features
        missing = [f for f in features if f not in frame.columns]
        if missing:
            raise dg.Failure(f"new data lacks the production model's feature(s) {missing}", allow_retries=False)
        if batch.id_column is not None and batch.id_column not in raw_data.frame.columns:
            raise dg.Failure(
                f"release.batch.id_column {batch.id_column!r} is not a column of the source "
                f"(columns: {', '.join(map(str, raw_data.frame.columns))})",
                allow_retries=False,
            )
        keyed = frame.assign(**{batch.id_column: raw_data.frame[batch.id_column].loc[frame.index]}) if batch.id_column else frame

        def compute_keys() -> pd.Series:  # run while the champion scores (score_batch)
            return row_keys(keyed, batch.id_column, features)

        target = validated_data.spec.target if validated_data.spec.target in frame.columns else None
        rollout = serving.rollout
        candidate = serving.candidate
        salt = f"{model.name}:{candidate.version}" if candidate else ""
        share = candidate_share(rollout) if rollout is not None and candidate is not None else 0.0
        try:
            scores = score_batch(frame, features, target, compute_keys, serving.champion, candidate, share, salt)
        except ValueError as exc:  # an id column with nulls or repeats, two models answering different classes
            raise dg.Failure(f"batch_predictions: {exc}", allow_retries=False) from exc
        classes = list(serving.champion.model.classes_)

        canary: dg.AssetCheckResult | None = None
        decision_text = None
        if rollout is not None:
            problems = [serving.load_problem] if serving.load_problem else list(scores.candidate_problems)
            figures = _run_figures(scores, problems) if candidate is not None else RunFigures(rows=len(frame), agreement=0.0, problems=tuple(problems))
            decision = decide(rollout, figures)
            updated = apply(rollout, decision, figures, run_id)
            try:
                registry.save_rollout(updated, promote_reason=decision.reason if decision.action == "promote" else None, run_id=run_id)
            except RegistryError as exc:
                context.log.warning(str(exc))
                decision_text = f"not saved: {exc}"
            else:
                decision_text = f"{decision.action}: {decision.reason}"
                context.log.info(f"rollout of {rollout['candidate']}: {decision_text}")
            if decision.action == "rollback":
                # Nothing this run serves comes from a candidate that was just rolled back.
                scores = score_batch(frame, features, target, scores.predictions["row_key"], serving.champion, None, 0.0, "")
            canary = dg.AssetCheckResult(
                check_name=CANARY_ROLLOUT,
                passed=decision.action != "rollback",
                severity=dg.AssetCheckSeverity.ERROR if decision.action == "rollback" else dg.AssetCheckSeverity.WARN,
                description=(
                    f"canary rollout of {rollout['candidate']} rolled back: {decision.reason}"
                    if decision.action == "rollback" else f"{describe(updated)}; {decision_text}"
                ),
                metadata={
                    **{k: v for k, v in figures.to_dict().items() if isinstance(v, (int, float, str))},
                    "model_version": rollout["candidate"],
                    "champion_version": rollout["champion"],
                    "decision": decision_text,
                    "rollout_status": updated["status"],
                    "evaluated": True,
                    "alert_severity": severity,
                    "recommended_action": DEFAULT_CHECK_RULES[CANARY_ROLLOUT].recommended_action,
                },
            )

        served_problems = prediction_problems(scores.predictions, classes)
        latest = registry.rollout()
        metadata: dict[str, Any] = {
            "dagster/row_count": len(scores.predictions),
            "production_version": serving.champion.version,
            "class_shares": dg.MetadataValue.json(scores.figures["class_shares"]),
            "arm_shares": dg.MetadataValue.json(scores.figures["arm_shares"]),
            "versions": dg.MetadataValue.json(scores.figures["versions"]),
            "rollout": (
                describe(latest) if latest is not None and is_open(latest)
                else f"none in progress (the last, {latest['candidate']} vs {latest['champion']}, {latest['status']})"
                if latest is not None else "none in progress"
            ),
            # A few rows of each arm (the first rows are mostly the champion's).
            "preview": frame_table(scores.predictions.groupby("arm", observed=True).head(5), index=False),
        }
        if decision_text is not None:
            metadata["rollout_decision"] = decision_text  # this run's, made after it served its rows
        for name in ("agreement", "labelled_rows", "champion_accuracy", "candidate_accuracy"):
            if scores.figures.get(name) is not None:
                metadata[name] = scores.figures[name]
        if not served_problems:
            path = write_parquet_atomic(scores.predictions.assign(run_id=run_id), predictions_dir(model.name) / f"{run_id}.parquet")
            metadata["predictions_path"] = dg.MetadataValue.path(str(path))
            if sql_table is not None:
                data_source: DataSourceResource = getattr(context.resources, names.data_source)
                try:
                    data_source.append_table(sql_table, scores.predictions.assign(run_id=run_id))
                except PredictionSinkError as exc:
                    raise dg.Failure(str(exc), allow_retries=True) from exc
                metadata["predictions_table"] = sql_table

        outputs = dg.AssetCheckResult(
            check_name=PREDICTION_OUTPUTS,
            passed=not served_problems,
            severity=dg.AssetCheckSeverity.ERROR,
            description=(
                f"{len(scores.predictions)} rows served, each with a known class and valid probabilities"
                if not served_problems else f"predictions not written: {'; '.join(served_problems)}"
            ),
            metadata={"model_version": serving.champion.version, "evaluated": True, "alert_severity": "HIGH",
                      "recommended_action": DEFAULT_CHECK_RULES[PREDICTION_OUTPUTS].recommended_action},
        )
        if canary is None:
            # No rollout: there is no candidate to judge (`evaluated: false`: a skip, not a pass).
            canary = dg.AssetCheckResult(
                check_name=CANARY_ROLLOUT, passed=True, severity=dg.AssetCheckSeverity.WARN,
                description=f"no rollout in progress: {serving.champion.version} served every row",
                metadata={"evaluated": False, "model_version": serving.champion.version},
            )
        return dg.MaterializeResult(metadata=metadata, check_results=[outputs, canary])

    return batch_predictions
