"""Out-of-tree components: a researcher's own method, metric, tracker or executor module.

A plugin is any importable module (or ``.py`` file) that registers components in the usual
registries when imported. Plugins come from the ``MLU_PLUGINS`` environment variable (comma-
separated module names or file paths; sweep workers and Slurm jobs inherit it) and from installed
packages' ``mlu_dist.plugins`` entry points. ``mlu`` and every sweep task load them before any
config is read, so a plugin's method name passes config validation like a built-in one.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from pathlib import Path

ENTRY_POINT_GROUP = "mlu_dist.plugins"


class PluginError(ImportError):
    """A plugin named by the user could not be imported; the message names it and the cause."""


def load_plugins(spec: str | None = None) -> list[str]:
    """Import every plugin (``spec`` defaults to ``$MLU_PLUGINS``); returns the module names.
    Importing twice is a no-op, so every entry point may call this."""
    names = [n.strip() for n in (os.environ.get("MLU_PLUGINS", "") if spec is None else spec).split(",") if n.strip()]
    loaded = [_import(name) for name in names]
    from importlib.metadata import entry_points

    for ep in entry_points(group=ENTRY_POINT_GROUP):
        if ep.module not in sys.modules:
            try:
                ep.load()
            except Exception as exc:  # noqa: BLE001 - any import failure is reported the same way
                raise PluginError(f"plugin entry point '{ep.name}' ({ep.value}) failed to import: "
                                  f"{type(exc).__name__}: {exc}") from exc
        loaded.append(ep.module)
    return loaded


def _import(name: str) -> str:
    path = Path(name)
    if name.endswith(".py"):
        module = f"mlu_plugin_{path.stem}"
        if module in sys.modules:
            return module
        if not path.is_file():
            raise PluginError(f"MLU_PLUGINS: no plugin file '{name}'")
        spec = importlib.util.spec_from_file_location(module, path)
        mod = importlib.util.module_from_spec(spec)
        sys.modules[module] = mod
        try:
            spec.loader.exec_module(mod)
        except Exception as exc:  # noqa: BLE001
            del sys.modules[module]
            raise PluginError(f"MLU_PLUGINS: '{name}' failed to import: {type(exc).__name__}: {exc}") from exc
        return module
    try:
        importlib.import_module(name)
    except Exception as exc:  # noqa: BLE001
        raise PluginError(f"MLU_PLUGINS: cannot import '{name}': {type(exc).__name__}: {exc} "
                          f"(give a module on PYTHONPATH or a path to a .py file)") from exc
    return name
