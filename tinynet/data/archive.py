"""Reading and extracting tar archives without trusting their member names or sizes.

A tar member's name is whatever its author wrote: ``/etc/cron.d/x``, ``../../.bashrc``,
a symlink ``a -> /home`` followed by a file ``a/.ssh/authorized_keys``, a hard link to
``/etc/shadow``, a device node. :func:`check_member` refuses all of these, and
:func:`safe_extract` checks *every* member before writing *any* file, then extracts
with the standard library's ``"data"`` filter (Python >= 3.11.4 / 3.12) as a second,
independent check of the paths as they resolve on disk.

Rules (a member breaking one raises :class:`tinynet.DataError` naming archive and
member):

- only regular files, directories and links; no devices, FIFOs, sparse or
  continuation members;
- a name is relative, has no ``..`` component, no drive, no NUL, no backslash tricks;
- a symlink's target, taken relative to the folder of the link, stays inside; a hard
  link names an earlier member of the archive;
- no member is written through an earlier symlink (``a -> sub``, then ``a/x``);
- sizes are bounded by the limits of :mod:`tinynet.data.limits` (``file_bytes`` per
  member, ``total_bytes`` for all members together, ``members`` headers), checked
  against each header *before* its data is read or skipped, so a small archive can
  neither fill the disk nor the memory nor keep the reader busy for minutes. A hard
  link's bytes are its target's: they are counted once.

The archive itself must be a regular file. tarfile is handed the decompressed stream
by :class:`_TarStream`, which skips unread members by reading forward in chunks (the
standard library's own streaming mode copies its buffer for every block it skips,
minutes for a gigabyte of zeros), stops past what the limits allow, and sees each
extended (pax) and long-name header before tarfile parses it: those may hold at most
64 KiB, and pax headers describing GNU sparse files are refused (tarfile would read
their sparse map, of any length, into memory).

:func:`iter_members` streams the members of an archive (checking every one on the
way), which is how the data readers use archives: nothing is written to disk, and
files the caller does not want are skipped without being read.
"""

from __future__ import annotations

import bz2
import gzip
import os
import posixpath
import re
import shutil
import socket
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator

try:
    import fcntl
except ImportError:  # pragma: no cover - Windows: stale staging folders stay
    fcntl = None

from ..errors import DataError
from . import limits
from .files import open_regular, shown

KEEP_BYTES = 64 << 20  # bytes of earlier files iter_members keeps for hard links to them
MAX_META_BYTES = 64 << 10  # one pax (extended) or GNU long-name header's data
_CHUNK = 1 << 20
_TAIL = 512  # bytes _TarStream keeps for tarfile's backward seeks (it steps back 1 byte)
_BUFFER = 64 << 10
_META_TYPES = (tarfile.GNUTYPE_LONGNAME, tarfile.GNUTYPE_LONGLINK, tarfile.XHDTYPE,
               tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)
_PAX_TYPES = (tarfile.XHDTYPE, tarfile.XGLTYPE, tarfile.SOLARIS_XHDTYPE)

# Exceptions tarfile, gzip, bz2, lzma and zlib raise on corrupt or truncated input.
# TypeError and IndexError too: tarfile's stream reader parses a gzip header cut short
# with ord(b"") (found by tests/test_fuzz_readers.py, replayed from tests/corpus/).
# RecursionError: a chain of thousands of pax headers, which tarfile follows recursively.
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeError,
            TypeError, IndexError, RecursionError)
# closed with the archive (_Archive.close)
_DECOMPRESSORS = [(b"\x1f\x8b", lambda f: gzip.GzipFile(fileobj=f, mode="rb")),
                  (b"BZh", lambda f: bz2.BZ2File(f, mode="rb"))]
try:  # pragma: no cover - depends on how Python was built
    import lzma
    _CORRUPT += (lzma.LZMAError,)
    _DECOMPRESSORS.append((b"\xfd7zXZ\x00",
                           lambda f: lzma.LZMAFile(f, mode="rb")))  # noqa: SIM115
except ImportError:  # pragma: no cover
    pass


# tarfile.FilterError exists where the "data" filter does (Python >= 3.11.4)
_FILTER_ERRORS = (tarfile.FilterError,) if hasattr(tarfile, "FilterError") else ()


def normalize_name(name: str, archive: str) -> str:
    """The member ``name`` as a clean relative POSIX path, or DataError if it is unsafe."""
    if not name or "\x00" in name:
        raise DataError(f"{archive}: member with an empty or NUL-containing name {name!r}")
    if "\\" in name:
        raise DataError(f"{archive}: member {name!r} has a backslash in its name; refusing "
                        f"names that mean a different path on Windows")
    if name.startswith("/") or (len(name) > 1 and name[1] == ":"):
        raise DataError(f"{archive}: member {name!r} has an absolute path; expected a path "
                        f"relative to the archive's root")
    parts = [p for p in name.split("/") if p not in ("", ".")]
    if ".." in parts:
        raise DataError(f"{archive}: member {name!r} has a '..' component and could be "
                        f"written outside the target folder")
    return "/".join(parts)


class MemberChecker:
    """Checks the members of one archive in order (links may refer to earlier members).

    The limits default to ``file_bytes``, ``total_bytes`` and ``members`` of
    :mod:`tinynet.data.limits`.
    """

    def __init__(self, archive: str, max_member_bytes: int | None = None,
                 max_total_bytes: int | None = None, max_members: int | None = None):
        self.archive = archive
        self.max_member_bytes = limits.get("file_bytes", max_member_bytes)
        self.max_total_bytes = limits.get("total_bytes", max_total_bytes)
        self.max_members = limits.get("members", max_members)
        self.seen: set[str] = set()
        self.symlinks: set[str] = set()
        self.total = 0
        self.count = 0
        self.headers = 0

    def stream_cap(self) -> int:
        """The most decompressed bytes a tar within the limits can take."""
        return self.max_total_bytes + 1024 * self.max_members + 20480

    def header(self, info: tarfile.TarInfo) -> None:
        """Check one raw header as tarfile parses it, before tarfile acts on it."""
        self.headers += 1
        if self.headers > self.max_members:
            raise DataError(f"{self.archive}: more than "
                            f"{limits.over('members', self.max_members)}")
        if info.type == tarfile.GNUTYPE_SPARSE:
            raise DataError(f"{self.archive}: member {info.name!r} is a sparse file; only "
                            f"files, folders and links are accepted")
        if info.type in _META_TYPES:
            if not 0 <= info.size <= MAX_META_BYTES:
                raise DataError(f"{self.archive}: an extended or long-name header of "
                                f"{info.size:,} bytes; at most {MAX_META_BYTES:,} are "
                                f"accepted")
            self._add(info.size)

    def _add(self, size: int) -> None:
        self.total += size
        if self.total > self.max_total_bytes:
            raise DataError(f"{self.archive}: members add up to more than "
                            f"{limits.over('total_bytes', self.max_total_bytes)}")

    def check(self, member: tarfile.TarInfo) -> str:
        """Validate ``member``; return its normalised name ('' for the root itself)."""
        self.count += 1
        if self.count > self.max_members:
            raise DataError(f"{self.archive}: more than "
                            f"{limits.over('members', self.max_members)}")
        name = normalize_name(member.name, self.archive) if member.name not in (".", "./") \
            else ""
        kind = _kind(member)
        if kind is None:
            raise DataError(f"{self.archive}: member {member.name!r} is a "
                            f"{_type_name(member)}; only files, folders and links are "
                            f"accepted")
        parents = name.split("/")[:-1]
        for i in range(1, len(parents) + 1):
            if "/".join(parents[:i]) in self.symlinks:
                raise DataError(f"{self.archive}: member {member.name!r} lies under the "
                                f"symlink {'/'.join(parents[:i])!r}; refusing to write "
                                f"through a link")
        if kind == "symlink":
            target = member.linkname
            if not target or target.startswith("/") or "\x00" in target or "\\" in target:
                raise DataError(f"{self.archive}: symlink {member.name!r} -> {target!r} "
                                f"points outside the archive's folder")
            resolved = posixpath.normpath(posixpath.join(posixpath.dirname(name), target))
            if resolved == ".." or resolved.startswith("../"):
                raise DataError(f"{self.archive}: symlink {member.name!r} -> {target!r} "
                                f"points outside the archive's folder")
            self.symlinks.add(name)
        elif kind == "hardlink":
            target = normalize_name(member.linkname, self.archive)
            if target not in self.seen:
                raise DataError(f"{self.archive}: hard link {member.name!r} -> "
                                f"{member.linkname!r} does not name an earlier file of the "
                                f"archive")
        elif kind == "file":
            if member.size < 0 or member.size > self.max_member_bytes:
                raise DataError(f"{self.archive}: member {member.name!r} claims "
                                f"{member.size:,} bytes, more than "
                                f"{limits.over('file_bytes', self.max_member_bytes)}")
            self._add(member.size)
        if name:
            self.seen.add(name)
        return name


def _kind(member: tarfile.TarInfo) -> str | None:
    if member.type in (tarfile.REGTYPE, tarfile.AREGTYPE):
        return "file"
    if member.isdir():
        return "dir"
    if member.issym():
        return "symlink"
    if member.islnk():
        return "hardlink"
    return None  # devices, FIFOs, sparse and continuation members


def _type_name(member: tarfile.TarInfo) -> str:
    return {tarfile.CHRTYPE: "character device", tarfile.BLKTYPE: "block device",
            tarfile.FIFOTYPE: "FIFO", tarfile.CONTTYPE: "contiguous file",
            tarfile.GNUTYPE_SPARSE: "sparse file"}.get(member.type,
                                                        f"member of type {member.type!r}")


class _TarStream:
    """The decompressed bytes of an archive, as tarfile reads them: forward, capped.

    Reads are served from a 64 KiB buffer. ``seek`` forward reads and drops chunks
    (never more than the cap in all); ``seek`` back is served from the last 512 bytes
    read (tarfile steps back one byte to test for the end of the data). After a pax
    header, the next read is its data, and is checked for GNU sparse keys before tarfile
    sees it.
    """

    def __init__(self, src, checker: MemberChecker) -> None:
        self.src, self.checker = src, checker
        self.cap, self.archive = checker.stream_cap(), checker.archive
        self.name = checker.archive
        self.pos = 0  # the next byte tarfile reads
        self.buf = b""  # bytes [start, end) of the stream
        self.start = self.end = 0  # end: bytes taken from src
        self.expect_pax = False

    def tell(self) -> int:
        return self.pos

    def seek(self, pos: int, whence: int = 0) -> int:
        if whence == 1:
            pos += self.pos
        elif whence != 0:
            raise OSError("only absolute and relative seeks")
        if pos < self.start:
            raise DataError(f"{self.archive}: reading it needs a seek back to byte {pos}, "
                            f"which a streamed archive cannot do")
        self.pos = pos
        return pos

    def _take(self, n: int) -> bytes:
        """Up to ``n`` more bytes from src (fewer at its end); refuse past the cap."""
        n = min(n, self.cap + 1 - self.end)
        parts, got = [], 0
        while got < n:
            data = self.src.read(n - got)
            if not data:
                break
            parts.append(data)
            got += len(data)
        data = parts[0] if len(parts) == 1 else b"".join(parts)
        self.end += len(data)
        if self.end > self.cap:
            total = self.checker.max_total_bytes
            raise DataError(f"{self.archive}: unpacks to more than {self.cap:,} bytes, more "
                            f"than {limits.over('total_bytes', total)} allows for its members "
                            f"and their headers")
        return data

    def _keep(self, data: bytes) -> None:
        """``data`` was just taken: make it the buffer, with the tail of the one before."""
        self.buf = data if len(data) >= _TAIL else self.buf[-_TAIL:] + data
        self.start = self.end - len(self.buf)

    def read(self, n: int = -1) -> bytes:
        if n is None or n < 0:
            n = self.cap
        out = []
        if self.start <= self.pos < self.end:
            off = self.pos - self.start
            chunk = self.buf[off:off + n]
            out.append(chunk)
            self.pos += len(chunk)
            n -= len(chunk)
        while self.end < self.pos:  # skipping forward
            data = self._take(min(_CHUNK, self.pos - self.end))
            if not data:
                return b""
            self._keep(data)
        if n >= _BUFFER:  # a member's data: straight through
            data = self._take(n)
            self._keep(data)
            out.append(data)
            self.pos += len(data)
        elif n > 0:
            self._keep(self._take(_BUFFER))
            chunk = self.buf[self.pos - self.start:self.pos - self.start + n]
            out.append(chunk)
            self.pos += len(chunk)
        data = out[0] if len(out) == 1 else b"".join(out)
        if self.expect_pax:
            self.expect_pax = False
            if b" GNU.sparse." in data:
                raise DataError(f"{self.archive}: a pax header describes a GNU sparse "
                                f"file; only files, folders and links are accepted")
        return data

    def close(self) -> None:
        self.src.close()


def _tarinfo_class(checker: MemberChecker, stream: _TarStream) -> type:
    """A TarInfo class that shows every header to ``checker`` as tarfile parses it."""

    class CheckedTarInfo(tarfile.TarInfo):
        @classmethod
        def frombuf(cls, buf, encoding, errors):
            info = super().frombuf(buf, encoding, errors)
            checker.header(info)
            stream.expect_pax = info.type in _PAX_TYPES
            return info

    return CheckedTarInfo


def _decompressed(f):
    magic = f.read(6)
    f.seek(0)
    for prefix, opener in _DECOMPRESSORS:
        if magic.startswith(prefix):
            return opener(f)
    return f


class _Archive:
    """An open archive: its file, decompressor, capped stream and tarfile (read mode)."""

    def __init__(self, path: str, checker: MemberChecker) -> None:
        self.path, self.checker = checker.archive, checker  # path as shown in messages
        self.file = open_regular(path, "archive")
        try:
            self.stream = _TarStream(_decompressed(self.file), checker)
            self.tar = tarfile.open(  # noqa: SIM115 - closed by close()
                fileobj=self.stream, mode="r:", tarinfo=_tarinfo_class(checker, self.stream))
        except DataError:
            self.file.close()
            raise
        except _CORRUPT as e:
            self.file.close()
            raise DataError(f"{self.path}: not a readable tar archive ({_why(e)})") \
                from None

    def members(self, keep_list: bool = False) -> Iterator[tuple]:
        """``(member, name, kind)`` for each member, checked; corrupt data as DataError."""
        while True:
            try:
                member = self.tar.next()
            except DataError:
                raise
            except _CORRUPT as e:
                raise DataError(f"{self.path}: corrupt or truncated archive "
                                f"({_why(e)})") from None
            if member is None:
                return
            if not keep_list:  # tarfile keeps every TarInfo otherwise
                self.tar.members = []
            yield member, self.checker.check(member), _kind(member)

    def read(self, member: tarfile.TarInfo) -> bytes:
        try:
            f = self.tar.extractfile(member)
            data = f.read() if f is not None else b""
        except DataError:
            raise
        except _CORRUPT as e:
            raise DataError(f"{self.path}: member {member.name!r} is corrupt or truncated "
                            f"({_why(e)})") from None
        if len(data) != member.size:
            raise DataError(f"{self.path}: member {member.name!r} has {len(data)} of its "
                            f"{member.size} bytes")
        return data

    def close(self) -> None:
        try:
            self.tar.close()
        finally:
            try:
                self.stream.close()
            except _CORRUPT:
                pass
            self.file.close()

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _why(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 200 else text[:200] + "..."


def iter_members(path: str, want: Callable[[str], bool] | None = None,
                 max_member_bytes: int | None = None, max_total_bytes: int | None = None,
                 max_members: int | None = None) -> Iterator[tuple[str, str, bytes | None]]:
    """Yield ``(name, kind, data)`` for each member of the tar at ``path``, in order.

    ``kind`` is ``"file"`` (hard links included), ``"dir"`` or ``"symlink"``. ``data``
    holds a file's bytes when ``want(name)`` is true (every file when ``want`` is None),
    else None: the file is skipped without being read, though its size counts against
    the ``total_bytes`` limit. A hard link yields the bytes of the file it names, read
    once. Every member is checked (:class:`MemberChecker`) even though nothing is
    written: an archive that could not be extracted safely is refused as a whole, with
    a DataError naming the member. Corrupt or truncated archives raise DataError naming
    ``path``.
    """
    path = os.fspath(path)
    checker = MemberChecker(shown(path), max_member_bytes, max_total_bytes, max_members)
    contents: dict[str, bytes] = {}  # files a later hard link may name, up to KEEP_BYTES
    kept = 0
    with _Archive(path, checker) as archive:
        for member, name, kind in archive.members():
            if kind == "file":
                data = None
                if want is None or want(name):
                    data = archive.read(member)
                    if kept + len(data) <= KEEP_BYTES:
                        contents[name] = data
                        kept += len(data)
                yield name, "file", data
            elif kind == "hardlink":
                data = None
                if want is None or want(name):
                    target = normalize_name(member.linkname, checker.archive)
                    if target not in contents:
                        raise DataError(f"{checker.archive}: hard link {member.name!r} -> "
                                        f"{member.linkname!r}: the file it names was not "
                                        f"kept while streaming; extract the archive with "
                                        f"tinynet.data.safe_extract and read the folder")
                    data = contents[target]
                yield name, "file", data
            elif name:
                yield name, kind, None


def iter_files(path: str, max_member_bytes: int | None = None,
               max_total_bytes: int | None = None, max_members: int | None = None,
               include_dirs: bool = False,
               want: Callable[[str], bool] | None = None) -> Iterator[tuple[str, bytes | None]]:
    """Yield ``(name, bytes)`` for each regular file of the tar at ``path``, in order.

    With ``include_dirs`` folders are yielded too, as ``(name, None)``. With ``want``,
    only the files it accepts are read and yielded. See :func:`iter_members`.
    """
    for name, kind, data in iter_members(path, want, max_member_bytes, max_total_bytes,
                                         max_members):
        if data is not None or (kind == "dir" and include_dirs):
            yield name, data


def safe_extract(path: str, dest: str, max_member_bytes: int | None = None,
                 max_total_bytes: int | None = None,
                 max_members: int | None = None) -> list[str]:
    """Extract the tar at ``path`` into folder ``dest``; return the member names.

    All members are checked first (one read of the archive), and every name is resolved
    against ``dest`` as it is on disk (a symlink already there that leads outside is
    refused); if anything is unsafe or the archive is corrupt, a DataError is raised
    and nothing is written. Then the archive is extracted, with tarfile's ``"data"``
    filter where Python has it, into a hidden staging folder inside ``dest``, and each
    top-level entry is moved into place with one rename (folders already in ``dest``
    are filled entry by entry, through a link only when it leads to a folder inside
    ``dest``). Every move is checked before the first one (a folder where the archive
    has a file, or the other way round, is a DataError and nothing is moved), and an
    interrupted extraction leaves no half-written file in ``dest``: the staging folder
    is removed on the way out. A killed process cannot remove it; its hidden
    ``.tinynet-extract-<host>-<pid>-*`` folder is removed by the next extraction into
    ``dest``: beside the folder is a ``.lock`` file its process keeps locked with
    ``flock``, which the kernel releases when the process dies, in whatever container.
    """
    path, dest = os.fspath(path), os.fspath(dest)
    shown_path = shown(path)
    names = []
    with _Archive(path, MemberChecker(shown_path, max_member_bytes, max_total_bytes,
                                      max_members)) as archive:
        for _, name, _ in archive.members():
            names.append(name)
    os.makedirs(dest, exist_ok=True)
    real_dest = os.path.realpath(dest)
    for name in names:
        target = os.path.realpath(os.path.join(real_dest, name))
        if target != real_dest and not target.startswith(real_dest + os.sep):
            raise DataError(f"{shown_path}: member {name!r} would be written to "
                            f"{shown(target)}, outside {shown(real_dest)}")
    staging = lock = None
    try:
        _remove_stale_staging(real_dest)
        staging, lock = _make_staging(real_dest)
        with _Archive(path, MemberChecker(shown_path, max_member_bytes, max_total_bytes,
                                          max_members)) as archive:
            for member, _name, kind in archive.members(keep_list=True):
                if hasattr(tarfile, "data_filter"):
                    archive.tar.extract(member, staging, filter="data")
                elif kind in ("file", "dir"):  # pragma: no cover - old Python
                    archive.tar.extract(member, staging, set_attrs=False)
                else:  # pragma: no cover - old Python: no filter to check links with
                    raise DataError(f"{shown_path}: member {member.name!r} is a link; this "
                                    f"Python has no tarfile data filter to extract links "
                                    f"safely")
        for source, target in _moves(staging, real_dest, real_dest, shown_path):
            os.replace(source, target)
    except DataError:
        raise
    except _FILTER_ERRORS as e:
        raise DataError(f"{shown_path}: unsafe member refused by tarfile's data filter "
                        f"({_why(e)})") from None
    except _CORRUPT as e:
        raise DataError(f"{shown_path}: extraction into {shown(dest)} failed "
                        f"({_why(e)})") from None
    finally:
        if staging is not None:
            shutil.rmtree(staging, ignore_errors=True)
        if lock is not None:
            lock.close()
            os.unlink(staging + LOCK_SUFFIX)
    return names


STAGING_PREFIX = ".tinynet-extract-"
# Beside each staging folder ``<name>``, a file ``<name>.lock`` that the extracting
# process holds locked (flock) until it is done: the kernel drops the lock when that
# process dies, however it dies, so a lock nobody holds marks a folder left behind.
LOCK_SUFFIX = ".lock"


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9.]", "_", socket.gethostname()) or "host"


def _make_staging(dest: str) -> tuple[str, object]:
    """A new staging folder in ``dest`` and its open, locked lock file. The lock is taken
    before the folder exists, so no other process can find the folder unlocked."""
    fd, lock_path = tempfile.mkstemp(prefix=f"{STAGING_PREFIX}{_host()}-{os.getpid()}-",
                                     suffix=LOCK_SUFFIX, dir=dest)
    lock = os.fdopen(fd, "wb")
    try:
        if fcntl is not None:
            fcntl.flock(lock, fcntl.LOCK_EX)
        staging = lock_path[:-len(LOCK_SUFFIX)]
        os.mkdir(staging, 0o700)
    except BaseException:
        lock.close()
        os.unlink(lock_path)
        raise
    return staging, lock


def _remove_stale_staging(dest: str) -> None:
    """Remove what a killed extraction left in ``dest``: each staging folder whose lock
    file nobody holds, with that lock file. A held lock (an extraction running in any
    process or container; on another machine where the file system shares locks, as
    NFS does) is left alone, and so is a lock whose folder does not exist yet (its owner
    is about to lock it)."""
    if fcntl is None:
        return
    for entry in os.listdir(dest):
        if not (entry.startswith(STAGING_PREFIX) and entry.endswith(LOCK_SUFFIX)):
            continue
        lock_path = os.path.join(dest, entry)
        folder = lock_path[:-len(LOCK_SUFFIX)]
        try:
            f = open(lock_path, "rb")
        except OSError:
            continue
        with f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except OSError:
                continue                     # held: that extraction is running
            if not _is_folder(folder):
                continue                     # not made yet: its owner waits for this lock
            shutil.rmtree(folder, ignore_errors=True)   # best effort: another user's
            if not os.path.lexists(folder):             # folder may not be ours to remove
                try:
                    os.unlink(lock_path)
                except OSError:
                    pass


def _folder_in(d: str, root: str) -> str | None:
    """The folder ``d`` stands for inside ``root``: ``d`` itself when it is a real folder,
    the folder a link at ``d`` resolves to when that lies inside ``root``, else None."""
    if os.path.islink(d):
        real = os.path.realpath(d)
        inside = real == root or real.startswith(root + os.sep)
        return real if inside and os.path.isdir(real) else None
    return d if os.path.isdir(d) else None


def _is_folder(path: str) -> bool:
    return os.path.isdir(path) and not os.path.islink(path)


def _moves(src: str, dst: str, root: str, shown_path: str) -> list[tuple[str, str]]:
    """The renames that put every entry of folder ``src`` into folder ``dst``: one per
    entry (a file or link replaces a file or link of its name), except that a folder
    which exists in both is filled entry by entry, through a link only when it leads to a
    folder inside ``root``. A DataError, before anything is moved, if an entry cannot
    take its place (a folder where ``dst`` has something else, or the other way round)."""
    renames = []
    for entry in sorted(os.listdir(src)):
        s, d = os.path.join(src, entry), os.path.join(dst, entry)
        if os.path.lexists(d):
            if _is_folder(s):
                target = _folder_in(d, root)
                if target is None:
                    raise DataError(f"{shown_path}: cannot extract folder {entry!r} into "
                                    f"{shown(dst)}: {shown(d)} is not a folder there")
                renames += _moves(s, target, root, shown_path)
                continue
            if _is_folder(d):
                raise DataError(f"{shown_path}: cannot extract {entry!r} into "
                                f"{shown(dst)}: {shown(d)} is a folder")
        renames.append((s, d))
    return renames


__all__ = ["MemberChecker", "iter_files", "iter_members", "normalize_name", "safe_extract"]
