"""A strict reader for IDX files, the format of MNIST and Fashion-MNIST.

An IDX file is a big-endian header followed by a dense array::

    0x00 0x00 <dtype code> <ndim>   then ndim uint32 sizes, then the data

(LeCun et al., http://yann.lecun.com/exdb/mnist/).  :func:`read_idx` checks the magic number,
the dtype code, the sizes and that the payload holds exactly the announced number of values,
so a truncated or corrupt file raises :class:`DataError` instead of returning garbage.
"""

from __future__ import annotations

import gzip
import math
import zlib
from pathlib import Path

import numpy as np

__all__ = ["DataError", "read_idx", "read_image_label_pair"]

# dtype code -> big-endian numpy dtype
IDX_DTYPES: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


class DataError(ValueError):
    """A data file is missing a part, corrupt or inconsistent; the message names the file."""


def _read_bytes(path: Path) -> bytes:
    try:
        with open(path, "rb") as f:
            raw = f.read()
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror or exc})") from exc
    if raw[:2] != b"\x1f\x8b":  # not gzipped (whatever the name says)
        return raw
    try:
        return gzip.decompress(raw)
    except (EOFError, OSError, zlib.error) as exc:
        raise DataError(f"{path}: corrupt or truncated gzip stream ({exc})") from exc


def read_idx(path: str | Path) -> np.ndarray:
    """Read one IDX file (plain or gzipped) into a native-endian NumPy array.

    Raises
    ------
    DataError
        Bad magic number, unknown dtype code, or a payload that is not exactly the size the
        header announces (a truncated or padded file).  The message names the file.

    Examples
    --------
    >>> labels = read_idx("/usr/share/datasets/fashion-mnist/t10k-labels-idx1-ubyte.gz")
    >>> labels.shape, labels.dtype
    ((10000,), dtype('uint8'))
    """
    path = Path(path)
    raw = _read_bytes(path)
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise DataError(f"{path}: not an IDX file (bad magic number {raw[:4].hex() or 'empty'})")
    code, ndim = raw[2], raw[3]
    if code not in IDX_DTYPES:
        raise DataError(f"{path}: unknown IDX dtype code 0x{code:02x}")
    if ndim == 0:
        raise DataError(f"{path}: IDX header announces 0 dimensions")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, expected {header})")
    shape = tuple(int(s) for s in np.frombuffer(raw, dtype=">u4", count=ndim, offset=4))
    dtype = IDX_DTYPES[code]
    expected = math.prod(shape) * dtype.itemsize
    got = len(raw) - header
    if got != expected:
        kind = "truncated" if got < expected else "has trailing bytes"
        raise DataError(f"{path}: {kind}: shape {shape} needs {expected} data bytes, found {got}")
    return np.frombuffer(raw, dtype=dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_image_label_pair(
    images_path: str | Path,
    labels_path: str | Path,
    *,
    image_shape: tuple[int, ...] = (28, 28),
    num_classes: int = 10,
) -> tuple[np.ndarray, np.ndarray]:
    """Read an images file and its labels file, checking that they belong together.

    Returns ``(images, labels)``: uint8 arrays of shape ``(N, *image_shape)`` and ``(N,)``.
    Raises :class:`DataError` for a wrong dtype or shape, different counts, or labels outside
    ``range(num_classes)``.
    """
    images, labels = read_idx(images_path), read_idx(labels_path)
    for path, arr, want in ((images_path, images, 1 + len(image_shape)), (labels_path, labels, 1)):
        if arr.dtype != np.uint8:
            raise DataError(f"{path}: expected unsigned bytes (IDX code 0x08), found {arr.dtype}")
        if arr.ndim != want:
            raise DataError(f"{path}: expected {want} dimension(s), found shape {arr.shape}")
    if images.shape[1:] != image_shape:
        raise DataError(f"{images_path}: expected images of shape {image_shape}, found {images.shape[1:]}")
    if len(images) != len(labels):
        raise DataError(
            f"{images_path} holds {len(images)} images but {labels_path} holds {len(labels)} labels"
        )
    if len(labels) and int(labels.max()) >= num_classes:
        raise DataError(f"{labels_path}: label {int(labels.max())} outside 0..{num_classes - 1}")
    return images, labels
