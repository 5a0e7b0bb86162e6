"""params.yaml in, typed frozen dataclasses out; and conf/ composed into params.yaml."""

from __future__ import annotations

import dataclasses
import types
import typing
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import yaml

T = TypeVar("T")

PARAMS_FILE = "params.yaml"
CONF_DIR = "conf"


class ConfigError(ValueError):
    """A parameter is missing or has the wrong type; the message names it."""


def read_params(path: str | Path = PARAMS_FILE) -> dict[str, Any]:
    path = Path(path)
    if not path.is_file():
        raise ConfigError(f"{path}: not found (run from the project root, or `make params`)")
    with path.open() as handle:
        params = yaml.safe_load(handle) or {}
    if not isinstance(params, dict):
        raise ConfigError(f"{path}: expected a mapping at the top level")
    return params


def section(params: dict[str, Any], dotted: str) -> Any:
    """The value at a dotted key such as ``data.contract``."""
    node: Any = params
    for part in dotted.split("."):
        if not isinstance(node, dict) or part not in node:
            raise ConfigError(f"params.yaml: missing key '{dotted}'")
        node = node[part]
    return node


def build(cls: type[T], values: dict[str, Any], where: str) -> T:
    """Instantiate a (possibly nested) dataclass from a dict, naming the key on error."""
    if not isinstance(values, dict):
        raise ConfigError(f"params.yaml: '{where}' must be a mapping, got {values!r}")
    hints = typing.get_type_hints(cls)
    fields = {f.name: f for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - set(fields))
    if unknown:
        raise ConfigError(f"params.yaml: unknown key(s) {unknown} in '{where}'")
    kwargs = {}
    for name, field in fields.items():
        key = f"{where}.{name}"
        if name not in values:
            no_default = field.default is dataclasses.MISSING and field.default_factory is dataclasses.MISSING
            if no_default:
                raise ConfigError(f"params.yaml: missing key '{key}'")
            continue
        kwargs[name] = _coerce(hints[name], values[name], key)
    try:
        return cls(**kwargs)
    except ValueError as error:  # a dataclass's own check; name where it sits unless the message does
        if isinstance(error, ConfigError):
            raise
        message = str(error) if str(error).startswith(where.split(".")[0]) else f"{where}: {error}"
        raise ConfigError(f"params.yaml: {message}") from error


def _coerce(hint: Any, value: Any, key: str) -> Any:
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        options = typing.get_args(hint)
        if value is None and type(None) in options:
            return None
        inner = [o for o in options if o is not type(None)]
        return _coerce(inner[0], value, key)
    if dataclasses.is_dataclass(hint):
        return build(hint, value, key)
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"params.yaml: '{key}' must be a mapping")
        _, value_hint = typing.get_args(hint)
        return {k: _coerce(value_hint, v, f"{key}.{k}") for k, v in value.items()}
    if origin in (list, tuple):
        if not isinstance(value, (list, tuple)):
            raise ConfigError(f"params.yaml: '{key}' must be a list")
        return tuple(value) if origin is tuple else list(value)
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint in (int, float, str, bool) and not isinstance(value, hint) or (hint is int and isinstance(value, bool)):
        raise ConfigError(f"params.yaml: '{key}' must be {hint.__name__}, got {value!r}")
    return value


def load(cls: type[T], dotted: str, params: dict[str, Any] | None = None) -> T:
    """``load(SplitParams, "split")``: one params.yaml section as a typed dataclass."""
    params = read_params() if params is None else params
    return build(cls, section(params, dotted), dotted)


class PairingWarning(UserWarning):
    """One dataset's gate policy composed with another dataset scored in the same metric."""


def compose(
    conf_dir: str | Path = CONF_DIR, overrides: list[str] | None = None, warn: Callable[[str], None] | None = None
) -> str:
    """Compose conf/ with Hydra exactly as `dvc exp run -S` does; returns the YAML text. A gate policy
    named after another dataset than the chosen one is refused, or passed to ``warn`` (default: a
    PairingWarning) when that dataset is scored in the same metric."""
    from hydra import compose as hydra_compose
    from hydra import initialize_config_dir
    from omegaconf import OmegaConf, open_dict

    with initialize_config_dir(config_dir=str(Path(conf_dir).resolve()), version_base=None):
        cfg = hydra_compose(config_name="config", overrides=list(overrides or []), return_hydra_config=True)
    choices = cfg.hydra.runtime.choices
    with open_dict(cfg):
        del cfg["hydra"]  # Hydra's own settings: asked for only to learn the chosen files
    OmegaConf.resolve(cfg)
    _check_pairing(Path(conf_dir), choices.get("data"), choices.get("gate"), cfg, warn or _pairing_warning)
    return OmegaConf.to_yaml(cfg)


def _check_pairing(conf_dir: Path, data: str | None, gate: str | None, cfg: Any, warn: Callable[[str], None]) -> None:
    """A policy declares its dataset by its name (a file of that name in conf/data/; other names declare
    none). Paired with another dataset scored in another metric, the gate stage would refuse it only after
    the whole run: refuse it now. In the same metric it may be reused on purpose (on a sample of its
    dataset, say): warn."""
    if data is None or gate is None or gate == data or not (conf_dir / "data" / f"{gate}.yaml").is_file():
        return
    policies = f"{conf_dir.name}/gate"
    if (conf_dir / "experiment" / f"{data}.yaml").is_file():
        remedy = f"choose experiment={data} ({data}'s data with its own policy)"
    elif (conf_dir / "gate" / f"{data}.yaml").is_file():
        remedy = f"choose gate={data}"
    else:
        remedy = f"copy {policies}/{gate}.yaml to {policies}/{data}.yaml, fit it to {data}, then gate={data}"
    pairing = f"data={data} with gate={gate}: {policies}/{gate}.yaml is the gate policy of dataset '{gate}'"
    data_metric, gate_metric = cfg.data.get("metric"), cfg.gate.get("metric")
    if gate_metric != data_metric:
        raise ConfigError(
            f"{pairing}, stated in {gate_metric}, and '{data}' is scored in {data_metric} (the gate stage would "
            f"refuse it after the whole run); {remedy}"
        )
    warn(f"{pairing}, not of '{data}' (its floor, critical features and slices may not fit); {remedy}")


def _pairing_warning(message: str) -> None:
    warnings.warn(message, PairingWarning, stacklevel=4)  # at compose's caller
