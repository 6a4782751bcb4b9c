"""Command-line options of the hub weight cache (``scanner.cache``), shared by ``zooscan scan`` and ``analyze``."""

from __future__ import annotations

import argparse
from typing import Any


def add_cache_arguments(parser: argparse.ArgumentParser, *, scan: bool = True) -> None:
    """``--cache-dir`` (every command that reads weights); with ``scan``: the budget, keep and prefetch options."""
    group = parser.add_argument_group("hub weights (hf:, timm:)")
    group.add_argument("--cache-dir", metavar="DIR",
                       help="Hugging Face hub cache to read and fill (default: $HF_HUB_CACHE, else $HF_HOME/hub); "
                            "set HF_HUB_OFFLINE=1 to never contact the hub")
    if not scan:
        return
    group.add_argument("--cache-max-gb", type=float, metavar="GB",
                       help="budget of the hub cache on each node (default: unlimited); downloads wait or evict "
                            "to stay under it")
    group.add_argument("--keep-weights", action="store_true",
                       help="keep downloaded weights after their model is committed (default: delete them; "
                            "weights that were cached before the scan are never deleted)")
    group.add_argument("--prefetch", type=int, metavar="N", default=2,
                       help="models downloaded ahead while the current one computes (default 2, 0: off)")


def cache_options(args: argparse.Namespace) -> dict[str, Any]:
    """The ``ScanConfig`` fields of the options above (absent options keep their defaults)."""
    return {"cache_dir": getattr(args, "cache_dir", None), "cache_max_gb": getattr(args, "cache_max_gb", None),
            "keep_weights": getattr(args, "keep_weights", False), "prefetch": getattr(args, "prefetch", 2)}
