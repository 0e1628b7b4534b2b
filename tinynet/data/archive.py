"""Reading and extracting tar archives without trusting their member names.

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
- sizes are bounded (``max_member_bytes``, ``max_total_bytes``, ``max_members``)
  so a small archive cannot fill the disk.

:func:`iter_files` streams the regular files of an archive (checking every member on
the way), which is how the data readers use archives: nothing is written to disk.
"""

from __future__ import annotations

import os
import posixpath
import tarfile
import zlib
from collections.abc import Iterator

from ..errors import DataError

MAX_MEMBER_BYTES = 1 << 30
MAX_TOTAL_BYTES = 16 << 30
MAX_MEMBERS = 1_000_000
KEEP_BYTES = 64 << 20  # bytes of earlier files iter_files keeps for hard links to them

# Exceptions tarfile, gzip, bz2, lzma and zlib raise on corrupt or truncated input.
# TypeError and IndexError too: tarfile's stream reader parses a gzip header cut short
# with ord(b"") (found by tests/test_fuzz_readers.py, replayed from tests/corpus/).
_CORRUPT = (tarfile.TarError, EOFError, zlib.error, OSError, ValueError, UnicodeError,
            TypeError, IndexError)
try:  # pragma: no cover - depends on how Python was built
    import lzma
    _CORRUPT += (lzma.LZMAError,)
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
    """Checks the members of one archive in order (links may refer to earlier members)."""

    def __init__(self, archive: str, max_member_bytes: int = MAX_MEMBER_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES, max_members: int = MAX_MEMBERS):
        self.archive = archive
        self.max_member_bytes, self.max_total_bytes = max_member_bytes, max_total_bytes
        self.max_members = max_members
        self.seen: set[str] = set()
        self.symlinks: set[str] = set()
        self.total = 0
        self.count = 0

    def check(self, member: tarfile.TarInfo) -> str:
        """Validate ``member``; return its normalised name ('' for the root itself)."""
        self.count += 1
        if self.count > self.max_members:
            raise DataError(f"{self.archive}: more than {self.max_members} members")
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
                                f"{member.size} bytes, more than the {self.max_member_bytes} "
                                f"accepted")
            self.total += member.size
            if self.total > self.max_total_bytes:
                raise DataError(f"{self.archive}: members add up to more than "
                                f"{self.max_total_bytes} bytes")
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


def open_archive(path: str) -> tarfile.TarFile:
    """Open a tar (plain, .gz, .bz2, .xz) for streaming, as DataError if it is not one."""
    try:
        return tarfile.open(path, mode="r|*")
    except _CORRUPT as e:
        raise DataError(f"{path}: not a readable tar archive ({_why(e)})") from None


def _why(e: BaseException) -> str:
    text = str(e) or type(e).__name__
    return text if len(text) < 200 else text[:200] + "..."


def iter_files(path: str, max_member_bytes: int = MAX_MEMBER_BYTES,
               max_total_bytes: int = MAX_TOTAL_BYTES, max_members: int = MAX_MEMBERS,
               include_dirs: bool = False) -> Iterator[tuple[str, bytes | None]]:
    """Yield ``(name, bytes)`` for each regular file of the tar at ``path``, in order.

    With ``include_dirs`` folders are yielded too, as ``(name, None)``.

    Every member is checked (:class:`MemberChecker`) even though nothing is written: an
    archive that could not be extracted safely is refused as a whole, with a DataError
    naming the member. Hard links yield the bytes of the file they name; symlinks and
    folders yield nothing. Corrupt or truncated archives raise DataError naming ``path``.
    """
    path = os.fspath(path)
    checker = MemberChecker(path, max_member_bytes, max_total_bytes, max_members)
    contents: dict[str, bytes] = {}  # files a later hard link may name, up to KEEP_BYTES
    kept = 0
    with open_archive(path) as tar:
        while True:
            try:
                member = tar.next()
            except _CORRUPT as e:
                raise DataError(f"{path}: corrupt or truncated archive ({_why(e)})") from None
            if member is None:
                break
            name = checker.check(member)
            kind = _kind(member)
            if kind == "file":
                try:
                    f = tar.extractfile(member)
                    data = f.read() if f is not None else b""
                except _CORRUPT as e:
                    raise DataError(f"{path}: member {member.name!r} is corrupt or "
                                    f"truncated ({_why(e)})") from None
                if len(data) != member.size:
                    raise DataError(f"{path}: member {member.name!r} has {len(data)} of "
                                    f"its {member.size} bytes")
                if kept + len(data) <= KEEP_BYTES:
                    contents[name] = data
                    kept += len(data)
                yield name, data
            elif kind == "dir" and include_dirs and name:
                yield name, None
            elif kind == "hardlink":
                target = normalize_name(member.linkname, path)
                if target not in contents:
                    raise DataError(f"{path}: hard link {member.name!r} -> "
                                    f"{member.linkname!r}: the file it names is too far "
                                    f"back to be read while streaming; extract the archive "
                                    f"with tinynet.data.archive.safe_extract and read the "
                                    f"folder")
                yield name, contents[target]


def safe_extract(path: str, dest: str, max_member_bytes: int = MAX_MEMBER_BYTES,
                 max_total_bytes: int = MAX_TOTAL_BYTES,
                 max_members: int = MAX_MEMBERS) -> list[str]:
    """Extract the tar at ``path`` into folder ``dest``; return the member names.

    All members are checked first (one read of the archive); if any is unsafe or the
    archive is corrupt, a DataError is raised and nothing is written. Then the archive
    is extracted with tarfile's ``"data"`` filter where Python has it, which also
    refuses paths that would resolve outside ``dest`` through links already on disk.
    """
    path, dest = os.fspath(path), os.fspath(dest)
    checker = MemberChecker(path, max_member_bytes, max_total_bytes, max_members)
    names = []
    with open_archive(path) as tar:
        while True:
            try:
                member = tar.next()
            except _CORRUPT as e:
                raise DataError(f"{path}: corrupt or truncated archive ({_why(e)})") from None
            if member is None:
                break
            names.append(checker.check(member))
    os.makedirs(dest, exist_ok=True)
    real_dest = os.path.realpath(dest)
    try:
        with tarfile.open(path, mode="r|*") as tar:
            for member in tar:
                name = normalize_name(member.name, path) if member.name not in (".", "./") \
                    else ""
                target = os.path.realpath(os.path.join(real_dest, name))
                if target != real_dest and not target.startswith(real_dest + os.sep):
                    raise DataError(f"{path}: member {member.name!r} would be written to "
                                    f"{target}, outside {real_dest}")
                if hasattr(tarfile, "data_filter"):
                    tar.extract(member, real_dest, filter="data")
                elif _kind(member) in ("file", "dir"):  # pragma: no cover - old Python
                    tar.extract(member, real_dest, set_attrs=False)
                else:  # pragma: no cover - old Python: no filter to check links with
                    raise DataError(f"{path}: member {member.name!r} is a link; this Python "
                                    f"has no tarfile data filter to extract links safely")
    except DataError:
        raise
    except _FILTER_ERRORS as e:
        raise DataError(f"{path}: unsafe member refused by tarfile's data filter "
                        f"({_why(e)})") from None
    except _CORRUPT as e:
        raise DataError(f"{path}: extraction into {dest} failed ({_why(e)})") from None
    return names


__all__ = ["MemberChecker", "iter_files", "normalize_name", "open_archive", "safe_extract"]
