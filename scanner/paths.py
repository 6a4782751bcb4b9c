"""Where relative ``file:`` ids and shared data live (stdlib only).

Committed catalogs name checkpoints of the shared data folder by relative ids
(``file:zoo/akamaster_resnet_cifar10/resnet20-12fca82f.th``) so that they do not depend on the machine.
A relative path resolves against the current directory first, then the shared data folder:
``$ZOOSCAN_SHARED`` when set, else ``../shared`` beside the repository root (where CI has it).
The model id keeps the relative form, so results join their catalog rows on any machine.
"""

from __future__ import annotations

import os
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parents[1]


def shared_dir() -> Path:
    """The shared data folder: ``$ZOOSCAN_SHARED`` or ``../shared`` beside the repository root."""
    return Path(os.environ.get("ZOOSCAN_SHARED", REPO_ROOT.parent / "shared"))


def resolve_data_path(name: str) -> Path:
    """An absolute path as is; a relative one in the current directory if it exists there, else in
    ``shared_dir()`` if it exists there, else unchanged (so the loader's error names what was asked for)."""
    path = Path(name).expanduser()
    if path.is_absolute() or path.exists():
        return path
    shared = shared_dir() / path
    return shared if shared.exists() else path
