"""Strict, typed configuration loading.

Every component owns a ``@dataclass`` config whose fields carry the defaults and a docstring.
A job's config is loaded as ``OmegaConf.structured(JobConfig)`` <- YAML files <- CLI dotlist, so
an unknown key or a wrong type fails at once with the key named. Semantic checks live in a
``check()`` method on each dataclass; :func:`validate` collects them over the whole tree and
raises once.
"""

from __future__ import annotations

import dataclasses
import difflib
import functools
import json
import typing
from pathlib import Path
from typing import Any, TypeVar

from omegaconf import OmegaConf
from omegaconf.errors import ConfigKeyError, OmegaConfBaseException, ValidationError

from mlu_dist.registry import registered

T = TypeVar("T")

CONFIG_DIR = Path(__file__).resolve().parent.parent / "configs"


class ConfigError(ValueError):
    """A configuration problem the user must fix; the message names every bad field."""


def _field_names(cls, dotted: str) -> list[str]:
    """Valid field names at the parent of ``dotted`` inside dataclass ``cls``."""
    node, in_dict = cls, False
    for part in dotted.split(".")[:-1]:
        if in_dict:  # a key of a dict[str, Dataclass] field
            in_dict = False
            continue
        node = typing.get_type_hints(node).get(part) if dataclasses.is_dataclass(node) else None
        if typing.get_origin(node) is dict:
            node, in_dict = typing.get_args(node)[1], True
    return [f.name for f in dataclasses.fields(node)] if dataclasses.is_dataclass(node) else []


def explain_error(cls, exc: OmegaConfBaseException, source: str) -> ConfigError:
    """One clear :class:`ConfigError` for an OmegaConf failure: the key, a suggestion, the valid keys."""
    key = getattr(exc, "full_key", None) or getattr(exc, "key", None) or "?"
    if isinstance(exc, ConfigKeyError):
        valid = _field_names(cls, str(key))
        leaf = str(key).split(".")[-1]
        close = difflib.get_close_matches(leaf, valid, n=1)
        hint = f" Did you mean '{close[0]}'?" if close else ""
        listing = f" Valid keys here: {', '.join(valid)}." if valid else ""
        return ConfigError(f"{source}: unknown config key '{key}'.{hint}{listing}")
    if isinstance(exc, ValidationError):
        msg = str(getattr(exc, "msg", exc)).splitlines()[0]
        return ConfigError(f"{source}: bad value for '{key}': {msg}")
    return ConfigError(f"{source}: {str(exc).splitlines()[0]} (key '{key}')")


def resolve_config_path(name: str | Path) -> Path:
    """A config file by path, or by name under ``configs/`` (``models/tiny-llama``)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIG_DIR / name, CONFIG_DIR / f"{name}.yaml"):
        if candidate.is_file():
            return candidate
    shipped = sorted(str(p.relative_to(CONFIG_DIR).with_suffix("")) for p in CONFIG_DIR.rglob("*.yaml"))
    raise ConfigError(f"config file '{name}' not found (as a path or under {CONFIG_DIR}). "
                      f"Shipped configs: {', '.join(shipped)}")


def load_config(cls: type[T], files: list[str | Path] = (), overrides: list[str] = ()) -> T:
    """Build a ``cls`` instance: dataclass defaults <- each YAML file in order <- dotlist overrides.

    Raises :class:`ConfigError` for unknown keys, wrong types and failed semantic checks.
    """
    cfg = _schema(cls, registered())  # merge copies it, so the cached schema is never changed
    for name in files:
        path = resolve_config_path(name)
        try:
            loaded = OmegaConf.load(path)
        except Exception as exc:  # YAML syntax errors come in several types
            raise ConfigError(f"{path}: not valid YAML: {exc}") from None
        try:
            cfg = OmegaConf.merge(cfg, loaded)
        except OmegaConfBaseException as exc:
            raise explain_error(cls, exc, str(path)) from None
        except (TypeError, ValueError) as exc:  # e.g. a mapping where a list belongs
            raise ConfigError(f"{path}: a value does not fit its field: {exc}") from None
    bad = [o for o in overrides if "=" not in o]
    if bad:
        raise ConfigError(f"overrides must look like key=value, got: {', '.join(bad)}")
    try:
        dotlist = OmegaConf.from_dotlist(list(overrides))
    except Exception as exc:  # YAML errors in a value come in several types
        raise ConfigError(f"command line: cannot parse overrides {list(overrides)}: {str(exc).splitlines()[0]}") from None
    try:
        cfg = OmegaConf.merge(cfg, dotlist)
        obj = OmegaConf.to_object(cfg)
    except OmegaConfBaseException as exc:
        raise explain_error(cls, exc, "command line") from None
    except (TypeError, ValueError) as exc:  # e.g. a mapping where a list belongs: find the override
        culprit = next((o for o in overrides if not _merges(cfg, o)), None)
        where = f"bad value in '{culprit}'" if culprit else "bad value"
        raise ConfigError(f"command line: {where}: {exc} (check the field's type with --show-fields)") from None
    validate(obj)
    return obj


@functools.lru_cache(maxsize=None)
def _schema(cls, components: tuple) -> Any:
    """``OmegaConf.structured(cls)``, built once per class and state of the registries ``components``
    (planning a sweep loads hundreds of configs; defaults such as the metric list come from them)."""
    return OmegaConf.structured(cls)


def _merges(cfg, override: str) -> bool:
    try:
        OmegaConf.to_object(OmegaConf.merge(cfg, OmegaConf.from_dotlist([override])))
        return True
    except Exception:  # noqa: BLE001 - any failure marks the culprit
        return False


def problems(obj: Any, prefix: str = "") -> list[str]:
    """Every semantic problem in a config tree, each as ``'path.to.field: message'``."""
    found: list[str] = []
    if not dataclasses.is_dataclass(obj):
        return found
    check = getattr(obj, "check", None)
    if callable(check):
        found += [f"{prefix}{p}" for p in check()]
    for f in dataclasses.fields(obj):
        found += problems(getattr(obj, f.name), f"{prefix}{f.name}.")
    return found


def validate(obj: Any) -> None:
    """Raise one :class:`ConfigError` that lists every problem :func:`problems` finds."""
    found = problems(obj)
    if found:
        raise ConfigError(f"{len(found)} config problem(s):\n" + "\n".join(f"  - {p}" for p in found))


def to_yaml(obj: Any) -> str:
    """The fully resolved config as YAML (what goes into every run directory)."""
    return OmegaConf.to_yaml(OmegaConf.structured(obj))


def to_dict(obj: Any) -> dict:
    """A config as plain JSON data: what ``OmegaConf.to_container`` gives for it, without building an
    OmegaConf tree (run-directory hashes call this for every cell of a sweep's plan)."""
    return _plain(obj, Any)


def _plain(value: Any, hint: Any) -> Any:
    if dataclasses.is_dataclass(value):
        hints = _type_hints(type(value))
        return {f.name: _plain(getattr(value, f.name), hints.get(f.name, Any)) for f in dataclasses.fields(value)}
    if isinstance(value, dict):
        inner = typing.get_args(hint)[1] if typing.get_origin(hint) is dict else Any
        return {str(k): _plain(v, inner) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        args = typing.get_args(hint)
        inner = args[0] if typing.get_origin(hint) in (list, tuple) and args else Any
        return [_plain(v, inner) for v in value]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)  # OmegaConf stores an int given to a float field as a float
    if isinstance(value, Path):
        return str(value)
    return value


@functools.lru_cache(maxsize=None)
def _type_hints(cls) -> dict:
    return typing.get_type_hints(cls)


def check_choice(field: str, value: Any, choices) -> list[str]:
    """A one-element problem list when ``value`` is not among ``choices``."""
    if value in choices:
        return []
    close = difflib.get_close_matches(str(value), [str(c) for c in choices], n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    return [f"{field}: '{value}' is not valid{hint}; valid: {', '.join(map(str, choices))}"]


def check_positive(obj: Any, *names: str) -> list[str]:
    return [f"{n}: must be > 0, got {getattr(obj, n)}" for n in names if not getattr(obj, n) > 0]


def field_docs(cls) -> dict[str, str]:
    """The docstring written under each field of a dataclass (read from its source)."""
    import ast
    import inspect
    import textwrap

    try:
        tree = ast.parse(textwrap.dedent(inspect.getsource(cls)))
    except (OSError, TypeError):
        return {}
    body = tree.body[0].body
    docs = {}
    for node, nxt in zip(body, body[1:]):
        if isinstance(node, ast.AnnAssign) and isinstance(node.target, ast.Name) and isinstance(nxt, ast.Expr) \
                and isinstance(getattr(nxt, "value", None), ast.Constant) and isinstance(nxt.value.value, str):
            docs[node.target.id] = " ".join(nxt.value.value.split())
    return docs


def describe(obj, prefix: str = "") -> list[str]:
    """One line per leaf field: ``key = default  # doc`` (what ``--show-fields`` prints)."""
    lines = []
    docs = field_docs(type(obj))
    for f in dataclasses.fields(obj):
        value = getattr(obj, f.name)
        if dataclasses.is_dataclass(value):
            lines += describe(value, f"{prefix}{f.name}.")
        else:
            doc = docs.get(f.name, "")
            shown = json.dumps(OmegaConf.to_container(OmegaConf.create({"v": value}))["v"], ensure_ascii=False)
            lines.append(f"{prefix}{f.name} = {shown}" + (f"   # {doc}" if doc else ""))
    return lines
