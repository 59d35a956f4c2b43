"""Lazy package attributes (PEP 562): a package names what it exports and the submodule that
defines each, and imports that submodule on first use (``import ldmvfi_fast`` stays torch-free)."""
from __future__ import annotations

import importlib
from typing import Callable

__all__ = ["lazy_getattr"]


def lazy_getattr(package: str, table: dict[str, str], namespace: dict) -> Callable[[str], object]:
    """A module ``__getattr__`` for ``package``: ``table`` maps a name to its submodule (relative);
    the value is cached in ``namespace`` (the package's globals) after the first import."""
    def __getattr__(name: str):
        mod = table.get(name)
        if mod is None:
            raise AttributeError(f"module {package!r} has no attribute {name!r}")
        value = getattr(importlib.import_module(f".{mod}", package), name)
        namespace[name] = value
        return value
    return __getattr__
