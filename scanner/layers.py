"""Turn a model's named tensors into the matrices the spectral core analyses, each with a kind, or a skip reason.

Every tensor a source yields becomes exactly one of: one or more ``LayerMatrix`` (numpy, float32/float64)
or one ``SkippedTensor`` with a sentence saying why. Rules, in order:

1. Not analysed: empty, bool, integer (index buffers, or quantised weights, which are not dequantised) and
   complex tensors; registered buffers and BatchNorm running statistics; scalars; 1-D tensors (biases,
   norm weights); bare parameters (position embeddings, class/register tokens, relative-position tables);
   parameters of modules that are not a recognised layer; tensors of more than 5 dimensions.
2. When the owning module is known (in-memory, random and timm models): its family decides the kind:
   Linear → "linear"; Conv1d/2d/3d → "conv1d"/"conv2d"/"conv3d"; ConvTranspose → "conv_transpose<n>d";
   HF GPT-2 Conv1D (weight in × out) → "conv1d_hf"; Embedding → "embedding"; LSTM/GRU/RNN → "lstm"/"gru"/"rnn";
   MultiheadAttention ``in_proj_weight`` → three "linear" matrices.
3. Otherwise (plain state dicts) from names and shapes: 2-D tensors named like embeddings (``wte``, ``wpe``,
   ``word_embeddings``, ``embed_tokens``, ``*_embeddings``, ``shared``...) → "embedding", other 2-D → "linear";
   3-D → "conv1d", 4-D → "conv2d", 5-D → "conv3d" (PyTorch layout out, in/groups, *kernel);
   ``weight_ih_l<k>``/``weight_hh_l<k>`` → RNN gates when the source inferred the gate count
   (``scanner.sources.files.rnn_gates_from_shapes``).

Splits: fused attention projections (timm ``qkv``, ``qkv_proj``, ``Wqkv``, GPT-2 ``c_attn``, MHA
``in_proj_weight``) become ``<name>.q``, ``.k``, ``.v``: contiguous thirds of the output dimension (rows; columns
for Conv1D). Only a fused matrix of shape (3d, d) is split, so that grouped-query and multi-query layouts
(q larger than k, v) are never cut wrongly; they stay one matrix with a note. ``qkv="fused"`` keeps every fused
projection one matrix, as the reference tool analyses a fused Linear (it does not analyse MHA ``in_proj_weight``).
(CodeGen's ``qkv_proj``, which is interleaved in model-parallel blocks, is not recognised and is cut as contiguous
thirds.)
MoE experts stacked as (experts, out, in) (transformers ≥ 5 ``*Experts`` modules) give one "linear" matrix per
expert, ``<name>.<e>``; ``gate_up_proj`` is also cut into its gate and up halves (``<name>.<e>.gate``/``.up``). ``query_key_value`` (GPT-NeoX,
BLOOM) is interleaved per head, [heads, 3, head_dim, in], and is split only when the number of heads is known.
RNN weights (gates × hidden, in) are split per gate: LSTM i, f, g, o; GRU r, z, n (PyTorch's order).

Convolutions: each kernel position of a (out, in/groups, *k) kernel gives one out × (in/groups) matrix
W[:, :, i, j], as the reference tool (weightwatcher) slices them; ``conv="pooled"`` puts all positions of a
layer in one ``LayerMatrix`` (k = kh·kw(·kd)), ``conv="per_position"`` gives one per position, named
``<name>[i,j]``. For grouped and depthwise convolutions this is the stacked out × (in/groups) slice, also as the
reference tool does; its Gram matrix is the sum of the groups' Gram matrices, not the spectrum of the
block-diagonal operator (``groups`` and ``note`` record this). ConvTranspose kernels (in, out/groups, *k) are
sliced the same way (in × out/groups).

Tied weights: a float tensor with the same shape, dtype and bytes as one seen before is skipped as a duplicate
naming its twin: "tied weights" when both share storage (lm_head = wte in memory or in a torch pickle),
"identical values" otherwise (safetensors drop shared tensors; a checkpoint may store every tensor twice). Constant
tensors (e.g. zero-initialised) are never treated as duplicates. NaN and Inf values are passed through:
handling them is the spectral core's job.
"""

from __future__ import annotations

import hashlib
import logging
import re
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from scanner.config import CONV_MODES, QKV_MODES
from scanner.errors import ConfigError
from scanner.sources.base import RUNNING_STAT_SUFFIXES, NamedTensor, WeightSource, storage_key, tensor_bytes

logger = logging.getLogger(__name__)

if TYPE_CHECKING:
    import torch

GATE_NAMES = {4: "ifgo", 3: "rzn"}
RNN_KIND = {4: "lstm", 3: "gru", 1: "rnn"}

_EMBEDDING_NAMES = re.compile(
    r"(^|\.)(wte|wpe|word_embeddings|position_embeddings|token_type_embeddings|tok_embeddings|embed_tokens|"
    r"embed_positions|shared|embedding|embeddings|embed|token_embedding|[a-z_]*_embeddings?)(\.weight)?$"
)
_BARE_PARAMETERS = re.compile(
    r"(^|\.)(pos_embed|cls_token|dist_token|mask_token|reg_token|register_tokens|relative_position_bias_table|"
    r"absolute_pos_embed|pos_embedding|query_tokens|latent|latents)$"
)
_FUSED_QKV = re.compile(r"(^|\.)(qkv|qkv_proj|Wqkv|c_attn|in_proj)\.weight$|(^|\.)in_proj_weight$")
_PER_HEAD_QKV = re.compile(r"(^|\.)query_key_value\.weight$")
_RNN_WEIGHT = re.compile(r"(^|\.)weight_(ih|hh)_l\d+(_reverse)?$")
# The parameter that is the layer's weight matrix, per family (others, like ScaledStdConv2d's "gain", are not).
_WEIGHT_LEAVES = {
    **dict.fromkeys(("linear", "conv", "conv_transpose", "conv1d_hf", "embedding"), re.compile(r"^weight(_orig)?$")),
    "rnn": re.compile(r"^weight_(ih|hh|hr)_l\d+(_reverse)?$"),
    "mha": re.compile(r"^(in_proj_weight|[qkv]_proj_weight)$"),
    "experts": re.compile(r"^\w+$"),
}
_NORM_NAMES = re.compile(r"(^|\.|_)(norm|ln|bn|layernorm|layer_norm|batchnorm|rmsnorm|gn)[\w]*\.weight$", re.I)


@dataclass(frozen=True)
class LayerMatrix:
    """Matrices of one layer, ready for the spectral core.

    Attributes:
        index: position in the stream of rows of this model (LayerMatrix and SkippedTensor share it).
        name: layer name: the tensor name without ".weight", plus ".q"/".k"/".v", a gate letter or "[i,j]".
        kind: "linear", "conv1d_hf", "embedding", "conv1d", "conv2d", "conv3d", "conv_transpose<n>d",
            "lstm", "gru", "rnn".
        shape: the original tensor's shape.
        matrices: (k, rows, cols) array, float32 (float64 when stored so); k = kernel positions of a pooled
            conv, else 1. Not oriented, not rescaled.
        num_params: values in these matrices.
        tensor_name: the state-dict key the matrices come from.
        groups: conv groups (1 otherwise); for groups > 1 each slice is the stacked out × (in/groups) matrix.
        note: how the tensor was cut, when it was ("fused qkv split into q, k, v", ...), and what the reader
            assumed about the stored layout.
        dtype_stored: how the values were stored ("float32", "float16", "int8", ...).
        dequantized: the stored values were quantised and were dequantised by the reader.
    """

    index: int
    name: str
    kind: str
    shape: tuple[int, ...]
    matrices: np.ndarray
    num_params: int
    tensor_name: str
    groups: int = 1
    note: str = ""
    dtype_stored: str = ""
    dequantized: bool = False


@dataclass(frozen=True)
class SkippedTensor:
    """A tensor that is not analysed, and why ("bias vector: not a matrix", "duplicate of ..."); ``dtype_stored``
    and ``dequantized`` as for ``LayerMatrix``."""

    index: int
    name: str
    kind: str
    shape: tuple[int, ...]
    num_params: int
    reason: str
    dtype_stored: str = ""
    dequantized: bool = False


def stored_dtype(item: NamedTensor) -> str:
    """How a tensor's values were stored: the reader's ``dtype_stored``, else the tensor's dtype ("float32")."""
    return item.dtype_stored or str(item.tensor.dtype).removeprefix("torch.")


def _join(*notes: str) -> str:
    return "; ".join(n for n in notes if n)


def _dtype_skip(t: torch.Tensor) -> tuple[str, str] | None:
    if t.numel() == 0:
        return "empty", "tensor with no elements"
    if t.dtype.is_complex:
        return "complex", f"complex tensor ({t.dtype}): not a real weight matrix"
    if not t.is_floating_point():
        what = "bool tensor (a mask or flag)" if str(t.dtype) == "torch.bool" else f"integer tensor ({t.dtype})"
        return "integer", f"{what}: an index/counter buffer or quantised weights, which are not dequantised"
    return None


def _low_rank_skip(item: NamedTensor) -> tuple[str, str]:
    """Reason for a scalar or 1-D tensor."""
    if item.tensor.ndim == 0:
        return "scalar", "scalar: not a matrix"
    if item.name.endswith("bias"):
        return "bias", "bias vector: not a matrix"
    if item.family == "norm" or _NORM_NAMES.search(item.name):
        return "norm", "norm layer weight: not a matrix"
    return "vector", "1-D tensor: not a matrix"


def _skip_reason(item: NamedTensor) -> tuple[str, str] | None:
    """(kind, reason) for tensors that are never matrices, else None."""
    t, name = item.tensor, item.name
    if name.endswith(RUNNING_STAT_SUFFIXES):
        return "buffer", "BatchNorm running statistic: a buffer, not a weight"
    dtype_skip = _dtype_skip(t)
    if dtype_skip is not None:
        return dtype_skip
    if item.is_buffer:
        return "buffer", f"buffer of {item.module_type}: not a trainable weight"
    if t.ndim < 2:
        return _low_rank_skip(item)
    if t.ndim > 5:
        return "unsupported", f"{t.ndim}-D tensor: no known layer layout"
    if _BARE_PARAMETERS.search(name.removesuffix(".weight")):
        return "bare_parameter", "bare parameter (position embedding, token or bias table): not a layer weight"
    if item.module_type is not None:
        return _known_module_skip(item)
    if name.endswith("bias"):
        return "buffer", "matrix-shaped tensor named 'bias' (e.g. GPT-2's causal mask buffer): not a weight"
    if t.ndim >= 3 and t.shape[0] == 1:
        return "bare_parameter", "leading dimension of size 1: a bare parameter (embedding, token), not a kernel"
    if t.ndim >= 3 and all(d == 1 for d in t.shape[1:]):
        return "scale", "per-channel scale shaped like a kernel (every dimension but the first is 1): a diagonal"
    return None


def _known_module_skip(item: NamedTensor) -> tuple[str, str] | None:
    family, ndim, leaf = item.family, item.tensor.ndim, item.name.rsplit(".", 1)[-1]
    if item.module_type == "ParametrizationList":
        owner, _, tensor = item.name.rpartition(".parametrizations.")
        return "parametrization", (f"stored component of a parametrized weight: the computed weight is analysed as "
                                   f"{owner}.{tensor.split('.')[0]}")
    if family is None:
        return "unsupported", f"parameter of {item.module_type}: not a Linear/Conv/Embedding/RNN/attention weight"
    if family == "norm":
        return "norm", f"{item.module_type} parameter: a norm layer, not a matrix"
    if not _WEIGHT_LEAVES[family].match(leaf):
        return "unsupported", f"parameter {leaf!r} of {item.module_type}: not the layer's weight matrix"
    if family in ("linear", "conv1d_hf", "embedding", "rnn", "mha") and ndim != 2:
        return "unsupported", f"{ndim}-D parameter of {item.module_type}: not a {family} weight matrix"
    if family == "experts" and ndim != 3:
        return "unsupported", f"{ndim}-D parameter of {item.module_type}: not a stack of expert matrices"
    return None


def _kind(item: NamedTensor) -> str:
    """Kind of a tensor that passed ``_skip_reason`` (see the module docstring)."""
    family, ndim, name = item.family, item.tensor.ndim, item.name
    if family == "experts":
        return "linear"
    if family in ("conv", "conv_transpose") or (family is None and ndim >= 3):
        return f"{'conv_transpose' if family == 'conv_transpose' else 'conv'}{ndim - 2}d"
    if family == "rnn" or (family is None and item.gates and _RNN_WEIGHT.search(name)):
        return RNN_KIND.get(item.gates or 0, "linear") if _RNN_WEIGHT.search(name) else "linear"
    if family == "conv1d_hf":
        return "conv1d_hf"
    if family == "embedding" or (family is None and _EMBEDDING_NAMES.search(name)):
        return "embedding"
    return "linear"


def _as_numpy(t: torch.Tensor) -> np.ndarray:
    import torch

    if t.dtype not in (torch.float32, torch.float64):
        t = t.to(torch.float32)
    return t.detach().cpu().numpy()


def _is_fused_qkv(name: str) -> bool:
    """Whether a tensor name is a fused q/k/v projection (contiguous thirds, or per-head ``query_key_value``)."""
    return bool(_FUSED_QKV.search(name) or _PER_HEAD_QKV.search(name))


def _fused_split(item: NamedTensor, w: np.ndarray, kind: str) -> tuple[list[np.ndarray], str]:
    """Split a fused q/k/v weight (2-D) into three, or return it whole with a note saying why not."""
    name = item.name
    if _PER_HEAD_QKV.search(name):
        heads = item.heads
        if not heads or w.shape[0] != 3 * w.shape[1] or w.shape[0] % (3 * heads):
            return [w], "per-head fused query_key_value: heads unknown or q/k/v sizes unequal, analysed as one matrix"
        per_head = w.reshape(heads, 3, w.shape[0] // (3 * heads), w.shape[1])
        return [per_head[:, j].reshape(-1, w.shape[1]) for j in range(3)], "per-head fused qkv split into q, k, v"
    if not _FUSED_QKV.search(name):
        return [w], ""
    axis = 1 if kind == "conv1d_hf" else 0
    if w.shape[axis] != 3 * w.shape[1 - axis]:
        return [w], "fused qkv with unequal or unknown q/k/v sizes: analysed as one matrix"
    return list(np.split(w, 3, axis=axis)), "fused qkv split into q, k, v"


def _dense_pieces(item: NamedTensor, kind: str, qkv: str = "split") -> list[tuple[str, np.ndarray, str]]:
    """(name suffix, 2-D matrix, note) for the 2-D kinds (linear, conv1d_hf, embedding, RNN gates); a fused q/k/v
    weight is cut in three unless ``qkv`` is "fused"."""
    w = _as_numpy(item.tensor)
    if kind in ("lstm", "gru"):
        gates = item.gates or 1
        letters = GATE_NAMES[gates]
        return [(f".{g}", part, "RNN weight split per gate") for g, part in zip(letters, np.split(w, gates), strict=True)]
    if qkv == "fused":
        return [("", w, "fused qkv analysed as one matrix (qkv='fused')" if _is_fused_qkv(item.name) else "")]
    parts, note = _fused_split(item, w, kind)
    if len(parts) == 3:
        return [(f".{s}", p, note) for s, p in zip("qkv", parts, strict=True)]
    return [("", w, note)]


def _expert_pieces(item: NamedTensor) -> list[tuple[str, np.ndarray, str]]:
    """One matrix per expert of a stacked (experts, out, in) MoE weight; ``gate_up_proj`` also split in halves."""
    w = _as_numpy(item.tensor)
    if item.name.endswith("gate_up_proj") and w.shape[1] % 2 == 0:
        half = w.shape[1] // 2
        return [(f".{e}.{part}", w[e, i * half:(i + 1) * half], "MoE experts split per expert, gate and up halves")
                for e in range(w.shape[0]) for i, part in enumerate(("gate", "up"))]
    return [(f".{e}", w[e], "MoE experts split per expert") for e in range(w.shape[0])]


def _conv_pieces(item: NamedTensor, conv: str) -> list[tuple[str, np.ndarray, str]]:
    """(name suffix, (k, a, b) stack, note) for conv kernels (a, b, *kernel): one a × b slice per position."""
    w = _as_numpy(item.tensor)
    a, b, kernel = w.shape[0], w.shape[1], w.shape[2:]
    stack = np.ascontiguousarray(w.reshape(a, b, -1).transpose(2, 0, 1))
    note = f"groups={item.groups}: stacked {a}×{b} slices" if item.groups > 1 else ""
    if conv == "pooled":
        return [("", stack, note)]
    return [
        ("[" + ",".join(map(str, np.unravel_index(p, kernel))) + "]", stack[p : p + 1], note)
        for p in range(stack.shape[0])
    ]


FINGERPRINT_SAMPLE = 4096  # entries hashed per tensor when a match can be confirmed (twin kept or read again)


def _fingerprint(t: torch.Tensor, *, sampled: bool = False) -> tuple:
    """(shape, dtype, sha256) of a tensor's bytes — of all of them, or (``sampled``) of about
    ``FINGERPRINT_SAMPLE`` evenly strided entries, for sources that keep every tensor alive or can read one
    again: a match is then confirmed by comparing the tensors themselves (:func:`_same_values`), and the model
    digest, which hashes every byte anyway, is the only full pass over the weights (ViT-B: 344 MB, about
    0.18 s of sha256 here; a streamed 438 MB safetensors file paid 0.5 s more before it was sampled too).

    sha256 rather than blake2b: CPUs with SHA extensions hash it about 2× faster (4.9 vs 9.5 ms for a
    9.4 MB tensor on this project's AMD EPYC VM)."""
    flat = t.detach().reshape(-1)
    if sampled and flat.numel() > FINGERPRINT_SAMPLE:
        flat = flat[:: -(-flat.numel() // FINGERPRINT_SAMPLE)]
    return tuple(t.shape), str(t.dtype), hashlib.sha256(tensor_bytes(flat)).digest()


def _is_constant(t: torch.Tensor) -> bool:
    import torch

    flat = t.detach().reshape(-1)
    if flat.element_size() < 2:  # float8 has no aminmax kernel
        flat = flat.to(torch.float32)
    low, high = torch.aminmax(flat)  # no temporary the size of the tensor (an == comparison would allocate one)
    return bool(low == high)


def _read_twin(reread: Callable[[int], torch.Tensor | None] | None, position: int) -> torch.Tensor | None:
    """The source's tensor at ``position`` read again, or None (no reader, or it failed: the match is then not
    confirmed and the tensor is analysed on its own)."""
    if reread is None:
        return None
    try:
        return reread(position)
    except Exception as exc:  # e.g. the file changed under the scan: analyse the layer rather than skip it
        logger.warning("could not read tensor #%d again to confirm a duplicate (%s); analysing the later one",
                       position, exc)
        return None


def _same_values(a: torch.Tensor, b: torch.Tensor) -> bool:
    """Same shape, dtype and bytes (so NaN equals NaN, and −0.0 differs from 0.0, as their sha256 would say)."""
    import torch

    if a.shape != b.shape or a.dtype != b.dtype:
        return False
    return bool(torch.equal(a.detach().contiguous().reshape(-1).view(torch.uint8),
                            b.detach().contiguous().reshape(-1).view(torch.uint8)))


def _gram_overflow(pieces: list[tuple[str, np.ndarray, str]]) -> str:
    """A reason when a float64 matrix's Gram matrix WᵀW would overflow float64 (|w|² · width > 1.8e308), else "".
    float32 weights cannot overflow it (|w| < 3.4e38, so |w|² · width < 1e78 · width)."""
    worst = max((float(np.nanmax(np.abs(m), initial=0.0)) for _, m, _ in pieces if m.dtype == np.float64),
                default=0.0)
    width = max((max(m.shape[-2:]) for _, m, _ in pieces), default=1)
    if worst and worst * worst * width > np.finfo(np.float64).max:
        return f"Gram matrix overflows float64 (largest |w| = {worst:.3g}): not analysed"
    return ""


@dataclass(frozen=True)
class _Seen:
    """A tensor kept for duplicate checks: its name, storage key (stable sources), the tensor itself (stable
    sources) or its position in the source (to read it again)."""

    name: str
    storage: tuple | None
    tensor: torch.Tensor | None
    position: int


def _twin(tensor: torch.Tensor, seen: dict, sample: tuple | None,
          reread: Callable[[int], torch.Tensor | None] | None) -> tuple[_Seen | None, tuple | None]:
    """(an earlier tensor with the same bytes or None, ``tensor``'s fingerprint of every byte if it was needed).

    ``sample``: ``tensor``'s sampled fingerprint, already met (None for a source hashed in full). While the
    first tensor of that sample (``seen[("sample", sample)]``) is the only one, it is compared directly (kept
    alive, or read again). The first look-alike that differs settles the sample: both are then recorded under
    their full fingerprints and any later tensor with that sample is told by sha256 alone — one read of the
    twin per sample, however many tensors share it."""
    if sample is not None and not seen.get(("resolved", sample)):
        first = seen[("sample", sample)]
        earlier = first.tensor if first.tensor is not None else _read_twin(reread, first.position)
        if earlier is not None and _same_values(earlier, tensor):
            return first, None
        seen[("resolved", sample)] = True
        if earlier is not None:
            seen[("bytes", _fingerprint(earlier))] = first
    full = _fingerprint(tensor)
    return seen.get(("bytes", full)), full


def layer_items(item: NamedTensor, conv: str, seen: dict, start: int, *, stable_storage: bool = False,
                reread: Callable[[int], torch.Tensor | None] | None = None,
                position: int = -1, qkv: str = "split") -> list[LayerMatrix | SkippedTensor]:
    """The rows for one tensor, indexed from ``start``.

    ``seen`` remembers the tensors met so far (``_Seen``) under content fingerprints and is updated. When an
    earlier twin can be fetched to confirm a match — kept alive (``stable_storage``: the source keeps every
    tensor, and a duplicate sharing its twin's storage is reported as "tied weights", otherwise "identical
    values") or read again by its ``position`` in the source (``reread``, a streamed source's
    ``WeightSource.reread``) — a tensor is fingerprinted by a sample of its entries, and its bytes are compared
    or hashed only when that sample was met before (:func:`_twin`); otherwise every byte is hashed at once. A
    duplicate has the same bytes as its twin, proven by a comparison or a full hash. Constant tensors are never
    duplicates.
    """
    shape, numel, stem = tuple(item.tensor.shape), item.tensor.numel(), item.name.removesuffix(".weight")
    dtype_stored, dequantized = stored_dtype(item), item.dequantized
    if item.skip_reason:
        return [SkippedTensor(start, stem, "too_large", shape, numel, item.skip_reason, dtype_stored, dequantized)]
    skip = _skip_reason(item)
    if skip is not None:
        return [SkippedTensor(start, stem, skip[0], shape, numel, skip[1], dtype_stored, dequantized)]
    kind = _kind(item)
    storage = storage_key(item.tensor) if stable_storage else None
    entry = _Seen(item.name, storage, item.tensor if stable_storage else None, position)
    sampled = stable_storage or reread is not None
    sample = _fingerprint(item.tensor, sampled=True) if sampled else None
    if sample is not None and ("sample", sample) not in seen:
        seen[("sample", sample)] = entry  # a new sample: no earlier tensor can equal this one
    elif sample is None or not _is_constant(item.tensor):  # (a full-hash source checks constancy on a match)
        twin, full = _twin(item.tensor, seen, sample, reread)
        if twin is not None and (sample is not None or not _is_constant(item.tensor)):
            how = "tied weights" if storage is not None and storage == twin.storage else "identical values"
            return [SkippedTensor(start, stem, kind, shape, numel, f"duplicate of {twin.name} ({how}, analysed once)",
                                  dtype_stored, dequantized)]
        if full is not None:
            seen.setdefault(("bytes", full), entry)
    if item.family == "experts":
        pieces = _expert_pieces(item)
    elif item.tensor.ndim >= 3:
        pieces = _conv_pieces(item, conv)
    else:
        pieces = _dense_pieces(item, kind, qkv)
    overflow = _gram_overflow(pieces)
    if overflow:
        return [SkippedTensor(start, stem, kind, shape, numel, overflow, dtype_stored, dequantized)]
    return [
        LayerMatrix(start + i, stem + suffix, kind, shape, m if m.ndim == 3 else m[None], int(m.size), item.name,
                    item.groups, _join(note, item.note), dtype_stored, dequantized)
        for i, (suffix, m, note) in enumerate(pieces)
    ]


def iter_layers(source: WeightSource, *, conv: str = "pooled",
                qkv: str = "split") -> Iterator[LayerMatrix | SkippedTensor]:
    """Stream a model's layers: one row per matrix (or pooled conv layer) and one per skipped tensor.

    Args:
        source: any ``WeightSource``; its tensors are read one at a time (two while a streamed source reads
            a tensor again to confirm a duplicate).
        conv: "pooled" (all kernel positions of a conv layer in one LayerMatrix) or "per_position".
        qkv: "split" (a fused q/k/v projection as three matrices) or "fused" (one matrix).

    Raises:
        ConfigError: unknown ``conv`` or ``qkv`` mode.
    """
    if conv not in CONV_MODES:
        raise ConfigError(f"the 'conv' option must be one of {CONV_MODES}; got {conv!r} instead")
    if qkv not in QKV_MODES:
        raise ConfigError(f"the 'qkv' option must be one of {QKV_MODES}; got {qkv!r} instead")
    seen: dict = {}
    index = 0
    for position, item in enumerate(source.tensors()):
        rows = layer_items(item, conv, seen, index, stable_storage=source.stable_storage,
                           reread=source.reread if source.rereadable else None, position=position, qkv=qkv)
        index += len(rows)
        del item
        while rows:  # hand rows over one by one without keeping them: memory stays at about one layer
            yield rows.pop(0)

