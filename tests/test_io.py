"""tinynet.io.atomic_write: complete or absent, and with the permissions of any new file."""

from __future__ import annotations

import os
import stat
import subprocess
import sys

import pytest

from tinynet.io import atomic_write


@pytest.mark.skipif(os.name != "posix", reason="file modes and umask are POSIX")
@pytest.mark.parametrize("umask, mode", [(0o022, 0o644), (0o077, 0o600), (0o002, 0o664)])
def test_written_file_gets_the_umask_mode_not_mkstemps_0600(tmp_path, umask, mode):
    """A result under runs/ must be readable by whoever may read the user's other files:
    0o666 less the umask, as open(path, 'w') gives (mkstemp's 0o600 hid them)."""
    target = tmp_path / "out.json"
    code = (f"import os; os.umask({umask}); from tinynet.io import atomic_write; "
            f"atomic_write({str(target)!r}, lambda f: f.write(b'{{}}'))")
    subprocess.run([sys.executable, "-c", code], check=True, timeout=120)
    assert stat.S_IMODE(target.stat().st_mode) == mode
    assert target.read_bytes() == b"{}"


def test_replaces_a_file_whole_and_leaves_no_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")
    atomic_write(str(target), lambda f: f.write(b"new contents"))
    assert target.read_bytes() == b"new contents"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_failed_write_keeps_the_old_file_and_removes_the_temporary(tmp_path):
    target = tmp_path / "a.txt"
    target.write_bytes(b"old")

    def fail(f):
        f.write(b"half")
        raise OSError(28, "No space left on device")

    with pytest.raises(OSError, match="No space"):
        atomic_write(str(target), fail)
    assert target.read_bytes() == b"old"
    assert os.listdir(tmp_path) == ["a.txt"]


def test_temporary_names_never_collide(tmp_path, monkeypatch):
    """Two writers beside the same name each get their own temporary (O_EXCL)."""
    import tinynet.io as io
    names = iter(["aaaa", "aaaa", "bbbb"])
    monkeypatch.setattr(io.secrets, "token_hex", lambda n: next(names))
    fd1, tmp1 = io._new_temporary(str(tmp_path), "x")
    fd2, tmp2 = io._new_temporary(str(tmp_path), "x")
    os.close(fd1)
    os.close(fd2)
    assert tmp1 != tmp2 and tmp2.endswith(".x.bbbb.part")
