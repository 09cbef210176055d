"""Victim architectures for images: the report's 784-20-10 MLP and a small CNN."""

from __future__ import annotations

import torch
from torch import Tensor, nn

__all__ = ["SeedMLP", "SmallCNN"]


class SeedMLP(nn.Module):
    """The seed report's network: 784 inputs, one sigmoid hidden layer of 20 units, 10 outputs.

    Returns logits; ``activations(x)`` returns the hidden and output activations for plots.
    """

    def __init__(self, in_features: int = 784, hidden: int = 20, num_classes: int = 10) -> None:
        super().__init__()
        self.in_features = in_features
        self.fc1 = nn.Linear(in_features, hidden)
        self.fc2 = nn.Linear(hidden, num_classes)

    def forward(self, x: Tensor) -> Tensor:
        h = torch.sigmoid(self.fc1(x.reshape(x.shape[0], -1)))
        return self.fc2(h)

    def activations(self, x: Tensor) -> dict[str, Tensor]:
        h = torch.sigmoid(self.fc1(x.reshape(x.shape[0], -1)))
        z = self.fc2(h)
        return {"hidden": h, "logits": z, "probabilities": torch.softmax(z, dim=1)}


class SmallCNN(nn.Module):
    """Two convolutional layers (32 and 64 channels, 3x3, max-pooling) and a 128-unit dense layer."""

    def __init__(self, in_channels: int = 1, num_classes: int = 10, image_size: int = 28, width: int = 32) -> None:
        super().__init__()
        self.features = nn.Sequential(
            nn.Conv2d(in_channels, width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
            nn.Conv2d(width, 2 * width, 3, padding=1),
            nn.ReLU(),
            nn.MaxPool2d(2),
        )
        side = image_size // 4
        self.classifier = nn.Sequential(
            nn.Flatten(), nn.Linear(2 * width * side * side, 128), nn.ReLU(), nn.Linear(128, num_classes)
        )

    def forward(self, x: Tensor) -> Tensor:
        return self.classifier(self.features(x))
