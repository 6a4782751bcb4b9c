"""One training run of the batch-size experiment → a safetensors checkpoint and a catalog row.

The optimiser follows the authors' recipes: MiniAlexNet (DLGeneralization ``cifar10_alexnet.py``) uses SGD
lr 0.01, momentum 0.9, learning rate ×0.95 after every epoch; MLP3 (SETOL §6) uses plain SGD lr 0.01 with a
constant rate. The number of epochs is fixed for every batch size, so a small batch takes proportionally
more (and noisier) steps — the mechanism the paper credits for the heavier tails.

Loss: ``"ce"`` (cross-entropy on logits; ``TrainConfig``'s default, it trains in the few epochs a CPU
allows) or ``"mse"`` (mean squared error between the softmax output and one-hot labels, averaged over the
batch and the 10 classes, as Keras' ``loss='mse'`` in the authors' script; the default of
``zooscan reproduce --loss``, which reproduces the paper).
"""

from __future__ import annotations

import csv
import logging
import time
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn

from scanner.errors import ConfigError
from scanner.experiments.data import ArrayDataset
from scanner.experiments.models import MODEL_NAMES, build_model

logger = logging.getLogger(__name__)

LOSSES = ("ce", "mse")
# model -> (learning rate, momentum, per-epoch lr factor)
RECIPES: dict[str, tuple[float, float, float]] = {"minialexnet": (0.01, 0.9, 0.95), "mlp3": (0.01, 0.0, 1.0)}
CATALOG_FIELDS = ("model_id", "family", "dataset", "batch_size", "seed", "epochs", "train_subset", "loss",
                  "steps", "final_loss", "train_accuracy", "test_accuracy", "seconds")


@dataclass(frozen=True)
class TrainConfig:
    """One run: model, batch size, epochs, seed, loss and device (the optimiser comes from ``RECIPES``)."""

    model: str = "minialexnet"
    batch_size: int = 32
    epochs: int = 2
    seed: int = 0
    loss: str = "ce"
    device: str = "cpu"
    eval_batch_size: int = 500

    def __post_init__(self) -> None:
        if self.model not in MODEL_NAMES:
            raise ConfigError(f"the 'model' option must be one of {MODEL_NAMES}; got {self.model!r} instead")
        if self.loss not in LOSSES:
            raise ConfigError(f"the 'loss' option must be one of {LOSSES}; got {self.loss!r} instead")
        for name in ("batch_size", "epochs", "eval_batch_size"):
            value = getattr(self, name)
            if not isinstance(value, int) or value < 1:
                raise ConfigError(f"the {name!r} option must be an int >= 1; got {value!r} instead")

    @property
    def tag(self) -> str:
        """File stem naming the run, e.g. ``minialexnet_bs32_s0``."""
        return f"{self.model}_bs{self.batch_size}_s{self.seed}"


@dataclass(frozen=True)
class TrainOutcome:
    """What a run produced: the checkpoint, its catalog row values and the loss per epoch."""

    config: TrainConfig
    checkpoint: Path
    steps: int
    epoch_losses: tuple[float, ...]
    train_accuracy: float
    test_accuracy: float
    seconds: float

    def catalog_row(self, dataset: str, train_subset: int) -> dict[str, object]:
        """The experiment's row: ``model_id`` is ``file:<absolute checkpoint path>`` so the pipeline can scan it."""
        cfg = self.config
        return {"model_id": f"file:{self.checkpoint}", "family": cfg.model, "dataset": dataset,
                "batch_size": cfg.batch_size, "seed": cfg.seed, "epochs": cfg.epochs,
                "train_subset": train_subset, "loss": cfg.loss, "steps": self.steps,
                "final_loss": round(self.epoch_losses[-1], 6), "train_accuracy": round(self.train_accuracy, 4),
                "test_accuracy": round(self.test_accuracy, 4), "seconds": round(self.seconds, 1)}


def loss_value(logits: torch.Tensor, labels: torch.Tensor, loss: str) -> torch.Tensor:
    """Batch-mean cross-entropy, or MSE between softmax(logits) and one-hot labels (mean over batch, classes)."""
    if loss == "ce":
        return F.cross_entropy(logits, labels)
    onehot = F.one_hot(labels, logits.shape[1]).to(logits.dtype)
    return F.mse_loss(torch.softmax(logits, dim=1), onehot)


@torch.no_grad()
def accuracy(model: nn.Module, data: ArrayDataset, device: str, batch_size: int = 500) -> float:
    """Top-1 accuracy in [0, 1] of ``model`` on ``data`` (eval mode)."""
    model.eval()
    correct = 0
    for start in range(0, len(data), batch_size):
        x = torch.from_numpy(data.x[start:start + batch_size]).to(device)
        pred = model(x).argmax(dim=1).cpu().numpy()
        correct += int((pred == data.y[start:start + batch_size]).sum())
    return correct / max(len(data), 1)


def train_epoch(model: nn.Module, optimizer: torch.optim.Optimizer, data: ArrayDataset, config: TrainConfig,
                generator: torch.Generator) -> tuple[float, int]:
    """One pass over ``data`` in shuffled mini-batches; returns (mean batch loss, number of steps)."""
    model.train()
    x_all = torch.from_numpy(data.x)
    y_all = torch.from_numpy(data.y)
    order = torch.randperm(len(data), generator=generator)
    total, steps = 0.0, 0
    for start in range(0, len(data), config.batch_size):
        idx = order[start:start + config.batch_size]
        if len(idx) < 2 and len(data) > 1:  # a batch of one breaks BatchNorm; drop the remainder
            continue
        x, y = x_all[idx].to(config.device), y_all[idx].to(config.device)
        optimizer.zero_grad(set_to_none=True)
        loss = loss_value(model(x), y, config.loss)
        loss.backward()
        optimizer.step()
        total += float(loss.detach())
        steps += 1
    return total / max(steps, 1), steps


def save_checkpoint(model: nn.Module, path: Path, metadata: dict[str, str]) -> Path:
    """Write the state dict as safetensors (written to a temporary name, then renamed)."""
    from safetensors.torch import save_file

    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp-write")
    state = {k: v.detach().cpu().contiguous() for k, v in model.state_dict().items()}
    save_file(state, str(tmp), metadata=metadata)
    tmp.replace(path)
    return path


def train_run(config: TrainConfig, train: ArrayDataset, test: ArrayDataset, zoo_dir: Path) -> TrainOutcome:
    """Train one network from a seeded init and save ``<zoo_dir>/<tag>.safetensors``."""
    torch.manual_seed(config.seed)
    model = build_model(config.model).to(config.device)
    lr, momentum, decay = RECIPES[config.model]
    optimizer = torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
    scheduler = torch.optim.lr_scheduler.ExponentialLR(optimizer, gamma=decay)
    generator = torch.Generator().manual_seed(config.seed)
    losses: list[float] = []
    steps = 0
    start = time.perf_counter()
    for epoch in range(config.epochs):
        loss, n = train_epoch(model, optimizer, train, config, generator)
        scheduler.step()
        losses.append(loss)
        steps += n
        logger.info("%s epoch %d/%d: loss %.4f, %d steps, %.0f s", config.tag, epoch + 1, config.epochs, loss, n,
                    time.perf_counter() - start)
        if not np.isfinite(loss):
            raise ConfigError(f"{config.tag}: the loss diverged at epoch {epoch + 1}; try a larger batch size "
                              "or the 'ce' loss")
    seconds = time.perf_counter() - start
    train_acc = accuracy(model, train, config.device, config.eval_batch_size)
    test_acc = accuracy(model, test, config.device, config.eval_batch_size)
    meta = {k: str(v) for k, v in asdict(config).items()}
    meta.update(train_accuracy=f"{train_acc:.4f}", test_accuracy=f"{test_acc:.4f}", steps=str(steps))
    path = save_checkpoint(model, Path(zoo_dir).resolve() / f"{config.tag}.safetensors", meta)
    logger.info("%s: train acc %.3f, test acc %.3f → %s", config.tag, train_acc, test_acc, path)
    return TrainOutcome(config, path, steps, tuple(losses), train_acc, test_acc, seconds)


def write_catalog(rows: list[dict[str, object]], path: Path) -> Path:
    """Write the catalog CSV (one row per checkpoint, columns ``CATALOG_FIELDS``)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w", newline="") as handle:
        writer = csv.DictWriter(handle, fieldnames=list(CATALOG_FIELDS))
        writer.writeheader()
        writer.writerows(rows)
    return path


