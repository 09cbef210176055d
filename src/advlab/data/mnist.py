"""MNIST and Fashion-MNIST from their four IDX files (gzipped or not).

MNIST: LeCun, Bottou, Bengio & Haffner, "Gradient-based learning applied to document
recognition" (1998).  Fashion-MNIST: Xiao, Rasul & Vollgraf, "Fashion-MNIST: a novel image
dataset for benchmarking machine learning algorithms", arXiv:1708.07747.

Where the files are looked for, in order: ``root`` if given (and only there); otherwise
``$ADVLAB_DATA/<name>``, ``~/.cache/advlab/data/<name>`` (``$ADVLAB_CACHE/data/<name>``) and
the dataset's system folder (Debian's ``dataset-fashion-mnist`` package installs
``/usr/share/datasets/fashion-mnist``).  ``download=True`` fetches missing MNIST files from the
official mirrors and checks their SHA-256 before they are used.
"""

from __future__ import annotations

import hashlib
import logging
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from advlab.data.dataset import Dataset
from advlab.data.idx import DataError, read_image_label_pair

__all__ = ["IdxSource", "SOURCES", "DatasetNotFoundError", "load_idx_dataset", "find_files", "download_files"]

log = logging.getLogger(__name__)

SPLITS = {
    "train": ("train-images-idx3-ubyte", "train-labels-idx1-ubyte"),
    "test": ("t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte"),
}
FILES = tuple(stem for pair in SPLITS.values() for stem in pair)


class DatasetNotFoundError(FileNotFoundError):
    """The dataset's files are not where they were looked for; the message says how to get them."""


@dataclass(frozen=True)
class IdxSource:
    """Where a four-file IDX dataset lives.

    ``sha256`` maps each file name (``<stem>.gz``) to its official checksum; a source without
    ``mirrors`` cannot be downloaded.
    """

    name: str
    classes: tuple[str, ...]
    system_dirs: tuple[str, ...] = ()
    mirrors: tuple[str, ...] = ()
    sha256: tuple[tuple[str, str], ...] = ()
    install_hint: str = ""


SOURCES: dict[str, IdxSource] = {
    "mnist": IdxSource(
        name="mnist",
        classes=tuple(str(i) for i in range(10)),
        # torchvision's and TensorFlow's mirrors of yann.lecun.com/exdb/mnist (same bytes).
        mirrors=(
            "https://ossci-datasets.s3.amazonaws.com/mnist/",
            "https://storage.googleapis.com/cvdf-datasets/mnist/",
        ),
        sha256=(
            ("train-images-idx3-ubyte.gz", "440fcabf73cc546fa21475e81ea370265605f56be210a4024d2ca8f203523609"),
            ("train-labels-idx1-ubyte.gz", "3552534a0a558bbed6aed32b30c495cca23d567ec52cac8be1a0730e8010255c"),
            ("t10k-images-idx3-ubyte.gz", "8d422c7b0a1c1c79245a5bcf07fe86e33eeafee792b84584aec276f5a2dbc4e6"),
            ("t10k-labels-idx1-ubyte.gz", "f7ae60f92e00ec6debd23a6088c31dbd2371eca3ffa0defaefb259924204aec6"),
        ),
        install_hint="load_data('mnist', download=True) fetches them (needs network)",
    ),
    "fashion-mnist": IdxSource(
        name="fashion-mnist",
        classes=("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker", "Bag", "Ankle boot"),
        system_dirs=("/usr/share/datasets/fashion-mnist",),
        install_hint="on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist",
    ),
}

# (name, folder) -> (x_train, y_train, x_test, y_test) as uint8 arrays; fresh tensors per call.
_CACHE: dict[tuple[str, str], tuple[np.ndarray, ...]] = {}


def default_dirs(source: IdxSource) -> list[Path]:
    """The folders searched when no ``root`` is given, in order."""
    from advlab.models.zoo import default_cache_dir

    dirs = []
    if os.environ.get("ADVLAB_DATA"):
        dirs.append(Path(os.environ["ADVLAB_DATA"]).expanduser() / source.name)
    dirs.append(default_cache_dir() / "data" / source.name)
    dirs.extend(Path(d) for d in source.system_dirs)
    return dirs


def _file_in(folder: Path, stem: str) -> Path | None:
    for candidate in (folder / f"{stem}.gz", folder / stem):
        if candidate.is_file():
            return candidate
    return None


def find_files(source: IdxSource, root: str | Path | None = None) -> dict[str, Path]:
    """The four files of ``source`` (stem -> path) from the first folder holding all of them.

    Raises :class:`DatasetNotFoundError` saying which folders were searched and how to get the files.
    """
    dirs = [Path(root).expanduser()] if root is not None else default_dirs(source)
    for folder in dirs:
        found = {stem: _file_in(folder, stem) for stem in FILES}
        if all(found.values()):
            return {stem: p for stem, p in found.items() if p is not None}
    hints = [source.install_hint] if source.install_hint else []
    hints.append(f"or pass root=FOLDER (or set $ADVLAB_DATA so that $ADVLAB_DATA/{source.name} holds them)")
    raise DatasetNotFoundError(
        f"{source.name}: the IDX files ({', '.join(f + '[.gz]' for f in FILES)}) were not found in "
        + ", ".join(str(d) for d in dirs)
        + ". To get them: "
        + "; ".join(hints)
    )


def _fetch(url: str, dest: Path, timeout: float = 60.0) -> None:
    """Download ``url`` into the (already created) file ``dest``."""
    with urllib.request.urlopen(url, timeout=timeout) as response, open(dest, "wb") as out:
        while chunk := response.read(1 << 20):
            out.write(chunk)


def _sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def download_files(source: IdxSource, folder: str | Path) -> Path:
    """Fetch the files of ``source`` missing from ``folder`` and verify their SHA-256.

    Each file is written to a temporary file in ``folder``, checked, and only then renamed
    into place, so an interrupted or corrupt download never leaves a file that looks finished.
    Raises :class:`DataError` when no mirror delivers the expected bytes.
    """
    if not source.mirrors:
        raise DataError(f"{source.name} cannot be downloaded by advlab; {source.install_hint}")
    folder = Path(folder).expanduser()
    folder.mkdir(parents=True, exist_ok=True)
    for fname, expected in source.sha256:
        target = folder / fname
        if target.is_file() or (folder / fname.removesuffix(".gz")).is_file():
            continue
        problems = []
        for mirror in source.mirrors:
            url = mirror + fname
            fd, tmp_name = tempfile.mkstemp(prefix=f".{fname}.", suffix=".part", dir=folder)
            os.close(fd)
            tmp = Path(tmp_name)
            try:
                log.info("downloading %s", url)
                _fetch(url, tmp)
                digest = _sha256(tmp)
                if digest != expected:
                    problems.append(f"{url}: SHA-256 {digest} != expected {expected}")
                    continue
                os.replace(tmp, target)
                break
            except OSError as exc:  # urllib's errors are OSErrors
                problems.append(f"{url}: {exc}")
            finally:
                tmp.unlink(missing_ok=True)
        else:
            raise DataError(f"{source.name}: could not download {fname}: " + "; ".join(problems))
    return folder


def _download_dir(source: IdxSource, root: str | Path | None) -> Path:
    if root is not None:
        return Path(root)
    if os.environ.get("ADVLAB_DATA"):
        return Path(os.environ["ADVLAB_DATA"]).expanduser() / source.name
    from advlab.models.zoo import default_cache_dir

    return default_cache_dir() / "data" / source.name


def _to_tensors(images: np.ndarray, labels: np.ndarray, n: int | None) -> tuple[torch.Tensor, torch.Tensor]:
    images, labels = images[:n], labels[:n]
    x = torch.from_numpy(images.astype(np.float32) / 255.0).unsqueeze(1)
    return x, torch.from_numpy(labels.astype(np.int64))


def load_idx_dataset(
    name: str,
    root: str | Path | None = None,
    *,
    download: bool = False,
    n_train: int | None = None,
    n_test: int | None = None,
) -> Dataset:
    """Load ``mnist`` or ``fashion-mnist`` from IDX files: float32 (N, 1, 28, 28) in [0, 1].

    The splits keep the official order (the files are not sorted by class), so ``n_train``
    and ``n_test`` take the first samples.  Decoded files are cached per process.

    Examples
    --------
    >>> data = load_idx_dataset("fashion-mnist", n_train=1000, n_test=200)
    >>> data.x_train.shape, data.classes[0]
    (torch.Size([1000, 1, 28, 28]), 'T-shirt/top')
    """
    source = SOURCES[name]
    try:
        files = find_files(source, root)
    except DatasetNotFoundError:
        if not download:
            raise
        download_to = _download_dir(source, root)
        download_files(source, download_to)
        files = find_files(source, download_to)
    folder = str(files[FILES[0]].parent.resolve())
    key = (name, folder)
    if key not in _CACHE:
        arrays: list[np.ndarray] = []
        for images_stem, labels_stem in SPLITS.values():
            arrays.extend(read_image_label_pair(files[images_stem], files[labels_stem], num_classes=len(source.classes)))
        _CACHE[key] = tuple(arrays)
    x_tr, y_tr, x_te, y_te = _CACHE[key]
    x_train, y_train = _to_tensors(x_tr, y_tr, n_train)
    x_test, y_test = _to_tensors(x_te, y_te, n_test)
    return Dataset(
        name=name,
        x_train=x_train,
        y_train=y_train,
        x_test=x_test,
        y_test=y_test,
        classes=list(source.classes),
        info={"source": folder, "files": {stem: str(p) for stem, p in files.items()}},
    )
