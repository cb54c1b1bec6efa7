"""Drift, the production model's health on new data, and the monitoring report (no Dagster import)."""
