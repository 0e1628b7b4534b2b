"""Writing files so that nothing is lost: a file is complete or not there at all.

Every file tinynet writes (checkpoints, histories, plots, benchmark and study results,
downloads, caches) goes through :func:`atomic_write`: the bytes go to a temporary file
in the target folder, which is flushed, fsynced and only then renamed over the final
name. A crash, a full disk or Ctrl-C mid-write leaves the previous file untouched.
The file gets the permissions any new file gets (0o666 less the process's umask, as
``open(path, "w")`` gives), not ``tempfile.mkstemp``'s private 0o600.
"""

from __future__ import annotations

import os
import secrets
from collections.abc import Callable

__all__ = ["atomic_write"]


def atomic_write(path: str, write: Callable[[object], None]) -> None:
    """Call ``write(f)`` on a temporary file beside ``path``, fsync, then rename it to ``path``."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    fd, tmp = _new_temporary(folder, os.path.basename(path))
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


def _new_temporary(folder: str, name: str) -> tuple[int, str]:
    """A new file ``.<name>.<random>.part`` in ``folder``, opened for writing.

    Created with mode 0o666 so the kernel applies the umask, as for any new file (reading
    the umask would mean setting it, which is process-wide); ``O_EXCL`` makes the name
    ours alone.
    """
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_BINARY", 0)
    for _ in range(100):
        tmp = os.path.join(folder, f".{name}.{secrets.token_hex(4)}.part")
        try:
            return os.open(tmp, flags, 0o666), tmp
        except FileExistsError:
            continue
    raise FileExistsError(f"atomic_write: no free temporary name beside {name} in {folder}")
