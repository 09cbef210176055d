"""Figures for input-agnostic and poisoning attacks (matplotlib object API on the Agg canvas,
no pyplot state): the universal perturbation, the patch, success against patch area,
triggered examples, and accuracy against poison rate.  Each function writes one PNG."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

__all__ = ["image_grid", "perturbation_figure", "curve_figure"]


def _figure(width: float, height: float) -> Any:
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)
    return fig


def _images(x: Any) -> np.ndarray:
    a = x.detach().cpu().numpy() if hasattr(x, "detach") else np.asarray(x)
    a = a.astype(np.float32)
    if a.ndim == 4:
        a = a[:, 0] if a.shape[1] == 1 else a.transpose(0, 2, 3, 1)
    elif a.ndim == 2:
        side = math.isqrt(a.shape[1])
        a = a.reshape(-1, side, side)
    return a


def _save(fig: Any, path: str | Path) -> Path:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(p, dpi=110, bbox_inches="tight", facecolor="white")
    return p


def image_grid(images: Any, titles: Sequence[str], path: str | Path, *, columns: int = 8, suptitle: str = "") -> Path:
    """Images ``(N, C, H, W)`` in [0, 1] in a grid with one title each."""
    a = np.clip(_images(images), 0, 1)
    n = len(a)
    cols = max(1, min(columns, n))
    rows = math.ceil(n / cols)
    fig = _figure(1.25 * cols, 1.4 * rows + (0.3 if suptitle else 0))
    for i in range(rows * cols):
        ax = fig.add_subplot(rows, cols, i + 1)
        ax.set_axis_off()
        if i < n:
            ax.imshow(a[i], cmap="gray" if a[i].ndim == 2 else None, vmin=0, vmax=1, interpolation="nearest")
            ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return _save(fig, path)


def perturbation_figure(delta: Any, path: str | Path, *, title: str = "universal perturbation") -> Path:
    """A signed perturbation ``(C, H, W)`` with a diverging colour map (gray = 0)."""
    d = _images(delta[None])[0]
    if d.ndim == 3:  # colour: show the mean over channels
        d = d.mean(axis=2)
    lim = float(np.abs(d).max()) or 1.0
    fig = _figure(3.2, 2.8)
    ax = fig.add_subplot(1, 1, 1)
    im = ax.imshow(d, cmap="RdBu_r", vmin=-lim, vmax=lim, interpolation="nearest")
    ax.set_axis_off()
    ax.set_title(title, fontsize=9)
    fig.colorbar(im, ax=ax, shrink=0.8)
    return _save(fig, path)


def curve_figure(
    x: Sequence[float],
    series: Mapping[str, Sequence[float]],
    path: str | Path,
    *,
    xlabel: str,
    ylabel: str,
    title: str = "",
    percent_x: bool = False,
) -> Path:
    """Lines of ``series`` (label -> values) against ``x``, values in [0, 1] shown as percent."""
    fig = _figure(4.6, 3.2)
    ax = fig.add_subplot(1, 1, 1)
    xs = [100 * v for v in x] if percent_x else list(x)
    for label, ys in series.items():
        ax.plot(xs, [100 * v for v in ys], marker="o", label=label)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 100)
    ax.grid(alpha=0.3)
    if title:
        ax.set_title(title, fontsize=9)
    ax.legend(fontsize=8)
    return _save(fig, path)
