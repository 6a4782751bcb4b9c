"""Where weights come from: one id syntax for every source, and one function to open any of them.

Model ids carry their source (docs/decisions.md, "Model ids")::

    timm:resnet50.a1_in1k                   timm pretrained weights (arch.tag), from the Hugging Face cache
    timm:resnet50.a1_in1k?file=ckpt.pth     the same architecture, weights from a local file
    hf:sentence-transformers/all-MiniLM-L6-v2@<rev>   a Hugging Face repo (revision optional)
    file:path/to/model.safetensors          a local weight file or folder, any format of scanner.sources.formats
                                            (safetensors, torch, TorchScript, ONNX, TFLite, TF.js, Keras HDF5,
                                            TF checkpoint, npz); the path is normalised (``a//b``, ``a/../a/b`` → ``a/b``)
    random:timm/resnet50?seed=1             random init, for coverage and throughput only (seed default 0)
    random:transformers/bert?hidden_size=64 random init from a transformers config (overrides in the query)

An in-memory ``torch.nn.Module`` is accepted by ``open_source`` too (id ``module:<ClassName>``).
Sources are registered in one table, ``SOURCES`` (prefix, name pattern, form, example, opener), and their
modules are imported lazily, so ``import scanner.sources`` stays light; a new source is one row here.
"""

from __future__ import annotations

import importlib
import os
import re
from dataclasses import dataclass
from typing import TYPE_CHECKING

from scanner.errors import ModelIdError, ScannerError
from scanner.sources.base import NamedTensor, WeightSource

if TYPE_CHECKING:
    import torch

__all__ = ["ModelRef", "NamedTensor", "WeightSource", "open_source", "parse_model_id"]

_TIMM_NAME = re.compile(r"^[A-Za-z0-9_\-]+(\.[A-Za-z0-9_\-]+)?$")
_HF_NAME = re.compile(r"^(?P<repo>[\w.\-]+(/[\w.\-]+)?)(@(?P<rev>[\w.\-/]+))?$")
_RANDOM_NAME = re.compile(r"^(timm|transformers)/[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class Source:
    """One registered source of weights.

    Attributes:
        prefix: the id prefix before ":" ("timm", "hf", "file", "random").
        syntax: how the rest of the id is parsed: "path" (taken whole, normalised), "revision"
            (``name[@revision]``, matched by ``pattern``) or "query" (``name[?key=value&...]``, name matched by
            ``pattern``).
        pattern: what a valid name looks like (None for paths).
        form: the id's form, for error messages.
        example: a valid id.
        opener: "module:function" taking (ModelRef, cache_dir=...) and returning a WeightSource.
    """

    prefix: str
    syntax: str
    pattern: re.Pattern[str] | None
    form: str
    example: str
    opener: str


SOURCES: tuple[Source, ...] = (
    Source("timm", "query", _TIMM_NAME, "timm:<arch>[.<tag>][?file=<path>]", "timm:resnet50.a1_in1k",
           "scanner.sources.timm:open_timm"),
    Source("hf", "revision", _HF_NAME, "hf:<org>/<name>[@<revision>]", "hf:sentence-transformers/all-MiniLM-L6-v2",
           "scanner.sources.hf:open_hf"),
    Source("file", "path", None, "file:<path>", "file:checkpoints/model.safetensors",
           "scanner.sources.files:open_file"),
    Source("random", "query", _RANDOM_NAME, "random:timm/<arch>[?seed=N] | random:transformers/<model_type>"
           "[?seed=N&<config_key>=<value>...]", "random:timm/resnet18", "scanner.sources.synthetic:open_random"),
)
SOURCE_BY_PREFIX: dict[str, Source] = {s.prefix: s for s in SOURCES}
SOURCE_PREFIXES: tuple[str, ...] = tuple(SOURCE_BY_PREFIX)
VALID_FORMS = tuple(f"{s.form} (e.g. {s.example})" for s in SOURCES)


@dataclass(frozen=True)
class ModelRef:
    """A parsed model id.

    Attributes:
        source: "timm", "hf", "file", "random" or "module".
        name: what the source looks up: "resnet50.a1_in1k", "org/name", a path, "timm/resnet50", a class name.
        revision: Hugging Face revision (branch, tag or commit), hf only.
        options: query parameters after "?" (timm: file; random: seed and config overrides), sorted by key.
    """

    source: str
    name: str
    revision: str | None = None
    options: tuple[tuple[str, str], ...] = ()

    @property
    def model_id(self) -> str:
        """The canonical id string, e.g. "timm:resnet50.a1_in1k", "hf:org/name@rev", "random:timm/resnet50"."""
        text = f"{self.source}:{self.name}"
        if self.revision:
            text += f"@{self.revision}"
        if self.options:
            text += "?" + "&".join(f"{k}={v}" for k, v in self.options)
        return text


def _error(text: str, why: str) -> ModelIdError:
    return ModelIdError(f"invalid model id {text!r}: {why}; valid forms: {'; '.join(VALID_FORMS)}")


def _parse_options(text: str, query: str) -> tuple[tuple[str, str], ...]:
    pairs = []
    for part in filter(None, query.split("&")):
        key, sep, value = part.partition("=")
        if not sep or not key or not value:
            raise _error(text, f"query part {part!r} is not key=value")
        pairs.append((key, value))
    if len({k for k, _ in pairs}) != len(pairs):
        raise _error(text, "a query key is repeated")
    return tuple(sorted(pairs))


def parse_model_id(text: str) -> ModelRef:
    """Parse a model id into a ``ModelRef`` (the only parser of model ids in zooscan).

    Raises:
        ModelIdError: unknown prefix, bare path (prefix it with "file:"), or a malformed name; the message
            lists the valid forms with examples.
    """
    text = text.strip()
    if not text:
        raise _error(text, "empty model id")
    prefix, sep, rest = text.partition(":")
    if not sep or prefix not in (*SOURCE_PREFIXES, "module"):
        looks_like_path = "/" in text or os.sep in text or os.path.splitext(text)[1] or os.path.exists(text)
        hint = 'a bare path is not accepted: prefix it with "file:"' if looks_like_path else f"unknown prefix {prefix!r}"
        if prefix == "hf-hub":
            hint = 'use "hf:" instead of "hf-hub:"'
        raise _error(text, hint)
    if not rest:
        raise _error(text, f"nothing after {prefix + ':'!r}")
    if prefix == "module":
        return ModelRef(prefix, rest)
    source = SOURCE_BY_PREFIX[prefix]
    if source.syntax == "path":
        return ModelRef(prefix, os.path.normpath(rest))  # one id per file: "a//x" and "a/../a/x" are "a/x"
    if source.syntax == "revision":
        match = source.pattern.match(rest) if source.pattern else None
        if not match:
            raise _error(text, f"a {prefix} id is {source.form}")
        return ModelRef(prefix, match["repo"], match["rev"])
    name, _, query = rest.partition("?")
    if source.pattern is not None and not source.pattern.match(name):
        raise _error(text, f"{name!r} is not a valid {prefix} name")
    return ModelRef(prefix, name, None, _parse_options(text, query))


def canonical_id(text: str) -> str:
    """The id a model's rows carry (``parse_model_id(text).model_id``), or ``text`` itself when it does not
    parse (so that a bad id still gets its own failed row)."""
    try:
        return parse_model_id(text).model_id
    except (ScannerError, ValueError):
        return text


def source_of(model_id: str) -> str:
    """The source prefix of a model id ("timm" for "timm:resnet50"), or "" when it has none."""
    prefix, sep, _ = model_id.partition(":")
    return prefix if sep else ""


def open_source(model: str | ModelRef | torch.nn.Module, *, cache_dir: str | None = None) -> WeightSource:
    """Open the weights of a model id, a ``ModelRef`` or an in-memory module.

    Args:
        model: an id string (see the module docstring), a parsed ``ModelRef``, or a ``torch.nn.Module``.
        cache_dir: Hugging Face cache folder for hf/timm (default: the hub's own).

    Raises:
        ModelIdError: the id does not parse, or names a "module:" that only exists in memory.
        SourceError: the weights cannot be read (its message says why and what to do).
    """
    if isinstance(model, str):
        model = parse_model_id(model)
    if not isinstance(model, ModelRef):
        from torch import nn

        if not isinstance(model, nn.Module):
            raise TypeError(f"open_source takes a model id, a ModelRef or a torch.nn.Module; got {type(model).__name__}")
        from scanner.sources.modules import ModuleSource

        return ModuleSource(model)
    if model.source == "module":
        raise _error(model.model_id, "a module: id names an in-memory model; pass the torch.nn.Module object itself")
    module_name, _, factory = SOURCE_BY_PREFIX[model.source].opener.partition(":")
    return getattr(importlib.import_module(module_name), factory)(model, cache_dir=cache_dir)
