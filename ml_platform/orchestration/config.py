"""Run config whose defaults are a model's declaration.

Each op's config class is derived from a section of the declaration, with the declared values
as defaults: the Launchpad shows what is declared, a run may override any of it, and a run
with no config (a schedule, a sensor, the CLI) uses exactly the declaration. The declaration's
validation rules (ranges, choices) come along, so an out-of-range override fails naming the field.
"""

from typing import Any

import dagster as dg
import pydantic
from pydantic.fields import FieldInfo

from ml_platform.declaration import Section


def config_class(
    name: str, section: Section, only: tuple[str, ...] | None = None, extra: dict[str, Section] | None = None
) -> type[dg.Config]:
    """A dg.Config class with `section`'s fields (all, or `only` these) and its values as
    defaults, plus each `extra` section as a nested field of that name."""
    fields: dict[str, Any] = {}
    for field_name, info in type(section).model_fields.items():
        if only is not None and field_name not in only:
            continue
        value = getattr(section, field_name)
        if isinstance(value, Section):
            nested = config_class(type(value).__name__, value)
            fields[field_name] = (nested, FieldInfo.merge_field_infos(info, default=nested()))
        else:
            fields[field_name] = (info.annotation, FieldInfo.merge_field_infos(info, default=value))
    for field_name, nested_section in (extra or {}).items():
        nested = config_class(type(nested_section).__name__, nested_section)
        fields[field_name] = (nested, nested())
    return pydantic.create_model(name, __base__=dg.Config, **fields)


def run_config(configs: dict[str, dg.Config]) -> dict[str, Any]:
    """Run config setting each op's config (op name -> config instance) explicitly."""
    return {"ops": {op: {"config": config.model_dump(mode="json")} for op, config in configs.items()}}
