"""Declared models: one folder per model, each with its defs.yaml (ml_platform.ModelPipeline)."""
