"""Code named by module and name, imported when first called: how a table on the ground floor (the tasks'
estimators and syntheses, the engines' factories) points at code of a higher layer without importing it.
"""

from __future__ import annotations

import importlib
from dataclasses import dataclass
from typing import Any

__all__ = ["FunctionRef"]


@dataclass(frozen=True)
class FunctionRef:
    """The function ``name`` of ``module``, imported on the first call."""

    module: str
    name: str

    def __call__(self, *args: Any) -> Any:
        return getattr(importlib.import_module(self.module), self.name)(*args)
