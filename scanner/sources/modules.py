"""Weights of an in-memory ``torch.nn.Module`` (``module:`` ids), where module types are known exactly.

``module_info_map`` is also used on meta-device models (timm architectures instantiated without memory)
to annotate the tensors of a checkpoint file with their owning module's type.
"""

from __future__ import annotations

import dataclasses
import hashlib
from collections.abc import Iterator
from typing import TYPE_CHECKING

from scanner.sources.base import ModuleInfo, NamedTensor, WeightSource, tensor_bytes

if TYPE_CHECKING:
    import torch

_GATES_BY_MODE = {"LSTM": 4, "GRU": 3, "RNN_TANH": 1, "RNN_RELU": 1}


def module_family(module: torch.nn.Module) -> str | None:
    """Canonical family of a module by isinstance (subclasses count as their base), else None."""
    from torch import nn

    name = type(module).__name__
    if name == "Conv1D" and hasattr(module, "nf"):  # HF GPT-2 Conv1D: weight is (in, out)
        return "conv1d_hf"
    if name.endswith("Experts"):  # transformers ≥ 5 MoE: expert weights stacked as (experts, out, in)
        return "experts"
    if name.endswith("Router"):  # MoE router: a (experts, hidden) weight used as a Linear
        return "linear"
    checks: tuple[tuple[type | tuple[type, ...], str], ...] = (
        ((nn.Linear, nn.Bilinear), "linear"),
        ((nn.Conv1d, nn.Conv2d, nn.Conv3d), "conv"),
        ((nn.ConvTranspose1d, nn.ConvTranspose2d, nn.ConvTranspose3d), "conv_transpose"),
        ((nn.Embedding, nn.EmbeddingBag), "embedding"),
        (nn.RNNBase, "rnn"),
        (nn.MultiheadAttention, "mha"),
        ((nn.modules.batchnorm._NormBase, nn.LayerNorm, nn.GroupNorm), "norm"),
    )
    for classes, family in checks:
        if isinstance(module, classes):
            return family
    return "norm" if "Norm" in name else None


def _info(module: torch.nn.Module, is_buffer: bool) -> ModuleInfo:
    family = module_family(module)
    heads = getattr(module, "num_heads", None)
    return ModuleInfo(
        module_type=type(module).__name__,
        family=family,
        groups=int(getattr(module, "groups", 1) or 1) if family in ("conv", "conv_transpose") else 1,
        gates=_GATES_BY_MODE.get(getattr(module, "mode", "")) if family == "rnn" else None,
        heads=heads if isinstance(heads, int) else None,
        is_buffer=is_buffer,
    )


def module_info_map(model: torch.nn.Module) -> dict[str, ModuleInfo]:
    """Map each parameter and buffer name (as in ``state_dict()``) to its owning module's info.

    Works on meta-device models (no tensor data is touched).
    """
    infos: dict[str, ModuleInfo] = {}
    for module_name, module in model.named_modules(remove_duplicate=False):
        prefix = f"{module_name}." if module_name else ""
        for name, _ in module.named_parameters(recurse=False, remove_duplicate=False):
            infos.setdefault(prefix + name, _info(module, is_buffer=False))
        for name, _ in module.named_buffers(recurse=False, remove_duplicate=False):
            infos.setdefault(prefix + name, _info(module, is_buffer=True))
    return infos


def _parametrized_weights(model: torch.nn.Module, infos: dict[str, ModuleInfo]) -> list[tuple[str, torch.Tensor]]:
    """Computed tensors of parametrized modules (e.g. weight norm): ("<module>.weight", value) pairs.

    Their stored components (``parametrizations.weight.original0``...) belong to a ``ParametrizationList`` and
    are skipped by ``scanner.layers``; the weight the layer actually uses is yielded here instead, with the
    owning module's info (registered in ``infos``).
    """
    from torch.nn.utils import parametrize

    pairs = []
    for module_name, module in model.named_modules():
        if not parametrize.is_parametrized(module):
            continue
        for tensor_name in module.parametrizations:
            name = f"{module_name}.{tensor_name}" if module_name else tensor_name
            infos[name] = dataclasses.replace(_info(module, is_buffer=False), derived=True)
            pairs.append((name, getattr(module, tensor_name).detach()))
    return pairs


class ModuleSource(WeightSource):
    """Tensors of an in-memory module: parameters (tied ones repeated under each name) and buffers.

    Tied parameters are yielded under every name that refers to them (``remove_duplicate=False``), so that
    ``scanner.layers`` can report the second one as a duplicate instead of it silently vanishing.
    """

    stable_storage = True

    def __init__(self, model: torch.nn.Module, *, model_id: str | None = None, heads: int | None = None) -> None:
        super().__init__(model_id or f"module:{type(model).__name__}")
        self.model: torch.nn.Module | None = model
        self.heads = heads  # attention heads of the model (e.g. from a transformers config), for fused qkv
        self._digest = hashlib.sha256()
        self._done = False

    def _iter_tensors(self) -> Iterator[NamedTensor]:
        if self.model is None:
            raise RuntimeError(f"{self.model_id}: the source was closed")
        digest = hashlib.sha256()
        infos = module_info_map(self.model)
        named = [*self.model.named_parameters(remove_duplicate=False), *self.model.named_buffers(remove_duplicate=False),
                 *_parametrized_weights(self.model, infos)]
        for name, tensor in named:
            value = tensor.detach().cpu()
            digest.update(name.encode())
            digest.update(tensor_bytes(value))
            info = infos.get(name)
            if info is not None and info.heads is None and self.heads:
                info = dataclasses.replace(info, heads=self.heads)
            yield NamedTensor.with_info(name, value, info)
        self._digest, self._done = digest, True

    def digest(self) -> str:
        """sha256 over (name, bytes) of every tensor in iteration order; iterates once if not done yet."""
        if not self._done:
            for _ in self.tensors():
                pass
        return self._digest.hexdigest()

    def close(self) -> None:
        """Drop the reference to the model."""
        self.model = None
