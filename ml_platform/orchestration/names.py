"""The names of one declared model's Dagster objects, in one place."""

from dataclasses import dataclass

import dagster as dg

# Run tags: which model a run belongs to, and (training runs) the key the run queue limits
# to one run per model at a time (see dagster_home/dagster.yaml).
MODEL_TAG = "ml_platform/model"
TRAINING_TAG = "ml_platform/training"
# Set on a run by the platform's IO manager: `host:pid:start` of the run's worker (see run_launcher.py).
WORKER_TAG = "ml_platform/worker"

SCHEMA_CHECK = "pandera_schema"
ACCURACY_CHECK = "accuracy_above_threshold"
DATA_DRIFT = "data_drift"
PREDICTION_DRIFT = "prediction_drift"
PRODUCTION_ACCURACY = "production_model_accuracy"
MISSING_VALUES = "missing_values"
ESTIMATED_ACCURACY = "estimated_accuracy"
RUN_TIME = "pipeline_run_time"
SMOKE_TEST = "smoke_test"
PREDICTION_OUTPUTS = "prediction_outputs"
CANARY_ROLLOUT = "canary_rollout"
MONITORING_CHECKS = (DATA_DRIFT, MISSING_VALUES, PREDICTION_DRIFT, PRODUCTION_ACCURACY, ESTIMATED_ACCURACY)


@dataclass(frozen=True)
class ModelNames:
    model: str

    def asset(self, name: str) -> dg.AssetKey:
        return dg.AssetKey([self.model, name])

    @property
    def raw_data(self) -> dg.AssetKey:
        return self.asset("raw_data")

    @property
    def validated_data(self) -> dg.AssetKey:
        return self.asset("validated_data")

    @property
    def trained_model(self) -> dg.AssetKey:
        return self.asset("trained_model")

    @property
    def staging_model(self) -> dg.AssetKey:
        return self.asset("staging_model")

    @property
    def production_model(self) -> dg.AssetKey:
        return self.asset("production_model")

    @property
    def batch_predictions(self) -> dg.AssetKey:
        return self.asset("batch_predictions")

    @property
    def monitoring_report(self) -> dg.AssetKey:
        return self.asset("monitoring_report")

    @property
    def registry_pool(self) -> str:
        """The Dagster pool of every step that writes this model's registry (training, the gate,
        the rollback): one at a time across all runs however launched (pools' limit is 1 in
        dagster.yaml), so two runs on the same data cannot both register it."""
        return f"{self.model}_registry"

    @property
    def data_source(self) -> str:
        """The resource key of this model's data source."""
        return f"{self.model}_data_source"

    @property
    def training_job(self) -> str:
        return f"{self.model}_training"

    @property
    def monitoring_job(self) -> str:
        return f"{self.model}_monitoring"

    @property
    def rollback_job(self) -> str:
        return f"{self.model}_rollback"

    @property
    def batch_job(self) -> str:
        return f"{self.model}_batch"

    @property
    def all_check_keys(self) -> list[dg.AssetCheckKey]:
        return [
            dg.AssetCheckKey(self.validated_data, SCHEMA_CHECK),
            dg.AssetCheckKey(self.trained_model, ACCURACY_CHECK),
            *(dg.AssetCheckKey(self.validated_data, name) for name in MONITORING_CHECKS),
            dg.AssetCheckKey(self.production_model, RUN_TIME),
            dg.AssetCheckKey(self.staging_model, SMOKE_TEST),
            dg.AssetCheckKey(self.batch_predictions, PREDICTION_OUTPUTS),
            dg.AssetCheckKey(self.batch_predictions, CANARY_ROLLOUT),
        ]


def model_of_asset(asset: dg.AssetKey | str) -> str | None:
    """The model an asset key belongs to (its first path component), if it has a prefix."""
    path = asset.path if isinstance(asset, dg.AssetKey) else dg.AssetKey.from_user_string(asset).path
    return path[0] if len(path) > 1 else None
