"""Opening data files: regular files only, never more bytes than a limit allows.

A path handed to a reader may be a FIFO (``open`` blocks forever), a character device
or a symlink to one (``/dev/zero`` reads without end), or a folder. :func:`open_regular`
opens without blocking (``O_NONBLOCK``), checks with ``fstat`` that what was opened is a
regular file, and only then hands it over, so the check and the read are about the same
file. :func:`read_regular` also refuses a file larger than a limit before reading it.

File names on POSIX are bytes; Python turns the ones that are not UTF-8 into strings
with surrogate escapes (``b"caf\\xe9"`` -> ``"caf\\udce9"``), which cannot be encoded or
printed as they are. :func:`shown` gives the printable form used in messages.
"""

from __future__ import annotations

import os
import stat

from ..errors import DataError
from . import limits

_KIND = [(stat.S_ISDIR, "a folder"), (stat.S_ISFIFO, "a FIFO (named pipe)"),
         (stat.S_ISCHR, "a character device"), (stat.S_ISBLK, "a block device"),
         (stat.S_ISSOCK, "a socket")]


def shown(path) -> str:
    """``path`` as printable text: bytes that are not UTF-8 appear as ``\\xNN``."""
    if isinstance(path, bytes):
        return path.decode("utf-8", "backslashreplace")
    path = os.fspath(path)
    return path.encode("utf-8", "surrogateescape").decode("utf-8", "backslashreplace")


def _kind(mode: int) -> str:
    return next((text for test, text in _KIND if test(mode)), "not a regular file")


def open_regular(path, what: str = "data file"):
    """Open ``path`` for binary reading if it is a regular file (symlinks followed).

    Returns the open file; raises :class:`tinynet.DataError` naming the path for a
    missing or unreadable file and for anything that is not a regular file.
    """
    path = os.fspath(path)
    flags = os.O_RDONLY | getattr(os, "O_NONBLOCK", 0) | getattr(os, "O_NOCTTY", 0) | \
        getattr(os, "O_CLOEXEC", 0) | getattr(os, "O_BINARY", 0)
    try:
        fd = os.open(path, flags)
    except OSError as e:
        raise DataError(f"{shown(path)}: cannot read: {e.strerror or e}") from None
    try:
        mode = os.fstat(fd).st_mode
        if not stat.S_ISREG(mode):
            raise DataError(f"{shown(path)}: is {_kind(mode)}, not a regular file (the "
                            f"{what} must be one)")
        return os.fdopen(fd, "rb")
    except BaseException:
        os.close(fd)
        raise


def size_of(f) -> int:
    """Size in bytes of the open regular file ``f``."""
    return os.fstat(f.fileno()).st_size


def read_regular(path, max_bytes: int, limit: str = "file_bytes",
                 what: str = "data file") -> bytes:
    """All bytes of the regular file ``path``, refusing one over ``max_bytes`` unread.

    ``limit`` names the limit of :mod:`tinynet.data.limits` that ``max_bytes`` came from,
    for the message. A file that grows while it is read is cut at ``max_bytes + 1`` and
    refused too.
    """
    with open_regular(path, what) as f:
        size = size_of(f)
        if size > max_bytes:
            raise DataError(f"{shown(path)}: {size:,} bytes, more than "
                            f"{limits.over(limit, max_bytes)}")
        try:
            data = f.read(max_bytes + 1)
        except OSError as e:
            raise DataError(f"{shown(path)}: cannot read: {e.strerror or e}") from None
    if len(data) > max_bytes:
        raise DataError(f"{shown(path)}: grew past {limits.over(limit, max_bytes)} while "
                        f"being read")
    return data


__all__ = ["open_regular", "read_regular", "shown", "size_of"]
