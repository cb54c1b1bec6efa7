"""What a declared model is: the schema of `ml_platform/defs/<model>/defs.yaml` (no Dagster import).

A model is declared once, as an instance of the `ml_platform.ModelPipeline` component. Its
`attributes` are a `ModelDeclaration`; everything else reads it: the assets' defaults, the
schedules, the checks' thresholds and alert severities, the alert routing, and the
`ml-platform` command line. Defaults are the seed's (02:00 daily retrain, hourly monitoring,
accuracy >= 0.70, PSI <= 0.20, run time <= 300 s).

The schema is strict (an unknown or misspelled field is an error that names it), so `dg check
defs` and `ml-platform` reject a bad declaration before anything runs. It is plain pydantic so
that the command line can read declarations without importing Dagster.
"""

from __future__ import annotations

import re
import zoneinfo
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

COMPONENT_TYPE = "ml_platform.ModelPipeline"
DEFS_FILE = "defs.yaml"
# A model's name becomes an asset key prefix, a group, and part of job and schedule names.
MODEL_NAME = re.compile(r"^[a-z][a-z0-9_]*$")
_CRON_ALIASES = {"@hourly", "@daily", "@midnight", "@weekly", "@monthly", "@yearly", "@annually"}
_MONTHS = {m: i + 1 for i, m in enumerate("jan feb mar apr may jun jul aug sep oct nov dec".split())}
_DAYS = {d: i for i, d in enumerate("sun mon tue wed thu fri sat".split())}
# minute, hour, day of month, month, day of week: (name, lowest, highest, names)
_CRON_FIELDS = (("minute", 0, 59, {}), ("hour", 0, 23, {}), ("day of month", 1, 31, {}),
                ("month", 1, 12, _MONTHS), ("day of week", 0, 7, _DAYS))

SourceKind = Literal["bundled", "synthetic", "csv", "parquet", "sql"]
BundledDataset = Literal["breast_cancer", "churn"]
Imputation = Literal["median", "most_frequent"]
Severity = Literal["HIGH", "MEDIUM", "LOW"]
Estimator = Literal["logistic_regression", "random_forest", "gradient_boosting", "hist_gradient_boosting"]
Metric = Literal["accuracy", "precision", "recall", "f1", "roc_auc"]
DriftMethod = Literal["psi", "ks", "wasserstein"]  # the statistics of monitoring/drift.py
CategoricalDriftMethod = Literal["psi", "jensen_shannon"]  # its statistics for categorical features


class DeclarationError(ValueError):
    """A declaration could not be read; the message names the file and the field."""


class Section(BaseModel):
    """Strict: an unknown key is an error naming it, never silently ignored."""

    model_config = ConfigDict(extra="forbid", frozen=True)


class SyntheticSection(Section):
    """The generator used by tests, demos and benchmarks (a fixed concept, an optional drift knob)."""

    rows: int = Field(1_000, ge=1)
    features: int = Field(10, ge=1)
    positive_fraction: float = Field(0.5, gt=0.0, lt=1.0)
    seed: int = 42
    drift_features: list[str] = []
    drift_shift: float = 0.0
    drift_scale: float = 1.0

    @model_validator(mode="after")
    def _known_drift_features(self) -> SyntheticSection:
        unknown = [f for f in self.drift_features if f not in {f"f{i}" for i in range(self.features)}]
        if unknown:
            raise ValueError(f"drift_features {unknown} are not among the generated features f0..f{self.features - 1}")
        return self


class SourceSection(Section):
    kind: SourceKind = "bundled"
    # bundled: which dataset shipped with ml_platform (no download).
    dataset: BundledDataset = "breast_cancer"
    # csv / parquet: a path relative to the project root, or absolute.
    path: str | None = None
    # sql: a SQLAlchemy URL without its password (e.g. postgresql+psycopg://ml@127.0.0.1:5432/churn,
    # or sqlite:///data/churn.db), the environment variable holding the password (read through
    # dg.EnvVar, never logged), and a table or a query (exactly one).
    url: str | None = None
    password_env: str | None = None
    table: str | None = None
    query: str | None = None
    target: str = "target"
    # csv / parquet / sql: the feature columns; unset means every column but the target.
    features: list[str] | None = Field(None, min_length=1)
    # Feature columns that are categorical (the rest are numeric); unset for a bundled dataset: its own.
    categorical: list[str] = []
    # Missing values, per column: imputed inside the model's Pipeline (so serving imputes the same
    # way) by this strategy; a column not listed rejects missing values.
    impute: dict[str, Imputation] = {}
    # The label values a model may predict. Unset: recorded from the data at the first training.
    classes: list[int | str] | None = Field(None, min_length=2)
    synthetic: SyntheticSection = SyntheticSection()

    @model_validator(mode="after")
    def _fields_of_the_kind(self) -> SourceSection:
        """A field the source kind does not read is an error, never silently ignored."""
        sql_fields = ("url", "password_env", "table", "query")
        if self.kind in ("csv", "parquet", "sql"):
            if self.kind == "sql":
                if not self.url:
                    raise ValueError("url is required when kind is 'sql'")
                if (self.table is None) == (self.query is None):
                    raise ValueError("kind 'sql' needs exactly one of table and query")
                from sqlalchemy.engine import make_url  # only for SQL sources: the command line starts without it

                try:
                    has_password = make_url(self.url).password is not None
                except Exception:  # noqa: BLE001 - whatever make_url rejects; the text is not echoed (a password?)
                    raise ValueError("url is not a SQLAlchemy URL (e.g. postgresql+psycopg://user@host:5432/db)") from None
                if has_password:
                    raise ValueError("url must not hold the password: name its environment variable in password_env")
                wrong = [name for name in ("path",) if getattr(self, name) is not None]
            else:
                if not self.path:
                    raise ValueError(f"path is required when kind is {self.kind!r}")
                wrong = [name for name in sql_fields if getattr(self, name) is not None]
            if self.synthetic != SyntheticSection():
                wrong.append("synthetic")
            if self.dataset != "breast_cancer":
                wrong.append("dataset")
            if wrong:
                raise ValueError(f"{', '.join(wrong)} do not apply to kind {self.kind!r}")
            unknown = sorted({*self.categorical, *self.impute} - set(self.features)) if self.features else []
            if unknown:
                raise ValueError(f"categorical/impute name column(s) {unknown} that are not among the features")
            return self
        given = [name for name in ("path", "features", "classes", *sql_fields) if getattr(self, name) is not None]
        # A bundled dataset's columns are known, so it may declare their kinds and imputation.
        given += [name for name in ("categorical", "impute") if getattr(self, name) and self.kind == "synthetic"]
        given += ["target"] if self.target != "target" else []
        given += ["synthetic"] if self.kind == "bundled" and self.synthetic != SyntheticSection() else []
        given += ["dataset"] if self.kind == "synthetic" and self.dataset != "breast_cancer" else []
        if given:
            raise ValueError(f"{', '.join(given)} do not apply to kind {self.kind!r}, which defines its own data")
        return self


class ValidationSection(Section):
    min_rows: int = Field(50, ge=1)
    # 0: any invalid row fails the run; above: invalid rows up to this share are quarantined.
    max_invalid_fraction: float = Field(0.0, ge=0.0, lt=1.0)
    # A label the production model was not trained on fails validation unless this is true.
    allow_new_classes: bool = False
    # A category the production model never saw: fail validation naming the column and the value,
    # or map it to the "other" bucket (counted in the metadata).
    unseen_categories: Literal["fail", "other"] = "fail"


class TrainingSection(Section):
    estimator: Estimator = "logistic_regression"
    params: dict[str, Any] = {}
    holdout_fraction: float = Field(0.2, gt=0.0, lt=1.0)
    seed: int = 42


class GateSection(Section):
    metric: Metric = "accuracy"
    # How much worse than the champion (same holdout) a candidate may be and still be promoted.
    tolerance: float = Field(0.0, ge=0.0, le=1.0)
    allow_feature_change: bool = False


class AccuracyCheck(Section):
    min_accuracy: float = Field(0.70, ge=0.0, le=1.0)
    severity: Severity = "HIGH"


def _distinct_methods(methods: list[str] | None) -> list[str] | None:
    if methods is not None and len(set(methods)) != len(methods):
        raise ValueError(f"method lists a statistic twice: {methods}")
    return methods


class FeatureDriftOverride(Section):
    """One feature's own drift rule; a field left out is the check's. `method` lists statistics
    of the feature's kind (numeric: psi, ks, wasserstein; categorical: psi, jensen_shannon)."""

    method: list[DriftMethod | CategoricalDriftMethod] | None = Field(None, min_length=1)
    psi_threshold: float | None = Field(None, gt=0.0)
    ks_threshold: float | None = Field(None, gt=0.0, le=1.0)
    wasserstein_threshold: float | None = Field(None, gt=0.0)
    jensen_shannon_threshold: float | None = Field(None, gt=0.0, le=1.0)

    _method = field_validator("method")(_distinct_methods)


class DataDriftCheck(Section):
    # A feature drifts when any of its methods exceeds (>) its threshold. The default was chosen
    # on a shift corpus (README, Monitoring): wasserstein catches location, scale and tail changes;
    # psi keeps everything the seed's PSI-only rule flagged.
    method: list[DriftMethod] = Field(["psi", "wasserstein"], min_length=1)
    psi_threshold: float = Field(0.20, gt=0.0)
    ks_threshold: float = Field(0.10, gt=0.0, le=1.0)  # on the KS statistic D, not its p-value
    wasserstein_threshold: float = Field(0.10, gt=0.0)  # W1 / the training data's std
    # Categorical features: PSI over category shares (psi_threshold) or the Jensen-Shannon distance
    # (base 2, Evidently's default threshold 0.1): a category going from 10% to 40% of the rows
    # gives PSI 0.53 and JS 0.30; a stable one at 20,000 rows PSI 0.00003 and JS 0.002 (tests).
    categorical_method: list[CategoricalDriftMethod] = Field(["psi", "jensen_shannon"], min_length=1)
    jensen_shannon_threshold: float = Field(0.10, gt=0.0, le=1.0)
    # Unset: the dataset drifts when any feature drifts; set: when at least this share of them drift.
    drift_share: float | None = Field(None, gt=0.0, le=1.0)
    severity: Severity = "MEDIUM"
    # Per-feature rules, e.g. {"mean area": {method: [ks], ks_threshold: 0.2}}.
    features: dict[str, FeatureDriftOverride] = {}

    _method = field_validator("method", "categorical_method")(_distinct_methods)


class PredictionDriftCheck(Section):
    psi_threshold: float = Field(0.20, gt=0.0)
    severity: Severity = "MEDIUM"


class RunTimeCheck(Section):
    max_seconds: float = Field(300.0, gt=0.0)
    severity: Severity = "LOW"


class FreshnessCheck(Section):
    warn_hours: float = Field(25.0, gt=0.0)
    fail_hours: float = Field(49.0, gt=0.0)
    severity: Severity = "MEDIUM"  # of the alert when the policy fails (a warning is alerted LOW)

    @model_validator(mode="after")
    def _ordered(self) -> FreshnessCheck:
        if self.fail_hours < self.warn_hours:
            raise ValueError("fail_hours must be at least warn_hours")
        return self


class MissingValuesCheck(Section):
    # A feature fails when its share of missing values in new data exceeds its training share by more.
    max_increase: float = Field(0.10, gt=0.0, le=1.0)
    severity: Severity = "MEDIUM"


class ChecksSection(Section):
    """Thresholds and alert severities of every check (the seed's by default)."""

    accuracy: AccuracyCheck = AccuracyCheck()  # the candidate's holdout accuracy: blocks promotion
    production_accuracy: AccuracyCheck = AccuracyCheck()  # the production model on new labelled data
    # The production model's accuracy estimated from its calibrated probabilities, before labels arrive.
    estimated_accuracy: AccuracyCheck = AccuracyCheck()
    missing_values: MissingValuesCheck = MissingValuesCheck()
    data_drift: DataDriftCheck = DataDriftCheck()
    prediction_drift: PredictionDriftCheck = PredictionDriftCheck()
    run_time: RunTimeCheck = RunTimeCheck()
    freshness: FreshnessCheck = FreshnessCheck()


def cron_problem(expression: str) -> str | None:
    """What is wrong with a five-field cron expression (None: nothing)."""
    if expression.strip() in _CRON_ALIASES:
        return None
    fields = expression.split()
    if len(fields) != 5:
        return f"{len(fields)} fields, not 5 (minute hour day-of-month month day-of-week, e.g. '0 2 * * *')"
    for text, (name, low, high, names) in zip(fields, _CRON_FIELDS):
        for part in text.split(","):
            span, _, step = part.partition("/")
            if step and not (step.isdigit() and int(step) > 0):
                return f"{name} step {step!r} is not a positive number"
            if span in ("*", "?"):
                continue
            for bound in span.split("-", 1):
                value = names.get(bound.lower()) if bound.lower() in names else int(bound) if bound.isdigit() else None
                if value is None or not low <= value <= high:
                    return f"{name} {bound!r} is not in {low}-{high}"
    return None


class ScheduleSection(Section):
    cron: str
    enabled: bool = True

    @field_validator("cron")
    @classmethod
    def _cron(cls, value: str) -> str:
        problem = cron_problem(value)
        if problem:
            raise ValueError(f"{value!r} is not a cron expression: {problem}")
        return value


class SchedulesSection(Section):
    timezone: str = "UTC"
    retrain: ScheduleSection = ScheduleSection(cron="0 2 * * *")
    monitoring: ScheduleSection = ScheduleSection(cron="0 * * * *")  # every 6 hours: "0 */6 * * *"
    batch: ScheduleSection = ScheduleSection(cron="30 * * * *")  # batch_predictions (and a rollout's steps)

    @field_validator("timezone")
    @classmethod
    def _timezone(cls, value: str) -> str:
        try:
            zoneinfo.ZoneInfo(value)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            raise ValueError(f"{value!r} is not an IANA time zone (e.g. 'UTC', 'Europe/Berlin')") from None
        return value


class SmokeTestSection(Section):
    """The staged version, loaded in a fresh process, predicts on a sample of its holdout."""

    sample_rows: int = Field(200, ge=1)
    max_row_latency_ms: float = Field(200.0, gt=0.0)  # one row's predict_proba (median of single-row calls); catches the pathological, not load


class RolloutSection(Section):
    """A canary rollout of a staged version over `batch_predictions` runs (the seed's checklist:
    staging, smoke test, 10% of traffic, gradually more, a rollback plan)."""

    # The share of rows (percent) the candidate serves at each step; 0 is shadow (it scores every
    # row and serves none). Reaching the last step, 100, makes it production. []: no rollout (a
    # candidate that passes the smoke test is promoted at once).
    steps: list[int] = [0, 10, 50, 100]
    min_runs_per_step: int = Field(2, ge=1)  # batch runs at a step before it may advance
    min_rows_per_step: int = Field(1_000, ge=0)  # rows the candidate scored at a step, likewise
    min_agreement: float = Field(0.90, ge=0.0, le=1.0)  # share of rows where both predict the same class
    # Rolled back when its accuracy on labelled rows is below the champion's by more than this...
    accuracy_tolerance: float = Field(0.02, ge=0.0, le=1.0)
    min_labelled_rows: int = Field(100, ge=1)  # ...on at least this many labelled rows
    severity: Severity = "HIGH"  # of the alert when a rollout is rolled back

    @field_validator("steps")
    @classmethod
    def _steps(cls, steps: list[int]) -> list[int]:
        if not steps:
            return steps
        if any(not 0 <= s <= 100 for s in steps) or any(a >= b for a, b in zip(steps, steps[1:])) or steps[-1] != 100:
            raise ValueError(f"{steps} must rise strictly from 0-100 and end at 100 (e.g. [0, 10, 50, 100])")
        return steps


class BatchSection(Section):
    """`<model>/batch_predictions`: the newest validated data scored by the serving model(s)."""

    # Rows are keyed by this column (kept out of the features); unset: by a hash of the row's features.
    id_column: str | None = None
    # SQL sources: the predictions are also appended to this table of the source's database.
    table: str | None = None


class ReleaseSection(Section):
    smoke_test: SmokeTestSection = SmokeTestSection()
    rollout: RolloutSection = RolloutSection()
    batch: BatchSection = BatchSection()


class AlertsSection(Section):
    # Severity -> channel names, for this model's alerts; a severity left out uses the platform's routes.
    routes: dict[Severity, list[str]] = {}


class RegistrySection(Section):
    keep_last: int = Field(20, ge=1)  # versions kept; an aliased version is never deleted


class ModelDeclaration(Section):
    """Everything about one model: where its data comes from and how it is trained, gated,
    checked, scheduled and alerted on."""

    description: str = ""
    source: SourceSection = SourceSection()
    validation: ValidationSection = ValidationSection()
    training: TrainingSection = TrainingSection()
    gate: GateSection = GateSection()
    checks: ChecksSection = ChecksSection()
    schedules: SchedulesSection = SchedulesSection()
    release: ReleaseSection = ReleaseSection()
    alerts: AlertsSection = AlertsSection()
    registry: RegistrySection = RegistrySection()

    @model_validator(mode="after")
    def _consistent(self) -> ModelDeclaration:
        if self.validation.allow_new_classes and self.source.classes:
            raise ValueError(
                "validation.allow_new_classes has no effect when source.classes are declared: "
                "add the new class to source.classes instead"
            )
        known = self.declared_features()
        id_column = self.release.batch.id_column
        if id_column is not None and (known is None or id_column in known or id_column == self.source.target):
            raise ValueError(
                f"release.batch.id_column {id_column!r} must be a column apart from the features and the target: "
                + ("declare source.features (else every column but the target is a feature)" if known is None
                   else "remove it from source.features")
            )
        unknown = [f for f in self.checks.data_drift.features if known is not None and f not in known]
        if unknown:
            raise ValueError(
                f"checks.data_drift.features names feature(s) the source does not have: {unknown} "
                f"(features: {', '.join(known or [])})"
            )
        return self

    def declared_features(self) -> list[str] | None:
        """The feature names, where the declaration itself says them (else None: known from the data)."""
        if self.source.kind == "synthetic":
            return [f"f{i}" for i in range(self.source.synthetic.features)]
        return self.source.features


@dataclass(frozen=True)
class DeclaredModel:
    """A declaration with its name (its folder's) and the project root its paths are relative to."""

    name: str
    declaration: ModelDeclaration
    project_root: Path

    def __post_init__(self) -> None:
        check_model_name(self.name)

    def source_url(self) -> str | None:
        """The SQL source's URL; a relative SQLite file path is made absolute against the project root."""
        url = self.declaration.source.url
        if url is None:
            return None
        from sqlalchemy.engine import make_url  # only for SQL sources: the command line starts without it

        parsed = make_url(url)
        database = parsed.database
        if parsed.get_backend_name() != "sqlite" or database in (None, "", ":memory:") or Path(database).is_absolute():
            return url
        return parsed.set(database=str((self.project_root / database).resolve())).render_as_string(hide_password=False)

    def source_path(self) -> str | None:
        """The source file as an absolute path (relative paths are relative to the project root)."""
        path = self.declaration.source.path
        if path is None:
            return None
        return str(Path(path) if Path(path).is_absolute() else (self.project_root / path).resolve())


def check_model_name(name: str) -> str:
    if not MODEL_NAME.match(name):
        raise DeclarationError(
            f"model name {name!r} (its folder under defs/) must start with a lowercase letter and hold only "
            "lowercase letters, digits and underscores"
        )
    return name


def _first_error(exc: ValidationError) -> str:
    """`attributes.<field path>: <what is wrong>` for the first error (and how many more)."""
    error = exc.errors()[0]
    where = ".".join(["attributes", *(str(p) for p in error["loc"])])
    message = error["msg"].removeprefix("Value error, ")
    if error["type"] == "extra_forbidden":
        message = f"unknown field {error['loc'][-1]!r}"
    more = f" (and {exc.error_count() - 1} more)" if exc.error_count() > 1 else ""
    return f"{where}: {message}{more}"


def read_declaration(path: Path, project_root: Path) -> DeclaredModel:
    """One defs.yaml as a DeclaredModel; DeclarationError names the file and the field."""
    try:
        document = yaml.safe_load(path.read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise DeclarationError(f"{path}: cannot read: {exc}") from exc
    if not isinstance(document, dict) or document.get("type") != COMPONENT_TYPE:
        raise DeclarationError(f"{path}: not a model declaration (expected 'type: {COMPONENT_TYPE}')")
    try:
        declaration = ModelDeclaration.model_validate(document.get("attributes") or {})
    except ValidationError as exc:
        raise DeclarationError(f"{path}: {_first_error(exc)}") from None
    return DeclaredModel(check_model_name(path.parent.name), declaration, project_root)


def default_defs_dir() -> Path:
    """The package's own defs folder (ml_platform/defs)."""
    return Path(__file__).resolve().parent / "defs"


def declaration_files(defs_dir: Path) -> Iterator[Path]:
    """Every `<model>/defs.yaml` under `defs_dir` whose type is ModelPipeline, in name order;
    a file that cannot be read as YAML is an error naming it, never silently skipped."""
    for path in sorted(defs_dir.glob(f"*/{DEFS_FILE}")):
        try:
            document = yaml.safe_load(path.read_text())
        except (OSError, yaml.YAMLError) as exc:
            first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
            raise DeclarationError(f"{path}: cannot read: {first}") from None
        if isinstance(document, dict) and document.get("type") == COMPONENT_TYPE:
            yield path


def read_declarations(defs_dir: Path | None = None) -> list[DeclaredModel]:
    """All declared models of a project, by name (the CLI's view; Dagster loads the same files)."""
    defs_dir = defs_dir or default_defs_dir()
    project_root = defs_dir.parent.parent
    return [read_declaration(path, project_root) for path in declaration_files(defs_dir)]


def declared_model_names(defs_dir: Path | None = None) -> list[str]:
    return [path.parent.name for path in declaration_files(defs_dir or default_defs_dir())]


def resolve_model_name(model: str | None, defs_dir: Path | None = None, declared_only: bool = True) -> str:
    """`model` if given (and, with `declared_only`, declared), else the only declared model;
    several, none or an unknown name is an error that lists the declared ones."""
    if model is not None and not declared_only:
        return check_model_name(model)
    names = declared_model_names(defs_dir)
    where = defs_dir or default_defs_dir()
    if model is not None:
        if model in names:
            return model
        check_model_name(model)
        raise DeclarationError(f"no model {model!r} is declared in {where}; declared: {', '.join(names) or 'none'}")
    if len(names) == 1:
        return names[0]
    if not names:
        raise DeclarationError(f"no model is declared in {where} (add one with `ml-platform new-model`)")
    raise DeclarationError(f"several models are declared ({', '.join(names)}): name one (on the command line: --model NAME)")
