"""A training run's checkpoint folder: checked before training starts, locked while it runs.

``fit`` (and ``tinynet train`` before it loads any data) calls
:func:`check_checkpoint_dir`: the folder must exist or be creatable, be writable (a
small file is written, fsynced and removed), and ``checkpoint.npz`` in it must be a
regular file if it exists (not a folder, a FIFO or a device). Then ``fit`` holds a
:class:`RunLock` on the folder while it trains, so that two runs never share one folder:
the second is refused with the first one's process id, and never deletes the first
one's temporary ``.part`` files. The lock is a file, ``checkpoint.lock``, holding the
owner's pid and locked with ``flock`` (released by the system when the process dies,
however it dies); a lock file left by a process that is gone is taken over, and ``fit``
says so. Without ``fcntl`` (Windows) the file alone is the lock: a lock left by a killed
process must then be removed by hand, and the message says which file.
"""

from __future__ import annotations

import contextlib
import os
import stat
import tempfile
import time

from .errors import CheckpointError

try:
    import fcntl
except ImportError:  # Windows
    fcntl = None

LOCK_NAME = "checkpoint.lock"
PROBE_BYTES = 4096


def _reason(e: OSError) -> str:
    return e.strerror or str(e)


def check_writable(folder: str, what: str = "folder") -> str:
    """Create ``folder`` if needed and check a file can be written in it; its absolute path.

    Raises CheckpointError naming the folder and the reason (not a folder, permission
    denied, read-only file system, no space left on device).
    """
    folder = os.path.abspath(os.fspath(folder))
    if os.path.lexists(folder) and not os.path.isdir(folder):
        raise CheckpointError(f"{folder}: the {what} is a file, not a folder")
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as e:
        raise CheckpointError(f"cannot create the {what} {folder}: {_reason(e)}") from None
    try:
        fd, probe = tempfile.mkstemp(prefix=".checkpoint.npz.probe-", suffix=".part",
                                     dir=folder)
    except OSError as e:
        raise CheckpointError(f"cannot write in the {what} {folder}: {_reason(e)}") from None
    try:
        os.write(fd, b"\0" * PROBE_BYTES)
        os.fsync(fd)
    except OSError as e:
        raise CheckpointError(f"cannot write in the {what} {folder}: {_reason(e)}") from None
    finally:
        os.close(fd)
        with contextlib.suppress(OSError):
            os.unlink(probe)
    return folder


def _kind(mode: int) -> str:
    return ("a folder" if stat.S_ISDIR(mode) else "a FIFO (named pipe)" if stat.S_ISFIFO(mode)
            else "a device" if stat.S_ISCHR(mode) or stat.S_ISBLK(mode) else
            "a socket" if stat.S_ISSOCK(mode) else "not a regular file")


def check_checkpoint_dir(folder: str, name: str = "checkpoint.npz") -> str:
    """Check the checkpoint folder before training; the checkpoint's absolute path.

    The folder is created if needed and must be writable; ``name`` in it, if present,
    must be a regular file. A folder in use by another run is refused too (see
    :func:`lock_owner`). Raises CheckpointError with one line saying what is wrong.
    """
    folder = check_writable(folder, "checkpoint folder")
    path = os.path.join(folder, name)
    try:
        mode = os.stat(path).st_mode
    except FileNotFoundError:
        mode = None
    except OSError as e:
        raise CheckpointError(f"{path}: cannot use the checkpoint: {_reason(e)}") from None
    if mode is not None and not stat.S_ISREG(mode):
        raise CheckpointError(f"{path} is {_kind(mode)}, not a checkpoint file; remove it "
                              f"or choose another checkpoint folder")
    owner = lock_owner(folder)
    if owner is not None:
        raise _in_use(folder, owner)
    return path


def _in_use(folder: str, owner: int | str) -> CheckpointError:
    lock = os.path.join(folder, LOCK_NAME)
    return CheckpointError(f"the checkpoint folder {folder} is in use by another run "
                           f"(process {owner}, lock file {lock}); wait for it to end or "
                           f"stop it, or choose another checkpoint folder")


def _read_pid(fd: int) -> int | None:
    try:
        os.lseek(fd, 0, os.SEEK_SET)
        text = os.read(fd, 32).decode("ascii", "replace").strip()
    except OSError:
        return None
    return int(text) if text.isdigit() else None


def lock_owner(folder: str) -> int | str | None:
    """The pid of the run holding ``folder``'s lock, or None if no live run holds it.

    Only looks: nothing is created, changed or removed.
    """
    path = os.path.join(os.fspath(folder), LOCK_NAME)
    try:
        fd = os.open(path, os.O_RDONLY | getattr(os, "O_NONBLOCK", 0))
    except FileNotFoundError:
        return None
    except OSError:
        return "unknown"
    try:
        if fcntl is None:
            return _read_pid(fd) or "unknown"
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return _read_pid(fd) or "unknown"
        except OSError:
            return None  # a file system without flock: fit's own attempt says so
        return None
    finally:
        os.close(fd)  # also drops the shared lock taken to look


def _flock_patiently(fd: int, tries: int = 20, pause: float = 0.05) -> None:
    """An exclusive flock, retried for about a second: :func:`lock_owner` holds a shared
    lock for an instant while it looks, which must not pass for a run."""
    for attempt in range(tries):
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if attempt == tries - 1:
                raise
            time.sleep(pause)


class RunLock:
    """``with RunLock(folder) as lock:`` -- this process alone uses ``folder``.

    Raises CheckpointError if another live run holds it. ``lock.took_over`` is the pid
    written in a lock file left behind by a process that is gone (taken over), else None;
    ``lock.note`` a line saying so, or why no lock could be taken, else None.
    """

    def __init__(self, folder: str) -> None:
        self.folder = os.path.abspath(os.fspath(folder))
        self.path = os.path.join(self.folder, LOCK_NAME)
        self.fd: int | None = None
        self.took_over: int | None = None
        self.note: str | None = None

    def acquire(self) -> RunLock:
        try:
            os.makedirs(self.folder, exist_ok=True)
        except OSError as e:
            raise CheckpointError(f"cannot create the checkpoint folder {self.folder}: "
                                  f"{_reason(e)}") from None
        if fcntl is None:
            return self._acquire_exclusive_file()
        while True:
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | getattr(os, "O_NONBLOCK", 0),
                             0o644)
            except OSError as e:
                raise CheckpointError(f"cannot create the lock file {self.path}: "
                                      f"{_reason(e)}") from None
            mode = os.fstat(fd).st_mode
            if not stat.S_ISREG(mode):
                os.close(fd)
                raise CheckpointError(f"the lock file {self.path} is {_kind(mode)}; remove "
                                      f"it")
            try:
                _flock_patiently(fd)
            except BlockingIOError:
                owner = _read_pid(fd) or "unknown"
                os.close(fd)
                raise _in_use(self.folder, owner) from None
            except OSError as e:  # e.g. a network file system without flock
                os.close(fd)
                self.note = (f"cannot lock {self.folder} ({_reason(e)}): make sure no "
                             f"other run uses this checkpoint folder")
                return self
            # The file may have been removed (and recreated) by its previous owner
            # between our open and our lock: lock the file that is there now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if same:
                break
            os.close(fd)
        previous = _read_pid(fd)
        if previous is not None and previous != os.getpid():
            self.took_over = previous
            self.note = (f"took over the lock of process {previous}, which ended without "
                         f"releasing it ({self.path})")
        os.ftruncate(fd, 0)
        os.lseek(fd, 0, os.SEEK_SET)
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def _acquire_exclusive_file(self) -> RunLock:
        try:
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            try:
                with open(self.path, "rb") as f:
                    owner = f.read(32).decode("ascii", "replace").strip() or "unknown"
            except OSError:
                owner = "unknown"
            raise CheckpointError(
                f"the checkpoint folder {self.folder} is in use by another run (process "
                f"{owner}, lock file {self.path}); if that run is over, delete the lock "
                f"file") from None
        except OSError as e:
            raise CheckpointError(f"cannot create the lock file {self.path}: "
                                  f"{_reason(e)}") from None
        os.write(fd, f"{os.getpid()}\n".encode())
        self.fd = fd
        return self

    def release(self) -> None:
        """Remove the lock file (if it is still ours) and release the lock."""
        if self.fd is None:
            return
        with contextlib.suppress(OSError):
            if os.path.samestat(os.fstat(self.fd), os.stat(self.path)):
                os.unlink(self.path)  # while still locked: a waiter then sees a new file
        os.close(self.fd)
        self.fd = None

    def __enter__(self) -> RunLock:  # noqa: PYI034 -- no Self before 3.11
        return self.acquire()

    def __exit__(self, *exc) -> None:
        self.release()


def remove_torn_writes(path: str) -> None:
    """Delete temporary files a killed save of ``path`` left beside it (never ``path``).

    Call it only while holding the folder's :class:`RunLock`: another run's temporary
    files are then impossible.
    """
    folder, name = os.path.split(path)
    if not os.path.isdir(folder):
        return
    for entry in os.listdir(folder):
        if entry.startswith(f".{name}.") and entry.endswith(".part"):
            with contextlib.suppress(OSError):
                os.unlink(os.path.join(folder, entry))
