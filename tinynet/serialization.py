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
arrays, ``tinynet.checkpoint_format.MAX_JSON_CONTAINERS`` lists and dicts and
``tinynet.checkpoint_format.MAX_JSON_STRINGS`` strings in the header (the header's
checks live there, so set them there), nesting up to Python's recursion limit.

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
import numbers
import os
import zipfile
from collections import OrderedDict
from dataclasses import dataclass, field
from typing import Any

import numpy

from .backend import to_numpy
from .checkpoint_format import (
    FORMAT,
    HEADER_KEY,
    HISTORY_LISTS,
    MAX_HEADER_BYTES_ENV,
    MAX_LOADER_POSITION,
    PROGRESS_FIELDS,
    VERSION,
    Invalid,
    check_against,
    check_loader_state,
    check_progress,
    check_rng_state,
    check_training_state,
    expect,
    member_allowed,
    optimizer_members,
    parse_header,
    parse_optimizer,
)
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

__all__ = ["ALLOWED_KINDS", "DEFAULT_MAX_BYTES", "DEFAULT_MAX_HEADER_BYTES", "FORMAT",
           "HEADER_KEY", "HISTORY_LISTS", "MAX_BYTES_ENV", "MAX_HEADER_BYTES_ENV",
           "MAX_LOADER_POSITION", "MAX_MEMBERS",
           "PROGRESS_FIELDS", "VERSION", "Checkpoint", "check_training_state", "load",
           "max_header_bytes", "read_header", "restore", "save"]

MAX_MEMBERS = 10_000                 # arrays in one checkpoint
DEFAULT_MAX_BYTES = 16 << 30         # all arrays together
DEFAULT_MAX_HEADER_BYTES = 16 << 20  # the JSON header (about 800,000 steps of history)
MAX_BYTES_ENV = "TINYNET_CHECKPOINT_MAX_BYTES"
ALLOWED_KINDS = "biuf"               # bool, signed and unsigned ints, floats
# Kept for code that imported it: the default header limit.
MAX_HEADER_BYTES = DEFAULT_MAX_HEADER_BYTES


def __getattr__(name: str):
    """``serialization.MAX_JSON_CONTAINERS`` / ``MAX_JSON_STRINGS`` read the limits in
    force; they are set in :mod:`tinynet.checkpoint_format`, where the header is checked."""
    if name in ("MAX_JSON_CONTAINERS", "MAX_JSON_STRINGS"):
        from . import checkpoint_format
        return getattr(checkpoint_format, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


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


def _byte_count(value) -> int:
    """``load``'s ``max_bytes`` as an int: a whole number >= 1 (``10**6``, ``np.int64``,
    ``1e6``), else an ArgumentError that says what it got."""
    whole = isinstance(value, numbers.Integral) or (
        isinstance(value, numbers.Real) and math.isfinite(value) and value == int(value))
    if isinstance(value, bool) or not whole or value < 1:
        shown = repr(value) if isinstance(value, (numbers.Number, str)) \
            else f"a {type(value).__name__}"
        hint = " (pass a model as model=...)" if hasattr(value, "state_dict") else ""
        raise ArgumentError(f"load: max_bytes must be a whole number of bytes >= 1 or None, "
                            f"got {shown}{hint}")
    return int(value)


def _check_has(obj, name: str, expected: str, methods: tuple) -> None:
    """A TypeError naming the argument when ``obj`` lacks one of ``methods`` (a caller's
    mistake, reported before any file is touched, never as a corrupt checkpoint)."""
    if not all(callable(getattr(obj, m, None)) for m in methods):
        raise TypeError(f"{name} must be {expected}, got {type(obj).__name__}")


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
    path = os.fspath(path)
    _check_has(model, "save: model", "a tinynet Module", ("state_dict",))
    if optimizer is not None:
        _check_has(optimizer, "save: optimizer", "a tinynet Optimizer or None",
                   ("state_dict",))
    if os.path.isdir(path):
        raise CheckpointError(f"save: {path!r} is a folder; expected the path of a file "
                              f"to write, e.g. {os.path.join(path, 'checkpoint.npz')!r}")
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
        check_progress(header["progress"])
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
@contextlib.contextmanager
def _reading(path: str):
    """Turn whatever reading ``path`` raises into one DataError (or StateDictError) line."""
    try:
        yield
    except StateDictError as e:
        raise StateDictError(f"{path}: {e}") from None
    except TinynetError:
        raise
    except (Invalid, NpzError) as e:
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
        with NpzReader(f, MAX_MEMBERS, member_allowed) as npz:
            declared = sum(i.file_size for i in npz.members.values())
            expect(declared <= max_bytes + header_limit,
                    f"its arrays declare {declared:,} bytes, more than max_bytes="
                    f"{max_bytes:,} ({MAX_BYTES_ENV})")
            yield npz, parse_header(npz, header_limit)


def read_header(path: str) -> dict:
    """The JSON header of checkpoint ``path`` (format, optimizer, progress, meta...),
    read and checked without reading any array; DataError as :func:`load`."""
    path = os.fspath(path)
    with _reading(path), _open_checkpoint(path, DEFAULT_MAX_BYTES) as (_, header):
        meta = header.get("meta")
        expect(meta is None or isinstance(meta, dict), "meta is malformed")
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
    else:
        max_bytes = _byte_count(max_bytes)
    if model is not None:
        _check_has(model, "load: model", "a tinynet Module or None", ("check_state_dict",))
    if optimizer is not None:
        _check_has(optimizer, "load: optimizer", "a tinynet Optimizer or None",
                   ("check_state_dict",))
    with _reading(path):
        with _open_checkpoint(path, max_bytes) as (npz, header):
            _, model_state, meta, optimizer_state, opt = _read_arrays(
                npz, header, max_bytes, model, optimizer)
        rng_state = header.get("rng_state")
        if rng_state is not None:
            check_rng_state(rng_state, "rng_state")
        loader_state = header.get("loader_state")
        if loader_state is not None:
            check_loader_state(loader_state, meta)
        progress = header.get("progress") or {}
        check_progress(progress)
        history = header.get("history")
        expect(history is None or isinstance(history, dict), "history is malformed")
    return Checkpoint(path=path, version=header["version"], model_state=model_state,
                      optimizer_state=optimizer_state, rng_state=rng_state,
                      loader_state=loader_state, progress=progress, history=history,
                      meta=meta, optimizer_type=opt.get("type") if opt else None)


def _read_arrays(npz: NpzReader, header: dict, max_bytes: int, model, optimizer) -> tuple:
    """Check the header's references against the members, then read the arrays."""
    keys = header.get("model_keys")
    expect(isinstance(keys, list) and all(isinstance(k, str) and k for k in keys)
            and len(set(keys)) == len(keys), "model_keys is malformed")
    meta = header.get("meta") or {}
    expect(isinstance(meta, dict), "meta is malformed")
    opt = header.get("optimizer")
    opt_members = optimizer_members(opt) if opt is not None else {}
    if opt is not None:  # the hyper-parameters, before any array is read
        parse_optimizer(opt, {m: None for m in opt_members})
    wanted = {f"model/{k}" for k in keys} | set(opt_members)
    missing = sorted(k[6:] for k in wanted - set(npz.members) if k.startswith("model/"))
    expect(not missing, f"model arrays missing: {missing}")
    for member in opt_members:
        expect(member in npz.members, f"optimizer array {member!r} is missing")
    extra = sorted(set(npz.members) - wanted - {HEADER_KEY})
    if extra:
        raise Invalid(f"member {extra[0] + '.npy'!r} is not named in the header (refused "
                       f"before reading it)")
    headers = {name: npz.header(name)[:2] for name in sorted(wanted)}
    total = sum(math.prod(s) * d.itemsize for s, d in headers.values())
    expect(total <= max_bytes, f"its arrays declare {total:,} bytes, more than max_bytes="
                                f"{max_bytes:,} ({MAX_BYTES_ENV})")
    if model is not None:
        check_against(headers, header, opt_members, model, optimizer)
    arrays = {name: npz.read(name) for name in sorted(wanted)}
    model_state = OrderedDict((k, arrays[f"model/{k}"]) for k in keys)
    optimizer_state = parse_optimizer(opt, arrays) if opt is not None else None
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
