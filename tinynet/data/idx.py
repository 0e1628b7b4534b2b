"""Reader for the IDX format of MNIST and Fashion-MNIST (gzipped or raw).

An IDX file is a big-endian header -- two zero bytes, a type code (0x08 = uint8),
the number of dimensions d, then d uint32 sizes -- followed by the values in C order.
Labels are ``magic 0x00000801`` with one dim ``(N,)``; images ``0x00000803`` with
``(N, H, W)``. Everything is validated before the array is returned: a truncated,
padded or corrupt file raises :class:`tinynet.DataError` naming the file.

Nothing is read or allocated on trust: the header is read first and the size it
declares is checked against the ``file_bytes`` limit (:mod:`tinynet.data.limits`) and,
for a raw file, against the file's size; then exactly that many bytes are read (a gzip
stream is inflated to at most the declared size plus one byte, which tells trailing
data apart) straight into the array.
"""

from __future__ import annotations

import gzip
import os
import struct
import zlib

import numpy as np

from ..errors import DataError
from . import limits
from .files import open_regular, shown, size_of

_TYPES = {0x08: np.uint8, 0x09: np.int8, 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}
CHUNK = 1 << 20
# what a corrupt gzip stream raises (BadGzipFile is an OSError)
_GZIP_ERRORS = (OSError, EOFError, zlib.error)


def parse_header(raw: bytes, path: str = "<bytes>", max_bytes: int | None = None,
                 count: int | None = None) -> tuple[int, tuple, np.dtype, int]:
    """``(header length, dims, dtype, data bytes)`` of an IDX header at the start of ``raw``.

    ``raw`` needs only the header (4 bytes, then 4 per dim). Refuses a bad magic number,
    data over the ``file_bytes`` limit and, with ``count``, a first dim other than
    ``count``.
    """
    max_bytes = limits.get("file_bytes", max_bytes)
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
    need = dtype.itemsize
    for d in dims:
        need *= d
    if need > max_bytes:
        raise DataError(f"{path}: IDX header claims dims {dims} ({need:,} bytes), more "
                        f"than {limits.over('file_bytes', max_bytes)}")
    if count is not None and dims[0] != count:
        raise DataError(f"{path}: IDX header declares {dims[0]:,} items, expected {count:,} "
                        f"(one per image of the images file)")
    return head, dims, dtype, need


def _array(buf: np.ndarray, dims: tuple, dtype: np.dtype) -> np.ndarray:
    arr = buf.view(dtype).reshape(dims)
    return arr if dtype.isnative else arr.astype(dtype.newbyteorder("="))


def _size_error(path: str, dims: tuple, need: int, got: int, exact: bool = True):
    if got < need:
        return DataError(f"{path}: IDX file truncated: header says dims {dims} = {need} bytes "
                         f"of data, file has {got}")
    return DataError(f"{path}: IDX file has trailing bytes: header says dims {dims} = "
                     f"{need} bytes of data, file has {got if exact else f'more than {need}'}")


def read_idx_bytes(raw: bytes, path: str = "<bytes>",
                   max_bytes: int | None = None) -> np.ndarray:
    """Parse the bytes of an (uncompressed) IDX file into an array of its declared shape."""
    head, dims, dtype, need = parse_header(raw, path, max_bytes)
    if len(raw) - head != need:
        raise _size_error(path, dims, need, len(raw) - head)
    buf = np.frombuffer(raw, dtype=np.uint8, count=need, offset=head).copy()
    return _array(buf, dims, dtype)


def _read_exactly(f, n: int) -> bytes:
    out = b""
    while len(out) < n:
        chunk = f.read(n - len(out))
        if not chunk:
            break
        out += chunk
    return out


def _read_into(f, buf: np.ndarray) -> int:
    view = memoryview(buf)
    got = 0
    while got < len(view):
        n = f.readinto(view[got:got + CHUNK])
        if not n:
            break
        got += n
    return got


def read_idx(path: str | os.PathLike, max_bytes: int | None = None,
             count: int | None = None) -> np.ndarray:
    """Read an IDX file (``.gz`` or raw) from disk, validating its header and length.

    ``max_bytes`` overrides the ``file_bytes`` limit (``TINYNET_MAX_FILE_BYTES``) on the
    data the header may declare; ``count`` is the first dim the header must declare
    (checked before any data is read).
    """
    path = os.fspath(path)
    name = shown(path)
    with open_regular(path, "IDX file") as f:
        try:
            gz = f.read(2) == b"\x1f\x8b"
            f.seek(0)
            src = gzip.GzipFile(fileobj=f, mode="rb") if gz else f
            try:
                start = _read_exactly(src, 4)
                ndim = start[3] if len(start) == 4 else 0
                raw = start + _read_exactly(src, 4 * ndim) if 1 <= ndim <= 4 else start
                head, dims, dtype, need = parse_header(raw, name, max_bytes, count)
                # a raw file's size is known: check it before allocating
                if not gz and size_of(f) - head != need:
                    raise _size_error(name, dims, need, size_of(f) - head)
                buf = np.empty(need, dtype=np.uint8)
                got = _read_into(src, buf)
                if got < need:
                    raise _size_error(name, dims, need, got)
                if src.read(1):  # one byte past the declared end: never inflate further
                    raise _size_error(name, dims, need, need + 1, exact=False)
            finally:
                if gz:
                    src.close()
        except DataError:
            raise
        except _GZIP_ERRORS as e:
            if gz:
                raise DataError(f"{name}: corrupt or truncated gzip data ({e})") from None
            raise DataError(f"{name}: cannot read: {e}") from None
    return _array(buf, dims, dtype)


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


__all__ = ["parse_header", "read_idx", "read_idx_bytes", "validate_pair"]
