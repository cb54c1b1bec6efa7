"""Where data comes from and what makes it valid (no Dagster import)."""
