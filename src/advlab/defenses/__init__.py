"""Defenses: input transformations (with their adaptive BPDA/EOT versions), training procedures."""

from advlab.defenses.transforms import BinaryThreshold, Defended, InputTransform, straight_through

__all__ = ["BinaryThreshold", "Defended", "InputTransform", "straight_through"]
