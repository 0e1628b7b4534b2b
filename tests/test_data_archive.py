"""Safe extraction and streaming of tar archives (tinynet.data.archive).

Every unsafe archive is built by hand with ``tarfile`` (the kinds of member an attacker
writes) and must be refused with a DataError naming the member, before any file is
written, inside or outside the target folder.
"""

from __future__ import annotations

import io
import os
import tarfile

import numpy as np
import pytest

from tinynet.data import archive
from tinynet.errors import DataError


def _info(name: str, kind: bytes = tarfile.REGTYPE, data: bytes = b"", link: str = ""):
    info = tarfile.TarInfo(name)
    info.type = kind
    info.size = len(data) if kind == tarfile.REGTYPE else 0
    info.linkname = link
    info.mode = 0o755 if kind == tarfile.DIRTYPE else 0o644
    return info, (io.BytesIO(data) if kind == tarfile.REGTYPE else None)


def build(path, members, mode="w:gz") -> str:
    """``members``: list of (name, kind, data, linkname)."""
    with tarfile.open(path, mode) as tar:
        for m in members:
            info, f = _info(*m)
            tar.addfile(info, f)
    return str(path)


GOOD = [("top", tarfile.DIRTYPE), ("top/a.txt", tarfile.REGTYPE, b"alpha"),
        ("top/sub/b.txt", tarfile.REGTYPE, b"beta"),
        ("top/link", tarfile.SYMTYPE, b"", "sub/b.txt"),
        ("top/hard", tarfile.LNKTYPE, b"", "top/a.txt")]


def tree(folder) -> set:
    """Every path under ``folder`` (relative), links included, to compare before/after."""
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), folder))
    return out


def test_extract_good_archive(tmp_path):
    path = build(tmp_path / "good.tar.gz", GOOD)
    names = archive.safe_extract(path, str(tmp_path / "out"))
    assert names == ["top", "top/a.txt", "top/sub/b.txt", "top/link", "top/hard"]
    out = tmp_path / "out" / "top"
    assert (out / "a.txt").read_bytes() == b"alpha"
    assert (out / "sub" / "b.txt").read_bytes() == b"beta"
    assert os.readlink(out / "link") == "sub/b.txt"
    assert (out / "hard").read_bytes() == b"alpha"


def test_iter_files_streams_files_and_hard_links(tmp_path):
    path = build(tmp_path / "good.tar", GOOD, mode="w")
    assert list(archive.iter_files(path)) == [("top/a.txt", b"alpha"),
                                              ("top/sub/b.txt", b"beta"),
                                              ("top/hard", b"alpha")]
    assert ("top/sub", None) not in list(archive.iter_files(path, include_dirs=True))
    assert ("top", None) in list(archive.iter_files(path, include_dirs=True))


UNSAFE = {
    "absolute": ([("/tmp/evil.txt", tarfile.REGTYPE, b"x")], "absolute path"),
    "dotdot": ([("../evil.txt", tarfile.REGTYPE, b"x")], "'..' component"),
    "dotdot-deep": ([("a/b/../../../evil.txt", tarfile.REGTYPE, b"x")], "'..' component"),
    "backslash": ([("..\\evil.txt", tarfile.REGTYPE, b"x")], "backslash"),
    "drive": ([("C:/evil.txt", tarfile.REGTYPE, b"x")], "absolute path"),
    "symlink-absolute": ([("ln", tarfile.SYMTYPE, b"", "/etc/passwd")], "points outside"),
    "symlink-up": ([("a/ln", tarfile.SYMTYPE, b"", "../../x")], "points outside"),
    "write-through-symlink": ([("ln", tarfile.SYMTYPE, b"", "."),
                               ("ln/evil.txt", tarfile.REGTYPE, b"x")], "under the symlink"),
    "hardlink-out": ([("h", tarfile.LNKTYPE, b"", "/etc/passwd")], "absolute path"),
    "hardlink-up": ([("h", tarfile.LNKTYPE, b"", "../x")], "'..' component"),
    "hardlink-unknown": ([("h", tarfile.LNKTYPE, b"", "nothere")], "earlier file"),
    "chardev": ([("null", tarfile.CHRTYPE)], "character device"),
    "blockdev": ([("sda", tarfile.BLKTYPE)], "block device"),
    "fifo": ([("pipe", tarfile.FIFOTYPE)], "FIFO"),
}


@pytest.mark.parametrize("case", sorted(UNSAFE))
def test_unsafe_members_refused_and_nothing_written(tmp_path, case):
    members, match = UNSAFE[case]
    # a good file first: it must not be extracted either (all members checked first)
    path = build(tmp_path / "bad.tar", [("ok.txt", tarfile.REGTYPE, b"ok")] + members,
                 mode="w")
    sandbox = tmp_path / "sandbox"
    dest = sandbox / "a" / "dest"
    dest.mkdir(parents=True)
    before = tree(tmp_path)
    with pytest.raises(DataError, match=match) as err:
        archive.safe_extract(path, str(dest))
    assert str(path) in str(err.value)
    assert tree(tmp_path) == before
    with pytest.raises(DataError, match=match):
        list(archive.iter_files(path))


def test_data_filter_catches_links_already_on_disk(tmp_path):
    # The target holds a symlink to outside (from an earlier extraction, say); a member
    # written "into" it passes the name checks but resolves outside: refused.
    outside = tmp_path / "outside"
    outside.mkdir()
    dest = tmp_path / "dest"
    dest.mkdir()
    os.symlink(outside, dest / "d")
    path = build(tmp_path / "a.tar", [("d/evil.txt", tarfile.REGTYPE, b"x")], mode="w")
    with pytest.raises(DataError, match="outside"):
        archive.safe_extract(path, str(dest))
    assert list(outside.iterdir()) == []


def test_extract_again_fills_existing_folders_and_replaces_files(tmp_path):
    path = build(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    (dest / "top" / "sub").mkdir(parents=True)
    (dest / "top" / "mine.txt").write_bytes(b"kept")
    (dest / "top" / "a.txt").write_bytes(b"old")
    archive.safe_extract(path, str(dest))
    archive.safe_extract(path, str(dest))               # a second time over the first
    assert (dest / "top" / "a.txt").read_bytes() == b"alpha"
    assert (dest / "top" / "mine.txt").read_bytes() == b"kept"
    assert (dest / "top" / "sub" / "b.txt").read_bytes() == b"beta"
    assert sorted(os.listdir(dest)) == ["top"]          # no staging folder left


def test_interrupted_extraction_leaves_no_partial_file(tmp_path, monkeypatch):
    path = build(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    real = tarfile.TarFile.extract
    calls = []

    def extract_then_stop(self, member, *args, **kwargs):
        calls.append(member.name)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", extract_then_stop)
    with pytest.raises(KeyboardInterrupt):
        archive.safe_extract(path, str(dest))
    assert calls[:2] == ["top", "top/a.txt"]            # two members were written...
    assert os.listdir(dest) == []                        # ...but only in the staging folder


@pytest.mark.skipif(os.name != "posix", reason="stale staging folders are found by flock")
def test_a_killed_extractions_staging_folder_is_removed_by_the_next(tmp_path):
    """A SIGKILL leaves the hidden staging folder and its lock file; the next extraction
    removes them, since nobody holds the lock. A folder whose lock another process holds
    (a running extraction, in any pid namespace) is left alone, and so is a folder
    without a lock file."""
    import subprocess
    import sys
    path = build(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    dest.mkdir()
    stale, live, bare = (dest / f"{archive.STAGING_PREFIX}{name}" for name in
                         ("h-1-dead", "h-2-live", "h-3-bare"))
    for folder in (stale, live, bare):
        (folder / "top").mkdir(parents=True)
        (folder / "top" / "half.txt").write_bytes(b"half")
    for folder in (stale, live):
        (dest / (folder.name + archive.LOCK_SUFFIX)).write_bytes(b"")
    holder = subprocess.Popen(
        [sys.executable, "-c", "import fcntl, sys, time\n"
         "f = open(sys.argv[1], 'rb'); fcntl.flock(f, fcntl.LOCK_EX)\n"
         "print('locked', flush=True); time.sleep(60)\n",
         str(dest / (live.name + archive.LOCK_SUFFIX))], stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "locked\n"
        archive.safe_extract(path, str(dest))
    finally:
        holder.kill()
        holder.wait()
    assert sorted(os.listdir(dest)) == sorted(
        [live.name, live.name + archive.LOCK_SUFFIX, bare.name, "top"])
    assert (dest / "top" / "a.txt").read_bytes() == b"alpha"
    archive.safe_extract(path, str(dest))          # the holder is gone: now it is stale
    assert sorted(os.listdir(dest)) == sorted([bare.name, "top"])


@pytest.mark.skipif(os.name != "posix", reason="stale staging folders are found by flock")
def test_a_stale_folder_that_cannot_be_removed_keeps_its_lock_and_blocks_nothing(
        tmp_path, monkeypatch):
    path = build(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    stale = dest / f"{archive.STAGING_PREFIX}h-1-theirs"
    (stale / "top").mkdir(parents=True)
    (dest / (stale.name + archive.LOCK_SUFFIX)).write_bytes(b"")
    monkeypatch.setattr(archive.shutil, "rmtree", lambda *a, **k: None)   # not ours to remove
    real_unlink = os.unlink

    def refuse_theirs(p, *a, **k):
        if str(p).endswith("theirs" + archive.LOCK_SUFFIX):
            raise PermissionError(1, "Operation not permitted")
        return real_unlink(p, *a, **k)

    monkeypatch.setattr(archive.os, "unlink", refuse_theirs)
    archive.safe_extract(path, str(dest))           # extracts all the same
    assert (dest / "top" / "a.txt").read_bytes() == b"alpha"
    assert (dest / (stale.name + archive.LOCK_SUFFIX)).exists()   # kept: folder still there


def test_the_staging_folder_is_locked_while_in_use_and_removed_after(tmp_path, monkeypatch):
    path = build(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    seen = []
    real = tarfile.TarFile.extract

    def look(self, member, *args, **kwargs):
        if not seen:
            (lock,) = [e for e in os.listdir(dest) if e.endswith(archive.LOCK_SUFFIX)]
            assert lock.startswith(f"{archive.STAGING_PREFIX}{archive._host()}-"
                                   f"{os.getpid()}-")
            archive._remove_stale_staging(str(dest))   # another extraction's cleanup
            seen.append(sorted(os.listdir(dest)))
        return real(self, member, *args, **kwargs)

    monkeypatch.setattr(tarfile.TarFile, "extract", look)
    archive.safe_extract(path, str(dest))
    assert len(seen[0]) == 2                            # the folder and its lock, untouched
    assert sorted(os.listdir(dest)) == ["top"]          # both gone afterwards


def test_a_file_where_the_archive_has_a_folder_is_a_clear_error(tmp_path):
    path = build(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "top").write_bytes(b"a file, not a folder")
    with pytest.raises(DataError, match="cannot extract folder 'top' into .*is not a folder"):
        archive.safe_extract(path, str(dest))
    assert sorted(os.listdir(dest)) == ["top"] and (dest / "top").read_bytes() == \
        b"a file, not a folder"


def test_a_clash_is_found_before_anything_is_moved(tmp_path):
    path = build(tmp_path / "two.tar", [("a", tarfile.DIRTYPE), ("a/x", tarfile.REGTYPE, b"x"),
                                        ("b", tarfile.DIRTYPE), ("b/y", tarfile.REGTYPE, b"y")],
                 mode="w")
    dest = tmp_path / "out"
    dest.mkdir()
    (dest / "b").write_bytes(b"mine")
    with pytest.raises(DataError, match="cannot extract folder 'b'"):
        archive.safe_extract(path, str(dest))
    assert sorted(os.listdir(dest)) == ["b"]            # 'a' was not moved in either


def test_a_link_to_a_folder_inside_dest_is_filled(tmp_path):
    path = build(tmp_path / "good.tar.gz", GOOD)
    dest = tmp_path / "out"
    (dest / "real").mkdir(parents=True)
    os.symlink("real", dest / "top")
    archive.safe_extract(path, str(dest))
    assert os.readlink(dest / "top") == "real"          # the link is kept...
    assert (dest / "real" / "a.txt").read_bytes() == b"alpha"   # ...and filled through
    assert (dest / "real" / "sub" / "b.txt").read_bytes() == b"beta"


def test_an_unwritable_dest_is_a_data_error(tmp_path, monkeypatch):
    path = build(tmp_path / "good.tar.gz", GOOD)

    def refuse(*args, **kwargs):
        raise PermissionError(13, "Permission denied")

    monkeypatch.setattr(archive.tempfile, "mkstemp", refuse)
    with pytest.raises(DataError, match="extraction into .* failed .*Permission denied"):
        archive.safe_extract(path, str(tmp_path / "out"))


def test_size_limits(tmp_path):
    path = build(tmp_path / "a.tar", [("a", tarfile.REGTYPE, b"x" * 100),
                                      ("b", tarfile.REGTYPE, b"y" * 100)], mode="w")
    with pytest.raises(DataError, match="'a' claims 100 bytes, more than the limit of 99 bytes"):
        archive.safe_extract(path, str(tmp_path / "o"), max_member_bytes=99)
    with pytest.raises(DataError, match="more than the limit of 150 bytes"):
        list(archive.iter_files(path, max_total_bytes=150))
    with pytest.raises(DataError, match="more than the limit of 1 headers"):
        list(archive.iter_files(path, max_members=1))
    assert not (tmp_path / "o").exists()


@pytest.mark.parametrize("damage", ["truncate-gz", "truncate-tar", "garbage", "empty",
                                    "flip-gz"])
def test_corrupt_archives(tmp_path, damage):
    gz = build(tmp_path / "a.tar.gz", [(f"f{i}", tarfile.REGTYPE,
                                        np.random.default_rng(i).bytes(3000))
                                       for i in range(4)])
    with open(gz, "rb") as f:
        raw = f.read()
    if damage == "truncate-gz":
        raw = raw[: len(raw) // 2]
    elif damage == "truncate-tar":
        plain = build(tmp_path / "a.tar", [("f", tarfile.REGTYPE, b"z" * 5000)], mode="w")
        with open(plain, "rb") as f:
            raw = f.read()[:3000]
    elif damage == "garbage":
        raw = b"this is not a tar archive at all" * 20
    elif damage == "empty":
        raw = b""
    else:
        raw = raw[:100] + bytes([raw[100] ^ 0x10]) + raw[101:]
    bad = tmp_path / "bad.tar.gz"
    bad.write_bytes(raw)
    with pytest.raises(DataError, match=str(bad)):
        list(archive.iter_files(str(bad)))
    with pytest.raises(DataError, match=str(bad)):
        archive.safe_extract(str(bad), str(tmp_path / "out"))
    assert not (tmp_path / "out").exists() or tree(tmp_path / "out") == set()


def test_missing_archive(tmp_path):
    with pytest.raises(DataError, match="nope.tar.gz: cannot read: No such file"):
        list(archive.iter_files(str(tmp_path / "nope.tar.gz")))
