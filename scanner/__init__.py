"""zooscan: Heavy-Tailed Self-Regularization analysis of whole model zoos.

The package is layered (imports point down only); see the module table in README.md. Heavy modules (torch,
ray, pyarrow, duckdb) are imported lazily: ``import scanner`` is cheap, and the Python API
(``analyze``, ``get_summary``, ``esd``, ``describe``, ``plot_esd``; see ``scanner.api``) loads on first use.
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

# ``scanner.summary`` is a module (the model aggregates), so the API's ``summary`` is ``scanner.get_summary``
# at the top level, weightwatcher's name.
API = {"analyze": "analyze", "get_summary": "summary", "esd": "esd", "describe": "describe", "plot_esd": "plot_esd"}
__all__ = ["__version__", *API]


def __getattr__(name: str) -> Any:
    """``scanner.analyze`` and the other API functions of ``scanner.api``, imported on first access."""
    if name in API:
        from scanner import api

        return getattr(api, API[name])
    raise AttributeError(f"module 'scanner' has no attribute {name!r}")
