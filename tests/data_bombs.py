"""Hostile data files at full size, written in a moment: for the limit tests.

A gzip bomb is mostly zeros. Deflating gigabytes takes seconds a gigabyte, so a run of
64 MiB of zeros is deflated once, ending in a full flush (which makes the block stand
alone: no reference reaches before it), and the compressed block is repeated. The
gzip trailer's CRC of the zeros comes from GF(2) matrix powers, as zlib's
``crc32_combine`` computes it. Every file here is valid: a gzip reader that inflated
it all would get every byte and a matching CRC.

Imported by ``test_data_limits.py``; each maker writes into a folder it is given.
"""

from __future__ import annotations

import functools
import io
import os
import struct
import tarfile
import zlib

import numpy as np

ZERO_BLOCK = 64 << 20


# --- CRC-32 of runs of zeros ------------------------------------------------------------

def _gf2_times(mat: list, vec: int) -> int:
    out, i = 0, 0
    while vec:
        if vec & 1:
            out ^= mat[i]
        vec >>= 1
        i += 1
    return out


def _gf2_square(mat: list) -> list:
    return [_gf2_times(mat, mat[n]) for n in range(32)]


def crc32_zeros(crc: int, n: int) -> int:
    """``zlib.crc32(bytes(n), crc)`` without touching ``n`` bytes."""
    if n <= 0:
        return crc
    odd = [0xEDB88320] + [1 << i for i in range(31)]  # one zero bit
    even = _gf2_square(odd)  # two zero bits
    odd = _gf2_square(even)  # four zero bits
    reg = crc ^ 0xFFFFFFFF
    while True:  # n is in bytes: the first squaring below gives one zero byte
        even = _gf2_square(odd)
        if n & 1:
            reg = _gf2_times(even, reg)
        n >>= 1
        if not n:
            break
        odd = _gf2_square(even)
        if n & 1:
            reg = _gf2_times(odd, reg)
        n >>= 1
        if not n:
            break
    return reg ^ 0xFFFFFFFF


@functools.cache
def _deflated_zeros() -> bytes:
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    return c.compress(bytes(ZERO_BLOCK)) + c.flush(zlib.Z_FULL_FLUSH)


def gzip_bytes(parts) -> bytes:
    """A gzip file of ``parts``: bytes, or an int ``n`` for ``n`` zero bytes."""
    out = [b"\x1f\x8b\x08\x00\x00\x00\x00\x00\x00\xff"]
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    crc = 0
    for part in parts:
        if isinstance(part, int):
            whole, rest = divmod(part, ZERO_BLOCK)
            out.append(_deflated_zeros() * whole)
            crc = crc32_zeros(crc, whole * ZERO_BLOCK)
            part = bytes(rest)
        out.append(c.compress(part) + c.flush(zlib.Z_FULL_FLUSH))
        crc = zlib.crc32(part, crc)
    size = sum(p if isinstance(p, int) else len(p) for p in parts)
    out.append(c.flush(zlib.Z_FINISH))
    out.append(struct.pack("<II", crc & 0xFFFFFFFF, size & 0xFFFFFFFF))
    return b"".join(out)


def write(path, data: bytes) -> str:
    path = os.fspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    return path


# --- tar streams --------------------------------------------------------------------------

def tar_parts(members) -> list:
    """Parts of a tar: ``members`` are (name, data or zero count) or (name, type, link)."""
    parts = []
    for m in members:
        info = tarfile.TarInfo(m[0])
        if len(m) == 3:
            info.type, info.linkname = m[1], m[2]
            parts.append(info.tobuf(tarfile.GNU_FORMAT))
            continue
        data = m[1]
        info.size = data if isinstance(data, int) else len(data)
        parts.append(info.tobuf(tarfile.GNU_FORMAT))
        parts.append(data)
        if info.size % 512:
            parts.append(bytes(512 - info.size % 512))
    parts.append(bytes(1024))
    return parts


# --- pickles ------------------------------------------------------------------------------

def deep_pickle(via: str = "dict", depth: int = 200_000) -> bytes:
    """A ``depth``-deep 1-tuple used as a dict key or put in a set or frozenset."""
    deep = b"K\x01" + b"\x85" * depth
    if via == "dict":
        return b"\x80\x02}" + deep + b"K\x00s."
    return b"\x80\x02c__builtin__\n" + via.encode() + b"\n]" + deep + b"a\x85R."


def cifar_folder(root, batch: bytes, archive: bool) -> str:
    """A CIFAR-10 folder whose ``test_batch`` is ``batch``: extracted or as the archive."""
    files = {"cifar-10-batches-py/batches.meta": b"meta",
             "cifar-10-batches-py/test_batch": batch}
    root = os.fspath(root)
    if archive:
        write(os.path.join(root, "cifar-10-python.tar.gz"),
              gzip_bytes(tar_parts(list(files.items()))))
    else:
        for name, data in files.items():
            write(os.path.join(root, name), data)
    return root


# --- IDX ----------------------------------------------------------------------------------

def idx_header(dims, code: int = 0x08) -> bytes:
    return struct.pack(">HBB", 0, code, len(dims)) + struct.pack(">" + "I" * len(dims), *dims)


def idx_trailing_zeros(path, images: int = 10, zeros: int = 4 << 30) -> str:
    """A gzip of an IDX file of ``images`` 28x28 images, then ``zeros`` more zero bytes."""
    return write(path, gzip_bytes([idx_header((images, 28, 28)), images * 784 + zeros]))


def idx_huge(path, n: int = 2_147_483_632, labels: bool = False) -> str:
    """A valid gzipped IDX file of ``n`` zero labels, or ``n`` 1x1 images (2 MB each)."""
    dims = (n,) if labels else (n, 1, 1)
    return write(path, gzip_bytes([idx_header(dims), n]))


def idx_sparse_raw(path, size: int = 3 << 30) -> str:
    """A raw IDX file of 10 28x28 images, made ``size`` bytes long (sparse, all zeros)."""
    path = write(path, idx_header((10, 28, 28)) + bytes(7840))
    os.truncate(path, size)
    return path


def mnist_test_folder(root, images: str, labels: str) -> str:
    """``root`` with the MNIST test file names linked to the given files."""
    os.makedirs(root, exist_ok=True)
    for src, name in ((images, "t10k-images-idx3-ubyte"), (labels, "t10k-labels-idx1-ubyte")):
        with open(src, "rb") as f:
            ext = ".gz" if f.read(2) == b"\x1f\x8b" else ""
        os.symlink(os.path.abspath(src), os.path.join(root, name + ext))
    return os.fspath(root)


# --- images -------------------------------------------------------------------------------

@functools.cache
def png(width: int, height: int, value: int = 0) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(np.full((height, width, 3), value, np.uint8)).save(
        buf, format="PNG", compress_level=1)
    return buf.getvalue()


def hardlink_bomb(path, links: int = 59, size: int = 4096) -> str:
    """A tar.gz of one ``size`` x ``size`` PNG and ``links`` hard links to it (~1 KB)."""
    first = "train/cat/0.png"
    members = [(first, png(size, size))]
    members += [(f"train/cat/{i}.png", tarfile.LNKTYPE, first) for i in range(1, links + 1)]
    return write(path, gzip_bytes(tar_parts(members)))


def zero_members(path, count: int = 63, size: int = 64 << 20, image: bool = True) -> str:
    """A tar.gz of ``count`` zero-filled members of ``size`` bytes that are not images,
    after one real image (so the tree is a valid image folder but for them)."""
    members = [("train/cat/a.png", png(4, 4))] if image else []
    members += [(f"train/cat/blob{i}.bin", size) for i in range(count)]
    return write(path, gzip_bytes(tar_parts(members)))


def padded_png_archive(path, size: int = 3_000_000_000) -> str:
    """A tar.gz whose one image is a 4x4 PNG followed by zeros up to ``size`` bytes."""
    head = png(4, 4)
    members = [("train/cat/a.png", size)]
    parts = tar_parts(members)
    parts[1] = head  # the member's data: the PNG, then the zeros
    parts.insert(2, size - len(head))
    return write(path, gzip_bytes(parts))


def padded_png_folder(root, size: int = 3_000_000_000) -> str:
    """A folder ``cat/a.png``: a 4x4 PNG made ``size`` bytes long (sparse zeros)."""
    path = write(os.path.join(root, "cat", "a.png"), png(4, 4))
    os.truncate(path, size)
    return os.fspath(root)
