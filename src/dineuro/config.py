"""Config files shared by every stage: YAML in, ``--set KEY=VALUE`` overrides, strict checks.

Training, adaptation, pre-training and experiments each describe a run with a frozen dataclass
read from YAML; these helpers read the file, apply dotted overrides parsed as YAML, check each
value against the field's annotation (an unknown key or a wrong type is an
:class:`~dineuro.errors.InputError` naming the key) and name the file in every error.
"""

from __future__ import annotations

import os
import re
import types
import typing
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import yaml

from dineuro.errors import InputError

#: ``device`` may be "auto" (CUDA when available, else CPU), "cpu", "cuda" or "cuda:N".
DEVICE_PATTERN = re.compile(r"auto|cpu|cuda(:\d+)?")


def config_from_dict(cls, data: dict, path, overrides: Sequence[str]):
    """``cls.from_dict(data)``, its errors naming the file (and that overrides were applied)."""
    try:
        return cls.from_dict(data)
    except InputError as exc:
        if path is None:
            raise
        raise InputError(str(exc), f"{path} with overrides" if overrides else path) from exc


def read_yaml_mapping(path: Path, what: str) -> dict:
    """The mapping a YAML file holds; ``what`` names its keys in the error message."""
    try:
        text = path.read_text()
    except OSError as exc:
        raise InputError(f"cannot be read ({exc.strerror}).", path) from exc
    try:
        data = yaml.safe_load(text) or {}
    except yaml.YAMLError as exc:
        raise InputError(f"is not valid YAML ({exc}).", path) from exc
    if not isinstance(data, dict):
        raise InputError(f"should hold a mapping of {what} to values.", path)
    return data


def parse_override(item: str) -> tuple[str, Any]:
    """``"KEY=VALUE"`` -> (KEY, VALUE parsed as YAML)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise InputError(f"an override should look like KEY=VALUE, got {item!r}.")
    try:
        return key.strip(), yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise InputError(f"the value of override {item!r} is not valid YAML ({exc}).") from exc


def set_dotted(data: dict, key: str, value) -> None:
    *parents, leaf = key.split(".")
    node = data
    for depth, part in enumerate(parents):
        child = node.setdefault(part, {})
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            where = ".".join(parents[:depth + 1])
            raise InputError(f"cannot set {key!r}: config key {where!r} is not a section.")
        node = child
    node[leaf] = value


def section(value, name: str) -> dict:
    """A nested section of a config (``augment:``), a mapping; null is an empty one."""
    if value is None:
        return {}
    if not isinstance(value, Mapping):
        raise InputError(f"config key {name!r} should be a mapping, got {value!r}.")
    return dict(value)


def field_types(cls) -> dict[str, Any]:
    """Field name -> resolved annotation of a config dataclass."""
    return typing.get_type_hints(cls)


def checked_value(name: str, value, hint):
    """``value`` checked (and where lossless converted) against the annotation ``hint``.

    Handles the annotations the config dataclasses use: bool, int, float, str, dict,
    list[int], list[float], the section dataclasses, and unions with None.
    """
    options = typing.get_args(hint) if isinstance(hint, types.UnionType) else (hint,)
    if value is None:
        if type(None) in options:
            return None
        raise InputError(f"config key {name!r} should not be null.")
    errors = []
    for option in options:
        if option is type(None):
            continue
        try:
            return _as_type(value, option)
        except (TypeError, ValueError) as exc:
            errors.append(str(exc))
    wanted = " or ".join(_type_name(o) for o in options)
    raise InputError(f"config key {name!r} should be {wanted}, got {value!r} "
                     f"({type(value).__name__}).")


def _as_type(value, kind):
    origin = typing.get_origin(kind) or kind
    if kind is bool:
        if isinstance(value, bool):
            return value
        raise TypeError
    if kind is int:
        if isinstance(value, int) and not isinstance(value, bool):
            return value
        if isinstance(value, float) and value.is_integer():
            return int(value)
        raise TypeError
    if kind is float:
        if isinstance(value, bool):
            raise TypeError
        if isinstance(value, (int, float)):
            return float(value)
        if isinstance(value, str):  # YAML 1.1 reads "1e-4" (no dot) as a string
            return float(value)
        raise TypeError
    if kind is str:
        if isinstance(value, (str, os.PathLike)):
            return str(value)
        raise TypeError
    if origin is dict:
        if isinstance(value, Mapping):
            return dict(value)
        raise TypeError
    if origin is list:
        if isinstance(value, int) and not isinstance(value, bool):
            return value  # one int for a cube, expanded by the caller
        if isinstance(value, (list, tuple)):
            (item,) = typing.get_args(kind)
            return [_as_type(v, item) for v in value]
        raise TypeError
    if isinstance(value, kind):
        return value
    raise TypeError


def _type_name(kind) -> str:
    names = {bool: "true/false", int: "an integer", float: "a number", str: "a string"}
    if kind in names:
        return names[kind]
    origin = typing.get_origin(kind) or kind
    if origin is dict:
        return "a mapping"
    if origin is list:
        (item,) = typing.get_args(kind)
        return "a list of numbers" if item is float else "a list of integers"
    return getattr(kind, "__name__", str(kind))


def require(ok: bool, name: str, what: str, value) -> None:
    """Raise "config key NAME WHAT, got VALUE." unless ``ok``."""
    if not ok:
        raise InputError(f"config key {name!r} {what}, got {value!r}.")
