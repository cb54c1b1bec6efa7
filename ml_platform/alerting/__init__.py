"""Alerts, their routing, the outbox and the delivery channels (no Dagster import)."""
