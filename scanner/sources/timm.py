"""timm pretrained weights: ``timm:<arch>[.<tag>]``, optionally ``timm:<arch>[.<tag>]?file=<path>``.

The weight file is found as timm itself finds it (its pretrained config names a Hugging Face repo,
``hf_hub_id``, and optionally a file), then read from the weight cache (``scanner.cache``: cache first, then the hub with retries) as safetensors, or
as ``pytorch_model.bin`` with ``weights_only=True``; ``HF_HUB_OFFLINE`` and ``cache_dir`` are honoured.
``?file=<path>`` reads a local checkpoint instead (any format ``file:`` takes), e.g. weights downloaded
from the config's URL by hand. Module types come from the architecture instantiated on the meta device
(no memory is allocated, nothing is initialised); if that fails, kinds are inferred from names and shapes.
"""

from __future__ import annotations

import logging

from scanner.errors import SourceError
from scanner.sources.files import Annotator, FileSource
from scanner.sources.hub import HubRequest
from scanner.sources.modules import module_info_map

logger = logging.getLogger(__name__)

CANDIDATE_FILES = ("model.safetensors", "open_clip_model.safetensors", "pytorch_model.bin", "open_clip_pytorch_model.bin")


def meta_annotator(arch: str) -> Annotator | None:
    """Module info of ``arch`` built on the meta device, as a (name, shape) lookup; None if it cannot be built."""
    import timm
    import torch

    try:
        with torch.device("meta"):
            model = timm.create_model(arch, pretrained=False)
    except Exception as exc:  # architecture code that needs real tensors at init: fall back to name/shape rules
        logger.warning("timm %s: cannot build on the meta device (%s: %s); inferring kinds from names and shapes",
                       arch, type(exc).__name__, exc)
        return None
    infos = module_info_map(model)
    return lambda name, shape: infos.get(name)


def timm_request(name: str, model_id: str) -> HubRequest:
    """The hub file of timm's pretrained weights ``name`` (arch.tag), as timm's pretrained config names it.

    Raises:
        SourceError: unknown name, or weights only at a URL.
    """
    from timm.models import get_pretrained_cfg

    try:
        cfg = get_pretrained_cfg(name)
    except RuntimeError:  # timm raises for a tag the architecture does not have
        cfg = None
    if cfg is None:
        arch = name.split(".")[0]
        raise SourceError(f"{model_id}: timm has no pretrained weights named {name!r}; see "
                          f"timm.list_pretrained('{arch}*')")
    if not cfg.hf_hub_id:
        raise SourceError(f"{model_id}: timm lists these weights only at a URL ({cfg.url}); download the file and "
                          f"scan 'timm:{name}?file=<path>'")
    repo_id, _, revision = cfg.hf_hub_id.partition("@")
    candidates = (cfg.hf_hub_filename,) if cfg.hf_hub_filename else CANDIDATE_FILES
    return HubRequest(repo_id, revision or None, candidates=tuple(candidates))


def pretrained_file(name: str, cache_dir: str | None, model_id: str) -> str:
    """Local path of the pretrained weights of ``name`` (arch.tag), from the weight cache (``scanner.cache``).

    Raises:
        SourceError: unknown name, weights only at a URL, not cached while offline or unreachable, the budget
            too small, or the hub failing after every retry. Offline, the message names ``?file=<path>``.
    """
    from scanner.cache import current

    try:
        path = current(cache_dir).fetch(timm_request(name, model_id), model_id)
    except SourceError as exc:
        if "HF_HUB_OFFLINE" in str(exc) and "?file=" not in str(exc):
            raise SourceError(f"{exc}; or scan a local copy as 'timm:{name}?file=<path>'") from exc
        raise
    assert path is not None  # only a prefetch (waiting=True) gets None
    return str(path)


def open_timm(ref, cache_dir: str | None = None) -> FileSource:
    """Weights of ``timm:<arch>[.<tag>][?file=<path>]`` (see the module docstring)."""
    import timm

    options = dict(ref.options)
    unknown = sorted(set(options) - {"file"})
    if unknown:
        raise SourceError(f"{ref.model_id}: timm ids take only '?file=<path>'; got {unknown}")
    arch = ref.name.split(".")[0]
    if not timm.is_model(arch):
        raise SourceError(f"{ref.model_id}: timm has no architecture {arch!r}; see timm.list_models('{arch[:4]}*')")
    path = options.get("file") or pretrained_file(ref.name, cache_dir, ref.model_id)
    return FileSource(path, model_id=ref.model_id, annotate=meta_annotator(arch))
