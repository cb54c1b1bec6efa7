"""Run config whose defaults are a model's declaration.

Each op's config class is derived from a section of the declaration, with the declared values
as defaults: the Launchpad shows what is declared, a run may override any of it, and a run
with no config (a schedule, a sensor, the CLI) uses exactly the declaration. The declaration's
validation rules (ranges, choices) come along, so an out-of-range override fails naming the field.
"""

from collections.abc import Mapping
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


def check_run_config(run_config: Mapping[str, Any], config_classes: Mapping[str, type[dg.Config]]) -> None:
    """Refuse a run whose op config breaks a declared range, before the run does any work.

    Dagster's config schema has no ranges (`min_rows >= 1`), so an out-of-range override would
    otherwise fail only when its own step starts, after earlier steps ran (and, say, registered a
    model version). The first step of a model's run calls this for all of the model's ops."""
    ops = run_config.get("ops") or {}
    for op, config_class in config_classes.items():
        values = (ops.get(op) or {}).get("config")
        if values is None:
            continue
        try:
            config_class(**values)
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(["ops", op, "config", *(str(p) for p in error["loc"])])
            raise dg.Failure(
                description=f"run config {where}: {error['msg']} (got {error.get('input')!r})", allow_retries=False
            ) from None
