"""CIFAR-10 in the official Python format, read with the restricted unpickler.

No machine here can fetch ``cifar-10-python.tar.gz``, so the tests write archives in
exactly its format: ``cifar-10-batches-py/data_batch_1..5``, ``test_batch`` and
``batches.meta``, each a protocol-2 pickle of a dict with a uint8 ``data`` array
``(N, 3072)`` and a ``labels`` list. :func:`py2_batch_pickle` writes the opcodes Python
2's ``cPickle`` wrote for the real files (``numpy.core.multiarray._reconstruct`` and the
pixels as a Python 2 ``str``); :func:`py3_batch_pickle` is what ``pickle.dumps`` writes
today (``numpy._core``, ``_codecs.encode``), which must load too.

The helpers here are imported by ``test_fuzz_readers.py``.
"""

from __future__ import annotations

import http.server
import io
import os
import pickle
import struct
import tarfile
import threading

import numpy as np
import pytest

import tinynet
from tinynet.data import cifar, safe_pickle
from tinynet.errors import DataError

# --- writers of CIFAR-10-format files ---------------------------------------------------


def _py2_str(b: bytes) -> bytes:
    """A Python 2 ``str`` (bytes) as cPickle protocol 2 wrote it."""
    if len(b) < 256:
        return b"U" + bytes([len(b)]) + b
    return b"T" + struct.pack("<i", len(b)) + b


def _py2_int(v: int) -> bytes:
    if 0 <= v < 256:
        return b"K" + bytes([v])
    if 0 <= v < 65536:
        return b"M" + struct.pack("<H", v)
    return b"J" + struct.pack("<i", v)


def py2_batch_pickle(data: np.ndarray, labels, batch_label: bytes = b"training batch 1 of 5",
                     filenames=None, array_module: bytes = b"numpy.core.multiarray") -> bytes:
    """The bytes Python 2 ``cPickle.dump(batch, f, 2)`` wrote for a CIFAR-10 batch.

    Opcode for opcode what NumPy 1.x's ``ndarray.__reduce__`` produced under Python 2:
    ``_reconstruct(ndarray, (0,), 'b')`` then ``BUILD (1, shape, dtype('u1', 0, 1) with
    state (3, '|', None, None, None, -1, -1, 0), False, <raw bytes as str>)``.
    """
    assert data.dtype == np.uint8 and data.ndim == 2
    if filenames is None:
        filenames = [b"img_%d.png" % i for i in range(len(labels))]
    out = [b"\x80\x02}q\x00(", _py2_str(b"batch_label"), _py2_str(batch_label),
           _py2_str(b"labels"), b"]q\x01("]
    out += [_py2_int(int(v)) for v in labels]
    out += [b"e", _py2_str(b"data")]
    out += [b"c" + array_module + b"\n_reconstruct\nq\x02",
            b"cnumpy\nndarray\nq\x03", b"K\x00\x85", _py2_str(b"b"), b"\x87Rq\x04",
            b"(K\x01", _py2_int(data.shape[0]), _py2_int(data.shape[1]), b"\x86",
            b"cnumpy\ndtype\nq\x05", _py2_str(b"u1"), b"K\x00K\x01\x87Rq\x06",
            b"(K\x03", _py2_str(b"|"), b"NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tb",
            b"\x89", _py2_str(np.ascontiguousarray(data).tobytes()), b"tb",
            _py2_str(b"filenames"), b"]q\x07("]
    out += [_py2_str(f) for f in filenames]
    out += [b"eu."]
    return b"".join(out)


def py3_batch_pickle(data: np.ndarray, labels, protocol: int = 2) -> bytes:
    """A CIFAR-10 batch as today's ``pickle.dumps`` writes it (bytes keys, as the original)."""
    batch = {b"batch_label": b"training batch 1 of 5", b"labels": [int(v) for v in labels],
             b"data": data, b"filenames": [b"img_%d.png" % i for i in range(len(labels))]}
    return pickle.dumps(batch, protocol=protocol)


def random_batch(n: int, seed: int) -> tuple[np.ndarray, list]:
    rng = np.random.default_rng(seed)
    return (rng.integers(0, 256, (n, 3072), dtype=np.uint8),
            [int(v) for v in rng.integers(0, 10, n)])


def write_tar(path: str, members: dict, mode: str = "w:gz") -> str:
    """A tar at ``path`` holding ``members`` (name -> bytes) as regular files, in order."""
    with tarfile.open(path, mode) as tar:
        for name, raw in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(raw)
            info.mode = 0o644
            tar.addfile(info, io.BytesIO(raw))
    return path


def write_cifar_archive(folder: str, sizes=(4, 3, 5, 2, 3), test_size: int = 4,
                        writer=py2_batch_pickle) -> tuple:
    """``folder/cifar-10-python.tar.gz`` with random batches; return (train, test) truth."""
    os.makedirs(folder, exist_ok=True)
    members, parts = {}, []
    meta = pickle.dumps({b"label_names": [c.encode() for c in cifar.CLASSES],
                         b"num_cases_per_batch": 10000, b"num_vis": 3072}, protocol=2)
    members["cifar-10-batches-py/batches.meta"] = meta
    for i, n in enumerate(sizes, start=1):
        data, labels = random_batch(n, seed=i)
        members[f"cifar-10-batches-py/data_batch_{i}"] = writer(data, labels)
        parts.append((data, labels))
    data, labels = random_batch(test_size, seed=99)
    members["cifar-10-batches-py/test_batch"] = writer(data, labels, b"testing batch 1 of 1")
    members["cifar-10-batches-py/readme.html"] = b"<html></html>"
    write_tar(os.path.join(folder, cifar.ARCHIVE), members)
    train = (np.concatenate([d for d, _ in parts]), [v for _, lab in parts for v in lab])
    return train, (data, labels)


def to_hwc(data: np.ndarray) -> np.ndarray:
    """The documented CIFAR-10 layout, pixel by pixel: row = R plane, G plane, B plane."""
    n = data.shape[0]
    out = np.zeros((n, 32, 32, 3), dtype=np.uint8)
    for c in range(3):
        for r in range(32):
            out[:, r, :, c] = data[:, c * 1024 + r * 32: c * 1024 + r * 32 + 32]
    return out


# --- reading -----------------------------------------------------------------------------


def test_py2_writer_matches_what_numpy_pickle_reads():
    # The hand-written Python 2 opcodes must be a pickle the ordinary unpickler reads
    # into the same array (trusted input, our own bytes): checks the writer itself.
    data, labels = random_batch(3, seed=0)
    obj = pickle.loads(py2_batch_pickle(data, labels), encoding="bytes")
    np.testing.assert_array_equal(obj[b"data"], data)
    assert obj[b"labels"] == labels


@pytest.mark.parametrize("writer", ["py2", "py3-2", "py3-3", "py3-4", "py3-5", "py2-numpy2"])
def test_read_batch_every_pickle_flavour(writer):
    data, labels = random_batch(6, seed=1)
    if writer == "py2":
        raw = py2_batch_pickle(data, labels)
    elif writer == "py2-numpy2":
        raw = py2_batch_pickle(data, labels, array_module=b"numpy._core.multiarray")
    else:
        raw = py3_batch_pickle(data, labels, protocol=int(writer[-1]))
    images, got = cifar.read_batch_bytes(raw, "batch")
    assert images.dtype == np.uint8 and images.shape == (6, 32, 32, 3)
    np.testing.assert_array_equal(images, to_hwc(data))
    assert got.dtype == np.int64 and got.tolist() == labels


def test_load_train_and_test_from_archive(tmp_path):
    (train_x, train_y), (test_x, test_y) = write_cifar_archive(str(tmp_path))
    x, y = tinynet.data.load("cifar10", "train", root=str(tmp_path), download=False)
    assert x.shape == (17, 32, 32, 3) and x.dtype == np.uint8 and x.flags.c_contiguous
    np.testing.assert_array_equal(x, to_hwc(train_x))  # batches 1..5 in order
    assert y.dtype == np.int64 and y.tolist() == train_y
    x, y = tinynet.data.load("cifar10", "test", root=str(tmp_path), download=False)
    np.testing.assert_array_equal(x, to_hwc(test_x))
    assert y.tolist() == test_y


def test_load_from_extracted_folder(tmp_path):
    (train_x, train_y), _ = write_cifar_archive(str(tmp_path / "a"))
    tinynet.data.safe_extract(str(tmp_path / "a" / cifar.ARCHIVE), str(tmp_path / "b"))
    x, y = tinynet.data.load("cifar10", "train", root=str(tmp_path / "b"), download=False)
    np.testing.assert_array_equal(x, to_hwc(train_x))
    assert y.tolist() == train_y


def test_missing_batch_named(tmp_path):
    data, labels = random_batch(2, 0)
    write_tar(str(tmp_path / cifar.ARCHIVE),
              {f"cifar-10-batches-py/data_batch_{i}": py2_batch_pickle(data, labels)
               for i in (1, 2, 4, 5)})
    with pytest.raises(DataError, match=r"data_batch_3"):
        cifar.read_cifar10(str(tmp_path), "train")


def test_duplicate_batch_refused(tmp_path):
    data, labels = random_batch(2, 0)
    path = str(tmp_path / cifar.ARCHIVE)
    with tarfile.open(path, "w:gz") as tar:
        for _ in range(2):
            raw = py2_batch_pickle(data, labels)
            info = tarfile.TarInfo("cifar-10-batches-py/test_batch")
            info.size = len(raw)
            tar.addfile(info, io.BytesIO(raw))
    with pytest.raises(DataError, match="twice"):
        cifar.read_cifar10(str(tmp_path), "test")


def test_unknown_split_and_missing_files(tmp_path):
    with pytest.raises(DataError, match="split"):
        cifar.read_cifar10(str(tmp_path), "valid")
    with pytest.raises(DataError, match="cifar-10-python.tar.gz"):
        cifar.read_cifar10(str(tmp_path), "train")
    with pytest.raises(DataError, match="download=False"):
        tinynet.data.load("cifar10", "train", root=str(tmp_path), download=False)


@pytest.mark.parametrize("labels, match", [
    ([0, 1, 10], "label 2 is 10"),
    ([0, -1, 2], "label 1 is -1"),
    ([0, 1], "3 images but 2 labels"),
    ([0, 1.0, 2], "label 1 is 1.0"),
    ([0, b"1", 2], "label 1 is b'1'"),
])
def test_bad_labels(labels, match):
    data, _ = random_batch(3, 0)
    raw = py3_batch_pickle(data, [0, 0, 0])
    obj = safe_pickle.loads(raw, "x")
    obj[b"labels"] = labels
    with pytest.raises(DataError, match=match):
        cifar.parse_batch(obj, "x")


@pytest.mark.parametrize("data, match", [
    (np.zeros((2, 3071), np.uint8), r"shape \(2, 3071\)"),
    (np.zeros((2, 3072), np.float32), "float32"),
    (np.zeros(3072, np.uint8), r"shape \(3072,\)"),
])
def test_bad_data_array(data, match):
    raw = pickle.dumps({b"data": data, b"labels": [0] * len(data)}, protocol=2)
    with pytest.raises(DataError, match=match):
        cifar.read_batch_bytes(raw, "batchfile")


def test_not_a_dict_and_missing_keys():
    with pytest.raises(DataError, match="batchfile: a CIFAR-10 batch is a dict"):
        cifar.read_batch_bytes(pickle.dumps([1, 2], protocol=2), "batchfile")
    with pytest.raises(DataError, match="no 'labels'"):
        cifar.read_batch_bytes(pickle.dumps({b"data": 1}, protocol=2), "batchfile")


def test_truncated_batch_names_the_file(tmp_path):
    data, labels = random_batch(3, 0)
    raw = py2_batch_pickle(data, labels)
    for cut in (1, 40, len(raw) // 2, len(raw) - 1):
        with pytest.raises(DataError, match=r"^batchfile: "):
            cifar.read_batch_bytes(raw[:cut], "batchfile")


# --- hostile pickles -----------------------------------------------------------------------


class _Payload:
    """Pickles as ``func(*args)``: what an attacker puts in a downloaded batch."""

    def __init__(self, func, args):
        self.func, self.args = func, args

    def __reduce__(self):
        return self.func, self.args


def _hostile_pickles(marker: str) -> dict:
    """Pickles that, loaded with plain ``pickle.loads``, would create ``marker``."""
    import builtins
    import subprocess
    cmd = f"touch {marker}"
    payloads = {
        "os.system": _Payload(os.system, (cmd,)),
        "subprocess.call": _Payload(subprocess.call, (["touch", marker],)),
        "subprocess.Popen": _Payload(subprocess.Popen, (["touch", marker],)),
        "builtins.eval": _Payload(builtins.eval, (f"open({marker!r}, 'w')",)),
        "builtins.exec": _Payload(builtins.exec, (f"open({marker!r}, 'w')",)),
        "builtins.open": _Payload(builtins.open, (marker, "w")),
    }
    out = {}
    for name, payload in payloads.items():
        for protocol in (0, 2, 4):
            out[f"{name}-p{protocol}"] = pickle.dumps(payload, protocol=protocol)
        # hidden inside an otherwise valid batch
        data, labels = random_batch(2, 0)
        batch = {b"data": data, b"labels": labels, b"batch_label": payload}
        out[f"{name}-in-batch"] = pickle.dumps(batch, protocol=2)
    # hand-written protocol-0 INST opcode (calls find_class too) and GLOBAL via __builtin__
    out["INST-os.system"] = f"(S'{cmd}'\nios\nsystem\n.".encode()
    out["GLOBAL-__builtin__.eval"] = (
        f"c__builtin__\neval\n(S\"open({marker!r}, 'w')\"\ntR.".encode())
    out["getattr-chain"] = (b"\x80\x02c__builtin__\ngetattr\ncos\nsystem\n.")
    return out


def test_hostile_payloads_really_create_the_marker(tmp_path):
    # The control: plain pickle.loads of one payload does what the attack wants, so the
    # next test's "marker absent" is meaningful.
    marker = tmp_path / "control"
    pickle.loads(_hostile_pickles(str(marker))["builtins.open-p2"]).close()
    assert marker.exists()


def test_hostile_pickles_refused_without_side_effects(tmp_path):
    marker = tmp_path / "pwned"
    for case, raw in _hostile_pickles(str(marker)).items():
        with pytest.raises(DataError, match=r"^evil_batch: unsafe or malformed pickle: "
                                            r"refused global") as err:
            cifar.read_batch_bytes(raw, "evil_batch")
        assert "." in str(err.value).split("refused global ")[1], case
        assert not marker.exists(), case


def test_hostile_batch_in_archive_refused(tmp_path):
    marker = tmp_path / "pwned"
    folder = tmp_path / "data"
    folder.mkdir()
    raw = _hostile_pickles(str(marker))["os.system-in-batch"]
    write_tar(str(folder / cifar.ARCHIVE), {"cifar-10-batches-py/test_batch": raw})
    with pytest.raises(DataError, match=r"cifar-10-python.tar.gz:cifar-10-batches-py/"
                                        r"test_batch: .*refused global (posix|nt)\.system"):
        tinynet.data.load("cifar10", "test", root=str(folder), download=False)
    assert not marker.exists()


def test_object_and_structured_arrays_refused():
    obj_arr = np.array([1, "a"], dtype=object)
    with pytest.raises(DataError, match="refused dtype 'O8'"):
        safe_pickle.loads(pickle.dumps(obj_arr, protocol=2), "f")
    rec = np.zeros(2, dtype=[("a", "u1"), ("b", "f4")])
    with pytest.raises(DataError, match="refused dtype|structured"):
        safe_pickle.loads(pickle.dumps(rec, protocol=2), "f")


def test_array_length_must_match_shape():
    raw = py2_batch_pickle(*random_batch(2, 0))
    # claim 3 rows while the raw buffer holds 2
    bad = raw.replace(b"(K\x01K\x02M\x00\x0c\x86", b"(K\x01K\x03M\x00\x0c\x86")
    assert bad != raw
    with pytest.raises(DataError, match=r"shape \(3, 3072\) .* needs 9216 bytes, the "
                                        r"pickle holds 6144"):
        cifar.read_batch_bytes(bad, "f")


def test_huge_memo_index_refused_before_unpickling():
    # LONG_BINPUT 2**32-1 makes CPython's C unpickler size its memo at 32 GiB
    with pytest.raises(DataError, match="memo index 4294967295"):
        safe_pickle.loads(b"\x80\x02]r\xff\xff\xff\xff.", "f")


def test_bytes_constructors_refuse_sizes():
    # bytes(10**10) would allocate 10 GB; only the forms pickle itself writes are accepted
    raw = b"\x80\x02c__builtin__\nbytes\n\x8a\x05\x00\xe4\x0bT\x02\x85R."
    with pytest.raises(DataError, match=r"bytes\(10000000000,\)"):
        safe_pickle.loads(raw, "f")
    assert safe_pickle.loads(pickle.dumps([b"", bytearray(b"ab"), {1}, frozenset()],
                                          protocol=2), "f") == [b"", bytearray(b"ab"), {1},
                                                                frozenset()]


# --- download path (local HTTP server, no internet) ----------------------------------------


@pytest.fixture
def http_folder(tmp_path):
    served = tmp_path / "served"
    served.mkdir()

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *a, **kw):
            super().__init__(*a, directory=str(served), **kw)

        def log_message(self, *a):
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield served, f"http://127.0.0.1:{server.server_address[1]}/"
    server.shutdown()
    server.server_close()


def test_download_checks_the_official_md5(http_folder, tmp_path):
    served, url = http_folder
    write_cifar_archive(str(served))
    target = tmp_path / "cache"
    with pytest.raises(DataError, match="expected c58f30108f718f92721af3b95e74349a"):
        tinynet.data.load("cifar10", "test", root=str(target), mirrors=[url], progress=False)
    assert not (target / cifar.ARCHIVE).exists()


def test_download_then_read(http_folder, tmp_path, monkeypatch):
    served, url = http_folder
    _, (test_x, test_y) = write_cifar_archive(str(served))
    from tinynet.data.download import md5_of_file
    info = tinynet.data.DATASETS["cifar10"]
    monkeypatch.setitem(info.md5, cifar.ARCHIVE, md5_of_file(str(served / cifar.ARCHIVE)))
    x, y = tinynet.data.load("cifar10", "test", root=str(tmp_path / "dl"), mirrors=[url],
                             progress=False)
    np.testing.assert_array_equal(x, to_hwc(test_x))
    assert y.tolist() == test_y


@pytest.mark.parametrize("protocol", [0, 2, 4, 5])
@pytest.mark.parametrize("make", [
    lambda: np.asfortranarray(np.arange(12, dtype=np.int64).reshape(3, 4)),
    lambda: np.arange(6, dtype=">f4").reshape(2, 3),
    lambda: np.array([True, False]),
    lambda: np.zeros((0, 5), np.uint16),
    lambda: np.full((), 2.5),
])
def test_safe_pickle_round_trips_plain_arrays(make, protocol):
    a = make()
    b = safe_pickle.loads(pickle.dumps({"a": [a, (a, b"x")]}, protocol=protocol), "f")["a"]
    for got in (b[0], b[1][0]):
        assert got.dtype == a.dtype and got.shape == a.shape
        np.testing.assert_array_equal(got, a)
    assert b[1][1] == b"x"


def test_corrupt_opcodes_named_once():
    # a protocol-0 string with a bad escape: found by the fuzzer as a stdlib warning
    with pytest.raises(DataError, match=r"^f: corrupt pickle \(UnicodeDecodeError"):
        safe_pickle.loads(b"S'\\\xe6'\n.", "f")
    with pytest.raises(DataError, match=r"^f: corrupt pickle \(ValueError"):
        safe_pickle.loads(b"\x80\x02\xfe.", "f")
