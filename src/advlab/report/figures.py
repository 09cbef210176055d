"""Figures for reports, drawn with matplotlib's object API on the Agg canvas (no display, no
global pyplot state) and returned as :class:`~advlab.report.html.Figure` PNGs."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from advlab.report.html import Figure

__all__ = ["to_png", "image_pairs", "activation_plots", "tradeoff_curve", "as_images"]

GOOD, BAD, NEUTRAL, ACCENT = "#1d7a46", "#b42318", "#1f2430", "#2f5fd0"


def to_png(fig: Any, dpi: int = 110, tight: bool = True) -> bytes:
    """Render a matplotlib figure to PNG bytes (``tight=False`` draws once, for figures that
    lay themselves out; a tight bounding box costs a second draw)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    FigureCanvasAgg(fig)
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=dpi, bbox_inches="tight" if tight else None, facecolor="white")
    return buf.getvalue()


def _new_figure(width: float, height: float) -> Any:
    from matplotlib.figure import Figure as MplFigure

    return MplFigure(figsize=(width, height), layout="constrained")


def as_images(x: Any) -> np.ndarray:
    """(N, H, W) grayscale or (N, H, W, 3) colour arrays in [0, 1] from (N, C, H, W) or (N, H, W)."""
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    a = a.astype(np.float32)
    if a.ndim == 4 and a.shape[1] == 1:
        a = a[:, 0]
    elif a.ndim == 4 and a.shape[1] == 3:
        a = a.transpose(0, 2, 3, 1)
    elif a.ndim == 2:  # flat vectors: square images if possible
        side = math.isqrt(a.shape[1])
        if side * side != a.shape[1]:
            raise ValueError(f"cannot draw flat inputs of size {a.shape[1]} as images")
        a = a.reshape(-1, side, side)
    elif a.ndim != 3:
        raise ValueError(f"cannot draw inputs of shape {a.shape} as images")
    return np.clip(a, 0.0, 1.0)


def _show(ax: Any, img: np.ndarray, title: str, color: str = NEUTRAL) -> None:
    ax.imshow(img, cmap="gray" if img.ndim == 2 else None, vmin=0.0, vmax=1.0, interpolation="nearest")
    ax.set_title(title, fontsize=8, color=color, pad=3)
    ax.set_xticks([])
    ax.set_yticks([])
    for spine in ax.spines.values():
        spine.set_edgecolor("#c9ced6")


def image_pairs(
    left: Any,
    right: Any,
    left_titles: Sequence[str],
    right_titles: Sequence[str],
    *,
    name: str,
    caption: str = "",
    right_colors: Sequence[str] | None = None,
    columns: int = 4,
    headers: tuple[str, str] = ("", ""),
) -> Figure:
    """Pairs of images side by side (original next to adversarial, before next to after)."""
    a, b = as_images(left), as_images(right)
    n = len(a)
    if len(b) != n or len(left_titles) != n or len(right_titles) != n:
        raise ValueError("image_pairs needs as many right images and titles as left images")
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    fig = _new_figure(2.3 * cols, 1.35 * rows + (0.3 if any(headers) else 0))
    grid = fig.add_gridspec(rows, cols, wspace=0.08)
    for i in range(n):
        pair = grid[i // cols, i % cols].subgridspec(1, 2, wspace=0.05)
        _show(fig.add_subplot(pair[0]), a[i], left_titles[i])
        color = right_colors[i] if right_colors is not None else NEUTRAL
        _show(fig.add_subplot(pair[1]), b[i], right_titles[i], color)
    if any(headers):
        fig.suptitle(f"left: {headers[0]}    right: {headers[1]}", fontsize=9, color="#5c6473")
    return Figure(name, to_png(fig), caption)


def activation_plots(
    images: Any,
    hidden: Any,
    probabilities: Any,
    titles: Sequence[str],
    *,
    name: str,
    caption: str = "",
    highlight: Sequence[int] | None = None,
    columns: int = 2,
) -> Figure:
    """For each input: the image, the hidden-layer activations and the output probabilities
    (the seed report's figure 5.1).  ``highlight`` marks one output class per input."""
    imgs = as_images(images)
    h = np.asarray(hidden.detach().cpu() if hasattr(hidden, "detach") else hidden, dtype=np.float32)
    p = np.asarray(probabilities.detach().cpu() if hasattr(probabilities, "detach") else probabilities, dtype=np.float32)
    n = len(imgs)
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    fig = _new_figure(4.6 * cols, 1.5 * rows)
    grid = fig.add_gridspec(rows, cols, wspace=0.1, hspace=0.1)
    for i in range(n):
        cell = grid[i // cols, i % cols].subgridspec(1, 3, width_ratios=[1.0, 1.6, 1.3], wspace=0.15)
        _show(fig.add_subplot(cell[0]), imgs[i], titles[i])
        ax_h = fig.add_subplot(cell[1])
        ax_h.bar(np.arange(h.shape[1]), h[i], color="#8a94a6", width=0.8)
        ax_h.set_ylim(0, 1)
        ax_h.set_title("hidden activations", fontsize=7, pad=2)
        ax_p = fig.add_subplot(cell[2])
        colors = [ACCENT] * p.shape[1]
        if highlight is not None:
            colors[int(highlight[i])] = BAD
        ax_p.bar(np.arange(p.shape[1]), p[i], color=colors, width=0.8)
        ax_p.set_ylim(0, 1)
        ax_p.set_xticks(np.arange(p.shape[1]))
        ax_p.set_title("output probabilities", fontsize=7, pad=2)
        for ax in (ax_h, ax_p):
            ax.tick_params(labelsize=6, length=2)
            ax.spines[["top", "right"]].set_visible(False)
        if h.shape[1] > 10:
            ax_h.set_xticks([])
    return Figure(name, to_png(fig), caption)


def tradeoff_curve(
    lams: Sequence[float],
    success: Sequence[float],
    distance: Sequence[float],
    *,
    name: str,
    caption: str = "",
    success_label: str = "goal class reached",
    distance_label: str = "mean L2 distance to the original",
    parameter: str = "λ",
    floor: float | None = None,
) -> Figure:
    """Success against distance along a parameter sweep, and both against the parameter."""
    lam = np.asarray(lams, dtype=float)
    s = np.asarray(success, dtype=float)
    d = np.asarray(distance, dtype=float)
    fig = _new_figure(9.0, 3.4)
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(d, s, "-o", color=ACCENT)
    for li, di, si in zip(lam, d, s, strict=True):
        ax1.annotate(f"{parameter}={li:g}", (di, si), textcoords="offset points", xytext=(5, -10), fontsize=7)
    ax1.set_xlabel(distance_label)
    ax1.set_ylabel(success_label)
    ax1.set_ylim(0, 1.05)
    ax1.set_title("the price of looking real", fontsize=10)
    if floor is not None:
        ax1.axhline(floor, color="#c9ced6", linestyle="--", linewidth=1)
    ax2.semilogx(lam, s, "-o", color=ACCENT, label=success_label)
    ax2.set_ylim(0, 1.05)
    ax2.set_xlabel(parameter)
    ax2.set_ylabel(success_label, color=ACCENT)
    ax3 = ax2.twinx()
    ax3.semilogx(lam, d, "-s", color=BAD, label=distance_label)
    ax3.set_ylabel(distance_label, color=BAD)
    ax3.set_ylim(0, max(1e-9, float(d.max())) * 1.1)
    ax2.set_title(f"both against {parameter}", fontsize=10)
    for ax in (ax1, ax2, ax3):
        ax.tick_params(labelsize=8)
    return Figure(name, to_png(fig), caption)
