"""`ml_platform.ModelPipeline`: one model, declared once in YAML (ml_platform/defs/<model>/defs.yaml).

The component's attributes are a `ModelDeclaration`, a strict pydantic schema (what `dg.Model`
is) with ranges and choices, so `dg check defs` names a misspelled or out-of-range field and
its line before anything loads. `build_defs` turns it into the model's assets, checks, jobs,
schedules and data source (orchestration/platform.py).

Why not `dg.Resolvable`: its derived schema lets every field also be a template string, which
turns a misspelled nested field into "not valid under any of the given schemas", and it refuses
constrained fields (`Field(ge=1)`). The declaration is plain data, so it needs no resolution.
"""

from typing import Any

import dagster as dg
from dagster.components.scaffold.scaffold import ScaffoldRequest, scaffold_with
from pydantic import BaseModel

from ml_platform.declaration import DEFS_FILE, DeclarationError, DeclaredModel, ModelDeclaration
from ml_platform.orchestration.platform import build_model_definitions
from ml_platform.scaffold import declaration_yaml


class ModelPipelineScaffolder(dg.Scaffolder):
    """`dg scaffold defs ml_platform.ModelPipeline <name>` writes a commented declaration."""

    def scaffold(self, request: ScaffoldRequest) -> None:
        target = request.target_path
        target.mkdir(parents=True, exist_ok=True)
        (target / DEFS_FILE).write_text(declaration_yaml(target.name))


@scaffold_with(ModelPipelineScaffolder)
class ModelPipeline(dg.Component, ModelDeclaration):
    """A scikit-learn model from data to production: raw_data -> validated_data -> trained_model ->
    production_model, with monitoring_report, its checks, jobs, schedules and alerts."""

    @classmethod
    def get_model_cls(cls) -> type[BaseModel]:
        return ModelDeclaration

    @classmethod
    def load(cls, attributes: BaseModel | None, context: dg.ComponentLoadContext) -> "ModelPipeline":
        values: dict[str, Any] = dict(attributes) if attributes is not None else {}
        return cls(**values)

    def declaration(self) -> ModelDeclaration:
        return ModelDeclaration.model_validate({name: getattr(self, name) for name in ModelDeclaration.model_fields})

    def build_defs(self, context: dg.ComponentLoadContext) -> dg.Definitions:
        # The model's name is its folder's, directly under defs/: where the CLI looks for it too.
        if context.path.parent.resolve() != context.defs_module_path.resolve():
            raise DeclarationError(
                f"{context.path / DEFS_FILE}: declare a model directly under the defs folder "
                f"({context.defs_module_path}/<model>/{DEFS_FILE}), not in a subfolder"
            )
        return build_model_definitions(DeclaredModel(context.path.name, self.declaration(), context.project_root))
