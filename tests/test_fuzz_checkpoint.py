"""Hostile and broken checkpoints: every one gives one clear DataError, nothing runs.

Hypothesis truncates, bit-flips and overwrites a real checkpoint, swaps its magic and
feeds arbitrary JSON headers; hand-made files carry pickles that would create a file
if they were ever unpickled, ``.npy`` headers that claim terabytes, duplicate and
non-array members. ``tinynet.load`` must either raise :class:`tinynet.DataError`
naming the file, or (for a flip in a part of the zip nobody reads, e.g. a
timestamp) return exactly the arrays that were saved. Crashers found while writing
these tests are kept as ``@example`` cases and named tests below, and small ones as
``tests/corpus/checkpoint-*`` files, which ``test_fuzz_readers.test_replay_corpus``
loads again on every run.
"""

from __future__ import annotations

import io
import json
import os
import pickle
import re
import struct
import zipfile
import zlib

import numpy as np
import pytest

hypothesis = pytest.importorskip("hypothesis", reason="hypothesis drives the fuzz tests")
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

import tinynet
from tinynet import DataError
from tinynet.serialization import HEADER_KEY

FUZZ = settings(max_examples=150, deadline=None, derandomize=False,
                suppress_health_check=[HealthCheck.function_scoped_fixture])


def _checkpoint_bytes() -> tuple[bytes, tinynet.serialization.Checkpoint]:
    import tempfile
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(5, 4), tinynet.ReLU(), tinynet.Linear(4, 3))
    opt = tinynet.Adam(model.parameters())
    x = np.ones((2, 5), np.float32)
    loss_fn = tinynet.CrossEntropyLoss()
    loss_fn(model(x), np.array([0, 2]))
    model.backward(loss_fn.backward())
    opt.step()
    with tempfile.TemporaryDirectory() as d:
        path = os.path.join(d, "ck.npz")
        tinynet.save(path, model, opt, history={"steps": [1.5]}, note="fuzz")
        with open(path, "rb") as f:
            data = f.read()
        return data, tinynet.load(path)


GOOD, GOOD_CKPT = _checkpoint_bytes()


class Evil:
    """Unpickling this would create the file named by ``Evil.target``."""
    target = ""

    def __reduce__(self):
        return (open, (Evil.target, "w"))


@pytest.fixture
def no_unpickling(monkeypatch):
    """Fail loudly if anything reaches pickle while a test runs."""
    def refuse(*args, **kwargs):
        raise AssertionError("pickle was called")
    monkeypatch.setattr(pickle, "loads", refuse)
    monkeypatch.setattr(pickle, "load", refuse)
    monkeypatch.setattr(pickle, "Unpickler", refuse)


def _same_as_good(ckpt) -> bool:
    if list(ckpt.model_state) != list(GOOD_CKPT.model_state):
        return False
    for k, v in GOOD_CKPT.model_state.items():
        if ckpt.model_state[k].dtype != v.dtype or not np.array_equal(ckpt.model_state[k], v):
            return False
    for i, st_ in GOOD_CKPT.optimizer_state["state"].items():
        for name, v in st_.items():
            got = ckpt.optimizer_state["state"][i][name]
            if not np.array_equal(np.asarray(got), np.asarray(v)):
                return False
    return ckpt.meta == GOOD_CKPT.meta and ckpt.history == GOOD_CKPT.history


def _load_or_data_error(path, data: bytes, **kw):
    """Write ``data`` to ``path``, load it: a DataError naming the file, or a good load."""
    path.write_bytes(data)
    before = sorted(os.listdir(path.parent))
    try:
        ckpt = tinynet.load(path, **kw)
    except DataError as e:
        assert str(path) in str(e)
        assert sorted(os.listdir(path.parent)) == before  # nothing written
        return e
    assert sorted(os.listdir(path.parent)) == before
    return ckpt


# ----------------------------------------------------------------- hypothesis
@FUZZ
@given(cut=st.integers(0, len(GOOD) - 1))
@example(cut=0)
@example(cut=3)
@example(cut=len(GOOD) - 22)   # the end-of-central-directory record cut in half
def test_truncated_checkpoint_is_a_data_error(tmp_path, no_unpickling, cut):
    result = _load_or_data_error(tmp_path / "ck.npz", GOOD[:cut])
    assert isinstance(result, DataError), f"truncated to {cut} bytes but loaded"


@FUZZ
@given(flips=st.lists(st.tuples(st.integers(0, len(GOOD) - 1), st.integers(0, 7)),
                      min_size=1, max_size=4))
@example(flips=[(200, 0)])           # inside the first member's header
@example(flips=[(len(GOOD) - 10, 3)])  # the central directory's offset
def test_bit_flipped_checkpoint_errors_or_loads_unchanged(tmp_path, no_unpickling, flips):
    data = bytearray(GOOD)
    for pos, bit in flips:
        data[pos] ^= 1 << bit
    result = _load_or_data_error(tmp_path / "ck.npz", bytes(data))
    if not isinstance(result, DataError):
        assert _same_as_good(result), f"flips {flips} changed the content silently"


@FUZZ
@given(start=st.integers(0, len(GOOD) - 1), junk=st.binary(min_size=1, max_size=64))
def test_overwritten_bytes_error_or_load_unchanged(tmp_path, no_unpickling, start, junk):
    data = bytearray(GOOD)
    data[start:start + len(junk)] = junk
    result = _load_or_data_error(tmp_path / "ck.npz", bytes(data[:len(GOOD)]))
    if not isinstance(result, DataError):
        assert _same_as_good(result)


@FUZZ
@given(magic=st.binary(min_size=4, max_size=4).filter(lambda b: b != b"PK\x03\x04"))
@example(magic=b"\x80\x04\x95\x00")  # a pickle's opening bytes
@example(magic=b"\x93NUM")          # a .npy file's
def test_wrong_magic_is_a_data_error(tmp_path, no_unpickling, magic):
    result = _load_or_data_error(tmp_path / "ck.npz", magic + GOOD[4:])
    assert isinstance(result, DataError)
    assert "not a tinynet checkpoint" in str(result)


JSON = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner,
                                                                max_size=4),
    max_leaves=12)
HEADER_FIELDS = ["model_keys", "optimizer", "rng_state", "loader_state", "progress",
                 "history", "meta", "version"]


def _with_header(header_bytes: bytes) -> bytes:
    with np.load(io.BytesIO(GOOD)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[HEADER_KEY] = np.frombuffer(header_bytes, dtype=np.uint8)
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


@FUZZ
@given(field=st.sampled_from(HEADER_FIELDS), value=JSON)
@example(field="version", value=True)
@example(field="model_keys", value=["0.weight", "missing"])
@example(field="optimizer", value={"state": {"0": {"exp_avg": {"array": "model/0.bias"}}},
                                   "param_groups": [{"params": [0]}]})
@example(field="rng_state", value={"bit_generator": "PCG64", "state": {"state": "x"}})
@example(field="loader_state", value={"position": 1, "epoch_state": None})
def test_malformed_header_fields_are_data_errors(tmp_path, no_unpickling, field, value):
    header = json.loads(GOOD_CKPT_HEADER)
    header[field] = value
    result = _load_or_data_error(tmp_path / "ck.npz", _with_header(json.dumps(header).encode()))
    if not isinstance(result, DataError):  # a value the format allows: it must be used
        assert result.version == header["version"]


@FUZZ
@given(raw=st.binary(max_size=200) | JSON.map(lambda v: json.dumps(v).encode()))
def test_arbitrary_header_bytes_are_data_errors(tmp_path, no_unpickling, raw):
    result = _load_or_data_error(tmp_path / "ck.npz", _with_header(raw))
    assert isinstance(result, DataError)


with np.load(io.BytesIO(GOOD)) as _z:
    GOOD_CKPT_HEADER = _z[HEADER_KEY].tobytes().decode()


# ----------------------------------------------------------------- hand-made hostile files
def test_raw_pickle_file_is_refused_without_running_it(tmp_path, no_unpickling):
    Evil.target = str(tmp_path / "pwned")
    path = tmp_path / "ck.npz"
    path.write_bytes(pickle.dumps({"model": Evil()}))
    with pytest.raises(DataError, match=r"not a tinynet checkpoint.*\(a pickle\)"):
        tinynet.load(path)
    assert not os.path.exists(Evil.target)


@pytest.mark.parametrize("member, message", [
    (HEADER_KEY, "dtype object.*pickle"), ("model/0.weight", "dtype object.*pickle"),
    # members the header does not name are refused by name, unread
    ("extra", "'extra.npy' is not part of the format"),
    ("model/extra", "'model/extra.npy' is not named in the header")])
def test_pickle_inside_the_npz_is_refused_without_running_it(tmp_path, no_unpickling, member,
                                                             message):
    Evil.target = str(tmp_path / "pwned")
    with np.load(io.BytesIO(GOOD)) as z:
        arrays = {k: z[k] for k in z.files}
    arrays[member] = np.array([Evil()], dtype=object)
    path = tmp_path / "ck.npz"
    np.savez(path, **arrays)  # numpy pickles object arrays into the .npy member
    with pytest.raises(DataError, match=message):
        tinynet.load(path)
    assert not os.path.exists(Evil.target)


def _npy_bytes(header: dict, payload: bytes = b"", header_len: int | None = None) -> bytes:
    text = repr(header).encode("latin1")
    text += b" " * (-(len(text) + 11) % 64) + b"\n"
    n = len(text) if header_len is None else header_len
    return b"\x93NUMPY\x01\x00" + struct.pack("<H", n) + text + payload


def _zip_with(members: dict) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w") as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    return buf.getvalue()


def _good_members() -> dict:
    with zipfile.ZipFile(io.BytesIO(GOOD)) as zf:
        return {n: zf.read(n) for n in zf.namelist()}


def test_npy_header_claiming_terabytes_is_refused_before_allocating(tmp_path):
    members = _good_members()
    members["model/0.weight.npy"] = _npy_bytes(
        {"descr": "<f8", "fortran_order": False, "shape": (10**7, 10**7)}, b"\0" * 64)
    path = tmp_path / "ck.npz"
    path.write_bytes(_zip_with(members))
    with pytest.raises(DataError, match=r"declares shape \(10000000, 10000000\)"):
        tinynet.load(path)


@pytest.mark.parametrize("header", [
    {"descr": "<f4", "fortran_order": False, "shape": (-1,)},
    {"descr": "|S4", "fortran_order": False, "shape": (1,)},
    {"descr": [("a", "<f4"), ("b", "|O")], "fortran_order": False, "shape": (1,)},
])
def test_npy_headers_with_bad_shape_or_dtype_are_refused(tmp_path, header):
    members = _good_members()
    members["model/0.weight.npy"] = _npy_bytes(header, b"\0" * 16)
    path = tmp_path / "ck.npz"
    path.write_bytes(_zip_with(members))
    with pytest.raises(DataError, match="model/0.weight"):
        tinynet.load(path)


def test_oversized_npy_header_length_is_refused(tmp_path):
    members = _good_members()
    members["model/0.weight.npy"] = _npy_bytes(
        {"descr": "<f4", "fortran_order": False, "shape": (1,)}, b"\0" * 4, header_len=65535)
    path = tmp_path / "ck.npz"
    path.write_bytes(_zip_with(members))
    with pytest.raises(DataError, match=str(path)):
        tinynet.load(path)


def test_files_larger_than_max_bytes_are_refused(tmp_path):
    path = tmp_path / "ck.npz"
    path.write_bytes(GOOD)
    with pytest.raises(DataError, match="more than max_bytes=100"):
        tinynet.load(path, max_bytes=100)
    assert tinynet.load(path).meta == {"note": "fuzz"}


def test_duplicate_and_foreign_members_are_refused(tmp_path):
    path = tmp_path / "ck.npz"
    buf = io.BytesIO(GOOD)
    with zipfile.ZipFile(buf, "a") as zf, pytest.warns(UserWarning, match="Duplicate"):
        zf.writestr("model/0.weight.npy", _npy_bytes(
            {"descr": "<f4", "fortran_order": False, "shape": (4, 5)}, b"\0" * 80))
    path.write_bytes(buf.getvalue())
    with pytest.raises(DataError, match="duplicate members"):
        tinynet.load(path)
    members = _good_members()
    members["../../escape.sh"] = b"#!/bin/sh\nexit 1\n"
    path.write_bytes(_zip_with(members))
    with pytest.raises(DataError, match="escape.sh.*not a .npy array"):
        tinynet.load(path)
    assert not (tmp_path.parent / "escape.sh").exists()


def test_deflated_zip_bomb_is_refused_by_declared_size(tmp_path):
    """A member the format defines, deflated 1000:1, is refused from the zip directory."""
    members = _good_members()
    members["model/0.weight.npy"] = _npy_bytes(
        {"descr": "|u1", "fortran_order": False, "shape": (30_000_000,)}, b"\0" * 30_000_000)
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, data in members.items():
            zf.writestr(name, data)
    del members
    path = tmp_path / "ck.npz"
    path.write_bytes(buf.getvalue())
    assert path.stat().st_size < 1_000_000
    with pytest.raises(DataError, match=r"more than 100:1: a zip bomb"):
        tinynet.load(path)
    with pytest.raises(DataError, match="more than max_bytes"):
        tinynet.load(path, max_bytes=10_000_000)


# ----------------------------------------------------------------- bombs, by hand
# A zip written byte by byte, so that its headers can say anything. Each member is
# (name, compressed bytes, crc, declared size, method).
def _raw_zip(members: list) -> bytes:
    out, central = io.BytesIO(), []
    for name, comp, crc, size, method in members:
        offset, raw_name = out.tell(), name.encode()
        out.write(struct.pack("<4s5H3L2H", b"PK\x03\x04", 20, 0, method, 0, 0, crc,
                              len(comp), size, len(raw_name), 0) + raw_name + comp)
        central.append(struct.pack("<4s6H3L5H2L", b"PK\x01\x02", 20, 20, 0, method, 0, 0,
                                   crc, len(comp), size, len(raw_name), 0, 0, 0, 0, 0,
                                   offset) + raw_name)
    cd_offset, cd = out.tell(), b"".join(central)
    out.write(cd + struct.pack("<4s4H2LH", b"PK\x05\x06", 0, 0, len(members), len(members),
                               len(cd), cd_offset, 0))
    return out.getvalue()


_MIB = 1 << 20


def _deflated_zeros(prefix: bytes, mib: int) -> tuple[bytes, int, int]:
    """A raw deflate stream of ``prefix`` then ``mib`` MiB of zeros (about 1 KB per MiB),
    its CRC-32 and its inflated size; built from one repeated full-flush block."""
    c = zlib.compressobj(9, zlib.DEFLATED, -15)
    head = c.compress(prefix) + c.flush(zlib.Z_FULL_FLUSH)
    block = c.compress(bytes(_MIB)) + c.flush(zlib.Z_FULL_FLUSH)
    crc, zeros = zlib.crc32(prefix), bytes(_MIB)
    for _ in range(mib):
        crc = zlib.crc32(zeros, crc)
    return head + block * mib + c.flush(), crc, len(prefix) + mib * _MIB


def _stored(name: str, data: bytes) -> tuple:
    return (name, data, zlib.crc32(data), len(data), zipfile.ZIP_STORED)


def _bombs() -> dict[str, bytes]:
    """Checkpoints with one member that inflates to 1 or 1.5 GiB from about 1.5 MB."""
    good = [_stored(n, d) for n, d in _good_members().items()]
    npy = _npy_bytes({"descr": "|u1", "fortran_order": False, "shape": (1536 * _MIB,)})
    honest, crc, size = _deflated_zeros(npy, 1536)
    lying, lying_crc, _ = _deflated_zeros(b"", 1024)
    weight = next(m for m in good if m[0] == "model/0.weight.npy")
    others = [m for m in good if m[0] != "model/0.weight.npy"]
    return {
        # an extra member whose headers lie: 1 GiB of zeros declared as 1,000 bytes
        "extra-lying": _raw_zip(good + [("extra.npy", lying, lying_crc, 1000, 8)]),
        # an extra member, honest: 1.5 GiB declared and present
        "extra-honest": _raw_zip(good + [("extra.npy", honest, crc, size, 8)]),
        # the same 1.5 GiB as a member the format defines (named in the header)
        "defined-honest": _raw_zip(others + [("model/0.weight.npy", honest, crc, size, 8)]),
        # a defined member declaring its true small size, whose stream goes on for 1 GiB
        "defined-lying": _raw_zip(others + [("model/0.weight.npy", weight[1] + lying[:-2],
                                             weight[2], weight[3], 8)]),
        # a stored member declaring 1.5 GiB in a few bytes
        "stored-lying": _raw_zip(good + [("extra.npy", b"\0" * 16, 0, size, 0)]),
    }


BOMB_CHILD = r"""
import json, os, resource, sys, time
import tinynet
from tinynet import serialization
out = {}
for path in sys.argv[1:]:
    start = time.perf_counter()
    for call in ("load", "restore"):
        try:
            if call == "load":
                tinynet.load(path)
            else:
                tinynet.manual_seed(0)
                model = tinynet.Sequential(tinynet.Linear(5, 4), tinynet.ReLU(),
                                           tinynet.Linear(4, 3))
                serialization.restore(path, model, tinynet.Adam(model.parameters()))
            out[f"{os.path.basename(path)} {call}"] = "loaded"
        except tinynet.TinynetError as e:
            out[f"{os.path.basename(path)} {call}"] = f"{type(e).__name__}: {e}"
    out[f"{os.path.basename(path)} seconds"] = time.perf_counter() - start
# This process's own peak: VmHWM (Linux) belongs to the process image started by exec;
# ru_maxrss may carry the peak of the parent that spawned it (a big pytest process).
try:
    with open("/proc/self/status") as f:
        peak = [int(line.split()[1]) for line in f if line.startswith("VmHWM:")][0]
except (OSError, IndexError):
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
out["maxrss_mib"] = peak / 1024
print(json.dumps(out))
"""


def test_checkpoint_bombs_are_refused_within_a_memory_budget(tmp_path):
    """Each bomb ends in a DataError naming the file, in a process that never grows
    past 400 MiB (it starts at about 80; a bomb would take 1 to 1.5 GiB more)."""
    import subprocess
    import sys
    paths = []
    for name, data in _bombs().items():
        path = tmp_path / f"{name}.npz"
        path.write_bytes(data)
        assert path.stat().st_size < 2_000_000
        paths.append(str(path))
    script = tmp_path / "child.py"
    script.write_text(BOMB_CHILD)
    env = dict(os.environ, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    r = subprocess.run([sys.executable, str(script), *paths], capture_output=True, text=True,
                       timeout=300, env=env, check=False)
    assert r.returncode == 0, r.stderr
    result = json.loads(r.stdout)
    expected = {"extra-lying": "'extra.npy' is not part of the format",
                "extra-honest": "'extra.npy' is not part of the format",
                "defined-honest": "a zip bomb",
                "defined-lying": "bad zip|CRC|ends after|holds more",
                "stored-lying": "'extra.npy' is stored uncompressed but declares"}
    for name, pattern in expected.items():
        for call in ("load", "restore"):
            message = result[f"{name}.npz {call}"]
            assert message.startswith("DataError: "), (name, call, message)
            assert str(tmp_path / f"{name}.npz") in message, message
            assert re.search(pattern, message), (name, call, message)
    assert result["maxrss_mib"] < 400, result


# ----------------------------------------------------------------- resuming from them
_IMAGES = np.random.default_rng(0).integers(0, 256, (24, 2, 3), dtype=np.uint8)
_LABELS = np.arange(24) % 3


def _fit(ckdir, resume: bool, max_steps=None):
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(6, 3))
    opt = tinynet.SGD(model.parameters(), lr=0.1, momentum=0.9)
    return tinynet.fit(model, tinynet.CrossEntropyLoss(), opt, (_IMAGES, _LABELS), epochs=2,
                       batch_size=8, shuffle=True, progress=False, log=None,
                       checkpoint_dir=ckdir, checkpoint_every=2, resume=resume,
                       max_steps=max_steps)


def _training_checkpoint() -> bytes:
    import tempfile
    with tempfile.TemporaryDirectory() as d:
        _fit(d, False, max_steps=None)
        with open(os.path.join(d, "checkpoint.npz"), "rb") as f:
            return f.read()


TRAINING = _training_checkpoint()
with np.load(io.BytesIO(TRAINING)) as _z:
    TRAINING_HEADER = json.loads(_z[HEADER_KEY].tobytes())
    TRAINING_ARRAYS = {k: _z[k] for k in _z.files}


@settings(max_examples=60, deadline=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(where=st.sampled_from(["progress", "history", "loader_state"]),
       field=st.sampled_from(["epoch", "step", "epoch_loss", "epoch_correct", "epoch_count",
                              "epoch_seconds", "elapsed", "finished", "steps", "position",
                              "epoch_state", "train_loss"]),
       value=JSON)
@example(where="progress", field="step", value="3")
@example(where="history", field="steps", value=None)
@example(where="loader_state", field="position", value=-4)
@example(where="progress", field="epoch", value=0)
def test_resume_from_malformed_training_state(tmp_path, no_unpickling, where, field, value):
    header = json.loads(json.dumps(TRAINING_HEADER))
    header[where][field] = value
    arrays = dict(TRAINING_ARRAYS, **{HEADER_KEY: np.frombuffer(
        json.dumps(header).encode(), dtype=np.uint8)})
    np.savez(tmp_path / "checkpoint.npz", **arrays)
    try:
        history = _fit(tmp_path, True)
    except DataError as e:
        assert str(tmp_path / "checkpoint.npz") in str(e)
    else:
        assert isinstance(history["steps"], list)


def _training_with(change) -> bytes:
    header = json.loads(json.dumps(TRAINING_HEADER))
    change(header)
    arrays = dict(TRAINING_ARRAYS, **{HEADER_KEY: np.frombuffer(
        json.dumps(header).encode(), dtype=np.uint8)})
    buf = io.BytesIO()
    np.savez(buf, **arrays)
    return buf.getvalue()


def _group(header: dict) -> dict:
    return header["optimizer"]["param_groups"][0]


HEADER_VALUES = {  # a value the JSON header may hold but the run cannot use: refused at load
    "momentum [1, 2]": (lambda h: _group(h).update(momentum=[1, 2]),
                        r"momentum must be a finite number >= 0, got \(1, 2\)"),
    "lr 'x'": (lambda h: _group(h).update(lr="x"), r"'lr' = 'x' is not a finite number"),
    "lr NaN": (lambda h: _group(h).update(lr=float("nan")), r"'lr' = nan is not a finite"),
    "lr -1": (lambda h: _group(h).update(lr=-1), r"lr must be a finite number >= 0, got -1"),
    "nesterov 'yes'": (lambda h: _group(h).update(nesterov="yes"), "'nesterov' = 'yes'"),
    "position 10**18": (lambda h: h["loader_state"].update(position=10**18),
                        r"position 1000000000000000000 is outside 0 to 3"),
    "position 1e18": (lambda h: h["loader_state"].update(position=1e18),
                      "loader_state is malformed"),
    "position -1": (lambda h: h["loader_state"].update(position=-1), "outside 0 to 3"),
    "step -5": (lambda h: h["progress"].update(step=-5), r"progress\['step'\] = -5"),
    "elapsed NaN": (lambda h: h["progress"].update(elapsed=float("nan")),
                    r"progress\['elapsed'\] = nan"),
    "finished 'soon'": (lambda h: h["progress"].update(finished="soon"),
                        r"progress\['finished'\] = 'soon'"),
    "array of another": (lambda h: h["optimizer"]["state"]["0"].update(
        momentum_buffer={"array": "model/1.weight"}), "refers to 'model/1.weight'"),
}


@pytest.mark.parametrize("case", list(HEADER_VALUES))
def test_header_values_out_of_range_are_refused_at_load(tmp_path, no_unpickling, case):
    change, message = HEADER_VALUES[case]
    result = _load_or_data_error(tmp_path / "ck.npz", _training_with(change))
    assert isinstance(result, DataError), case
    assert re.search(message, str(result)), str(result)


def test_training_checkpoint_itself_loads_and_resumes(tmp_path):
    """The unchanged training checkpoint the cases above start from is fine."""
    ckpt = _load_or_data_error(tmp_path / "ck.npz", _training_with(lambda h: None))
    assert not isinstance(ckpt, DataError)
    assert ckpt.meta["fit_setup"]["batch_size"] == 8 and ckpt.optimizer_type == "SGD"
    tinynet.serialization.check_training_state(ckpt)
