"""The IDX reader on good, truncated, padded, mislabelled and corrupt files (in tmp_path)."""

from __future__ import annotations

import gzip
import hashlib
import os
import struct

import numpy as np
import pytest

from tinynet.data import read_idx, read_idx_bytes
from tinynet.data.idx import validate_pair
from tinynet.errors import DataError


def _idx_bytes(array: np.ndarray) -> bytes:
    """Encode a uint8 array as IDX: 0x00 0x00 0x08 ndim, big-endian uint32 dims, data."""
    head = struct.pack(">HBB", 0, 0x08, array.ndim)
    head += struct.pack(">" + "I" * array.ndim, *array.shape)
    return head + np.ascontiguousarray(array, dtype=np.uint8).tobytes()


def _write(path, raw: bytes, gz: bool) -> str:
    path = os.fspath(path)
    with (gzip.open(path, "wb") if gz else open(path, "wb")) as f:
        f.write(raw)
    return path


@pytest.fixture
def images():
    return np.random.default_rng(0).integers(0, 256, size=(7, 5, 4), dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False], ids=["gz", "raw"])
def test_reads_good_files(tmp_path, images, gz):
    path = _write(tmp_path / "img", _idx_bytes(images), gz)
    got = read_idx(path)
    assert got.dtype == np.uint8 and got.shape == (7, 5, 4)
    np.testing.assert_array_equal(got, images)
    labels = np.array([3, 1, 4, 1, 5, 9, 2], np.uint8)
    np.testing.assert_array_equal(read_idx(_write(tmp_path / "lab", _idx_bytes(labels), gz)),
                                  labels)


def test_reads_big_endian_types():
    values = np.array([1, -2, 70000], dtype=">i4")
    raw = struct.pack(">HBB", 0, 0x0C, 1) + struct.pack(">I", 3) + values.tobytes()
    got = read_idx_bytes(raw)
    np.testing.assert_array_equal(got, [1, -2, 70000])
    assert got.dtype.isnative


@pytest.mark.parametrize("cut", [1, 100])
def test_truncated_data_is_named(tmp_path, images, cut):
    raw = _idx_bytes(images)[:-cut]
    path = _write(tmp_path / "cut.gz", raw, True)
    with pytest.raises(DataError, match=r"cut.gz: IDX file truncated.*\(7, 5, 4\) = 140 bytes"):
        read_idx(path)


def test_truncated_header(tmp_path, images):
    with pytest.raises(DataError, match="truncated IDX header"):
        read_idx(_write(tmp_path / "h", _idx_bytes(images)[:9], False))
    with pytest.raises(DataError, match="too short"):
        read_idx(_write(tmp_path / "h2", b"\x00\x00", False))


def test_trailing_bytes_are_rejected(tmp_path, images):
    path = _write(tmp_path / "pad", _idx_bytes(images) + b"\x00\x01", False)
    with pytest.raises(DataError, match="trailing bytes.*file has 142"):
        read_idx(path)


@pytest.mark.parametrize("magic", [b"\x01\x00\x08\x03", b"\x00\x00\x07\x03",
                                   b"\x00\x00\x08\x00", b"\x00\x00\x08\x09", b"PK\x03\x04"])
def test_wrong_magic(tmp_path, images, magic):
    raw = magic + _idx_bytes(images)[4:]
    with pytest.raises(DataError, match=f"bad IDX magic number 0x{magic.hex()}"):
        read_idx(_write(tmp_path / "m", raw, False))


def test_corrupt_gzip(tmp_path, images):
    good = gzip.compress(_idx_bytes(images), mtime=0)
    flipped = bytearray(good)
    for i in range(12, len(flipped) - 8):  # the deflate stream: garbage it
        flipped[i] ^= 0x5A
    path = tmp_path / "bad.gz"
    path.write_bytes(bytes(flipped))
    with pytest.raises(DataError, match="bad.gz: corrupt or truncated gzip"):
        read_idx(path)
    # a gzip stream cut short
    path.write_bytes(good[: len(good) // 2])
    with pytest.raises(DataError, match="bad.gz: corrupt or truncated gzip"):
        read_idx(path)
    # a wrong CRC in the trailer
    crc = bytearray(good)
    crc[-8] ^= 0xFF
    path.write_bytes(bytes(crc))
    with pytest.raises(DataError, match="bad.gz"):
        read_idx(path)


def test_missing_file_is_a_data_error(tmp_path):
    with pytest.raises(DataError, match="nope.gz: cannot read"):
        read_idx(tmp_path / "nope.gz")


def test_header_claiming_huge_size(tmp_path):
    raw = struct.pack(">HBBIII", 0, 0x08, 3, 100000, 1000, 1000) + b"\x00" * 16
    with pytest.raises(DataError, match="more than"):
        read_idx(_write(tmp_path / "huge", raw, False))


def test_validate_pair(images):
    validate_pair(images, np.zeros(7, np.uint8), "ok")
    with pytest.raises(DataError, match=r"7 images but labels of shape \(6,\)"):
        validate_pair(images, np.zeros(6, np.uint8), "x")
    with pytest.raises(DataError, match=r"label 12 outside \[0, 10\)"):
        validate_pair(images, np.full(7, 12, np.uint8), "x")
    with pytest.raises(DataError, match="expected \\(N, H, W\\)"):
        validate_pair(images[0], np.zeros(5, np.uint8), "x")


def test_reads_the_real_mnist_test_labels(shared_data):
    path = os.path.join(shared_data, "mnist", "t10k-labels-idx1-ubyte.gz")
    if not os.path.isfile(path):
        pytest.skip(f"{path} not present")
    labels = read_idx(path)
    assert labels.shape == (10000,) and labels.dtype == np.uint8
    assert set(np.unique(labels)) == set(range(10))
    with gzip.open(path, "rb") as f:  # the published MD5 of the decompressed file
        assert hashlib.md5(f.read()).hexdigest() == "27ae3e4e09519cfbb04c329615203637"
