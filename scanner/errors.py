"""Exception classes of zooscan, and ``one_line``, how one is shown to a user.

Raise the most specific class inside a layer of the stack. Only ``scanner.scan`` (per layer, and per model
for a model it cannot open) and the scan driver ``scanner.runner.run_scan`` (per model, for errors an
executor reports) turn exceptions into status rows. Every message names the fix.
"""

from __future__ import annotations


class ScannerError(Exception):
    """Base class of every error zooscan raises on purpose."""


class ConfigError(ScannerError, ValueError):
    """An option has a value outside its allowed set or range."""


class ModelIdError(ScannerError, ValueError):
    """A model id does not have one of the known ``source:identifier`` forms."""


class SourceError(ScannerError):
    """Weights could not be read (missing file, corrupt checkpoint, unreachable hub, unknown format)."""


class UnsafeCheckpointError(SourceError):
    """A checkpoint needs arbitrary code execution (a full pickle) to load, and was refused."""


class SpectrumError(ScannerError):
    """An eigenvalue computation failed or received unusable input (NaN/Inf, empty)."""


class FitError(ScannerError):
    """A spectral fit (power law, Marchenko–Pastur) could not be made."""


class CatalogError(ScannerError):
    """A catalog file is malformed (missing columns, duplicate ids, bad id syntax)."""


class ClusterError(ScannerError):
    """A Ray cluster could not be started (the local one) or reached (``--address``)."""


class SchemaError(ScannerError):
    """A results file does not match the Parquet schema this version writes."""


class StoreError(ScannerError):
    """A results directory cannot be read or written (config mismatch on resume, torn files)."""


class QueryError(ScannerError, ValueError):
    """A named SQL query is unknown, malformed, or was given a parameter it does not declare."""


def one_line(exc: BaseException) -> str:
    """The exception as one line: its message with newlines folded (the class name when it has none)."""
    text = " ".join(str(exc).split()) or type(exc).__name__
    if isinstance(exc, OSError) and exc.filename and str(exc.filename) not in text:
        text = f"{text}: {exc.filename}"
    return text
