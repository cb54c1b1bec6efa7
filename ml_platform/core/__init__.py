"""Domain logic with no Dagster import: data sources, validation, training, registry, gate, alerts."""
