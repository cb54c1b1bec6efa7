"""Training, the model registry, the promotion gate, the smoke test, canary rollouts and batch
scoring (no Dagster import)."""
