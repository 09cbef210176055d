"""Datasets from files a user already has: NumPy arrays, folders of images, IDX folders.

:func:`load_data_spec` reads what ``--data`` names on the command line:

- a named dataset (``mnist-sample``, ``mnist``, ``fashion-mnist``);
- a folder of IDX files in the MNIST layout (``t10k-images-idx3-ubyte[.gz]`` ...);
- ``data.npz`` holding arrays ``x`` and ``y`` (or ``x_test`` and ``y_test``);
- ``x.npy,y.npy`` (a pair of ``.npy`` files), or a folder holding ``x.npy`` and ``y.npy``;
- a folder with one subfolder per class holding images (PNG, JPEG, BMP... read by Pillow);
  the classes are the subfolder names in sorted order.

Everything comes back in pixel space: float32 in [0, 1].  ``uint8`` arrays and images are
divided by 255; float arrays must lie inside ``box`` (their value range, default [0, 1]) and
are mapped from it to [0, 1].  The file's samples form the test split (the train split is
empty).  Arrays are read with ``allow_pickle=False``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import torch

from advlab.data.dataset import Dataset
from advlab.validation import InputError

__all__ = ["load_data_spec", "IMAGE_SUFFIXES"]

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".pgm", ".ppm")


def load_data_spec(spec: str | Path, *, box: tuple[float, float] = (0.0, 1.0)) -> Dataset:
    """The dataset ``spec`` names (see the module docstring), images in [0, 1]."""
    from advlab.data import DATASETS, load_data

    text = str(spec).strip()
    if text.lower().replace("_", "-") in DATASETS:
        return load_data(text)
    if "," in text:
        parts = [Path(p.strip()) for p in text.split(",")]
        if len(parts) != 2 or not all(p.suffix == ".npy" for p in parts):
            raise InputError(f"--data {text!r}: a pair of arrays is written x.npy,y.npy")
        return _from_arrays(_npy(parts[0]), _npy(parts[1]), box, name=text)
    path = Path(text)
    if path.is_file():
        if path.suffix == ".npz":
            return _from_npz(path, box)
        if path.suffix == ".npy":
            raise InputError(f"--data {text}: give the labels too, as x.npy,y.npy (or an .npz with x and y)")
        raise InputError(f"--data {text}: unsupported file; use .npz, x.npy,y.npy, an image folder or an IDX folder")
    if path.is_dir():
        if (path / "x.npy").is_file() and (path / "y.npy").is_file():
            return _from_arrays(_npy(path / "x.npy"), _npy(path / "y.npy"), box, name=str(path))
        if any(path.glob("t10k-images-idx3-ubyte*")):
            from advlab.data.mnist import load_idx_dataset

            data = load_idx_dataset("fashion-mnist" if "fashion" in path.resolve().name.lower() else "mnist", root=path)
            data.name = str(path)
            return data
        return _from_image_folder(path)
    if path.suffix in (".npz", ".npy") or "/" in text or "\\" in text:
        raise InputError(f"--data {text}: no such file or folder")
    import difflib

    close = difflib.get_close_matches(text, DATASETS, n=1, cutoff=0.5)
    hint = f"; did you mean {close[0]!r}?" if close else ""
    raise InputError(
        f"--data {text!r} is neither a dataset ({', '.join(DATASETS)}) nor a file or folder{hint} "
        "(files: data.npz, x.npy,y.npy, an image folder with one subfolder per class, an IDX folder)"
    )


def _npy(path: Path) -> np.ndarray:
    if not path.is_file():
        raise InputError(f"--data: no such file {path}")
    try:
        return np.load(path, allow_pickle=False)
    except ValueError as exc:
        raise InputError(f"--data {path}: not a plain NumPy array ({exc}); object arrays (pickles) are not loaded") from None


def _from_npz(path: Path, box: tuple[float, float]) -> Dataset:
    try:
        with np.load(path, allow_pickle=False) as arrays:
            keys = set(arrays.files)
            for kx, ky in (("x", "y"), ("x_test", "y_test")):
                if kx in keys and ky in keys:
                    return _from_arrays(arrays[kx], arrays[ky], box, name=str(path))
    except ValueError as exc:
        raise InputError(f"--data {path}: not a plain .npz archive ({exc}); object arrays (pickles) are not loaded") from None
    raise InputError(f"--data {path} holds {sorted(keys)}; it needs arrays 'x' and 'y' (np.savez(path, x=images, y=labels))")


def _from_arrays(x: np.ndarray, y: np.ndarray, box: tuple[float, float], name: str) -> Dataset:
    lo, hi = float(box[0]), float(box[1])
    if not lo < hi:
        raise InputError(f"--box must be LOW,HIGH with LOW < HIGH, got {box}")
    if x.ndim < 2:
        raise InputError(f"--data {name}: x has shape {x.shape}; expected (N, ...) samples, e.g. (N, 1, 28, 28) images")
    y = np.asarray(y)
    if y.ndim != 1 or len(y) != len(x):
        raise InputError(f"--data {name}: y must hold one label per sample, shape ({len(x)},); got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if np.issubdtype(y.dtype, np.floating) and np.all(np.mod(y, 1) == 0):
            y = y.astype(np.int64)
        else:
            raise InputError(f"--data {name}: labels y must be integers, got dtype {y.dtype}")
    if len(y) and y.min() < 0:
        raise InputError(f"--data {name}: labels must be 0..K-1, found {int(y.min())}")
    if x.dtype == np.uint8:
        pixels = x.astype(np.float32) / 255.0
    elif np.issubdtype(x.dtype, np.floating):
        xf = x.astype(np.float32)
        if not np.isfinite(xf).all():
            raise InputError(f"--data {name}: x holds NaN or infinite values")
        if len(xf) and (xf.min() < lo - 1e-6 or xf.max() > hi + 1e-6):
            raise InputError(
                f"--data {name}: x has values in [{xf.min():.4g}, {xf.max():.4g}], outside the box [{lo:g}, {hi:g}]; "
                "pass --box LOW,HIGH with the data's value range (e.g. --box 0,255). Data that is already "
                "normalised ((x - mean) / std) must be stored unnormalised, with --mean/--std given instead"
            )
        pixels = np.clip((xf - lo) / (hi - lo), 0.0, 1.0)
    else:
        raise InputError(f"--data {name}: x has dtype {x.dtype}; store float32 values in the box (--box, default 0,1) or uint8 pixels 0..255")
    xt = torch.from_numpy(np.ascontiguousarray(pixels, dtype=np.float32))
    yt = torch.from_numpy(y.astype(np.int64))
    k = int(yt.max()) + 1 if len(yt) else 0
    return Dataset(name=name, x_train=xt[:0], y_train=yt[:0], x_test=xt, y_test=yt, classes=[str(i) for i in range(k)], info={"source": name, "box": [lo, hi]})


def _from_image_folder(root: Path) -> Dataset:
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise InputError(
            f"--data {root}: a folder of images needs one subfolder per class (e.g. {root}/cat/1.png, {root}/dog/2.png); "
            "found none (nor x.npy and y.npy, nor IDX files)"
        )
    try:
        from PIL import Image
    except ImportError:
        raise InputError("reading an image folder needs Pillow: pip install pillow") from None
    files = [(f, label) for label, c in enumerate(classes) for f in sorted((root / c).iterdir()) if f.suffix.lower() in IMAGE_SUFFIXES]
    if not files:
        raise InputError(f"--data {root}: the class folders {classes[:5]} hold no images ({', '.join(IMAGE_SUFFIXES)})")
    images = []
    for f, _ in files:
        try:
            with Image.open(f) as im:
                images.append(im.copy())
        except OSError as exc:
            raise InputError(f"--data {f}: Pillow cannot read it ({exc})") from None
    grey = all(im.mode in ("L", "1", "I;16", "I", "P") and (im.mode != "P" or _palette_is_grey(im)) for im in images)
    mode = "L" if grey else "RGB"
    sizes = {im.size for im in images}
    if len(sizes) > 1:
        first = images[0].size
        odd = next(f for (f, _), im in zip(files, images, strict=True) if im.size != first)
        raise InputError(f"--data {root}: the images differ in size ({sorted(sizes)[:4]}); e.g. {files[0][0].name} is {first} and {odd} is not. Resize them first; advlab does not resize silently")
    arrays = [_pixels(im, mode) for im in images]
    x = np.stack(arrays)
    y = np.array([label for _, label in files], dtype=np.int64)
    xt = torch.from_numpy(x)
    return Dataset(name=str(root), x_train=xt[:0], y_train=torch.from_numpy(y[:0]), x_test=xt, y_test=torch.from_numpy(y), classes=classes, info={"source": str(root), "mode": mode})


def _palette_is_grey(im: object) -> bool:
    rgb = im.convert("RGB")  # type: ignore[attr-defined]
    a = np.asarray(rgb)
    return bool((a[..., 0] == a[..., 1]).all() and (a[..., 1] == a[..., 2]).all())


def _pixels(im: object, mode: str) -> np.ndarray:
    """(C, H, W) float32 in [0, 1]; 16-bit greyscale is scaled by 65535."""
    m = im.mode  # type: ignore[attr-defined]
    if mode == "L" and m in ("I;16", "I"):
        a = np.asarray(im, dtype=np.float32) / 65535.0
    else:
        a = np.asarray(im.convert(mode), dtype=np.float32) / 255.0  # type: ignore[attr-defined]
    a = a[None] if a.ndim == 2 else a.transpose(2, 0, 1)
    return np.clip(a, 0.0, 1.0).astype(np.float32)
