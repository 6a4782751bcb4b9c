"""The two small networks of the batch-size experiments, in PyTorch.

MiniAlexNet follows the authors' Keras script (CalculatedContent/DLGeneralization, ``Mini Alexnet/
cifar10_alexnet.py``; JMLR 2021 §6): Conv(96, 5×5, same, ReLU) → MaxPool 3×3 (stride 3, "same") → BN →
Conv(256, 5×5, same, ReLU) → MaxPool 3×3 (stride 3, "same") → BN → Flatten (4·4·256 = 4096) →
FC1 4096→384 (Q = 10.67) → FC2 384→192 (Q = 2) → FC3 192→10. Keras' "same" pooling pads one cell on each
side for these sizes (28 → 10 → 4), which ``MaxPool2d(3, 3, padding=1)`` reproduces exactly (padding is −∞).
Weights are Glorot-normal (``xavier_normal_``; Keras' glorot_normal is truncated, a difference of scale
below 13 %), biases 0.1. The network returns logits; the softmax lives in the loss.

MLP3 is SETOL's MNIST model (Martin & Hinrichs 2025, §6): 784→300→100→10, ReLU, Glorot-normal, bias 0.1.
"""

from __future__ import annotations

import torch
from torch import nn

from scanner.errors import ConfigError

MODEL_NAMES = ("minialexnet", "mlp3")
BIAS_INIT = 0.1


def _glorot(module: nn.Module) -> None:
    for layer in module.modules():
        if isinstance(layer, nn.Conv2d | nn.Linear):
            nn.init.xavier_normal_(layer.weight)
            if layer.bias is not None:
                nn.init.constant_(layer.bias, BIAS_INIT)


class MiniAlexNet(nn.Module):
    """MiniAlexNet for 3×28×28 inputs (CIFAR-10 centre crops); output: 10 logits."""

    input_shape = (3, 28, 28)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(3, 96, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=3, padding=1),
            nn.BatchNorm2d(96),
            nn.Conv2d(96, 256, 5, padding=2),
            nn.ReLU(),
            nn.MaxPool2d(3, stride=3, padding=1),
            nn.BatchNorm2d(256),
        )
        self.fc1 = nn.Linear(4 * 4 * 256, 384)
        self.fc2 = nn.Linear(384, 192)
        self.fc3 = nn.Linear(192, num_classes)
        _glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(self.features(x), 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


class MLP3(nn.Module):
    """Three-layer perceptron for 1×28×28 inputs (MNIST), output: 10 logits."""

    input_shape = (1, 28, 28)

    def __init__(self, num_classes: int = 10) -> None:
        super().__init__()
        self.fc1 = nn.Linear(784, 300)
        self.fc2 = nn.Linear(300, 100)
        self.fc3 = nn.Linear(100, num_classes)
        _glorot(self)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = torch.flatten(x, 1)
        x = torch.relu(self.fc1(x))
        x = torch.relu(self.fc2(x))
        return self.fc3(x)


def build_model(name: str) -> nn.Module:
    """A freshly initialised network by name ("minialexnet" or "mlp3"); seed torch before calling."""
    if name == "minialexnet":
        return MiniAlexNet()
    if name == "mlp3":
        return MLP3()
    raise ConfigError(f"the 'model' option must be one of {MODEL_NAMES}; got {name!r} instead")


def dataset_for(name: str) -> str:
    """The dataset a model is trained on: "cifar10" for MiniAlexNet, "mnist" for MLP3."""
    if name not in MODEL_NAMES:
        raise ConfigError(f"the 'model' option must be one of {MODEL_NAMES}; got {name!r} instead")
    return "cifar10" if name == "minialexnet" else "mnist"
