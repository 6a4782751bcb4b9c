"""The Python API in the spirit of the reference tool (weightwatcher), on zooscan's terms.

Example:
    >>> import scanner
    >>> model = "file:../shared/zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th"
    >>> scanner.describe(model)                            # the matrices that would be analysed, no eigenvalues  # doctest: +SKIP
    >>> table = scanner.analyze(model, layers="conv2d")    # one row per tensor (pyarrow; .to_pandas())  # doctest: +SKIP
    >>> scanner.get_summary(model)["alpha_hat"]            # the model row of a scan, as a dict  # doctest: +SKIP
    >>> scanner.esd(model, "layer3.2.conv2")               # eigenvalues of one layer (ascending, raw units)  # doctest: +SKIP
    >>> scanner.plot_esd(model, 5, path="esd.png")         # the papers' ESD pair (log-log + linear)  # doctest: +SKIP

Equivalents: ``WeightWatcher(model).analyze()`` → ``analyze`` (every tensor, ``status`` says which were
analysed); ``get_summary()`` → ``scanner.get_summary`` (``scanner.api.summary``; ``scanner.summary`` is the module of
model aggregates); ``get_ESD(layer)`` → ``esd``; ``describe()`` → ``describe``;
``plot=True`` → ``plot_esd``; ``layers=[…]`` → ``layers=``.

A layer filter (``layers=``) is an int (the ``layer_index``), a layer kind ("linear", "conv2d", …), a glob
on the layer name ("blocks.*.attn.*"), or a list of these (a layer passes when any matches). Options are
``ScanConfig`` fields (``fit="reference"``, ``randomize=False``, ``min_evals=5``, …); an unknown one raises
``ConfigError`` naming the valid ones. When the model itself cannot be read, every function raises the
error (``SourceError``, ``ModelIdError``, …) with its reason instead of returning an empty table.
"""

from __future__ import annotations

import dataclasses
import fnmatch
from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

from scanner.config import ScanConfig
from scanner.errors import ConfigError, ScannerError, SourceError

if TYPE_CHECKING:
    import numpy as np
    import pyarrow as pa
    from matplotlib.figure import Figure

    from scanner.scan import ModelScan

LayerSelector = int | str | Sequence[int | str] | None
KINDS = ("linear", "conv1d_hf", "embedding", "conv1d", "conv2d", "conv3d", "conv_transpose1d", "conv_transpose2d",
         "conv_transpose3d", "lstm", "gru", "rnn")


def make_config(config: ScanConfig | None = None, **options: Any) -> ScanConfig:
    """``config`` (default ``ScanConfig()``) with ``options`` replacing single fields.

    Raises:
        ConfigError: an unknown option (the message lists the valid ones) or an invalid value.
    """
    base = config or ScanConfig()
    if not options:
        return base
    valid = {f.name for f in dataclasses.fields(ScanConfig)}
    unknown = sorted(set(options) - valid)
    if unknown:
        raise ConfigError(f"unknown option(s) {unknown}; valid options are {sorted(valid)} "
                          "(and layers= to choose layers)")
    return ScanConfig.from_dict({**base.to_dict(), **options})


def _matches(selector: int | str, index: int, name: str, kind: str) -> bool:
    if isinstance(selector, bool):
        raise ConfigError(f"layers= takes ints, kinds or name globs; got {selector!r}")
    if isinstance(selector, int):
        return index == selector
    if isinstance(selector, str):
        return kind == selector or fnmatch.fnmatchcase(name, selector)
    raise ConfigError(f"layers= takes an int (layer index), a kind such as 'linear', a name glob, or a list of "
                      f"these; got {selector!r}")


def layer_filter(layers: LayerSelector) -> Any:
    """A predicate ``(index, name, kind) -> bool`` for a ``layers=`` value (None keeps every layer)."""
    if layers is None:
        return lambda index, name, kind: True
    selectors = [layers] if isinstance(layers, (int, str)) else list(layers)
    for s in selectors:  # fail before any work on a bad selector
        _matches(s, 0, "", "")
    return lambda index, name, kind: any(_matches(s, index, name, kind) for s in selectors)


def _scan(model: Any, config: ScanConfig) -> ModelScan:
    """Scan ``model``; raise the model's own error when it could not be read (never an empty result)."""
    import scanner.errors as errors
    from scanner.scan import require_cuda_here, scan_model

    if config.device == "cuda":
        require_cuda_here()
    result = scan_model(model, config)
    if result.model.status.value == "failed":
        cls = getattr(errors, result.model.error_class, None)
        if not (isinstance(cls, type) and issubclass(cls, ScannerError)):
            cls = SourceError
        raise cls(f"{result.model.model_id} could not be analysed: {result.model.reason}")
    return result


def analyze(model: Any, config: ScanConfig | None = None, *, layers: LayerSelector = None,
            **options: Any) -> pa.Table:
    """Analyse one model and return its layer table (pyarrow; ``.to_pandas()`` for a DataFrame).

    Args:
        model: a model id ("timm:resnet50.a1_in1k", "hf:org/name@rev", "file:ckpt.safetensors",
            "random:timm/resnet50"), a ``ModelRef`` or an in-memory ``torch.nn.Module``.
        config: scan options; keyword ``options`` override single fields (e.g. ``fit="reference"``).
        layers: keep only these layers (see the module docstring); every layer is still read.

    Returns:
        One row per tensor in the ``layers`` schema of ``scanner.schema`` (``status`` ok / skipped / failed).

    Raises:
        ConfigError: an unknown option or a bad ``layers=`` value.
        SourceError, ModelIdError, UnsafeCheckpointError: the model itself could not be read.
    """
    from scanner.store import model_key

    chosen = make_config(config, **options)
    keep = layer_filter(layers)
    result = _scan(model, chosen)
    rows = [x for x in result.layers if keep(x.layer_index, x.layer_name, x.kind)]
    return layer_table(dataclasses.replace(result, layers=tuple(rows)), model_key(result.model.model_id),
                       chosen.config_hash())


def layer_table(result: ModelScan, key: str, config_hash: str, scan_id: str = "interactive") -> pa.Table:
    """The ``layers`` table of a :class:`ModelScan` (the rows a scan would write)."""
    from scanner import schema

    context = {"scan_id": scan_id, "model_key": key, "config_hash": config_hash}
    rows = [schema.layer_row(layer, **context) for layer in result.layers]
    return schema.to_table(rows, schema.LAYERS)


def summary(model: Any, config: ScanConfig | None = None, **options: Any) -> dict[str, Any]:
    """The model's row of a scan (``models`` schema) as a dict: alpha_mean, alpha_hat, log_norm_mean,
    phase counts (``n_heavy_tailed``, …), layer counts, parameters, timings.

    Raises:
        as :func:`analyze`.
    """
    import socket
    from datetime import datetime, timezone

    from scanner import schema
    from scanner.store import model_key

    chosen = make_config(config, **options)
    result = _scan(model, chosen)
    row = schema.model_row(result.model, scan_id="interactive", model_key=model_key(result.model.model_id),
                           config_hash=chosen.config_hash(), host=socket.gethostname(), device="",
                           finished_at=datetime.now(timezone.utc))
    return dict(row)


def _one_layer(result: ModelScan, layer: int | str) -> Any:
    keep = layer_filter(layer)
    found = [x for x in result.spectra if keep(x.layer_index, x.layer_name, _kind_of(result, x.layer_index))]
    if len(found) != 1:
        analysed = [f"{x.layer_index}:{x.layer_name}" for x in result.spectra][:30]
        what = "no analysed layer" if not found else f"{len(found)} layers ({[x.layer_name for x in found][:5]}…)"
        raise ConfigError(f"layer {layer!r} matches {what}; give one index or name of an analysed layer: {analysed}")
    return found[0]


def _kind_of(result: ModelScan, index: int) -> str:
    return next((x.kind for x in result.layers if x.layer_index == index), "")


def esd(model: Any, layer: int | str, config: ScanConfig | None = None, **options: Any) -> np.ndarray:
    """The eigenvalues λ = σ² of one analysed layer's matrix W (ascending, raw units; a pooled conv's
    kernel positions together), as stored in ``spectra/``.

    Raises:
        ConfigError: ``layer`` matches no analysed layer or more than one (the message lists them).
        as :func:`analyze` otherwise.
    """
    chosen = make_config(config, **options)
    return _one_layer(_scan(model, chosen), layer).evals


def plot_esd(model: Any, layer: int | str, path: str | None = None, config: ScanConfig | None = None,
             **options: Any) -> Figure:
    """The papers' ESD figure of one layer: log-log density with the power-law fit from xmin and the MP
    bulk (left), linear density with the MP fit and the Tracy–Widom edge λ⁺_TW (right).

    Args:
        path: also write the figure as PNG there.

    Returns:
        the matplotlib ``Figure`` (Agg backend; ``fig.savefig`` works).
    """
    from scanner.report import plots

    chosen = make_config(config, **options)
    result = _scan(model, chosen)
    eig = _one_layer(result, layer)
    record = next(x for x in result.layers if x.layer_index == eig.layer_index)
    spectrum = record.spectrum
    assert spectrum is not None  # a layer with eigenvalues has its spectrum
    title = f"{record.layer_name} ({spectrum.n}×{spectrum.m}, Q={spectrum.q:.2f})"
    fig = plots.esd_figure(eig.evals, spectrum.power_law, spectrum.mp, title,
                           spectrum.phase.phase.value if spectrum.phase else None)
    if path:
        fig.savefig(path, dpi=90)
    return fig


def describe(model: Any, *, layers: LayerSelector = None, conv: str = "pooled", qkv: str = "split",
             min_evals: int = 10, max_evals: int | None = None) -> pa.Table:
    """The tensors of a model and what a scan would do with each, without computing any eigenvalue.

    Columns: layer_index, layer_name, kind, shape (the tensor's), n, m (the matrix analysed, N ≥ M),
    n_matrices (kernel positions pooled), num_evals, num_params, status ("analyse" or "skip") and reason.

    Raises:
        SourceError, ModelIdError: the model cannot be read.
    """
    import pyarrow as pa

    from scanner.layers import LayerMatrix, iter_layers
    from scanner.scan import size_skip_reason
    from scanner.sources import open_source

    config = make_config(conv=conv, qkv=qkv, min_evals=min_evals, max_evals=max_evals)
    keep = layer_filter(layers)
    rows = []
    with open_source(model) as source:
        for item in iter_layers(source, conv=config.conv, qkv=config.qkv):
            if not keep(item.index, item.name, item.kind):
                continue
            row = {"layer_index": item.index, "layer_name": item.name, "kind": item.kind,
                   "shape": list(item.shape), "n": None, "m": None, "n_matrices": None, "num_evals": None,
                   "num_params": item.num_params, "status": "skip", "reason": getattr(item, "reason", "")}
            if isinstance(item, LayerMatrix):
                k, rows_, cols = item.matrices.shape
                reason = size_skip_reason(item, config)
                row.update(n=max(rows_, cols), m=min(rows_, cols), n_matrices=k, num_evals=k * min(rows_, cols),
                           status="skip" if reason else "analyse", reason=reason or item.note)
            rows.append(row)
    schema = pa.schema([("layer_index", pa.int32()), ("layer_name", pa.string()), ("kind", pa.string()),
                        ("shape", pa.list_(pa.int64())), ("n", pa.int32()), ("m", pa.int32()),
                        ("n_matrices", pa.int32()), ("num_evals", pa.int32()), ("num_params", pa.int64()),
                        ("status", pa.string()), ("reason", pa.string())])
    return pa.Table.from_pylist(rows, schema=schema)
