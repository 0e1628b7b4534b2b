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
intact. Reading never unpickles and stays within a memory budget
(:mod:`tinynet.safe_npz`): only a regular file is opened; the zip directory, every
member's name and declared sizes are checked before anything is inflated (a member the
format does not define is refused unread); the header is read first and names every
array the file may hold; each ``.npy`` header is parsed and bounded before its array is
allocated; the data are inflated into that array and never past their declared size;
only boolean, integer and floating dtypes are accepted. Given the model (and optimizer)
it is for, :func:`load` also checks every array's key and shape from the headers before
reading data, so a checkpoint never costs more memory than the model's own state. Any
problem gives one :class:`~tinynet.errors.DataError` naming the file and what was wrong.

Limits (each raised by an argument or an environment variable, see ``docs/long-runs.md``):
``max_bytes`` / ``TINYNET_CHECKPOINT_MAX_BYTES`` (all arrays together, 16 GiB),
``TINYNET_CHECKPOINT_MAX_HEADER_BYTES`` (the JSON header, 16 MiB), ``MAX_MEMBERS``
arrays, ``MAX_JSON_CONTAINERS`` lists and dicts and ``MAX_JSON_STRINGS`` strings in the
header, nesting up to Python's recursion limit.

Restoring::

    ckpt = tinynet.load("run/checkpoint.npz")
    model.load_state_dict(ckpt.model_state)
    optimizer.load_state_dict(ckpt.optimizer_state)
    # or all of it, checked before anything changes:
    tinynet.serialization.restore("run/checkpoint.npz", model, optimizer)
"""

from __future__ import annotations

import contextlib
import json
import math
import os
import re
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy

from . import optim
from .backend import to_numpy
from .errors import (
    ArgumentError,
    CheckpointError,
    DataError,
    StateDictError,
    TinynetError,
)
from .io import atomic_write
from .random import get_rng_state, set_rng_state
from .safe_npz import NpzError, NpzReader, open_regular

FORMAT = "tinynet-checkpoint"
VERSION = 1
HEADER_KEY = "tinynet_header"
MAX_MEMBERS = 10_000                 # arrays in one checkpoint
DEFAULT_MAX_BYTES = 16 << 30         # all arrays together
DEFAULT_MAX_HEADER_BYTES = 16 << 20  # the JSON header (about 800,000 steps of history)
MAX_JSON_CONTAINERS = 100_000        # lists and dicts in the header
MAX_JSON_STRINGS = 100_000           # strings in the header
MAX_LOADER_POSITION = 1 << 40        # batches into an epoch, when the setup is unknown
MAX_BYTES_ENV = "TINYNET_CHECKPOINT_MAX_BYTES"
MAX_HEADER_BYTES_ENV = "TINYNET_CHECKPOINT_MAX_HEADER_BYTES"
ALLOWED_KINDS = "biuf"               # bool, signed and unsigned ints, floats
# Kept for code that imported it: the default header limit.
MAX_HEADER_BYTES = DEFAULT_MAX_HEADER_BYTES

_OPTIMIZER_MEMBER = re.compile(r"optimizer/(0|[1-9][0-9]{0,8})/[A-Za-z_][A-Za-z0-9_]{0,63}")


def _env_limit(name: str, default: int) -> int:
    text = os.environ.get(name)
    if not text:
        return default
    try:
        value = int(text)
    except ValueError:
        value = -1
    if value <= 0:
        raise ArgumentError(f"{name}={text!r}: expected a positive whole number of bytes")
    return value


def max_header_bytes() -> int:
    """The header limit in effect: ``$TINYNET_CHECKPOINT_MAX_HEADER_BYTES`` or 16 MiB."""
    return _env_limit(MAX_HEADER_BYTES_ENV, DEFAULT_MAX_HEADER_BYTES)


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
        optimizer_type: the optimizer's class name (``"SGD"``, ``"Adam"``), or None.
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
    optimizer_type: str | None = None

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
    # numpy.asarray keeps a 0-d array 0-d (ascontiguousarray makes it (1,), which broke
    # BatchNorm's num_batches_tracked on the way back).
    array = numpy.asarray(to_numpy(value), order="C")
    if array.dtype.kind not in ALLOWED_KINDS or array.dtype.itemsize > 8:
        raise TypeError(f"save: {what} has dtype {array.dtype}; a checkpoint holds only "
                        f"bool, integer and floating arrays of at most 8 bytes per value")
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

    Raises:
        CheckpointError: the JSON header would exceed the limit :func:`load` reads
            (nothing is written: a checkpoint that could not be read back is never made).
        OSError: writing failed (the previous file at ``path`` is kept).
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
    try:
        _check_progress(header["progress"])
    except ValueError as e:
        raise ArgumentError(f"save: {e}") from None
    text = json.dumps(header, default=_json_default)
    raw = text.encode("utf-8")
    limit = max_header_bytes()
    if len(raw) > limit:
        raise CheckpointError(
            f"{path}: the checkpoint's JSON header (history and meta) would take "
            f"{len(raw):,} bytes, more than the {limit:,} that load reads; raise "
            f"{MAX_HEADER_BYTES_ENV} (nothing was written)")
    arrays[HEADER_KEY] = numpy.frombuffer(raw, dtype=numpy.uint8)

    def write(f) -> None:
        numpy.savez(f, **arrays)

    atomic_write(path, write)
    return path


# --------------------------------------------------------------------------- loading
class _Invalid(ValueError):
    """A rule of the format is broken; the message says which."""


def _expect(cond: bool, problem: str) -> None:
    if not cond:
        raise _Invalid(problem)


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def _finite(v: Any) -> bool:
    return _is_number(v) and math.isfinite(v)


def _member_allowed(name: str) -> bool:
    return (name == HEADER_KEY or (name.startswith("model/") and len(name) > 6)
            or _OPTIMIZER_MEMBER.fullmatch(name) is not None)


def _parse_header(npz: NpzReader, limit: int) -> dict:
    _expect(HEADER_KEY in npz.members, f"no {HEADER_KEY!r} member: not written by "
                                       f"tinynet.save")
    shape, dtype, _, nbytes = npz.header(HEADER_KEY)
    _expect(dtype == numpy.uint8 and len(shape) == 1,
            f"{HEADER_KEY!r} must be a 1-d uint8 array, got {dtype} of shape {shape}")
    _expect(nbytes <= limit, f"its JSON header declares {nbytes:,} bytes, more than the "
                             f"{limit:,} accepted ({MAX_HEADER_BYTES_ENV})")
    raw = npz.read(HEADER_KEY).tobytes()
    containers = raw.count(b"[") + raw.count(b"{")
    _expect(containers <= MAX_JSON_CONTAINERS,
            f"its JSON header holds up to {containers:,} lists and dicts, more than the "
            f"{MAX_JSON_CONTAINERS:,} accepted")
    _expect(raw.count(b'"') <= 2 * MAX_JSON_STRINGS,
            f"its JSON header holds more than {MAX_JSON_STRINGS:,} strings")
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise _Invalid("its JSON header is nested too deeply") from None
    _expect(isinstance(header, dict) and header.get("format") == FORMAT,
            f"header format is not {FORMAT!r}")
    version = header.get("version")
    _expect(_is_int(version), f"header version {version!r} is not an integer")
    _expect(1 <= version <= VERSION, f"format version {version}, but this tinynet reads "
            f"versions 1 to {VERSION} (written by a newer tinynet?)")
    return header


def _optimizer_class(name: Any) -> type | None:
    cls = getattr(optim, name, None) if isinstance(name, str) else None
    return cls if isinstance(cls, type) and issubclass(cls, optim.Optimizer) else None


def _optimizer_members(opt: Any) -> dict[str, tuple[int, str]]:
    """member name -> (parameter index, state name) of every array the header refers to."""
    _expect(isinstance(opt, dict) and isinstance(opt.get("state"), dict)
            and isinstance(opt.get("param_groups"), list), "optimizer entry is malformed")
    out = {}
    for index, entry in opt["state"].items():
        _expect(index.isdigit() and len(index) < 10 and isinstance(entry, dict),
                f"optimizer state {index!r} is malformed")
        for name, value in entry.items():
            _expect(isinstance(value, dict) and len(value) == 1 and
                    ("array" in value or "value" in value),
                    f"optimizer state {name!r} of parameter {index} is malformed")
            if "array" in value:
                member = f"optimizer/{int(index)}/{name}"
                _expect(value["array"] == member, f"optimizer state {name!r} of parameter "
                        f"{index} refers to {value['array']!r}, expected {member!r}")
                out[member] = (int(index), name)
    return out


def _parse_optimizer(opt: dict, arrays: dict) -> dict:
    cls = _optimizer_class(opt.get("type"))
    spec = cls.STATE if cls is not None else {}
    state = {}
    for index, entry in opt["state"].items():
        restored = {}
        for name, value in entry.items():
            if "array" in value:
                restored[name] = arrays[value["array"]]
                continue
            v = value["value"]
            if spec.get(name) == "count":
                _expect(_is_int(v) and v >= 0, f"optimizer value {name!r} of parameter "
                        f"{index} is {v!r}, expected a whole number >= 0")
            else:
                _expect(_finite(v), f"optimizer value {name!r} of parameter {index} is "
                                    f"{v!r}, expected a finite number")
            restored[name] = v
        state[int(index)] = restored
    groups = []
    for gi, g in enumerate(opt["param_groups"]):
        _expect(isinstance(g, dict) and isinstance(g.get("params"), list)
                and all(_is_int(i) and i >= 0 for i in g["params"]),
                "optimizer param_groups are malformed")
        for k, v in g.items():
            _expect(k == "params" or _finite(v) or isinstance(v, bool) or (
                isinstance(v, list) and len(v) <= 8 and all(_finite(u) for u in v)),
                f"optimizer hyper-parameter {k!r} = {v!r} is not a finite number")
        group = {k: tuple(v) if isinstance(v, list) and k != "params" else v
                 for k, v in g.items()}
        if cls is not None:
            try:
                cls.check_hyperparameters(group, f"optimizer {cls.__name__}, param group {gi}")
            except ArgumentError as e:
                raise _Invalid(str(e)) from None
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _batches_per_epoch(meta: dict) -> int | None:
    setup = meta.get("fit_setup")
    if not isinstance(setup, dict):
        return None
    n, b = setup.get("samples"), setup.get("batch_size")
    if not (_is_int(n) and _is_int(b) and n >= 0 and b >= 1):
        return None
    return n // b if setup.get("drop_last") else -(-n // b)


def _check_loader_state(loader_state: Any, meta: dict) -> None:
    _expect(isinstance(loader_state, dict) and _is_int(loader_state.get("position")),
            "loader_state is malformed")
    position = loader_state["position"]
    limit = _batches_per_epoch(meta)
    limit = MAX_LOADER_POSITION if limit is None else limit
    _expect(0 <= position <= limit, f"loader_state position {position} is outside 0 to "
                                    f"{limit} (the batches in an epoch)")
    _check_rng_state(loader_state.get("epoch_state"), "loader_state.epoch_state")


def _check_rng_state(state: Any, what: str) -> None:
    _expect(isinstance(state, dict), f"{what} is not a dict")
    try:
        numpy.random.PCG64().state = state
    except Exception as e:  # noqa: BLE001 -- numpy raises several kinds here
        raise _Invalid(f"{what} is not a valid generator state ({e})") from None


def _at_least(low: float, integer: bool = False):
    def ok(v: Any) -> bool:
        return (_is_int(v) if integer else _finite(v)) and v >= low
    ok.expected = f"a {'whole' if integer else 'finite'} number >= {low:g}"
    return ok


def _finished(v: Any) -> bool:
    return v in (None, "diverged", "max_steps")


_finished.expected = "None, 'diverged' or 'max_steps'"
# What ``fit`` stores in ``progress``, and the check each value must pass.
PROGRESS_FIELDS = {"epoch": _at_least(1, True), "step": _at_least(0, True),
                   "epoch_loss": _at_least(-math.inf), "epoch_correct": _at_least(0, True),
                   "epoch_count": _at_least(0, True), "epoch_seconds": _at_least(0),
                   "elapsed": _at_least(0), "finished": _finished}
HISTORY_LISTS = ("epoch", "train_loss", "train_acc", "test_loss", "test_acc", "seconds",
                 "steps")


def _check_progress(progress: Any) -> None:
    _expect(isinstance(progress, dict), "progress is malformed")
    for key, ok in PROGRESS_FIELDS.items():
        if key in progress:
            _expect(ok(progress[key]), f"progress[{key!r}] = {progress[key]!r}: expected "
                                       f"{ok.expected}")


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
    h = ckpt.history
    if not isinstance(h, dict) or not all(isinstance(h.get(k), list) for k in HISTORY_LISTS):
        problems.append(f"history without the lists {', '.join(HISTORY_LISTS)}")
    elif not problems:
        lengths = {k: len(h[k]) for k in HISTORY_LISTS if k != "steps"}
        epoch, step = ckpt.progress["epoch"], ckpt.progress["step"]
        if len(set(lengths.values())) != 1:
            problems.append(f"history lists of different lengths {lengths}")
        elif not lengths["epoch"] <= epoch <= lengths["epoch"] + 1:
            problems.append(f"epoch {epoch} but {lengths['epoch']} epoch(s) in the history")
        if len(h["steps"]) != step:
            problems.append(f"step {step} but {len(h['steps'])} step losses in the history")
        if not all(_is_number(v) for v in h["steps"]):
            problems.append("history['steps'] holds values that are not numbers")
    if problems:
        raise DataError(f"{ckpt.path}: not a checkpoint fit can resume from: "
                        + "; ".join(problems))


def _placeholder(shape: tuple, dtype: numpy.dtype) -> numpy.ndarray:
    """An array of ``shape`` and ``dtype`` that takes no memory (for checks by header)."""
    return numpy.broadcast_to(numpy.zeros((), dtype=dtype), shape)


def _check_against(ckpt_arrays: dict, header: dict, opt_members: dict, model,
                   optimizer) -> None:
    """StateDictError unless the arrays (by their .npy headers) fit model and optimizer."""
    placeholders = {name: _placeholder(shape, dtype)
                    for name, (shape, dtype) in ckpt_arrays.items()}
    model.check_state_dict(OrderedDict((k, placeholders[f"model/{k}"])
                                       for k in header["model_keys"]))
    if optimizer is not None and header.get("optimizer") is not None:
        saved = header["optimizer"].get("type")
        if saved != type(optimizer).__name__:
            raise StateDictError(f"it holds the state of {saved}, not of "
                                 f"{type(optimizer).__name__}")
        optimizer.check_state_dict(_parse_optimizer(header["optimizer"], placeholders))
    elif opt_members:  # bound the optimizer's arrays by the model's parameters
        shapes = [tuple(p.shape) for p in model.parameters()]
        for member, (index, _) in opt_members.items():
            shape = placeholders[member].shape
            if index >= len(shapes) or shape not in shapes:
                raise StateDictError(f"{member}: shape {shape} of parameter {index} "
                                     f"matches no parameter of this model")


@contextlib.contextmanager
def _reading(path: str):
    """Turn whatever reading ``path`` raises into one DataError (or StateDictError) line."""
    try:
        yield
    except StateDictError as e:
        raise StateDictError(f"{path}: {e}") from None
    except TinynetError:
        raise
    except (_Invalid, NpzError) as e:
        raise DataError(f"{path}: corrupt or invalid checkpoint: {e}") from None
    except zipfile.BadZipFile as e:
        raise DataError(f"{path}: corrupt or truncated checkpoint (bad zip: {e})") from e
    except Exception as e:  # a hostile file can break a parser in any way
        raise DataError(f"{path}: corrupt or invalid checkpoint: "
                        f"{type(e).__name__}: {e}") from e


@contextlib.contextmanager
def _open_checkpoint(path: str, max_bytes: int):
    """``(NpzReader, header)`` of checkpoint ``path``, every member checked unread."""
    header_limit = max_header_bytes()
    with open_regular(path, "checkpoint") as f:
        head = f.read(4)
        if head != b"PK\x03\x04":
            hint = " (a pickle)" if head[:1] == b"\x80" else \
                " (a single .npy array)" if head == b"\x93NUM" else ""
            raise DataError(f"{path}: not a tinynet checkpoint: expected a .npz (zip) "
                            f"file starting with b'PK\\x03\\x04', found {head!r}{hint}")
        with NpzReader(f, MAX_MEMBERS, _member_allowed) as npz:
            declared = sum(i.file_size for i in npz.members.values())
            _expect(declared <= max_bytes + header_limit,
                    f"its arrays declare {declared:,} bytes, more than max_bytes="
                    f"{max_bytes:,} ({MAX_BYTES_ENV})")
            yield npz, _parse_header(npz, header_limit)


def read_header(path: str) -> dict:
    """The JSON header of checkpoint ``path`` (format, optimizer, progress, meta...),
    read and checked without reading any array; DataError as :func:`load`."""
    path = os.fspath(path)
    with _reading(path), _open_checkpoint(path, DEFAULT_MAX_BYTES) as (_, header):
        meta = header.get("meta")
        _expect(meta is None or isinstance(meta, dict), "meta is malformed")
        return header


def load(path: str, max_bytes: int | None = None, *, model=None,
         optimizer=None) -> Checkpoint:
    """Read a checkpoint written by :func:`save`; nothing in it is executed.

    Args:
        path: the checkpoint file (a regular file: a FIFO or a device is refused).
        max_bytes: refuse files whose arrays declare more bytes in all (default
            ``$TINYNET_CHECKPOINT_MAX_BYTES``, else 16 GiB).
        model, optimizer: when given, every array's key and shape is checked against
            them from the ``.npy`` headers before any array data is read, so a file
            that does not fit costs nothing and a file that fits costs no more than
            their own state; a mismatch raises StateDictError listing the keys.

    Raises:
        DataError: the file is missing, not a regular file, not a tinynet checkpoint,
            truncated, corrupt (a CRC or header check fails), holds a pickle, an object
            array or a member the format does not define, exceeds a limit, or holds a
            header value out of range (e.g. a NaN learning rate). The message names
            the file and the problem.
        StateDictError: ``model``/``optimizer`` given and the checkpoint does not fit.
    """
    path = os.fspath(path)
    if max_bytes is None:
        max_bytes = _env_limit(MAX_BYTES_ENV, DEFAULT_MAX_BYTES)
    with _reading(path):
        with _open_checkpoint(path, max_bytes) as (npz, header):
            _, model_state, meta, optimizer_state, opt = _read_arrays(
                npz, header, max_bytes, model, optimizer)
        rng_state = header.get("rng_state")
        if rng_state is not None:
            _check_rng_state(rng_state, "rng_state")
        loader_state = header.get("loader_state")
        if loader_state is not None:
            _check_loader_state(loader_state, meta)
        progress = header.get("progress") or {}
        _check_progress(progress)
        history = header.get("history")
        _expect(history is None or isinstance(history, dict), "history is malformed")
    return Checkpoint(path=path, version=header["version"], model_state=model_state,
                      optimizer_state=optimizer_state, rng_state=rng_state,
                      loader_state=loader_state, progress=progress, history=history,
                      meta=meta, optimizer_type=opt.get("type") if opt else None)


def _read_arrays(npz: NpzReader, header: dict, max_bytes: int, model, optimizer) -> tuple:
    """Check the header's references against the members, then read the arrays."""
    keys = header.get("model_keys")
    _expect(isinstance(keys, list) and all(isinstance(k, str) and k for k in keys)
            and len(set(keys)) == len(keys), "model_keys is malformed")
    meta = header.get("meta") or {}
    _expect(isinstance(meta, dict), "meta is malformed")
    opt = header.get("optimizer")
    opt_members = _optimizer_members(opt) if opt is not None else {}
    if opt is not None:  # the hyper-parameters, before any array is read
        _parse_optimizer(opt, {m: None for m in opt_members})
    wanted = {f"model/{k}" for k in keys} | set(opt_members)
    missing = sorted(k[6:] for k in wanted - set(npz.members) if k.startswith("model/"))
    _expect(not missing, f"model arrays missing: {missing}")
    for member in opt_members:
        _expect(member in npz.members, f"optimizer array {member!r} is missing")
    extra = sorted(set(npz.members) - wanted - {HEADER_KEY})
    if extra:
        raise _Invalid(f"member {extra[0] + '.npy'!r} is not named in the header (refused "
                       f"before reading it)")
    headers = {name: npz.header(name)[:2] for name in sorted(wanted)}
    total = sum(math.prod(s) * d.itemsize for s, d in headers.values())
    _expect(total <= max_bytes, f"its arrays declare {total:,} bytes, more than max_bytes="
                                f"{max_bytes:,} ({MAX_BYTES_ENV})")
    if model is not None:
        _check_against(headers, header, opt_members, model, optimizer)
    arrays = {name: npz.read(name) for name in sorted(wanted)}
    model_state = OrderedDict((k, arrays[f"model/{k}"]) for k in keys)
    optimizer_state = _parse_optimizer(opt, arrays) if opt is not None else None
    return arrays, model_state, meta, optimizer_state, opt


def restore(checkpoint, model, optimizer=None, loader=None, rng: bool = True) -> Checkpoint:
    """Load a checkpoint (a path or a :class:`Checkpoint`) into model, optimizer, loader, RNG.

    Everything is checked before anything changes: a checkpoint of another
    architecture (or optimizer) raises StateDictError listing the mismatched keys and
    shapes, a bad value (NaN weights, a string array, a loader position past the end of
    an epoch) raises too, and the model, optimizer, loader and global generator are left
    as they were. Given a path, the arrays are checked against the model and optimizer
    before their data are read (see :func:`load`).

    Returns the Checkpoint (for its ``progress``, ``history`` and ``meta``).
    """
    ckpt = checkpoint if isinstance(checkpoint, Checkpoint) else \
        load(checkpoint, model=model, optimizer=optimizer)
    if optimizer is not None and ckpt.optimizer_state is None:
        raise StateDictError(f"{ckpt.path}: holds no optimizer state to restore")
    if loader is not None and ckpt.loader_state is None:
        raise StateDictError(f"{ckpt.path}: holds no DataLoader state to restore")
    try:
        if optimizer is not None and ckpt.optimizer_type not in (None,
                                                                 type(optimizer).__name__):
            raise StateDictError(f"it holds the state of {ckpt.optimizer_type}, not of "
                                 f"{type(optimizer).__name__}")
        model.check_state_dict(ckpt.model_state)
        if optimizer is not None:
            optimizer.check_state_dict(ckpt.optimizer_state)
        if loader is not None and not 0 <= ckpt.loader_state["position"] <= len(loader):
            raise StateDictError(f"the DataLoader stood at batch "
                                 f"{ckpt.loader_state['position']}, but an epoch of this "
                                 f"one has {len(loader)}")
    except StateDictError as e:
        raise StateDictError(f"{ckpt.path}: {e}") from None
    old_model = OrderedDict((k, v.copy()) for k, v in model.state_dict().items()
                            if v is not None)
    model.load_state_dict(ckpt.model_state)
    if optimizer is not None:
        try:
            optimizer.load_state_dict(ckpt.optimizer_state)
        except Exception as e:  # noqa: BLE001 -- checked above; undo whatever failed
            model.load_state_dict(old_model)
            raise StateDictError(f"{ckpt.path}: {e}") from None
    if loader is not None:
        loader.load_state_dict(ckpt.loader_state)
    if rng and ckpt.rng_state is not None:
        set_rng_state(ckpt.rng_state)
    return ckpt
