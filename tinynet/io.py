"""Writing files so that nothing is lost: a file is complete or not there at all.

Every file tinynet writes (checkpoints, histories, plots, benchmark and study results,
downloads, caches) goes through :func:`atomic_write`: the bytes go to a temporary file
in the target folder, which is flushed, fsynced and only then renamed over the final
name. A crash, a full disk or Ctrl-C mid-write leaves the previous file untouched.
"""

from __future__ import annotations

import os
import tempfile
from collections.abc import Callable

__all__ = ["atomic_write"]


def atomic_write(path: str, write: Callable[[object], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync, then rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix="." + os.path.basename(path) + ".", suffix=".part",
                               dir=folder)
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        try:  # make the rename itself durable
            dfd = os.open(folder, os.O_RDONLY)
            try:
                os.fsync(dfd)
            finally:
                os.close(dfd)
        except OSError:
            pass
    except BaseException:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise
