"""Reading an untrusted ``.npz`` (a zip of ``.npy`` arrays) within a memory budget.

:func:`open_regular` opens only regular files (a FIFO, a device or a folder is refused
at once, never waited on). :class:`NpzReader` checks the zip's central directory before
Python's ``zipfile`` parses it (member count and size), then every member from the
directory alone -- its name, compression, declared sizes, the ratio of inflated to
compressed bytes -- before a byte of it is inflated. A member's ``.npy`` header is read
by itself (at most ``MAX_NPY_HEADER`` bytes) and bounded before any array memory is
allocated; the data are then inflated in chunks straight into that array and never past
the size the headers declare (``zipfile`` checks each member's CRC at its end). Nothing
is unpickled: object and structured dtypes are refused from the header.

Every problem raises :class:`NpzError` (a ValueError) with a message naming the member;
callers wrap it with the file's name.
"""

from __future__ import annotations

import ast
import math
import os
import stat
import struct
import zipfile
from typing import BinaryIO

import numpy

from .errors import DataError

MAX_NPY_HEADER = 10_000             # NumPy's own limit on a .npy header's length
CHUNK = 1 << 20                     # bytes inflated per read
CENTRAL_ENTRY_BYTES = 256           # central-directory bytes allowed per member
# Compressed members (numpy.savez_compressed) may inflate to at most this many times their
# compressed size, all together, beyond INFLATE_SLACK bytes. tinynet.save never compresses
# (float weights barely shrink), and deflate reaches about 1,030:1 on zeros, so only
# a zip bomb -- or a big array of zeros -- gets near it.
MAX_INFLATE_RATIO = 100
INFLATE_SLACK = 16 << 20
ALLOWED_KINDS = "biuf"              # bool, signed and unsigned integers, floats
MAX_ITEMSIZE = 8
MAX_NDIM = 32


class NpzError(ValueError):
    """The archive or one member breaks a rule; the message names the member."""


def _kind_of(mode: int) -> str:
    for test, name in ((stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
                       (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
                       (stat.S_ISSOCK, "a socket")):
        if test(mode):
            return name
    return "not a regular file"


def open_regular(path: str, what: str) -> BinaryIO:
    """Open ``path`` for binary reading if it is a regular file, else raise DataError.

    The file is opened with ``O_NONBLOCK`` and checked with ``fstat`` before anything
    is read, so a FIFO (which would wait for a writer forever), a device or a folder is
    refused at once, with the message ``"<path>: <what> is a FIFO (named pipe), not a
    regular file"``. Symbolic links are followed.
    """
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except FileNotFoundError as e:
        raise DataError(f"{path}: {what} not found") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read {what}: {e.strerror or e}") from e
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{path}: {what} is {_kind_of(mode)}, not a regular file")
        if hasattr(os, "set_blocking"):
            os.set_blocking(fd, True)
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def _central_directory(f: BinaryIO, size: int) -> tuple[int, int]:
    """(members, bytes) of the zip's central directory, from its end record(s)."""
    tail_len = min(size, 22 + 65535)
    f.seek(size - tail_len)
    tail = f.read(tail_len)
    pos = tail.rfind(b"PK\x05\x06")
    if pos < 0 or len(tail) - pos < 22:
        raise zipfile.BadZipFile("no end-of-central-directory record (truncated?)")
    fields = struct.unpack("<4s4H2LH", tail[pos:pos + 22])
    members, cd_size, cd_offset = fields[4], fields[5], fields[6]
    if members == 0xFFFF or cd_size == 0xFFFFFFFF or cd_offset == 0xFFFFFFFF:  # zip64
        if pos < 20 or tail[pos - 20:pos - 16] != b"PK\x06\x07":
            raise zipfile.BadZipFile("zip64 end record locator missing")
        offset = struct.unpack("<4sLQL", tail[pos - 20:pos])[2]
        if offset > size - 56:
            raise zipfile.BadZipFile("zip64 end record outside the file")
        f.seek(offset)
        record = f.read(56)
        if record[:4] != b"PK\x06\x06":
            raise zipfile.BadZipFile("zip64 end record missing")
        fields64 = struct.unpack("<4sQ2H2L4Q", record)
        members, cd_size = fields64[7], fields64[8]
    return members, cd_size


class NpzReader:
    """The members of an ``.npz`` opened from ``f``, checked from its directory alone.

    Args:
        f: a binary file (see :func:`open_regular`); its size is taken from ``fstat``.
        max_members: refuse archives with more members (their directory is parsed
            into Python objects by ``zipfile``).
        allowed: ``allowed(name) -> bool`` for a member name without ``.npy``;
            others are refused before anything is inflated. Checked when the first
            member is opened (so a caller can first report a missing member).

    Attributes:
        members: ``{name without .npy: ZipInfo}``, in the archive's order.
    """

    def __init__(self, f: BinaryIO, max_members: int, allowed) -> None:
        self._allowed, self._checked = allowed, False
        size = os.fstat(f.fileno()).st_size
        count, cd_size = _central_directory(f, size)
        if count > max_members or cd_size > max_members * CENTRAL_ENTRY_BYTES:
            raise NpzError(f"{count:,} members in a {cd_size:,}-byte directory, more than "
                           f"the {max_members:,} accepted")
        f.seek(0)
        self.zf = zipfile.ZipFile(f)
        infos = self.zf.infolist()
        if len(infos) > max_members:
            raise NpzError(f"{len(infos):,} members, more than the {max_members:,} accepted")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise NpzError(f"duplicate members {dup}")
        self.members: dict[str, zipfile.ZipInfo] = {}
        inflated = compressed = 0
        for info in infos:
            name = info.filename
            if not name.endswith(".npy"):
                raise NpzError(f"member {name!r} is not a .npy array")
            if info.flag_bits & 0x1:
                raise NpzError(f"member {name!r} is encrypted")
            if info.compress_type not in (zipfile.ZIP_STORED, zipfile.ZIP_DEFLATED):
                raise NpzError(f"member {name!r} uses compression method "
                               f"{info.compress_type}; only stored and deflated members "
                               f"(numpy.savez, numpy.savez_compressed) are read")
            if info.header_offset + info.compress_size > size:
                raise NpzError(f"member {name!r} declares {info.compress_size:,} bytes "
                               f"beyond the end of the {size:,}-byte file")
            if info.compress_type == zipfile.ZIP_STORED:
                if info.file_size != info.compress_size:
                    raise NpzError(f"member {name!r} is stored uncompressed but declares "
                                   f"{info.file_size:,} bytes in {info.compress_size:,}")
            else:
                inflated += info.file_size
                compressed += info.compress_size
            self.members[name[:-4]] = info
        self._inflated, self._compressed = inflated, compressed

    def check_names(self) -> None:
        """Refuse the archive if a member's name is not ``allowed``, or if its compressed
        members would inflate too much (nothing is inflated to find out)."""
        if not self._checked:
            for name, info in self.members.items():
                if not self._allowed(name):
                    raise NpzError(f"member {info.filename!r} is not part of the format "
                                   f"(refused before reading it)")
            if self._inflated > INFLATE_SLACK + MAX_INFLATE_RATIO * self._compressed:
                raise NpzError(f"compressed members declare {self._inflated:,} bytes from "
                               f"{self._compressed:,} (more than {MAX_INFLATE_RATIO}:1: a zip "
                               f"bomb?)")
            self._checked = True

    def close(self) -> None:
        self.zf.close()

    def __enter__(self) -> NpzReader:  # noqa: PYI034 -- no Self before 3.11
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def header(self, name: str) -> tuple[tuple, numpy.dtype, bool, int]:
        """``(shape, dtype, fortran_order, data_bytes)`` of member ``name``'s ``.npy`` header.

        Reads at most ``MAX_NPY_HEADER`` + 12 bytes of the member. The declared data size
        must equal what the zip directory declares for the member.
        """
        self.check_names()
        info = self.members[name]
        with self.zf.open(info) as m:
            magic = m.read(8)
            if len(magic) < 8 or magic[:6] != b"\x93NUMPY":
                raise NpzError(f"member {info.filename!r} is not a .npy array")
            major = magic[6]
            if major not in (1, 2, 3):
                raise NpzError(f"member {info.filename!r}: unsupported .npy format "
                               f"version {major}.{magic[7]}")
            size_bytes = m.read(2 if major == 1 else 4)
            hlen = int.from_bytes(size_bytes, "little") if len(size_bytes) in (2, 4) else -1
            if not 0 < hlen <= MAX_NPY_HEADER:
                raise NpzError(f"member {info.filename!r}: .npy header length {hlen} "
                               f"(at most {MAX_NPY_HEADER} accepted)")
            text = m.read(hlen)
        if len(text) != hlen:
            raise NpzError(f"member {info.filename!r}: truncated .npy header")
        shape, dtype, fortran = _parse_npy_header(text, major, info.filename)
        offset = 8 + len(size_bytes) + hlen
        data_bytes = math.prod(shape) * dtype.itemsize
        if offset + data_bytes != info.file_size:
            raise NpzError(f"member {info.filename!r} declares shape {shape} of {dtype} "
                           f"({data_bytes:,} bytes) but holds {info.file_size - offset:,} "
                           f"bytes of data")
        return shape, dtype, fortran, data_bytes

    def read(self, name: str) -> numpy.ndarray:
        """The array of member ``name``, inflated in chunks into its own memory only."""
        shape, dtype, fortran, data_bytes = self.header(name)
        info = self.members[name]
        array = numpy.empty(math.prod(shape), dtype=dtype)
        view = memoryview(array).cast("B") if data_bytes else memoryview(b"")
        with self.zf.open(info) as m:
            m.read(info.file_size - data_bytes)  # the header, checked above
            done = 0
            while done < data_bytes:
                chunk = m.read(min(CHUNK, data_bytes - done))
                if not chunk:
                    raise NpzError(f"member {info.filename!r} ends after {done:,} of "
                                   f"{data_bytes:,} data bytes")
                view[done:done + len(chunk)] = chunk
                done += len(chunk)
            if m.read(1):
                raise NpzError(f"member {info.filename!r} holds more than it declares")
        return array.reshape(shape, order="F" if fortran else "C")


def _parse_npy_header(text: bytes, major: int, member: str) -> tuple[tuple, numpy.dtype, bool]:
    try:
        header = ast.literal_eval(text.decode("latin1" if major < 3 else "utf8"))
    except (SyntaxError, ValueError, UnicodeDecodeError, MemoryError, RecursionError) as e:
        raise NpzError(f"member {member!r}: unreadable .npy header ({e})") from None
    if not isinstance(header, dict) or set(header) != {"descr", "fortran_order", "shape"}:
        raise NpzError(f"member {member!r}: .npy header is not a dict of descr, "
                       f"fortran_order and shape")
    shape, fortran, descr = header["shape"], header["fortran_order"], header["descr"]
    if not isinstance(shape, tuple) or len(shape) > MAX_NDIM or any(
            not isinstance(s, int) or isinstance(s, bool) or s < 0 for s in shape):
        raise NpzError(f"member {member!r} has an invalid shape {shape!r}")
    if not isinstance(fortran, bool):
        raise NpzError(f"member {member!r}: fortran_order {fortran!r} is not a bool")
    if not isinstance(descr, str):  # a list describes a structured dtype (maybe objects)
        raise NpzError(f"member {member!r} has dtype {descr!r}; only bool, integer and "
                       f"floating arrays are accepted (object arrays would need pickle)")
    try:
        dtype = numpy.dtype(descr)
    except (TypeError, ValueError) as e:
        raise NpzError(f"member {member!r}: unknown dtype {descr!r} ({e})") from None
    if dtype.hasobject or dtype.kind not in ALLOWED_KINDS or dtype.fields is not None \
            or dtype.itemsize > MAX_ITEMSIZE:
        raise NpzError(f"member {member!r} has dtype {dtype}; only bool, integer and "
                       f"floating arrays of at most 8 bytes per value are accepted "
                       f"(object arrays would need pickle)")
    return shape, dtype, fortran
