"""The `ml_platform.ModelPipeline` component type."""

from ml_platform.components.model_pipeline import ModelPipeline

__all__ = ["ModelPipeline"]
