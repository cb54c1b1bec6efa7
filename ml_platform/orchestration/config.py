"""Run config whose defaults are a model's declaration.

Each op's config class is derived from a section of the declaration, with the declared values
as defaults: the Launchpad shows what is declared, a run may override any of it, and a run
with no config (a schedule, a sensor, the CLI) uses exactly the declaration. The declaration's
validation rules (ranges, choices, cross-field rules) come along: each config class validates
its values with the section's own class, so an out-of-range override fails naming the field.
"""

import types
from collections.abc import Mapping
from typing import Any, Literal, Union, get_args, get_origin

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
        elif _is_dict_of_sections(info.annotation):
            # Dagster's schema defaults must be plain values, so entries stay plain dicts here
            # (checked by the section's own class below; read them back with that class).
            default = {key: item.model_dump(exclude_none=True) for key, item in value.items()}
            fields[field_name] = (dict[str, dict[str, Any]], FieldInfo.merge_field_infos(info, default=default))
        else:
            fields[field_name] = (_dagster_annotation(info.annotation), FieldInfo.merge_field_infos(info, default=value))
    for field_name, nested_section in (extra or {}).items():
        nested = config_class(type(nested_section).__name__, nested_section)
        fields[field_name] = (nested, nested())
    own_fields = [f for f in type(section).model_fields if only is None or f in only]

    def validated_as_declared(config: dg.Config) -> dg.Config:
        try:
            type(section).model_validate(config.model_dump(include=set(own_fields)))
        except pydantic.ValidationError as exc:
            error = exc.errors()[0]
            where = ".".join(str(p) for p in error["loc"])
            raise ValueError(f"{where + ': ' if where else ''}{error['msg'].removeprefix('Value error, ')}") from None
        return config

    validators = {"_validated_as_declared": pydantic.model_validator(mode="after")(validated_as_declared)}
    return pydantic.create_model(name, __base__=dg.Config, __validators__=validators, **fields)


def _is_dict_of_sections(annotation: Any) -> bool:
    """dict[str, S] with S a Section (e.g. per-feature rules)."""
    if get_origin(annotation) is not dict:
        return False
    value_type = get_args(annotation)[1]
    return isinstance(value_type, type) and issubclass(value_type, Section)


def _dagster_annotation(annotation: Any) -> Any:
    """Dagster's config types know a Literal field but not a list of them: such a list becomes
    list[str] (and the section's own validation still checks the choices)."""
    origin, args = get_origin(annotation), get_args(annotation)
    if origin is list and args and get_origin(args[0]) is Literal:
        return list[str]
    if origin in (Union, types.UnionType) and type(None) in args:
        (inner,) = [a for a in args if a is not type(None)]
        return _dagster_annotation(inner) | None
    return annotation


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
                description=f"run config {where}: {error['msg'].removeprefix('Value error, ')} (got {error.get('input')!r})",
                allow_retries=False,
            ) from None
