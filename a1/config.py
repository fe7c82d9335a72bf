"""Reading YAML configs into the typed dataclasses, strictly.

The same YAML files drive ``python -m a1.fit`` (LightningCLI) and the light-weight commands
(``a1.model.summary``); this module gives the latter the same rules: OmegaConf interpolation
is resolved, and an unknown or mistyped key is an error that names the file and the key.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf

from a1.model.config import PolicyConfig

T = TypeVar("T")


class ConfigError(ValueError):
    """A config file or key is wrong; the message names it."""


def load_yaml(*paths: str | Path) -> dict[str, Any]:
    """Load YAML files layered like ``python -m a1.fit --config A --config B`` (later files override
    earlier ones key by key; lists are replaced), with ``${...}`` interpolation resolved."""
    layers = []
    for path in map(Path, paths):
        if not path.is_file():
            raise ConfigError(f"config file not found: {path}")
        try:
            layers.append(OmegaConf.load(path))
        except Exception as err:  # omegaconf raises several types for bad YAML
            raise ConfigError(f"{path}: cannot read config: {err}") from err
    where = " + ".join(map(str, paths))
    try:
        data = OmegaConf.to_container(OmegaConf.merge(*layers), resolve=True)
    except Exception as err:  # bad interpolation, or layers that cannot merge
        raise ConfigError(f"{where}: cannot read config: {err}") from err
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: top level must be a mapping")
    return data


def from_dict(cls: type[T], data: Any, where: str) -> T:
    """Build dataclass ``cls`` from ``data``; unknown keys and wrong types name ``where.key``."""
    if not isinstance(data, dict):
        raise ConfigError(f"{where}: expected a mapping, got {type(data).__name__}")
    hints = typing.get_type_hints(cls)
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(data) - names)
    if unknown:
        raise ConfigError(f"{where}: unknown key(s) {', '.join(f'{where}.{k}' for k in unknown)}")
    kwargs = {k: _value(hints[k], v, f"{where}.{k}") for k, v in data.items()}
    return cls(**kwargs)


def _value(hint: Any, value: Any, where: str) -> Any:
    origin = typing.get_origin(hint)
    if dataclasses.is_dataclass(hint):
        return from_dict(hint, value, where)
    if origin in (typing.Union, types.UnionType):
        args = typing.get_args(hint)
        if value is None and type(None) in args:
            return None
        inner = [a for a in args if a is not type(None)]
        return _value(inner[0], value, where) if len(inner) == 1 else value
    if origin is typing.Literal:
        if value not in typing.get_args(hint):
            raise ConfigError(f"{where}: {value!r} is not one of {list(typing.get_args(hint))}")
        return value
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_value(item, v, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        return value
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not (type(value) is hint):
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    return value


def policy_config(*paths: str | Path) -> PolicyConfig:
    """The ``model.policy`` section of (layered) config files as a :class:`PolicyConfig`."""
    data = load_yaml(*paths)
    path = " + ".join(map(str, paths))
    try:
        section = data["model"]["policy"]
    except (KeyError, TypeError) as err:
        raise ConfigError(f"{path}: missing key model.policy") from err
    try:
        return from_dict(PolicyConfig, section, "model.policy")
    except ConfigError as err:
        raise ConfigError(f"{path}: {err}") from err
