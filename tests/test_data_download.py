"""Where ``tinynet.data.load`` looks for files, and the download path.

The download tests serve the shared MNIST files from a local HTTP server on 127.0.0.1
(no machine here reaches the internet) and pass it as a mirror.
"""

from __future__ import annotations

import errno
import functools
import gzip
import http.server
import os
import shutil
import socket
import threading
import types
import urllib.error

import numpy as np
import pytest

from tinynet import data
from tinynet.data import datasets
from tinynet.data import download as download_mod
from tinynet.errors import DataError

TEST_FILES = ["t10k-images-idx3-ubyte.gz", "t10k-labels-idx1-ubyte.gz"]


@pytest.fixture
def mnist_dir(shared_data):
    folder = os.path.join(shared_data, "mnist")
    if not all(os.path.isfile(os.path.join(folder, f)) for f in TEST_FILES):
        pytest.skip(f"MNIST test files not found in {folder}")
    return folder


@pytest.fixture
def isolated(tmp_path, monkeypatch):
    """No TINYNET_DATA, an empty cache, and no system folder: nothing found by accident."""
    monkeypatch.delenv("TINYNET_DATA", raising=False)
    monkeypatch.setenv("TINYNET_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(datasets, "SYSTEM_DIR", str(tmp_path / "system"))
    return tmp_path


def _copy_test_split(src: str, dst) -> str:
    os.makedirs(dst, exist_ok=True)
    for f in TEST_FILES:
        shutil.copy(os.path.join(src, f), os.path.join(dst, f))
    return os.fspath(dst)


def _mark(folder: str) -> None:
    """Make the labels in ``folder`` recognisable: every label becomes 7."""
    path = os.path.join(folder, "t10k-labels-idx1-ubyte.gz")
    with gzip.open(path, "rb") as f:
        raw = bytearray(f.read())
    raw[8:] = bytes([7]) * (len(raw) - 8)
    with gzip.open(path, "wb") as f:
        f.write(bytes(raw))


# ------------------------------------------------------------------ search order
def test_root_is_the_only_place_searched(isolated, mnist_dir, monkeypatch):
    other = _copy_test_split(mnist_dir, isolated / "env" / "mnist")
    monkeypatch.setenv("TINYNET_DATA", str(isolated / "env"))
    root = _copy_test_split(mnist_dir, isolated / "root")
    _mark(root)
    images, labels = data.load("mnist", "test", root=root, download=False)
    assert images.shape == (10000, 28, 28) and images.dtype == np.uint8
    assert labels.dtype == np.int64 and np.all(labels == 7)
    # an empty root is not completed from TINYNET_DATA, even though that holds the files
    assert data.find("mnist", "test", root=other) == other
    with pytest.raises(DataError, match=r"mnist test not found in \[.*empty'\]"):
        data.load("mnist", "test", root=str(isolated / "empty"), download=False)


def test_tinynet_data_then_cache_then_system(isolated, mnist_dir, monkeypatch):
    cache = _copy_test_split(mnist_dir, isolated / "cache" / "mnist")
    env = _copy_test_split(mnist_dir, isolated / "env" / "mnist")
    _mark(env)
    assert datasets.cache_dir() == str(isolated / "cache")
    monkeypatch.setenv("TINYNET_DATA", str(isolated / "env"))
    assert data.search_paths("mnist") == [env, cache, str(isolated / "system" / "mnist")]
    assert data.find("mnist", "test") == env
    assert np.all(data.load("mnist", "test", download=False)[1] == 7)
    monkeypatch.delenv("TINYNET_DATA")
    assert data.find("mnist", "test") == cache
    assert not np.all(data.load("mnist", "test", download=False)[1] == 7)
    shutil.rmtree(cache)
    system = _copy_test_split(mnist_dir, isolated / "system" / "mnist")
    assert data.find("mnist", "test") == system
    assert data.find("mnist", "train") is None  # only the test split is there


def test_cache_dir_defaults(monkeypatch, tmp_path):
    monkeypatch.delenv("TINYNET_CACHE", raising=False)
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "xdg"))
    assert datasets.cache_dir() == str(tmp_path / "xdg" / "tinynet")
    monkeypatch.delenv("XDG_CACHE_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert datasets.cache_dir() == str(tmp_path / "home" / ".cache" / "tinynet")


def test_download_false_names_the_places_searched(isolated):
    with pytest.raises(DataError) as info:
        data.load("mnist", "test", download=False)
    msg = str(info.value)
    assert "download=False" in msg and str(isolated / "cache" / "mnist") in msg
    assert "TINYNET_DATA" in msg


def test_unknown_name_and_split():
    with pytest.raises(DataError, match="unknown data set 'mnsit'.*'mnist'"):
        data.load("mnsit")
    with pytest.raises(DataError, match="unknown split 'valid'"):
        data.load("mnist", "valid")


def test_ungzipped_files_are_accepted(isolated, mnist_dir):
    folder = isolated / "plain"
    folder.mkdir()
    for f in TEST_FILES:
        with gzip.open(os.path.join(mnist_dir, f), "rb") as src:
            (folder / f[:-3]).write_bytes(src.read())
    images, labels = data.load("mnist", "test", root=str(folder), download=False)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)


# ------------------------------------------------------------------ download
class _Quiet(http.server.SimpleHTTPRequestHandler):
    def log_message(self, *args):  # keep the test output clean
        pass


@pytest.fixture
def serve():
    """``serve(folder) -> base URL`` of an HTTP server on 127.0.0.1 for ``folder``."""
    servers = []

    def start(folder: str) -> str:
        handler = functools.partial(_Quiet, directory=folder)
        server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True).start()
        servers.append(server)
        return f"http://127.0.0.1:{server.server_address[1]}/"

    yield start
    for s in servers:
        s.shutdown()
        s.server_close()


@pytest.fixture
def no_sleep(monkeypatch):
    """Record the retry back-off instead of sleeping through it."""
    slept = []
    monkeypatch.setattr(download_mod, "time", types.SimpleNamespace(sleep=slept.append))
    return slept


def _dead_url() -> str:
    s = socket.socket()
    s.bind(("127.0.0.1", 0))
    port = s.getsockname()[1]
    s.close()  # nothing listens there now: connection refused
    return f"http://127.0.0.1:{port}/"


def test_download_with_md5_check(isolated, mnist_dir, serve, capfd):
    url = serve(mnist_dir)
    root = isolated / "dl"
    images, labels = data.load("mnist", "test", root=str(root), mirrors=[url], progress=False)
    assert images.shape == (10000, 28, 28) and labels.shape == (10000,)
    assert sorted(os.listdir(root)) == TEST_FILES  # no temporary files left behind
    for f in TEST_FILES:
        with open(os.path.join(mnist_dir, f), "rb") as src:
            assert (root / f).read_bytes() == src.read()
    assert capfd.readouterr().err == ""  # progress bar off: nothing on stderr


def test_download_into_the_cache_and_progress_bar(isolated, mnist_dir, serve, capfd):
    url = serve(mnist_dir)
    data.load("mnist", "test", mirrors=[url], progress=True)
    assert data.find("mnist", "test") == str(isolated / "cache" / "mnist")
    assert "t10k-images-idx3-ubyte.gz" in capfd.readouterr().err  # tqdm's description


def test_corrupted_file_is_rejected_and_removed(isolated, mnist_dir, serve, no_sleep):
    bad = _copy_test_split(mnist_dir, isolated / "bad")
    _mark(bad)  # a valid gzip whose contents differ: only the MD5 can tell
    url = serve(bad)
    root = isolated / "dl"
    with pytest.raises(DataError, match=r"t10k-labels.*MD5 [0-9a-f]{32}, expected "
                                        r"27ae3e4e09519cfbb04c329615203637"):
        data.load("mnist", "test", root=str(root), mirrors=[url], progress=False)
    assert not (root / "t10k-labels-idx1-ubyte.gz").exists()
    assert [p for p in os.listdir(root) if p.endswith(".part")] == []


def test_dead_mirror_falls_back_to_the_next(isolated, mnist_dir, serve, no_sleep):
    dead = _dead_url()
    empty = serve(str(isolated))  # answers 404 for every file
    good = serve(mnist_dir)
    root = isolated / "dl"
    images, _ = data.load("mnist", "test", root=str(root), mirrors=[dead, empty, good],
                          progress=False)
    assert images.shape == (10000, 28, 28)
    # each failing mirror was retried 3 times with back-off 1 s, 2 s (for each file)
    assert no_sleep == [1.0, 2.0] * 4


def test_all_mirrors_dead_says_so_briefly_and_keeps_every_try(isolated, no_sleep):
    dead, dead2 = _dead_url(), _dead_url() + "sub/"
    root = isolated / "dl"
    with pytest.raises(DataError) as info:
        data.load("mnist", "test", root=str(root), mirrors=[dead, dead2], progress=False)
    lines = str(info.value).splitlines()
    # the cause first, one short line per URL, then where to put the files by hand
    assert lines[0] == "mnist: could not download t10k-images-idx3-ubyte.gz: no mirror answered"
    assert lines[1:3] == [f"  {dead}t10k-images-idx3-ubyte.gz: connection refused (3 tries)",
                          f"  {dead2}t10k-images-idx3-ubyte.gz: connection refused (3 tries)"]
    assert lines[3:] == [  # the split's files first, then the other split's
        "To install by hand, put t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz,",
        "train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz (from a mirror above)",
        f"in {root}{os.sep}."]  # root= given: nothing else is searched
    # every try is kept, in order
    assert info.value.attempts == [(url + "t10k-images-idx3-ubyte.gz", k, "connection refused")
                                   for url in (dead, dead2) for k in (1, 2, 3)]
    assert not os.path.exists(root / "t10k-images-idx3-ubyte.gz")


@pytest.mark.parametrize("error, cause", [
    (OSError(errno.ENETUNREACH, "Network is unreachable"),
     f"[Errno {errno.ENETUNREACH}] Network is unreachable"),
    (socket.gaierror(socket.EAI_AGAIN, "Temporary failure in name resolution"),
     "host name not resolved (Temporary failure in name resolution)"),
])
def test_offline_machine_is_told_where_to_put_the_files(isolated, no_sleep, monkeypatch,
                                                        error, cause):
    def offline(*args, **kwargs):
        raise urllib.error.URLError(error)
    monkeypatch.setattr(download_mod.urllib.request, "urlopen", offline)
    with pytest.raises(DataError) as info:
        data.load("fashion-mnist", "train", progress=False)  # the registered mirrors
    lines = str(info.value).splitlines()
    assert lines[0] == ("fashion-mnist: could not download train-images-idx3-ubyte.gz: the "
                        "network is unreachable (no mirror could be reached)")
    mirrors = datasets.DATASETS["fashion-mnist"].mirrors
    assert lines[1:-3] == [f"  {m}train-images-idx3-ubyte.gz: {cause} (3 tries)"
                           for m in mirrors]
    cache = isolated / "cache" / "fashion-mnist"
    assert lines[-3:] == [
        "To install by hand, put train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz,",
        "t10k-images-idx3-ubyte.gz, t10k-labels-idx1-ubyte.gz (from a mirror above)",
        (f"in {cache}{os.sep} (or in <folder>{os.sep}fashion-mnist{os.sep} "
         f"with TINYNET_DATA=<folder>).")]
    # no line of a thousand characters: short lines, but for the URLs and the folder
    assert max(len(line.replace(str(cache), "").split(".gz: ")[-1]) for line in lines) < 110
    assert info.value.summary.startswith("the network is unreachable")
    assert len(info.value.attempts) == 3 * len(mirrors)


def test_download_larger_than_the_limit_is_refused(isolated, mnist_dir, serve, no_sleep,
                                                   monkeypatch):
    monkeypatch.setenv("TINYNET_MAX_FILE_BYTES", "4K")  # the labels file is 4,540 bytes
    url = serve(mnist_dir)
    root = isolated / "dl"
    with pytest.raises(DataError) as info:
        download_mod.download([url + "t10k-labels-idx1-ubyte.gz"],
                              str(root / "t10k-labels-idx1-ubyte.gz"), progress=False)
    assert info.value.attempts[0][2] == ("the server announces 4,540 bytes, more than the "
                                         "limit of 4,096 bytes (TINYNET_MAX_FILE_BYTES "
                                         "raises it)")
    assert not root.exists() or os.listdir(root) == []


# ------------------------------------------------------------------ the registered checksums
@pytest.mark.parametrize("name", ["mnist", "fashion-mnist"])
def test_registered_md5s_match_the_real_files(name, shared_data):
    """A typo in a registered MD5 would make every real download fail: check them."""
    folder = os.path.join(shared_data, name)
    if not os.path.isdir(folder):
        folder = os.path.join("/usr/share/datasets", name)
    inf = datasets.DATASETS[name]
    files = [f for split in inf.files.values() for f in split]
    if not all(os.path.isfile(os.path.join(folder, f)) for f in files):
        pytest.skip(f"{name} files not found locally")
    assert inf.md5_decompressed
    for f in files:
        got = download_mod.md5_of_file(os.path.join(folder, f), decompress=True)
        assert got == inf.md5[f], f
