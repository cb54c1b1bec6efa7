"""Training, the model registry, and the promotion gate (no Dagster import)."""
