"""What a tinynet checkpoint may hold, checked before anything is built from it.

:mod:`tinynet.serialization` reads a checkpoint's JSON header and the ``.npy`` headers of
its arrays, then calls these checks before it allocates or assigns anything: the header's
format and version, the names of the members (anything the format does not define is
refused unread), the optimizer's state and hyper-parameters, the DataLoader's position and
generator states, ``fit``'s progress, and every array's key and shape against the model and
optimizer it is for. A broken rule raises :class:`Invalid` with a message naming it, which
the reader turns into one ``DataError`` line naming the file.
"""

from __future__ import annotations

import json
import math
import re
from collections import OrderedDict
from typing import Any

import numpy

from . import optim
from .errors import ArgumentError, DataError, StateDictError
from .safe_npz import NpzReader

__all__ = ["FORMAT", "HEADER_KEY", "HISTORY_LISTS", "MAX_HEADER_BYTES_ENV", "MAX_JSON_CONTAINERS",
           "MAX_JSON_STRINGS", "MAX_LOADER_POSITION", "PROGRESS_FIELDS", "VERSION", "Invalid",
           "check_against", "check_loader_state", "check_progress", "check_rng_state",
           "check_training_state", "expect", "finite", "is_int", "is_number", "member_allowed",
           "optimizer_members", "parse_header", "parse_optimizer"]

FORMAT = "tinynet-checkpoint"
VERSION = 1
HEADER_KEY = "tinynet_header"
MAX_JSON_CONTAINERS = 100_000        # lists and dicts in the header
MAX_JSON_STRINGS = 100_000           # strings in the header
MAX_LOADER_POSITION = 1 << 40        # batches into an epoch, when the setup is unknown
_OPTIMIZER_MEMBER = re.compile(r"optimizer/(0|[1-9][0-9]{0,8})/[A-Za-z_][A-Za-z0-9_]{0,63}")
MAX_HEADER_BYTES_ENV = "TINYNET_CHECKPOINT_MAX_HEADER_BYTES"


class Invalid(ValueError):
    """A rule of the format is broken; the message says which."""


def expect(cond: bool, problem: str) -> None:
    if not cond:
        raise Invalid(problem)


def is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def is_number(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


def finite(v: Any) -> bool:
    return is_number(v) and math.isfinite(v)


def member_allowed(name: str) -> bool:
    return (name == HEADER_KEY or (name.startswith("model/") and len(name) > 6)
            or _OPTIMIZER_MEMBER.fullmatch(name) is not None)


def parse_header(npz: NpzReader, limit: int) -> dict:
    expect(HEADER_KEY in npz.members, f"no {HEADER_KEY!r} member: not written by "
                                       f"tinynet.save")
    shape, dtype, _, nbytes = npz.header(HEADER_KEY)
    expect(dtype == numpy.uint8 and len(shape) == 1,
            f"{HEADER_KEY!r} must be a 1-d uint8 array, got {dtype} of shape {shape}")
    expect(nbytes <= limit, f"its JSON header declares {nbytes:,} bytes, more than the "
                             f"{limit:,} accepted ({MAX_HEADER_BYTES_ENV})")
    raw = npz.read(HEADER_KEY).tobytes()
    containers = raw.count(b"[") + raw.count(b"{")
    expect(containers <= MAX_JSON_CONTAINERS,
            f"its JSON header holds up to {containers:,} lists and dicts, more than the "
            f"{MAX_JSON_CONTAINERS:,} accepted")
    expect(raw.count(b'"') <= 2 * MAX_JSON_STRINGS,
            f"its JSON header holds more than {MAX_JSON_STRINGS:,} strings")
    try:
        header = json.loads(raw.decode("utf-8"))
    except RecursionError:
        raise Invalid("its JSON header is nested too deeply") from None
    expect(isinstance(header, dict) and header.get("format") == FORMAT,
            f"header format is not {FORMAT!r}")
    version = header.get("version")
    expect(is_int(version), f"header version {version!r} is not an integer")
    expect(1 <= version <= VERSION, f"format version {version}, but this tinynet reads "
            f"versions 1 to {VERSION} (written by a newer tinynet?)")
    return header


def _optimizer_class(name: Any) -> type | None:
    cls = getattr(optim, name, None) if isinstance(name, str) else None
    return cls if isinstance(cls, type) and issubclass(cls, optim.Optimizer) else None


def optimizer_members(opt: Any) -> dict[str, tuple[int, str]]:
    """member name -> (parameter index, state name) of every array the header refers to."""
    expect(isinstance(opt, dict) and isinstance(opt.get("state"), dict)
            and isinstance(opt.get("param_groups"), list), "optimizer entry is malformed")
    out = {}
    for index, entry in opt["state"].items():
        expect(index.isdigit() and len(index) < 10 and isinstance(entry, dict),
                f"optimizer state {index!r} is malformed")
        for name, value in entry.items():
            expect(isinstance(value, dict) and len(value) == 1 and
                    ("array" in value or "value" in value),
                    f"optimizer state {name!r} of parameter {index} is malformed")
            if "array" in value:
                member = f"optimizer/{int(index)}/{name}"
                expect(value["array"] == member, f"optimizer state {name!r} of parameter "
                        f"{index} refers to {value['array']!r}, expected {member!r}")
                out[member] = (int(index), name)
    return out


def parse_optimizer(opt: dict, arrays: dict) -> dict:
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
                expect(is_int(v) and v >= 0, f"optimizer value {name!r} of parameter "
                        f"{index} is {v!r}, expected a whole number >= 0")
            else:
                expect(finite(v), f"optimizer value {name!r} of parameter {index} is "
                                    f"{v!r}, expected a finite number")
            restored[name] = v
        state[int(index)] = restored
    groups = []
    for gi, g in enumerate(opt["param_groups"]):
        expect(isinstance(g, dict) and isinstance(g.get("params"), list)
                and all(is_int(i) and i >= 0 for i in g["params"]),
                "optimizer param_groups are malformed")
        for k, v in g.items():
            expect(k == "params" or finite(v) or isinstance(v, bool) or (
                isinstance(v, list) and len(v) <= 8 and all(finite(u) for u in v)),
                f"optimizer hyper-parameter {k!r} = {v!r} is not a finite number")
        group = {k: tuple(v) if isinstance(v, list) and k != "params" else v
                 for k, v in g.items()}
        if cls is not None:
            try:
                cls.check_hyperparameters(group, f"optimizer {cls.__name__}, param group {gi}")
            except ArgumentError as e:
                raise Invalid(str(e)) from None
        groups.append(group)
    return {"state": state, "param_groups": groups}


def _batches_per_epoch(meta: dict) -> int | None:
    setup = meta.get("fit_setup")
    if not isinstance(setup, dict):
        return None
    n, b = setup.get("samples"), setup.get("batch_size")
    if not (is_int(n) and is_int(b) and n >= 0 and b >= 1):
        return None
    return n // b if setup.get("drop_last") else -(-n // b)


def check_loader_state(loader_state: Any, meta: dict) -> None:
    expect(isinstance(loader_state, dict) and is_int(loader_state.get("position")),
            "loader_state is malformed")
    position = loader_state["position"]
    limit = _batches_per_epoch(meta)
    limit = MAX_LOADER_POSITION if limit is None else limit
    expect(0 <= position <= limit, f"loader_state position {position} is outside 0 to "
                                    f"{limit} (the batches in an epoch)")
    check_rng_state(loader_state.get("epoch_state"), "loader_state.epoch_state")


def check_rng_state(state: Any, what: str) -> None:
    expect(isinstance(state, dict), f"{what} is not a dict")
    try:
        numpy.random.PCG64().state = state
    except Exception as e:  # noqa: BLE001 -- numpy raises several kinds here
        raise Invalid(f"{what} is not a valid generator state ({e})") from None


def _at_least(low: float, integer: bool = False):
    def ok(v: Any) -> bool:
        return (is_int(v) if integer else finite(v)) and v >= low
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


def check_progress(progress: Any) -> None:
    expect(isinstance(progress, dict), "progress is malformed")
    for key, ok in PROGRESS_FIELDS.items():
        if key in progress:
            expect(ok(progress[key]), f"progress[{key!r}] = {progress[key]!r}: expected "
                                       f"{ok.expected}")


def check_training_state(ckpt) -> None:
    """Raise DataError unless ``ckpt`` (a :class:`tinynet.serialization.Checkpoint`)
    holds what ``fit`` needs to resume.

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
        if not all(is_number(v) for v in h["steps"]):
            problems.append("history['steps'] holds values that are not numbers")
    if problems:
        raise DataError(f"{ckpt.path}: not a checkpoint fit can resume from: "
                        + "; ".join(problems))


def _placeholder(shape: tuple, dtype: numpy.dtype) -> numpy.ndarray:
    """An array of ``shape`` and ``dtype`` that takes no memory (for checks by header)."""
    return numpy.broadcast_to(numpy.zeros((), dtype=dtype), shape)


def check_against(ckpt_arrays: dict, header: dict, opt_members: dict, model,
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
        optimizer.check_state_dict(parse_optimizer(header["optimizer"], placeholders))
    elif opt_members:  # bound the optimizer's arrays by the model's parameters
        shapes = [tuple(p.shape) for p in model.parameters()]
        for member, (index, _) in opt_members.items():
            shape = placeholders[member].shape
            if index >= len(shapes) or shape not in shapes:
                raise StateDictError(f"{member}: shape {shape} of parameter {index} "
                                     f"matches no parameter of this model")
