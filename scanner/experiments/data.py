"""Training data for the batch-size experiments, as float32 arrays ready for a network.

Sources, in order: the npz copies in ``shared/datasets/`` (docs/decisions.md, "Training data": CIFAR-10 as concatenated JPEG
bytes + offsets, MNIST as uint8 arrays), or, with ``source="torchvision"``, a download through
torchvision into ``root`` (needs network; unavailable on the development machines).

Preprocessing follows the authors' MiniAlexNet script: CIFAR-10 images centre-cropped 32 → 28
(``[2:-2, 2:-2]``), scaled to [0, 1], then per-image standardisation as in TensorFlow's
``per_image_standardization``: (x − mean) / max(std, 1/√n) over all n = 28·28·3 values of the image.
MNIST pixels are scaled to [0, 1] (SETOL §6 trains MLP3 on raw scaled pixels).
"""

from __future__ import annotations

import io
import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from numpy.typing import NDArray

from scanner.catalog import shared_dir
from scanner.errors import ConfigError, SourceError

logger = logging.getLogger(__name__)

DEFAULT_DATASETS = shared_dir() / "datasets"  # $ZOOSCAN_SHARED/datasets, else ../shared/datasets
CIFAR10_NPZ = "cifar10_jpeg_YoongiKim.npz"
MNIST_NPZ = "mnist_rasbt_pngs.npz"
DATASETS = ("cifar10", "mnist")


@dataclass(frozen=True)
class ArrayDataset:
    """Images x (n, C, H, W) float32 and integer labels y (n,) of one split."""

    x: NDArray[np.float32]
    y: NDArray[np.int64]
    name: str
    split: str

    def __len__(self) -> int:
        return int(self.y.shape[0])


def per_image_standardize(images: NDArray[np.floating]) -> NDArray[np.float32]:
    """TensorFlow's per-image standardisation of a batch (n, ...): (x − mean) / max(std, 1/√size)."""
    flat = images.reshape(images.shape[0], -1).astype(np.float64)
    mean = flat.mean(axis=1, keepdims=True)
    std = np.maximum(flat.std(axis=1, keepdims=True), 1.0 / np.sqrt(flat.shape[1]))
    return ((flat - mean) / std).reshape(images.shape).astype(np.float32)


def choose_indices(n_total: int, subset: int | None, seed: int) -> NDArray[np.int64]:
    """A seeded random subset of ``range(n_total)`` (all of it, shuffled, when subset is None)."""
    rng = np.random.default_rng(seed)
    order = rng.permutation(n_total)
    if subset is None:
        return order
    if not 1 <= subset <= n_total:
        raise ConfigError(f"the 'subset' option must be between 1 and {n_total}; got {subset!r} instead")
    return np.sort(order[:subset])


def _open_npz(folder: Path, filename: str) -> np.lib.npyio.NpzFile:
    path = Path(folder) / filename
    if not path.is_file():
        raise SourceError(f"{path} not found; pass --data-dir pointing at a folder holding {filename} "
                          "(shared/datasets/ in this project) or use --data-source torchvision")
    return np.load(path, allow_pickle=False)


def decode_cifar10_jpegs(buffer: NDArray[np.uint8], offsets: NDArray[np.int64],
                         indices: NDArray[np.int64]) -> NDArray[np.uint8]:
    """Decode the JPEG files ``buffer[offsets[i]:offsets[i+1]]`` for each index → (n, 32, 32, 3) uint8."""
    from PIL import Image

    out = np.empty((len(indices), 32, 32, 3), dtype=np.uint8)
    for row, i in enumerate(indices):
        blob = buffer[offsets[i]:offsets[i + 1]].tobytes()
        with Image.open(io.BytesIO(blob)) as image:
            out[row] = np.asarray(image.convert("RGB"))
    return out


def cifar10_preprocess(images_hwc: NDArray[np.uint8]) -> NDArray[np.float32]:
    """Centre-crop 32×32 → 28×28, scale to [0, 1], per-image standardise, and move channels first."""
    crop = images_hwc[:, 2:-2, 2:-2, :].astype(np.float32) / 255.0
    return np.ascontiguousarray(per_image_standardize(crop).transpose(0, 3, 1, 2))


def load_cifar10(split: str, subset: int | None = None, seed: int = 0,
                 folder: Path = DEFAULT_DATASETS) -> ArrayDataset:
    """CIFAR-10 (train: 50 000, test: 10 000 images) from the npz copy, a seeded subset if asked."""
    data = _open_npz(folder, CIFAR10_NPZ)
    labels = data[f"y_{split}"].astype(np.int64)
    idx = choose_indices(len(labels), subset, seed)
    images = decode_cifar10_jpegs(data[f"{split}_jpeg_bytes"], data[f"{split}_offsets"], idx)
    logger.info("decoded %d CIFAR-10 %s images", len(idx), split)
    return ArrayDataset(cifar10_preprocess(images), labels[idx], "cifar10", split)


def load_mnist(split: str, subset: int | None = None, seed: int = 0,
               folder: Path = DEFAULT_DATASETS) -> ArrayDataset:
    """MNIST (train: 60 000, test: 10 000) from the npz copy, scaled to [0, 1], shape (n, 1, 28, 28)."""
    data = _open_npz(folder, MNIST_NPZ)
    labels = data[f"y_{split}"].astype(np.int64)
    idx = choose_indices(len(labels), subset, seed)
    x = data[f"x_{split}"][idx].astype(np.float32)[:, None] / 255.0
    return ArrayDataset(x, labels[idx], "mnist", split)


def load_torchvision(name: str, split: str, root: Path, subset: int | None = None,
                     seed: int = 0) -> ArrayDataset:  # pragma: no cover - needs network access
    """The same datasets downloaded by torchvision (for users whose machine reaches the internet)."""
    from torchvision import datasets

    cls = datasets.CIFAR10 if name == "cifar10" else datasets.MNIST
    ds = cls(str(root), train=(split == "train"), download=True)
    raw = np.asarray(ds.data)
    labels = np.asarray(ds.targets, dtype=np.int64)
    idx = choose_indices(len(labels), subset, seed)
    if name == "cifar10":
        return ArrayDataset(cifar10_preprocess(raw[idx]), labels[idx], name, split)
    return ArrayDataset(raw[idx].astype(np.float32)[:, None] / 255.0, labels[idx], name, split)


def load_dataset(name: str, split: str, subset: int | None = None, seed: int = 0,
                 source: str = "npz", folder: Path | None = None) -> ArrayDataset:
    """Load ``name`` ("cifar10" | "mnist") ``split`` ("train" | "test") from ``source`` ("npz" | "torchvision")."""
    if name not in DATASETS:
        raise ConfigError(f"the 'dataset' option must be one of {DATASETS}; got {name!r} instead")
    if split not in ("train", "test"):
        raise ConfigError(f"the 'split' option must be 'train' or 'test'; got {split!r} instead")
    if source == "torchvision":
        return load_torchvision(name, split, Path(folder or "data"), subset, seed)
    if source != "npz":
        raise ConfigError(f"the 'data_source' option must be 'npz' or 'torchvision'; got {source!r} instead")
    loader = load_cifar10 if name == "cifar10" else load_mnist
    return loader(split, subset, seed, Path(folder) if folder else DEFAULT_DATASETS)
