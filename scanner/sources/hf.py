"""Hugging Face hub models: ``hf:<org/name>[@revision]``, read from the local hub cache without building the model.

Files come from the weight cache (``scanner.cache``, through ``scanner.sources.hub``: cache first, then the
hub with retries), restricted to weights and ``config.json``; ``HF_HUB_OFFLINE=1`` and ``cache_dir`` (default:
``--cache-dir``, else the hub's own, ``HF_HOME``/``HF_HUB_CACHE``) are honoured. safetensors (single or sharded through ``model.safetensors.index.json``) are preferred;
``pytorch_model.bin`` is the fallback, read with ``weights_only=True``. No model code runs
(``trust_remote_code`` never applies: nothing is instantiated).

Module types are unknown, so ``scanner.layers`` infers kinds from names and shapes, helped by two hints
read from ``config.json``: GPT-2-style models (``model_type`` in ``CONV1D_MODEL_TYPES``) store
``c_attn``/``c_fc``/``c_proj`` as HF ``Conv1D`` (in × out), and ``num_attention_heads`` lets a per-head
interleaved ``query_key_value`` (GPT-NeoX, BLOOM) be split into q, k and v.
"""

from __future__ import annotations

import json
import logging
import re
from pathlib import Path

from scanner.sources.base import ModuleInfo
from scanner.sources.files import Annotator, FileSource
from scanner.sources.hub import HubRequest

logger = logging.getLogger(__name__)

CONV1D_MODEL_TYPES = frozenset({"gpt2", "openai-gpt", "imagegpt", "decision_transformer"})
_CONV1D_NAME = re.compile(r"(^|\.)(c_attn|q_attn|c_fc|c_proj)\.weight$")
SAFETENSORS_PATTERNS = ["model*.safetensors", "model.safetensors.index.json", "config.json"]
BIN_PATTERNS = ["pytorch_model*.bin", "pytorch_model.bin.index.json", "config.json"]


def hf_request(repo_id: str, revision: str | None) -> HubRequest:
    """The files zooscan reads of an ``hf:`` repo: safetensors (+ index, config.json), else pytorch_model.bin."""
    return HubRequest(repo_id, revision, patterns=(tuple(SAFETENSORS_PATTERNS), tuple(BIN_PATTERNS)))


def snapshot_folder(repo_id: str, revision: str | None, cache_dir: str | None, model_id: str) -> Path:
    """Local folder holding the repo's weights: cached, or downloaded through the weight cache (``scanner.cache``).

    Raises:
        SourceError: not cached and offline or unreachable, unknown repo or revision, no weight files, the
            budget too small, or the hub failing after every retry.
    """
    from scanner.cache import current

    folder = current(cache_dir).fetch(hf_request(repo_id, revision), model_id)
    assert folder is not None  # only a prefetch (waiting=True) gets None
    return folder


def hf_annotator(config: dict) -> Annotator | None:
    """Hints from a transformers ``config.json``: HF Conv1D layers of GPT-2-style models, attention heads."""
    conv1d = config.get("model_type") in CONV1D_MODEL_TYPES
    heads = next((config[k] for k in ("num_attention_heads", "n_head", "num_heads") if isinstance(config.get(k), int)),
                 None)
    if not conv1d and heads is None:
        return None

    def annotate(name: str, shape: tuple[int, ...]) -> ModuleInfo | None:
        if conv1d and len(shape) == 2 and _CONV1D_NAME.search(name):
            return ModuleInfo(module_type="Conv1D", family="conv1d_hf", heads=heads)
        return ModuleInfo(heads=heads) if heads else None

    return annotate


def read_config(folder: Path) -> dict:
    """``config.json`` of a snapshot, or {} when absent or unreadable (hints are optional)."""
    try:
        config = json.loads((folder / "config.json").read_text())
    except (OSError, ValueError):
        return {}
    return config if isinstance(config, dict) else {}


def open_hf(ref, cache_dir: str | None = None) -> FileSource:
    """Weights of ``hf:<org/name>[@revision]`` from the hub cache (see the module docstring)."""
    folder = snapshot_folder(ref.name, ref.revision, cache_dir, ref.model_id)
    return FileSource(folder, model_id=ref.model_id, annotate=hf_annotator(read_config(folder)))
