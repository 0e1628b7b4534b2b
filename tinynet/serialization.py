"""Checkpoints: ``save(path, model, optimizer, **meta)`` and ``load(path)``, one ``.npz``.

A checkpoint is a plain ``.npz`` (a zip of ``.npy`` arrays, as ``numpy.savez`` writes)
that holds no pickle anywhere:

* ``model/<key>``: every array of ``model.state_dict()`` (PyTorch's keys);
* ``optimizer/<index>/<name>``: each array of the optimizer's per-parameter state
  (momentum buffers, Adam's ``exp_avg``/``exp_avg_sq``);
* ``tinynet_header``: a uint8 array holding UTF-8 JSON with the format name and
  version, the optimizer's hyper-parameters and scalar state (Adam's ``step``), the
  state of ``tinynet.random``'s global generator (dropout masks) and of the training
  DataLoader (data order), the epoch/step reached, the history and ``meta``.

Writing goes through :func:`tinynet.io.atomic_write` (a temporary file in
the same folder, fsync, rename), so a crash while saving leaves the previous file
intact. Reading never unpickles: the zip is read member by member (each member's CRC
is checked), each ``.npy`` header is parsed and bounded before any memory is
allocated, and only boolean, integer and floating dtypes are accepted. Any problem
gives one :class:`~tinynet.errors.DataError` naming the file and what was wrong.

Restoring::

    ckpt = tinynet.load("run/checkpoint.npz")
    model.load_state_dict(ckpt.model_state)
    optimizer.load_state_dict(ckpt.optimizer_state)
    # or all of it, checked before anything changes:
    tinynet.serialization.restore("run/checkpoint.npz", model, optimizer)
"""

from __future__ import annotations

import io
import json
import math
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy

from .backend import to_numpy
from .errors import DataError, StateDictError, TinynetError
from .io import atomic_write
from .random import get_rng_state, set_rng_state

FORMAT = "tinynet-checkpoint"
VERSION = 1
HEADER_KEY = "tinynet_header"
MAX_MEMBERS = 100_000
MAX_HEADER_BYTES = 64 << 20          # the JSON header (history of very long runs included)
DEFAULT_MAX_BYTES = 16 << 30         # refuse files whose arrays add up to more than 16 GiB
ALLOWED_KINDS = "biuf"               # bool, signed and unsigned ints, floats


@dataclass
class Checkpoint:
    """What :func:`load` returns.

    Attributes:
        path: the file read.
        version: the format version it was written with.
        model_state: ``OrderedDict`` key -> NumPy array, for ``model.load_state_dict``.
        optimizer_state: a ``state_dict`` for ``optimizer.load_state_dict``, or None.
        rng_state: the global generator's state (``tinynet.random.set_rng_state``), or None.
        loader_state: ``DataLoader.state_dict()`` of the training data, or None.
        progress: where training stood (``epoch``, ``step``, the epoch's partial sums).
        history: the ``fit`` history so far (per-epoch lists and per-step losses).
        meta: whatever was passed to :func:`save` as keyword arguments.
    """
    path: str
    version: int
    model_state: OrderedDict[str, numpy.ndarray]
    optimizer_state: dict | None = None
    rng_state: dict | None = None
    loader_state: dict | None = None
    progress: dict = field(default_factory=dict)
    history: dict | None = None
    meta: dict = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:  # ckpt["model_state"] works too
        return getattr(self, key)


# --------------------------------------------------------------------------- saving
def _json_default(value: Any) -> Any:
    if isinstance(value, numpy.generic):
        return value.item()
    if isinstance(value, tuple):
        return list(value)
    if hasattr(value, "shape") and getattr(value, "ndim", None) == 0:
        return to_numpy(value).item()
    raise TypeError(f"cannot store {type(value).__name__} in a checkpoint's JSON header")


def _host_array(value: Any, what: str) -> numpy.ndarray:
    array = numpy.ascontiguousarray(to_numpy(value))
    if array.dtype.kind not in ALLOWED_KINDS:
        raise TypeError(f"save: {what} has dtype {array.dtype}; a checkpoint holds only "
                        f"bool, integer and floating arrays")
    return array


def save(path: str, model, optimizer=None, *, rng_state: dict | None | bool = True,
         loader_state: dict | None = None, progress: dict | None = None,
         history: dict | None = None, **meta) -> str:
    """Write ``model`` (and ``optimizer``) to ``path`` as one ``.npz``, atomically.

    Args:
        path: the file to write (any name; ``.npz`` is the convention). Its folder is
            created if needed.
        model: a Module; its ``state_dict()`` arrays are copied to the host.
        optimizer: an Optimizer whose ``state_dict()`` is saved too, or None.
        rng_state: True (default) saves the global generator's current state; a dict
            saves that state; None saves none.
        loader_state, progress, history: what ``fit`` needs to resume (JSON-able).
        **meta: anything JSON-able to keep beside the weights (e.g. ``config=...``).

    Returns:
        ``path``.
    """
    arrays: OrderedDict[str, numpy.ndarray] = OrderedDict()
    model_keys = []
    for key, value in model.state_dict().items():
        if value is None:
            continue
        model_keys.append(key)
        arrays[f"model/{key}"] = _host_array(value, f"model entry {key!r}")
    header: dict[str, Any] = {"format": FORMAT, "version": VERSION, "model_keys": model_keys}
    if optimizer is not None:
        sd = optimizer.state_dict()
        state = {}
        for index, entry in sd["state"].items():
            saved = {}
            for name, value in entry.items():
                if hasattr(value, "shape") and getattr(value, "ndim", 0) > 0:
                    key = f"optimizer/{int(index)}/{name}"
                    arrays[key] = _host_array(value, f"optimizer state {name!r} of "
                                                     f"parameter {index}")
                    saved[name] = {"array": key}
                else:
                    saved[name] = {"value": _json_default(value) if hasattr(value, "shape")
                                   or isinstance(value, numpy.generic) else value}
            state[str(int(index))] = saved
        header["optimizer"] = {"type": type(optimizer).__name__, "state": state,
                               "param_groups": sd["param_groups"]}
    if rng_state is True:
        rng_state = get_rng_state()
    header["rng_state"] = rng_state or None
    header["loader_state"] = loader_state
    header["progress"] = progress or {}
    header["history"] = history
    header["meta"] = meta
    text = json.dumps(header, default=_json_default)
    arrays[HEADER_KEY] = numpy.frombuffer(text.encode("utf-8"), dtype=numpy.uint8)

    def write(f) -> None:
        numpy.savez(f, **arrays)

    atomic_write(path, write)
    return path


# --------------------------------------------------------------------------- loading
def _read_npy(data: bytes, name: str) -> numpy.ndarray:
    """Parse one ``.npy`` member without pickle and without trusting its header.

    The header's shape and dtype are checked against the bytes actually present
    before anything is allocated, so a header claiming a huge array costs nothing.
    """
    fp = io.BytesIO(data)
    version = numpy.lib.format.read_magic(fp)
    if version == (1, 0):
        shape, fortran, dtype = numpy.lib.format.read_array_header_1_0(fp)
    elif version in ((2, 0), (3, 0)):
        shape, fortran, dtype = numpy.lib.format.read_array_header_2_0(fp)
    else:
        raise ValueError(f"unsupported .npy format version {version}")
    if dtype.hasobject or dtype.kind not in ALLOWED_KINDS or dtype.fields is not None:
        raise ValueError(f"member {name!r} has dtype {dtype}; only bool, integer and "
                         f"floating arrays are accepted (object arrays would need pickle)")
    if any(not isinstance(s, int) or s < 0 for s in shape):
        raise ValueError(f"member {name!r} has an invalid shape {shape}")
    count = math.prod(shape)
    offset = fp.tell()
    if count * dtype.itemsize != len(data) - offset:
        raise ValueError(f"member {name!r} declares shape {shape} of {dtype} "
                         f"({count * dtype.itemsize} bytes) but holds {len(data) - offset} "
                         f"bytes of data")
    array = numpy.frombuffer(data, dtype=dtype, count=count, offset=offset)
    return array.reshape(shape, order="F" if fortran else "C").copy()


def _read_members(path: str, max_bytes: int) -> dict[str, numpy.ndarray]:
    try:
        size = os.path.getsize(path)
    except FileNotFoundError as e:
        raise DataError(f"{path}: checkpoint not found") from e
    except OSError as e:
        raise DataError(f"{path}: cannot read checkpoint: {e.strerror or e}") from e
    with open(path, "rb") as f:
        head = f.read(4)
    if head != b"PK\x03\x04":
        hint = " (a pickle)" if head[:1] == b"\x80" else \
            " (a single .npy array)" if head == b"\x93NUM" else ""
        raise DataError(f"{path}: not a tinynet checkpoint: expected a .npz (zip) file "
                        f"starting with b'PK\\x03\\x04', found {head!r}{hint}")
    with zipfile.ZipFile(path) as zf:
        infos = zf.infolist()
        if len(infos) > MAX_MEMBERS:
            raise ValueError(f"{len(infos)} members, more than the {MAX_MEMBERS} accepted")
        names = [i.filename for i in infos]
        if len(set(names)) != len(names):
            dup = sorted({n for n in names if names.count(n) > 1})
            raise ValueError(f"duplicate members {dup}")
        total = sum(i.file_size for i in infos)
        if total > max_bytes:
            raise ValueError(f"its arrays declare {total:,} bytes, more than max_bytes="
                             f"{max_bytes:,} (file size {size:,} bytes)")
        out = {}
        for info in infos:
            if not info.filename.endswith(".npy"):
                raise ValueError(f"member {info.filename!r} is not a .npy array")
            out[info.filename[:-4]] = _read_npy(zf.read(info), info.filename)
    return out


def _expect(cond: bool, problem: str) -> None:
    if not cond:
        raise ValueError(problem)


def _parse_header(members: dict) -> dict:
    raw = members.pop(HEADER_KEY, None)
    _expect(raw is not None, f"no {HEADER_KEY!r} member: not written by tinynet.save")
    _expect(raw.dtype == numpy.uint8 and raw.ndim == 1 and raw.size <= MAX_HEADER_BYTES,
            f"{HEADER_KEY!r} must be a 1-d uint8 array of at most {MAX_HEADER_BYTES} bytes, "
            f"got {raw.dtype} of shape {raw.shape}")
    header = json.loads(raw.tobytes().decode("utf-8"))
    _expect(isinstance(header, dict) and header.get("format") == FORMAT,
            f"header format is not {FORMAT!r}")
    version = header.get("version")
    _expect(isinstance(version, int) and not isinstance(version, bool),
            f"header version {version!r} is not an integer")
    _expect(1 <= version <= VERSION, f"format version {version}, but this tinynet reads "
            f"versions 1 to {VERSION} (written by a newer tinynet?)")
    return header


def _parse_optimizer(opt: Any, members: dict) -> dict:
    _expect(isinstance(opt, dict) and isinstance(opt.get("state"), dict)
            and isinstance(opt.get("param_groups"), list), "optimizer entry is malformed")
    state = {}
    for index, entry in opt["state"].items():
        _expect(index.isdigit() and isinstance(entry, dict),
                f"optimizer state {index!r} is malformed")
        restored = {}
        for name, value in entry.items():
            _expect(isinstance(value, dict) and len(value) == 1 and
                    ("array" in value or "value" in value),
                    f"optimizer state {name!r} of parameter {index} is malformed")
            if "array" in value:
                _expect(value["array"] in members,
                        f"optimizer array {value['array']!r} is missing")
                restored[name] = members[value["array"]]
            else:
                _expect(isinstance(value["value"], (int, float, bool, type(None))),
                        f"optimizer value {name!r} of parameter {index} is not a number")
                restored[name] = value["value"]
        state[int(index)] = restored
    groups = []
    for g in opt["param_groups"]:
        _expect(isinstance(g, dict) and isinstance(g.get("params"), list)
                and all(_is_int(i) for i in g["params"]),
                "optimizer param_groups are malformed")
        for k, v in g.items():
            _expect(k == "params" or _is_number(v) or isinstance(v, bool) or (
                isinstance(v, list) and all(_is_number(u) for u in v)),
                f"optimizer hyper-parameter {k!r} = {v!r} is not a number")
        groups.append({k: tuple(v) if isinstance(v, list) and k != "params" else v
                       for k, v in g.items()})
    return {"state": state, "param_groups": groups}


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


# What ``fit`` stores in ``progress`` and ``history``, and the type each must have.
PROGRESS_FIELDS = {"epoch": _is_int, "step": _is_int, "epoch_loss": _is_number,
                   "epoch_correct": _is_int, "epoch_count": _is_int,
                   "epoch_seconds": _is_number, "elapsed": _is_number,
                   "finished": lambda v: v is None or isinstance(v, str)}
HISTORY_LISTS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                 "steps")


def check_training_state(ckpt: Checkpoint) -> None:
    """Raise DataError unless ``ckpt`` holds what ``fit`` needs to resume.

    ``load`` accepts checkpoints with or without training progress (``save`` of a
    bare model writes none); ``fit(resume=True)`` calls this before touching anything.
    """
    problems = []
    if ckpt.optimizer_state is None:
        problems.append("no optimizer state")
    if ckpt.loader_state is None:
        problems.append("no DataLoader state")
    for key, ok in PROGRESS_FIELDS.items():
        if key not in ckpt.progress or not ok(ckpt.progress[key]):
            problems.append(f"progress[{key!r}] = {ckpt.progress.get(key)!r}")
    if not problems and (ckpt.progress["epoch"] < 1 or ckpt.progress["step"] < 0
                         or ckpt.progress["epoch_count"] < 0):
        problems.append(f"epoch {ckpt.progress['epoch']}, step {ckpt.progress['step']}, "
                        f"epoch_count {ckpt.progress['epoch_count']} out of range")
    h = ckpt.history
    if not isinstance(h, dict) or not all(isinstance(h.get(k), list) for k in HISTORY_LISTS):
        problems.append(f"history without the lists {', '.join(HISTORY_LISTS)}")
    if problems:
        raise DataError(f"{ckpt.path}: not a checkpoint fit can resume from: "
                        + "; ".join(problems))


def _check_rng_state(state: Any, what: str) -> None:
    _expect(isinstance(state, dict), f"{what} is not a dict")
    try:
        numpy.random.PCG64().state = state
    except Exception as e:  # noqa: BLE001 -- numpy raises several kinds here
        raise ValueError(f"{what} is not a valid generator state ({e})") from None


def load(path: str, max_bytes: int = DEFAULT_MAX_BYTES) -> Checkpoint:
    """Read a checkpoint written by :func:`save`; nothing in it is executed.

    Raises:
        DataError: the file is missing, not a tinynet checkpoint, truncated, corrupt
            (a CRC or header check fails), holds a pickle or object array, or declares
            more than ``max_bytes`` of arrays. The message names the file and the problem.
    """
    path = os.fspath(path)
    try:
        members = _read_members(path, max_bytes)
        header = _parse_header(members)
        keys = header.get("model_keys")
        _expect(isinstance(keys, list) and all(isinstance(k, str) for k in keys),
                "model_keys is malformed")
        missing = [k for k in keys if f"model/{k}" not in members]
        _expect(not missing, f"model arrays missing: {missing}")
        model_state = OrderedDict((k, members[f"model/{k}"]) for k in keys)
        optimizer_state = None
        if header.get("optimizer") is not None:
            optimizer_state = _parse_optimizer(header["optimizer"], members)
        rng_state = header.get("rng_state")
        if rng_state is not None:
            _check_rng_state(rng_state, "rng_state")
        loader_state = header.get("loader_state")
        if loader_state is not None:
            _expect(isinstance(loader_state, dict) and
                    _is_int(loader_state.get("position")) and loader_state["position"] >= 0,
                    "loader_state is malformed")
            _check_rng_state(loader_state.get("epoch_state"), "loader_state.epoch_state")
        progress = header.get("progress") or {}
        _expect(isinstance(progress, dict), "progress is malformed")
        history = header.get("history")
        _expect(history is None or isinstance(history, dict), "history is malformed")
        meta = header.get("meta") or {}
        _expect(isinstance(meta, dict), "meta is malformed")
    except TinynetError:
        raise
    except FileNotFoundError as e:
        raise DataError(f"{path}: checkpoint not found") from e
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: corrupt or truncated checkpoint (bad zip: {e})") from e
    except Exception as e:  # a hostile file can break a parser in any way
        raise DataError(f"{path}: corrupt or invalid checkpoint: "
                        f"{type(e).__name__}: {e}") from e
    return Checkpoint(path=path, version=header["version"], model_state=model_state,
                      optimizer_state=optimizer_state, rng_state=rng_state,
                      loader_state=loader_state, progress=progress, history=history,
                      meta=meta)


def restore(checkpoint, model, optimizer=None, loader=None, rng: bool = True) -> Checkpoint:
    """Load a checkpoint (a path or a :class:`Checkpoint`) into model, optimizer, loader, RNG.

    Everything is checked before anything changes: a checkpoint of another
    architecture raises StateDictError listing the mismatched keys and shapes, and
    the model, optimizer, loader and global generator are left as they were.

    Returns the Checkpoint (for its ``progress``, ``history`` and ``meta``).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else load(checkpoint)
    if optimizer is not None and ckpt.optimizer_state is None:
        raise StateDictError(f"{ckpt.path}: holds no optimizer state to restore")
    if loader is not None and ckpt.loader_state is None:
        raise StateDictError(f"{ckpt.path}: holds no DataLoader state to restore")
    old_model = OrderedDict((k, v.copy()) for k, v in model.state_dict().items()
                            if v is not None)
    try:
        model.load_state_dict(ckpt.model_state)
    except StateDictError as e:
        raise StateDictError(f"{ckpt.path}: {e}") from None
    if optimizer is not None:
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except Exception as e:  # noqa: BLE001 -- whatever failed, undo, then report
            model.load_state_dict(old_model)  # leave the model as it was
            raise StateDictError(f"{ckpt.path}: {e}") from None
    if loader is not None:
        loader.load_state_dict(ckpt.loader_state)
    if rng and ckpt.rng_state is not None:
        set_rng_state(ckpt.rng_state)
    return ckpt
