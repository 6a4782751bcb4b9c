"""zooscan: Heavy-Tailed Self-Regularization analysis of whole model zoos.

The package is layered (imports point down only); see ``DESIGN.md`` in the shared folder and the
module table in README.md. Heavy modules (torch, ray, pyarrow, duckdb) are imported lazily.
"""

from __future__ import annotations

__version__ = "0.1.0"

__all__ = ["__version__", "analyze"]


def analyze(model, config=None, **options):  # noqa: ANN001, ANN201 - documented in scanner.api.analyze
    """Analyse one model and return its per-layer table; see :func:`scanner.api.analyze`."""
    from scanner.api import analyze as _analyze

    return _analyze(model, config, **options)
