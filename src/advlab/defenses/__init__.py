"""Defenses: input transformations (with their adaptive BPDA/EOT versions), adversarial
training, defensive distillation and detection.  Every defense declares how it must be
attacked (see :mod:`advlab.defenses.adaptive`), and saves and loads like any model."""

from advlab.defenses.adaptive import EOT, Wrapper, adapt, adaptive_model
from advlab.defenses.distillation import Distilled, TemperatureScaled, distill
from advlab.defenses.smoothing import RandomizedSmoothing, SoftSmoothed
from advlab.defenses.transforms import (
    JPEG,
    TRANSFORMS,
    BinaryThreshold,
    BitDepth,
    Chain,
    Defended,
    GaussianNoise,
    InputTransform,
    MedianSmoothing,
    RandomResizePad,
    build_transform,
    straight_through,
)

__all__ = [
    "EOT",
    "JPEG",
    "TRANSFORMS",
    "BinaryThreshold",
    "BitDepth",
    "Chain",
    "Defended",
    "Distilled",
    "GaussianNoise",
    "InputTransform",
    "MedianSmoothing",
    "RandomResizePad",
    "RandomizedSmoothing",
    "SoftSmoothed",
    "TemperatureScaled",
    "Wrapper",
    "adapt",
    "adaptive_model",
    "build_transform",
    "distill",
    "straight_through",
]
