"""Randomly initialised models, for coverage and throughput only: ``random:timm/<arch>`` and
``random:transformers/<model_type>``.

The weights are those of the architecture's own initialiser after ``torch.manual_seed(seed)`` (seed from
the id's ``?seed=N``, default 0); results from these sources say nothing about trained models, and their
ids say "random" so that they can never be mistaken for pretrained weights.

transformers models are built from the default config of ``model_type`` (``AutoConfig.for_model``), with
overrides from the id's query, e.g. ``random:transformers/llama?hidden_size=64&num_hidden_layers=2``.
Values are parsed as int, float, true/false, else kept as strings.
"""

from __future__ import annotations

import logging

from scanner.errors import SourceError
from scanner.sources.modules import ModuleSource

logger = logging.getLogger(__name__)


def _parse_value(text: str) -> int | float | bool | str:
    lowered = text.lower()
    if lowered in ("true", "false"):
        return lowered == "true"
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    return text


def open_random(ref, cache_dir: str | None = None) -> ModuleSource:
    """Build the randomly initialised model named by ``ref`` ("timm/<arch>" or "transformers/<model_type>")."""
    import torch

    library, _, arch = ref.name.partition("/")
    options = dict(ref.options)
    seed = int(options.pop("seed", "0"))
    torch.manual_seed(seed)
    if library == "timm":
        if options:
            raise SourceError(f"{ref.model_id}: random:timm/<arch> takes only '?seed=N'; got {sorted(options)}")
        model, heads = _timm_model(arch, ref.model_id), None
    elif library == "transformers":
        model, heads = _transformers_model(arch, {k: _parse_value(v) for k, v in options.items()}, ref.model_id)
    else:
        raise SourceError(f"{ref.model_id}: unknown library {library!r}; use random:timm/<arch> or "
                          "random:transformers/<model_type>")
    model.eval()
    return ModuleSource(model, model_id=ref.model_id, heads=heads)


def _timm_model(arch: str, model_id: str):
    import timm

    if not timm.is_model(arch):
        raise SourceError(f"{model_id}: timm has no architecture {arch!r}; see timm.list_models('{arch[:4]}*')")
    try:
        return timm.create_model(arch, pretrained=False)
    except Exception as exc:  # an architecture's own constructor failing is a source problem for the scan
        raise SourceError(f"{model_id}: timm.create_model({arch!r}) failed: {type(exc).__name__}: {exc}") from exc


def _transformers_model(model_type: str, overrides: dict, model_id: str):
    from transformers import AutoConfig, AutoModel

    try:
        config = AutoConfig.for_model(model_type, **overrides)
    except ValueError as exc:
        raise SourceError(f"{model_id}: transformers has no model_type {model_type!r} ({exc})") from exc
    try:
        model = AutoModel.from_config(config, trust_remote_code=False)
    except Exception as exc:
        raise SourceError(f"{model_id}: AutoModel.from_config failed: {type(exc).__name__}: {exc}") from exc
    heads = getattr(config, "num_attention_heads", None)
    return model, heads if isinstance(heads, int) else None
