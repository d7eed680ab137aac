"""`module:qualname` references: how runs name their workflows and journals name classes."""

from __future__ import annotations

import importlib
from typing import Any


def import_ref(ref: str) -> Any:
    """The object a `module:qualname` reference names (ImportError/AttributeError if none)."""
    module_name, _, qualname = ref.partition(":")
    obj: Any = importlib.import_module(module_name)
    for part in qualname.split("."):
        obj = getattr(obj, part)
    return obj
