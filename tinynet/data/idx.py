"""Reader for the IDX format of MNIST and Fashion-MNIST (gzipped or raw).

An IDX file is a big-endian header -- two zero bytes, a type code (0x08 = uint8),
the number of dimensions d, then d uint32 sizes -- followed by the values in C order.
Labels are ``magic 0x00000801`` with one dim ``(N,)``; images ``0x00000803`` with
``(N, H, W)``. Everything is validated before the array is returned: a truncated,
padded or corrupt file raises :class:`tinynet.DataError` naming the file.
"""

from __future__ import annotations

import os
import struct
import zlib

import numpy as np

from ..errors import DataError

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
MAX_BYTES = 1 << 31  # no IDX file we read is near 2 GiB; refuse headers that claim more


def read_idx_bytes(raw: bytes, path: str = "<bytes>") -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into an array of its declared shape."""
    if len(raw) < 4:
        raise DataError(f"{path}: {len(raw)} bytes is too short for an IDX header")
    zero, code, ndim = struct.unpack(">HBB", raw[:4])
    if zero != 0 or code not in _TYPES or not 1 <= ndim <= 4:
        raise DataError(f"{path}: bad IDX magic number 0x{raw[:4].hex()} (expected "
                        f"0x00000801 for labels or 0x00000803 for images)")
    head = 4 + 4 * ndim
    if len(raw) < head:
        raise DataError(f"{path}: truncated IDX header ({len(raw)} bytes, need {head})")
    dims = struct.unpack(">" + "I" * ndim, raw[4:head])
    dtype = np.dtype(_TYPES[code])
    count = 1
    for d in dims:
        count *= d
    need = count * dtype.itemsize
    if need > MAX_BYTES:
        raise DataError(f"{path}: IDX header claims dims {dims} ({need} bytes), "
                        f"more than the {MAX_BYTES} this reader accepts")
    if len(raw) - head != need:
        what = "truncated" if len(raw) - head < need else "has trailing bytes"
        raise DataError(f"{path}: IDX file {what}: header says dims {dims} = {need} bytes "
                        f"of data, file has {len(raw) - head}")
    arr = np.frombuffer(raw, dtype=dtype, count=count, offset=head).reshape(dims)
    return arr.astype(dtype.newbyteorder("="), copy=True)


def read_idx(path: str | os.PathLike) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) from disk, validating its header and length."""
    path = os.fspath(path)
    try:
        with open(path, "rb") as f:
            raw = f.read(MAX_BYTES + 1)
    except OSError as e:
        raise DataError(f"{path}: cannot read: {e.strerror or e}") from e
    if raw[:2] == b"\x1f\x8b":
        try:
            raw = _gunzip(raw)
        except (OSError, EOFError, zlib.error) as e:
            raise DataError(f"{path}: corrupt or truncated gzip data ({e})") from e
    return read_idx_bytes(raw, path)


def _gunzip(raw: bytes) -> bytes:
    d = zlib.decompressobj(16 + zlib.MAX_WBITS)
    out = d.decompress(raw, MAX_BYTES + 1)
    if len(out) > MAX_BYTES:
        raise OSError(f"decompresses to more than {MAX_BYTES} bytes")
    if not d.eof:
        raise EOFError("compressed stream ends early")
    return out


def validate_pair(images: np.ndarray, labels: np.ndarray, name: str,
                  num_classes: int = 10) -> None:
    """Check that an IDX image file and its label file belong together."""
    if images.ndim != 3 or images.dtype != np.uint8:
        raise DataError(f"{name}: images are {images.dtype} of shape {images.shape}, "
                        f"expected (N, H, W) uint8 (IDX type code 0x08)")
    if labels.ndim != 1 or labels.shape[0] != images.shape[0]:
        raise DataError(f"{name}: {images.shape[0]} images but labels of shape {labels.shape}")
    if labels.dtype.kind not in "iu":  # float or signed types from a corrupt type code
        raise DataError(f"{name}: labels are {labels.dtype}, expected integers")
    if labels.size and (int(labels.min()) < 0 or int(labels.max()) >= num_classes):
        bad = int(labels.min()) if int(labels.min()) < 0 else int(labels.max())
        raise DataError(f"{name}: label {bad} outside [0, {num_classes})")


__all__ = ["read_idx", "read_idx_bytes", "validate_pair"]
