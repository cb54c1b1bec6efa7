"""Where data comes from, what makes it valid, and where outputs are stored (no Dagster import)."""
