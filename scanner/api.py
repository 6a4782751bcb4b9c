"""The Python API in the spirit of the reference tool: ``analyze(model) → table`` (one row per layer).

Example:
    >>> import scanner
    >>> table = scanner.analyze("file:../shared/zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th")  # doctest: +SKIP
    >>> table.to_pandas()[["layer_name", "kind", "alpha", "phase", "status"]]  # doctest: +SKIP

The table has the fixed ``layers`` schema of ``scanner.schema`` (the same columns as the Parquet files of a
scan), so code written against one works on the other.
"""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, Any

from scanner.config import ScanConfig
from scanner.scan import ModelScan, scan_model

if TYPE_CHECKING:
    import pyarrow as pa


def _config(config: ScanConfig | None, options: dict[str, Any]) -> ScanConfig:
    base = config or ScanConfig()
    return dataclasses.replace(base, **options) if options else base


def analyze(model: Any, config: ScanConfig | None = None, **options: Any) -> pa.Table:
    """Analyse one model and return its layer table (pyarrow; ``.to_pandas()`` for a DataFrame).

    Args:
        model: a model id ("timm:resnet50.a1_in1k", "hf:org/name@rev", "file:ckpt.safetensors",
            "random:timm/resnet50"), a ``ModelRef`` or an in-memory ``torch.nn.Module``.
        config: scan options; keyword ``options`` override single fields (e.g. ``fit="reference"``).
    """
    from scanner.store import model_key

    chosen = _config(config, options)
    result = scan_model(model, chosen)
    return layer_table(result, model_key(result.model.model_id), chosen.config_hash())


def layer_table(result: ModelScan, key: str, config_hash: str, scan_id: str = "interactive") -> pa.Table:
    """The ``layers`` table of a :class:`ModelScan` (the rows a scan would write)."""
    from scanner import schema

    context = {"scan_id": scan_id, "model_key": key, "config_hash": config_hash}
    rows = [schema.layer_row(layer, **context) for layer in result.layers]
    return schema.to_table(rows, schema.LAYERS)
