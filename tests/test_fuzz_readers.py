"""Fuzzing every data reader: IDX, CIFAR-10 batches and archives, ImageFolder archives.

Each test starts from a valid file, applies random damage (truncation, bit flips,
overwritten bytes, insertions, deletions, oversized header dims, wrong magic, hostile
archive members) and requires one of two outcomes:

- the reader returns arrays that satisfy the format's contract (shapes, dtypes, labels
  in range), because the damage hit only pixel values; or
- it raises :class:`tinynet.DataError` whose message names the file.

Anything else -- an exception from deep inside NumPy, Pillow, tarfile or pickle, code run
by a pickle, a file written outside the target folder -- fails the test. Hypothesis runs
derandomized with a modest number of examples so CI stays under a minute; set
``TINYNET_FUZZ_EXAMPLES=5000`` for a longer campaign and ``TINYNET_FUZZ_SAVE=1`` to store
each new crasher in ``tests/corpus/`` (then add the fix; the corpus is replayed below).
"""

from __future__ import annotations

import gzip
import hashlib
import io
import os
import struct
import tarfile

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from test_data_cifar import py2_batch_pickle, random_batch

import tinynet
from tinynet.data import archive, cifar, idx
from tinynet.data.imagefolder import read_image_folder
from tinynet.errors import DataError

CORPUS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "corpus")
EXAMPLES = int(os.environ.get("TINYNET_FUZZ_EXAMPLES", "40"))
# TINYNET_FUZZ_RANDOM=1: a fresh random campaign instead of CI's fixed sequence
FUZZ = settings(max_examples=EXAMPLES, derandomize=not os.environ.get("TINYNET_FUZZ_RANDOM"),
                deadline=None, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])


# --- damage ------------------------------------------------------------------------------

def _pos():
    # half the edits land in the first 300 bytes (headers, opcodes), half anywhere
    return st.one_of(st.integers(0, 300), st.integers(0, 1 << 20))


EDIT = st.one_of(
    st.tuples(st.just("flip"), _pos(), st.integers(0, 7)),
    st.tuples(st.just("set"), _pos(), st.integers(0, 255)),
    st.tuples(st.just("truncate"), _pos()),
    st.tuples(st.just("insert"), _pos(), st.binary(min_size=1, max_size=8)),
    st.tuples(st.just("delete"), _pos(), st.integers(1, 16)),
)
EDITS = st.lists(EDIT, min_size=1, max_size=4)


def damage(raw: bytes, edits) -> bytes:
    """Apply the edits in order (positions taken modulo the current length)."""
    b = bytearray(raw)
    for e in edits:
        if not b:
            break
        p = e[1] % len(b)
        if e[0] == "flip":
            b[p] ^= 1 << e[2]
        elif e[0] == "set":
            b[p] = e[2]
        elif e[0] == "truncate":
            del b[p:]
        elif e[0] == "insert":
            b[p:p] = e[2]
        else:
            del b[p:p + e[2]]
    return bytes(b)


def save_crasher(kind: str, raw: bytes) -> None:
    """With TINYNET_FUZZ_SAVE=1, keep an input that broke a reader for the replay test."""
    if os.environ.get("TINYNET_FUZZ_SAVE"):
        os.makedirs(CORPUS, exist_ok=True)
        name = f"{kind}-{hashlib.sha256(raw).hexdigest()[:12]}"
        with open(os.path.join(CORPUS, name), "wb") as f:
            f.write(raw)


def expect_data_error_or(check, read, path: str, kind: str, raw: bytes):
    """Run ``read()``; a DataError must name ``path``; a result must pass ``check``."""
    try:
        result = read()
    except DataError as e:
        assert path in str(e), f"DataError does not name {path}: {e}"
        return None
    except BaseException:
        save_crasher(kind, raw)
        raise
    try:
        check(result)
    except AssertionError:
        save_crasher(kind, raw)
        raise
    return result


# --- IDX -----------------------------------------------------------------------------------

def idx_bytes(arr: np.ndarray) -> bytes:
    return struct.pack(">HBB", 0, 0x08, arr.ndim) + struct.pack(">" + "I" * arr.ndim,
                                                                *arr.shape) + arr.tobytes()


def check_idx(arr):
    assert isinstance(arr, np.ndarray) and 1 <= arr.ndim <= 4


def check_pair(result):
    images, labels = result
    assert images.dtype == np.uint8 and images.ndim == 3
    assert labels.dtype == np.int64 and labels.shape == images.shape[:1]
    assert labels.size == 0 or (labels.min() >= 0 and labels.max() < 10)


def _mnist_files(folder, images: bytes, labels: bytes) -> None:
    os.makedirs(folder, exist_ok=True)
    with open(os.path.join(folder, "t10k-images-idx3-ubyte"), "wb") as f:
        f.write(images)
    with open(os.path.join(folder, "t10k-labels-idx1-ubyte"), "wb") as f:
        f.write(labels)


HEADER_EDIT = st.one_of(
    st.tuples(st.just("dim"), st.integers(0, 3), st.integers(0, (1 << 32) - 1)),
    st.tuples(st.just("magic"), st.binary(min_size=4, max_size=4)),
    st.tuples(st.just("none")),
)


@FUZZ
@given(n=st.integers(0, 4), h=st.integers(1, 5), which=st.sampled_from(["images", "labels"]),
       header=HEADER_EDIT, edits=st.lists(EDIT, max_size=3), gz=st.booleans())
def test_fuzz_idx(tmp_path, n, h, which, header, edits, gz):
    rng = np.random.default_rng(n * 7 + h)
    images = idx_bytes(rng.integers(0, 256, (n, h, h + 1), dtype=np.uint8))
    labels = idx_bytes(rng.integers(0, 10, n, dtype=np.uint8))
    raw = images if which == "images" else labels
    if header[0] == "dim":
        ndim = raw[3]
        k = header[1] % ndim
        raw = raw[:4 + 4 * k] + struct.pack(">I", header[2]) + raw[8 + 4 * k:]
    elif header[0] == "magic":
        raw = header[1] + raw[4:]
    raw = damage(raw, edits) if edits else raw
    if gz:
        raw = gzip.compress(raw, mtime=0)
    folder = str(tmp_path / hashlib.sha256(raw).hexdigest()[:16])
    _mnist_files(folder, raw if which == "images" else images,
                 raw if which == "labels" else labels)
    path = os.path.join(folder, f"t10k-{which}-idx{3 if which == 'images' else 1}-ubyte")
    expect_data_error_or(check_idx, lambda: idx.read_idx(path), path, f"idx-{which}", raw)
    expect_data_error_or(check_pair, lambda: tinynet.data.load("mnist", "test", root=folder,
                                                               download=False),
                         folder, f"idx-{which}", raw)


@pytest.mark.parametrize("labels, match", [
    (np.array([1, -1], np.int8), r"label -1 outside \[0, 10\)"),  # IDX type 0x09
    (np.array([1.0, 2.0], ">f4"), "labels are float32, expected integers"),  # 0x0D
])
def test_idx_pair_regressions(labels, match):
    images = np.zeros((2, 3, 4), np.uint8)
    with pytest.raises(DataError, match=match):
        idx.validate_pair(images, labels.astype(labels.dtype.newbyteorder("=")), "pair")
    with pytest.raises(DataError, match=r"int8 of shape \(2, 3, 4\), expected \(N, H, W\)"):
        idx.validate_pair(images.astype(np.int8), np.array([1, 2], np.uint8), "pair")


@FUZZ
@given(raw=st.binary(max_size=64))
def test_fuzz_idx_random_bytes(raw):
    expect_data_error_or(check_idx, lambda: idx.read_idx_bytes(raw, "rand.idx"), "rand.idx",
                         "idx-images", raw)


@FUZZ
@given(edits=EDITS)
def test_fuzz_idx_gzip_wrapper(tmp_path, edits):
    arr = np.arange(24, dtype=np.uint8).reshape(2, 3, 4)
    raw = damage(gzip.compress(idx_bytes(arr), mtime=0), edits)
    path = str(tmp_path / "f.gz")
    with open(path, "wb") as f:
        f.write(raw)
    expect_data_error_or(check_idx, lambda: idx.read_idx(path), path, "idx-images", raw)


# --- CIFAR-10 batches --------------------------------------------------------------------

def check_batch(result):
    images, labels = result
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[1:] == (32, 32, 3)
    assert labels.dtype == np.int64 and labels.shape == images.shape[:1]
    assert labels.size == 0 or (labels.min() >= 0 and labels.max() < 10)


BASE_BATCH = py2_batch_pickle(*random_batch(1, seed=3))


@FUZZ
@given(edits=EDITS)
def test_fuzz_cifar_batch_bytes(edits):
    raw = damage(BASE_BATCH, edits)
    expect_data_error_or(check_batch, lambda: cifar.read_batch_bytes(raw, "fuzzed_batch"),
                         "fuzzed_batch", "cifar-batch", raw)


@FUZZ
@given(body=st.binary(max_size=200), proto=st.sampled_from([b"", b"\x80\x02", b"\x80\x04"]))
def test_fuzz_cifar_random_pickle(body, proto):
    raw = proto + body
    expect_data_error_or(check_batch, lambda: cifar.read_batch_bytes(raw, "rand_batch"),
                         "rand_batch", "cifar-batch", raw)


DANGEROUS = [("os", "system"), ("posix", "system"), ("nt", "system"),
             ("subprocess", "Popen"), ("subprocess", "call"), ("subprocess", "check_output"),
             ("builtins", "eval"), ("builtins", "exec"), ("builtins", "open"),
             ("builtins", "__import__"), ("builtins", "getattr"), ("__builtin__", "eval"),
             ("importlib", "import_module"), ("shutil", "rmtree"), ("pickle", "loads"),
             ("numpy", "load"), ("numpy.testing._private.utils", "runstring"),
             ("numpy", "frombuffer"), ("numpy.core.multiarray", "scalar"),
             ("builtins", "bytes.__new__"), ("copyreg", "_reconstructor"), ("io", "open")]


def _global_op(module: str, name: str, protocol: int) -> bytes:
    if protocol >= 4:
        m, n = module.encode(), name.encode()
        return b"\x8c" + bytes([len(m)]) + m + b"\x8c" + bytes([len(n)]) + n + b"\x93"
    return b"c" + module.encode() + b"\n" + name.encode() + b"\n"


@FUZZ
@given(target=st.sampled_from(DANGEROUS), protocol=st.sampled_from([0, 2, 4]),
       wrap=st.sampled_from(["bare", "in-dict", "in-list", "inst"]))
def test_fuzz_hostile_globals(tmp_path, target, protocol, wrap):
    marker = tmp_path / "pwned"
    arg = f"touch {marker}".encode()
    call = _global_op(*target, protocol) + b"(S'" + arg + b"'\ntR"
    if wrap == "inst":  # protocol-0 INST: MARK args INST module name
        call = b"(S'" + arg + b"'\ni" + target[0].encode() + b"\n" + target[1].encode() + b"\n"
    head = b"\x80" + bytes([protocol]) if protocol >= 2 else b""
    if wrap == "in-dict":
        raw = head + b"(dS'data'\n" + call + b"s."
    elif wrap == "in-list":
        raw = head + b"(l" + call + b"a."
    else:
        raw = head + call + b"."
    with pytest.raises(DataError, match=r"^evil: unsafe or malformed pickle: refused global"):
        cifar.read_batch_bytes(raw, "evil")
    assert not marker.exists()


@FUZZ
@given(edits=EDITS, layer=st.sampled_from(["gz", "tar", "member"]))
def test_fuzz_cifar_archive(tmp_path, edits, layer):
    data, labels = random_batch(1, seed=4)
    batch = py2_batch_pickle(data, labels)
    member = "cifar-10-batches-py/test_batch"
    if layer == "member":
        batch = damage(batch, edits)
    plain = _tar_bytes({"cifar-10-batches-py/batches.meta": b"meta", member: batch})
    if layer == "tar":
        plain = damage(plain, edits)
    raw = gzip.compress(plain, mtime=0)
    if layer == "gz":
        raw = damage(raw, edits)
    folder = tmp_path / hashlib.sha256(raw).hexdigest()[:16]
    folder.mkdir(exist_ok=True)
    path = str(folder / cifar.ARCHIVE)
    with open(path, "wb") as f:
        f.write(raw)
    expect_data_error_or(check_batch, lambda: cifar.read_cifar10(str(folder), "test"), path,
                         "cifar-archive", raw)


def _tar_bytes(members: dict, extra=()) -> bytes:
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.GNU_FORMAT) as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
        for info in extra:
            tar.addfile(info)
    return buf.getvalue()


# --- ImageFolder archives ------------------------------------------------------------------

def _png(arr) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="PNG")
    return buf.getvalue()


def _jpeg(arr) -> bytes:
    from PIL import Image
    buf = io.BytesIO()
    Image.fromarray(arr).save(buf, format="JPEG")
    return buf.getvalue()


_RNG = np.random.default_rng(5)
IMAGES = {"train/cat/a.png": _png(_RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)),
          "train/cat/b.jpg": _jpeg(_RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)),
          "train/dog/c.png": _png(_RNG.integers(0, 256, (4, 4, 3), dtype=np.uint8)),
          "train/dog/d.png": _png(_RNG.integers(0, 256, (4, 4), dtype=np.uint8))}


def _member(name, kind=tarfile.REGTYPE, link=""):
    info = tarfile.TarInfo(name)
    info.type, info.linkname = kind, link
    return info


HOSTILE_MEMBERS = {
    "none": [],
    "dotdot": [_member("../../evil.png")],
    "absolute": [_member("/tmp/tinynet-fuzz-evil.png")],
    "symlink-out": [_member("train/cat/ln.png", tarfile.SYMTYPE, "/etc/passwd")],
    "symlink-up": [_member("train/cat/ln.png", tarfile.SYMTYPE, "../../../x")],
    "symlink-dir-then-write": [_member("train/sneaky", tarfile.SYMTYPE, "../.."),
                               _member("train/sneaky/evil.png")],
    "hardlink-out": [_member("train/cat/h.png", tarfile.LNKTYPE, "/etc/passwd")],
    "hardlink-in": [_member("train/cat/h.png", tarfile.LNKTYPE, "train/cat/a.png")],
    "device": [_member("train/cat/dev.png", tarfile.CHRTYPE)],
    "fifo": [_member("train/cat/fifo.png", tarfile.FIFOTYPE)],
    "empty-class": [_member("train/empty", tarfile.DIRTYPE)],
    "stray-image": [_member("train/x.png")],
}


def check_folder(result):
    images, labels, classes = result
    assert images.dtype == np.uint8 and images.ndim == 4 and images.shape[3] == 3
    assert labels.dtype == np.int64 and labels.shape == images.shape[:1]
    assert labels.size and labels.min() >= 0 and labels.max() < len(classes)
    assert classes == sorted(classes)


def tree(folder) -> set:
    out = set()
    for dirpath, dirnames, filenames in os.walk(folder):
        for n in dirnames + filenames:
            out.add(os.path.relpath(os.path.join(dirpath, n), folder))
    return out


@FUZZ
@given(hostile=st.sampled_from(sorted(HOSTILE_MEMBERS)),
       image=st.sampled_from(sorted(IMAGES)), image_edits=st.lists(EDIT, max_size=3),
       tar_edits=st.lists(EDIT, max_size=2), gz_edits=st.lists(EDIT, max_size=1))
def test_fuzz_imagefolder_archive(tmp_path, hostile, image, image_edits, tar_edits, gz_edits):
    files = dict(IMAGES)
    files[image] = damage(files[image], image_edits) if image_edits else files[image]
    plain = _tar_bytes(files, HOSTILE_MEMBERS[hostile])
    plain = damage(plain, tar_edits) if tar_edits else plain
    raw = gzip.compress(plain, mtime=0)
    raw = damage(raw, gz_edits) if gz_edits else raw
    sandbox = tmp_path / hashlib.sha256(raw).hexdigest()[:16]
    (sandbox / "in").mkdir(parents=True, exist_ok=True)
    path = str(sandbox / "in" / "images.tar.gz")
    with open(path, "wb") as f:
        f.write(raw)
    before = tree(tmp_path)
    expect_data_error_or(check_folder, lambda: read_image_folder(path, "train", cache=False),
                         path, "imagefolder", raw)
    assert tree(tmp_path) == before  # reading writes nothing at all
    dest = sandbox / "out" / "dest"
    try:
        archive.safe_extract(path, str(dest))
    except DataError as e:
        assert path in str(e)
    except BaseException:
        save_crasher("imagefolder", raw)
        raise
    after = {p for p in tree(tmp_path) if not p.startswith(os.path.relpath(dest, tmp_path))}
    assert after - before <= {os.path.relpath(sandbox / "out", tmp_path)}, \
        "safe_extract wrote outside its target folder"
    assert not os.path.exists("/tmp/tinynet-fuzz-evil.png")


# --- the corpus of crashers found so far ---------------------------------------------------

def _corpus_files():
    if not os.path.isdir(CORPUS):
        return []
    return sorted(f for f in os.listdir(CORPUS) if not f.startswith("."))


@pytest.mark.parametrize("name", _corpus_files())
def test_replay_corpus(tmp_path, name):
    """Every crasher ever found, read again: a DataError naming the file, or a valid result."""
    with open(os.path.join(CORPUS, name), "rb") as f:
        raw = f.read()
    kind = name.rsplit("-", 1)[0]
    folder = tmp_path / "data"
    folder.mkdir()
    if kind.startswith("idx-"):
        rng = np.random.default_rng(0)
        images = idx_bytes(rng.integers(0, 256, (2, 3, 4), dtype=np.uint8))
        labels = idx_bytes(np.array([1, 2], np.uint8))
        _mnist_files(str(folder), raw if kind == "idx-images" else images,
                     raw if kind == "idx-labels" else labels)
        expect_data_error_or(check_pair, lambda: tinynet.data.load(
            "mnist", "test", root=str(folder), download=False), str(folder), kind, raw)
    elif kind == "cifar-batch":
        expect_data_error_or(check_batch, lambda: cifar.read_batch_bytes(raw, name), name,
                             kind, raw)
    elif kind == "cifar-archive":
        path = str(folder / cifar.ARCHIVE)
        with open(path, "wb") as f:
            f.write(raw)
        expect_data_error_or(check_batch, lambda: cifar.read_cifar10(str(folder), "test"),
                             path, kind, raw)
    elif kind == "checkpoint":
        path = str(folder / "checkpoint.npz")
        with open(path, "wb") as f:
            f.write(raw)
        expect_data_error_or(lambda ckpt: None, lambda: tinynet.load(path), path, kind, raw)
    elif kind == "imagefolder":
        path = str(folder / "images.tar.gz")
        with open(path, "wb") as f:
            f.write(raw)
        expect_data_error_or(check_folder, lambda: read_image_folder(path, "train",
                                                                      cache=False),
                             path, kind, raw)
    else:
        pytest.fail(f"corpus file {name}: unknown kind {kind!r}")
