"""PyTorch parity: twin models, per-tensor comparison and training trajectories.

"Checked against PyTorch" made into something anyone can rerun (``tinynet parity``)::

    from tinynet import models, parity
    model = models.build("simplecnn")
    twin = parity.to_torch(model)        # torch.nn.Sequential, same weights and buffers
    back = parity.from_torch(twin)       # a tinynet Sequential again, bit for bit equal
    report = parity.compare(model, x, t) # float64 and float32, train and eval mode
    print(report); assert report.ok

torch is optional: this module imports without it, and every function that needs it
raises :class:`MissingTorchError` ("needs torch: pip install torch").

Relative difference. For a tinynet tensor ``a`` and its torch twin ``b`` (the
reference) we report ``max_abs = max |a - b|`` and::

    max_rel = max |a - b| / max(max |b|, tiny)        (tiny = the smallest normal float64)

i.e. the worst element error measured in units of the tensor's largest magnitude. An
element-wise ratio |a - b| / |b| would be dominated by elements that are zero up to
rounding (a gradient summed over a batch that nearly cancels), which are not errors.

Tolerances (``TOLERANCES``) for one forward/backward pass: 1e-10 per tensor in float64;
1e-5 in float32, raised to ``FLOAT32_FLOOR_FACTOR`` (10) times PyTorch's own float32
error against float64 where that is larger (two float32 results that round differently
cannot agree better than their distance to the exact one). Training trajectories have
their own (``TRAJECTORY_TOLERANCES``): rounding differences of one step are fed into the
next; where a row exceeds them, a third run measures PyTorch's own rounding drift and
raises that row's tolerance to ten times it. docs/parity.md has the measured numbers.
"""

from __future__ import annotations

import argparse
import copy
import math
import os
import sys
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field

import numpy

from . import layers as _layers
from .backend import get_array_module, to_numpy
from .errors import ShapeError, TinynetError
from .losses import CrossEntropyLoss, MSELoss
from .module import Module, Sequential
from .optim import SGD, Adam
from .parameter import Parameter
from .random import get_rng_state, set_rng_state

__all__ = [
    "FLOAT32_FLOOR_FACTOR",
    "TOLERANCES",
    "TRAJECTORY_OPTIMIZERS",
    "TRAJECTORY_TOLERANCES",
    "MissingTorchError",
    "ParityReport",
    "Row",
    "compare",
    "difference",
    "from_torch",
    "layer_cases",
    "main",
    "model_cases",
    "to_torch",
    "trajectory",
]

# Per-tensor tolerance on max_rel for one forward/backward pass, by dtype.
TOLERANCES = {"float64": 1e-10, "float32": 1e-5}
# float32 floor: where PyTorch's own float32 result is further than TOLERANCES["float32"] /
# FLOAT32_FLOOR_FACTOR from its float64 result (same weights and input), tinynet's float32
# may differ from it by FLOAT32_FLOOR_FACTOR times that error. Two float32 computations
# that round differently cannot agree better than their distance to the exact result.
FLOAT32_FLOOR_FACTOR = 10.0
# Tolerance on max_rel of the per-step losses and of the final weights and buffers after K
# training steps, by dtype and optimizer (raised where PyTorch's own rounding drift is
# larger, see ``trajectory``). float64 is the bug detector: achieved about 1e-15 (SGD)
# and 1e-12 (Adam) after 50 steps of the base MLP and SimpleCNN. In float32 the rounding
# differences of each step (1e-7) are fed into the next and two kinds of events make the
# runs jump apart: a ReLU whose input is within rounding of zero switches in one run only
# (one sample's gradient of one unit goes missing, about 1e-2 of a weight tensor after
# momentum), and Adam's step, which divides a gradient by its own magnitude, turns
# rounding noise in a near-zero gradient element into an lr-sized step. Achieved after
# 50 steps: 1e-7 to 1e-2. See docs/parity.md.
TRAJECTORY_TOLERANCES = {"float64": {"sgd": 1e-9, "adam": 1e-9},
                         "float32": {"sgd": 5e-2, "adam": 5e-2}}


class MissingTorchError(TinynetError, ImportError):
    """tinynet.parity was asked to build or run a PyTorch twin, but torch is not installed."""


def _torch():
    """Import torch on first use, or raise a clear MissingTorchError."""
    try:
        import torch
    except ImportError as e:
        raise MissingTorchError(
            f"tinynet.parity needs torch: pip install torch (import failed: {e})") from None
    return torch


# --------------------------------------------------------------------------- Residual twin
_TORCH_CLASSES: dict[str, type] = {}


def _torch_residual_class() -> type:
    """``TorchResidual``: the torch twin of ``tinynet.layers.Residual`` (built on first use)."""
    if "TorchResidual" not in _TORCH_CLASSES:
        nn = _torch().nn

        class TorchResidual(nn.Module):
            """y = body(x) + (projection(x) if projection is not None else x).

            Attributes ``body`` and ``projection`` give the state_dict keys
            ``body.*`` and ``projection.*``, as tinynet's Residual.
            """

            def __init__(self, body, projection=None) -> None:
                super().__init__()
                self.body = body
                self.projection = projection

            def forward(self, x):
                skip = x if self.projection is None else self.projection(x)
                return self.body(x) + skip

        TorchResidual.__module__ = __name__
        _TORCH_CLASSES["TorchResidual"] = TorchResidual
    return _TORCH_CLASSES["TorchResidual"]


def __getattr__(name: str):  # lazy ``tinynet.parity.TorchResidual``
    if name == "TorchResidual":
        return _torch_residual_class()
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


# --------------------------------------------------------------------------- dtypes
def _torch_dtype(numpy_dtype):
    torch = _torch()
    table = {"float64": torch.float64, "float32": torch.float32, "float16": torch.float16,
             "int64": torch.int64}
    name = numpy.dtype(numpy_dtype).name
    if name not in table:
        raise TinynetError(f"tinynet.parity: no torch dtype for {name}")
    return table[name]


def _layer_dtype(module: Module) -> str:
    """The dtype of a layer's first floating parameter or buffer (float32 if it has none)."""
    for p in module.parameters():
        return numpy.dtype(p.data.dtype).name
    for b in module.buffers():
        if b is not None and b.dtype.kind == "f":
            return numpy.dtype(b.dtype).name
    return "float32"


def _torch_layer_dtype(module) -> str:
    for t in list(module.parameters()) + list(module.buffers()):
        if t.is_floating_point():
            return str(t.dtype).replace("torch.", "")
    return "float32"


def _pair(v) -> tuple:
    return tuple(v) if isinstance(v, (tuple, list)) else (v, v)


# --------------------------------------------------------------------------- to_torch
def _linear_to_torch(m, nn, dtype):
    return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None, dtype=dtype)


def _conv_to_torch(m, nn, dtype):
    return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, stride=m.stride,
                     padding=m.padding, dilation=m.dilation, groups=m.groups,
                     bias=m.bias is not None, padding_mode=m.padding_mode, dtype=dtype)


def _maxpool_to_torch(m, nn, dtype):
    return nn.MaxPool2d(m.kernel_size, stride=m.stride, padding=m.padding,
                        dilation=m.dilation, return_indices=m.return_indices,
                        ceil_mode=m.ceil_mode)


def _avgpool_to_torch(m, nn, dtype):
    return nn.AvgPool2d(m.kernel_size, stride=m.stride, padding=m.padding,
                        ceil_mode=m.ceil_mode, count_include_pad=m.count_include_pad,
                        divisor_override=m.divisor_override)


def _batchnorm_to_torch(kind):
    def convert(m, nn, dtype):
        cls = nn.BatchNorm1d if kind == 1 else nn.BatchNorm2d
        return cls(m.num_features, eps=m.eps, momentum=m.momentum, affine=m.affine,
                   track_running_stats=m.track_running_stats, dtype=dtype,
                   bias=m.bias is not None or not m.affine)
    return convert


def _layernorm_to_torch(m, nn, dtype):
    return nn.LayerNorm(m.normalized_shape, eps=m.eps,
                        elementwise_affine=m.elementwise_affine, bias=m.bias is not None,
                        dtype=dtype)


def _to_torch_table() -> list[tuple[type, Callable]]:
    """(tinynet class, converter) pairs."""
    table = [
        ("Linear", _linear_to_torch),
        ("Identity", lambda m, nn, dt: nn.Identity()),
        ("ReLU", lambda m, nn, dt: nn.ReLU()),
        ("Tanh", lambda m, nn, dt: nn.Tanh()),
        ("Sigmoid", lambda m, nn, dt: nn.Sigmoid()),
        ("SiLU", lambda m, nn, dt: nn.SiLU()),
        ("GELU", lambda m, nn, dt: nn.GELU(m.approximate)),
        ("Softmax", lambda m, nn, dt: nn.Softmax(m.dim)),
        ("LogSoftmax", lambda m, nn, dt: nn.LogSoftmax(m.dim)),
        ("LeakyReLU", lambda m, nn, dt: nn.LeakyReLU(m.negative_slope)),
        ("ELU", lambda m, nn, dt: nn.ELU(m.alpha)),
        ("Flatten", lambda m, nn, dt: nn.Flatten(m.start_dim, m.end_dim)),
        ("Dropout", lambda m, nn, dt: nn.Dropout(m.p)),
        ("Dropout2d", lambda m, nn, dt: nn.Dropout2d(m.p)),
        ("Conv2d", _conv_to_torch),
        ("MaxPool2d", _maxpool_to_torch),
        ("AvgPool2d", _avgpool_to_torch),
        ("AdaptiveAvgPool2d", lambda m, nn, dt: nn.AdaptiveAvgPool2d(m.output_size)),
        ("BatchNorm1d", _batchnorm_to_torch(1)),
        ("BatchNorm2d", _batchnorm_to_torch(2)),
        ("LayerNorm", _layernorm_to_torch),
    ]
    return [(getattr(_layers, name), f) for name, f in table]


def _build_torch(m: Module):
    nn = _torch().nn
    if isinstance(m, Sequential):
        twin = nn.Sequential(*[_build_torch(child) for child in m])
    elif hasattr(_layers, "Residual") and isinstance(m, _layers.Residual):
        proj = m.projection
        twin = _torch_residual_class()(_build_torch(m.body),
                                       None if proj is None else _build_torch(proj))
    else:
        for cls, convert in _to_torch_table():
            if type(m) is cls:
                twin = convert(m, nn, _torch_dtype(_layer_dtype(m)))
                break
        else:
            raise TinynetError(
                f"to_torch: no PyTorch twin for {m.describe()} ({type(m).__name__}); "
                f"supported: Sequential, Residual, "
                f"{', '.join(c.__name__ for c, _ in _to_torch_table())}")
    twin.train(m.training)
    return twin


def to_torch(model: Module):
    """The PyTorch twin of a tinynet model, with identical weights and buffers.

    A tinynet ``Sequential`` becomes a ``torch.nn.Sequential`` (nested ones nest), a
    ``Residual`` a :class:`TorchResidual` (attributes ``body`` and ``projection``), and
    each layer its ``torch.nn`` namesake with the same constructor arguments. Values are
    copied (the twin shares no memory with ``model``) with their dtypes kept; the twin
    lives on the CPU and is in the same train/eval mode. ``twin.state_dict()`` has the
    same keys, shapes, dtypes and values as ``model.state_dict()``.
    """
    torch = _torch()
    twin = _build_torch(model)
    state = {}
    for key, value in model.state_dict().items():
        host = numpy.array(to_numpy(value), copy=True)
        state[key] = torch.from_numpy(host)
    with torch.no_grad():
        _load_exact_torch(twin, state, model)
    return twin


def _load_exact_torch(twin, state: dict, model: Module) -> None:
    """Copy ``state`` into ``twin``; refuse any key, shape or dtype mismatch."""
    own = twin.state_dict()
    if list(own) != list(state):
        raise TinynetError(
            f"to_torch: state_dict keys differ between {type(model).__name__} and its twin: "
            f"tinynet {list(state)} vs torch {list(own)}")
    for key, value in state.items():
        target = own[key]
        if tuple(target.shape) != tuple(value.shape) or target.dtype != value.dtype:
            raise TinynetError(
                f"to_torch: {key}: tinynet {tuple(value.shape)} {value.dtype} vs torch "
                f"{tuple(target.shape)} {target.dtype}")
        target.copy_(value)


# --------------------------------------------------------------------------- from_torch
def _from_torch_table(nn) -> list[tuple[type, Callable]]:
    L = _layers
    return [
        (nn.Linear, lambda t: L.Linear(t.in_features, t.out_features, bias=t.bias is not None)),
        (nn.Identity, lambda t: L.Identity()),
        (nn.ReLU, lambda t: L.ReLU()),
        (nn.Tanh, lambda t: L.Tanh()),
        (nn.Sigmoid, lambda t: L.Sigmoid()),
        (nn.SiLU, lambda t: L.SiLU()),
        (nn.GELU, lambda t: L.GELU(t.approximate)),
        (nn.Softmax, lambda t: L.Softmax(t.dim)),
        (nn.LogSoftmax, lambda t: L.LogSoftmax(t.dim)),
        (nn.LeakyReLU, lambda t: L.LeakyReLU(t.negative_slope)),
        (nn.ELU, lambda t: L.ELU(t.alpha)),
        (nn.Flatten, lambda t: L.Flatten(t.start_dim, t.end_dim)),
        (nn.Dropout, lambda t: L.Dropout(t.p)),
        (nn.Dropout2d, lambda t: L.Dropout2d(t.p)),
        (nn.Conv2d, lambda t: L.Conv2d(
            t.in_channels, t.out_channels, tuple(t.kernel_size), tuple(t.stride),
            t.padding if isinstance(t.padding, str) else tuple(t.padding), tuple(t.dilation),
            t.groups, t.bias is not None, t.padding_mode)),
        (nn.MaxPool2d, lambda t: L.MaxPool2d(t.kernel_size, t.stride, t.padding, t.dilation,
                                             t.return_indices, t.ceil_mode)),
        (nn.AvgPool2d, lambda t: L.AvgPool2d(t.kernel_size, t.stride, t.padding, t.ceil_mode,
                                             t.count_include_pad, t.divisor_override)),
        (nn.AdaptiveAvgPool2d, lambda t: L.AdaptiveAvgPool2d(t.output_size)),
        (nn.BatchNorm1d, _batchnorm_from_torch(1)),
        (nn.BatchNorm2d, _batchnorm_from_torch(2)),
        (nn.LayerNorm, lambda t: L.LayerNorm(t.normalized_shape, t.eps, t.elementwise_affine,
                                             t.bias is not None)),
    ]


def _batchnorm_from_torch(kind):
    def convert(t):
        cls = _layers.BatchNorm1d if kind == 1 else _layers.BatchNorm2d
        return cls(t.num_features, t.eps, t.momentum, t.affine, t.track_running_stats,
                   bias=t.bias is not None or not t.affine)
    return convert


def _build_tinynet(t) -> Module:
    nn = _torch().nn
    if isinstance(t, nn.Sequential):
        m = Sequential(*[_build_tinynet(child) for child in t])
    elif type(t).__name__ == "TorchResidual" and hasattr(_layers, "Residual"):
        proj = t.projection
        m = _layers.Residual(_build_tinynet(t.body),
                             None if proj is None else _build_tinynet(proj))
    else:
        for cls, convert in _from_torch_table(nn):
            if type(t) is cls:
                m = convert(t)
                break
        else:
            raise TinynetError(
                f"from_torch: no tinynet twin for torch module {type(t).__name__}; supported: "
                f"Sequential, TorchResidual, "
                f"{', '.join(c.__name__ for c, _ in _from_torch_table(nn))}")
        if _torch_layer_dtype(t) == "float64":
            m.double()
    m.train(t.training)
    return m


def from_torch(module) -> Module:
    """The tinynet model of a PyTorch one built from the layers :func:`to_torch` knows.

    The reverse of :func:`to_torch`: ``torch.nn.Sequential`` becomes ``Sequential``,
    :class:`TorchResidual` becomes ``Residual``, ``torch.nn.Linear`` becomes ``Linear``,
    and so on; parameters and buffers are copied with their dtypes, the mode is kept.
    Building the layers does not advance tinynet's global random generator.
    """
    torch = _torch()
    if not isinstance(module, torch.nn.Module):
        raise TinynetError(f"from_torch: expected a torch.nn.Module, got {type(module).__name__}")
    rng = get_rng_state()
    try:
        model = _build_tinynet(module)
    finally:
        set_rng_state(rng)
    state = module.state_dict()
    own = model.state_dict()
    if list(own) != list(state):
        raise TinynetError(f"from_torch: state_dict keys differ: torch {list(state)} vs "
                           f"tinynet {list(own)}")
    for key, value in state.items():
        if numpy.dtype(own[key].dtype) != numpy.dtype(str(value.dtype).replace("torch.", "")):
            raise TinynetError(f"from_torch: {key}: torch {value.dtype} vs tinynet "
                               f"{own[key].dtype}")
    model.load_state_dict({k: v.detach().cpu().numpy() for k, v in state.items()})
    return model


# --------------------------------------------------------------------------- reports
@dataclass
class Row:
    """One compared tensor: where it comes from, its differences and its tolerance."""
    case: str
    dtype: str
    mode: str
    tensor: str
    max_abs: float
    max_rel: float
    tol: float
    raised: bool = False  # float32: tol raised to FLOAT32_FLOOR_FACTOR x torch's own error

    @property
    def ok(self) -> bool:
        return bool(math.isfinite(self.max_rel) and self.max_rel <= self.tol)


def _fmt(v: float) -> str:
    return f"{v:.1e}" if v else "0"


def _fmt_tol(r: Row) -> str:
    return _fmt(r.tol) + ("*" if r.raised else "")


@dataclass
class ParityReport:
    """Rows of compared tensors; ``ok`` when every one is within its tolerance.

    ``str(report)`` (or ``report.table()``) prints one line per (case, dtype, mode) with
    its worst tensor; ``report.table(every=True)`` one line per tensor.
    """
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def failures(self) -> list:
        return [r for r in self.rows if not r.ok]

    def extend(self, other: ParityReport) -> ParityReport:
        self.rows.extend(other.rows)
        self.notes.extend(other.notes)
        return self

    def groups(self) -> list:
        """``[(case, dtype, mode, rows)]`` in the order the rows were added."""
        out: dict = {}
        for r in self.rows:
            out.setdefault((r.case, r.dtype, r.mode), []).append(r)
        return [(*k, v) for k, v in out.items()]

    def table(self, every: bool = False) -> str:
        head = ("case", "dtype", "mode", "tensors" if not every else "", "worst tensor"
                if not every else "tensor", "max abs", "max rel", "tol", "")
        lines = []
        if every:
            for r in self.rows:
                lines.append((r.case, r.dtype, r.mode, "", r.tensor, _fmt(r.max_abs),
                              _fmt(r.max_rel), _fmt_tol(r), "ok" if r.ok else "FAIL"))
        else:
            for case, dtype, mode, rows in self.groups():
                worst = max(rows, key=lambda r: (not r.ok, r.max_rel / r.tol
                                                 if math.isfinite(r.max_rel) else math.inf))
                ok = all(r.ok for r in rows)
                lines.append((case, dtype, mode, str(len(rows)), worst.tensor,
                              _fmt(worst.max_abs), _fmt(worst.max_rel), _fmt_tol(worst),
                              "ok" if ok else "FAIL"))
        widths = [max(len(str(x[i])) for x in [head] + lines) for i in range(len(head))]
        fmt = "  ".join(f"{{:{'>' if i in (3, 5, 6, 7) else '<'}{w}}}"
                        for i, w in enumerate(widths))
        out = [fmt.format(*head).rstrip(), "-" * (sum(widths) + 2 * (len(widths) - 1))]
        out += [fmt.format(*x).rstrip() for x in lines]
        n_bad = len(self.failures())
        out.append(f"{len(self.rows)} tensors compared: "
                   + ("all within tolerance" if not n_bad else f"{n_bad} ABOVE TOLERANCE"))
        if any(r.raised for r in self.rows):
            out.append(f"* tolerance raised to {FLOAT32_FLOOR_FACTOR:g} x PyTorch's own rounding "
                       "drift: float32 against PyTorch in float64 from the same values; "
                       "float64 trajectories against PyTorch started one ulp away")
        out += self.notes
        return "\n".join(out)

    def __str__(self) -> str:
        return self.table()


def difference(a, b) -> tuple[float, float]:
    """``(max |a - b|, max |a - b| / max(max |b|, tiny))`` of two arrays (b: the reference)."""
    a = numpy.asarray(to_numpy(a), dtype=numpy.float64)
    b = numpy.asarray(to_numpy(b), dtype=numpy.float64)
    if a.shape != b.shape:
        raise ShapeError(f"difference: shapes {a.shape} and {b.shape} differ")
    if a.size == 0:
        return 0.0, 0.0
    err = float(numpy.max(numpy.abs(a - b)))
    scale = max(float(numpy.max(numpy.abs(b))), float(numpy.finfo(numpy.float64).tiny))
    if not (numpy.isfinite(a).all() and numpy.isfinite(b).all()):
        same = bool(numpy.array_equal(a, b, equal_nan=True))
        return (0.0, 0.0) if same else (math.inf, math.inf)
    return err, err / scale


# --------------------------------------------------------------------------- losses
def _loss_pair(loss):
    """(tinynet loss, torch loss, kind) from "cross_entropy", "mse" or a tinynet loss object."""
    nn = _torch().nn
    if isinstance(loss, str):
        if loss == "cross_entropy":
            loss = CrossEntropyLoss()
        elif loss == "mse":
            loss = MSELoss()
        else:
            raise TinynetError(f"compare: unknown loss {loss!r}: expected 'cross_entropy', "
                               "'mse' or a tinynet loss object")
    if isinstance(loss, CrossEntropyLoss):
        return loss, nn.CrossEntropyLoss(reduction=loss.reduction), "cross_entropy"
    if isinstance(loss, MSELoss):
        return loss, nn.MSELoss(reduction=loss.reduction), "mse"
    raise TinynetError(f"compare: no torch twin for loss {type(loss).__name__}: expected "
                       "CrossEntropyLoss, MSELoss, 'cross_entropy' or 'mse'")


def _targets(target, kind: str, dtype: str):
    t = numpy.asarray(to_numpy(target))
    if kind == "cross_entropy":
        if t.dtype.kind not in "iu":
            raise TinynetError(f"compare: cross_entropy targets must be integer class "
                               f"indices, got dtype {t.dtype}")
        return t.astype(numpy.int64)
    return t.astype(dtype)


# --------------------------------------------------------------------------- dropout masks
class _DropoutMasks:
    """Make every Dropout draw the same mask in both frameworks.

    A forward hook on each torch ``Dropout`` of the twin draws the 0/1 keep-mask of the
    input's shape from a seeded NumPy generator, hands it to the tinynet Dropout as
    ``next_mask`` and replaces torch's own output by ``x * keep / (1 - p)``. Run the
    torch forward first, then the tinynet one.
    """

    def __init__(self, model: Module, twin, seed: int = 0) -> None:
        torch = _torch()
        self.generator = numpy.random.default_rng(seed)
        self.handles = []
        pairs = _paired_modules(model, twin)
        for m, t in pairs:
            if isinstance(m, _layers.Dropout) and isinstance(t, (torch.nn.Dropout,
                                                                 torch.nn.Dropout2d)):
                self.handles.append(t.register_forward_hook(self._hook(m)))

    def _hook(self, layer):
        def hook(module, inputs, output):
            if not module.training or module.p == 0.0:
                return output
            torch = _torch()
            x = inputs[0]
            shape = tuple(x.shape) if type(layer) is _layers.Dropout else \
                tuple(x.shape[:2]) + (1,) * (x.ndim - 2)       # Dropout2d: whole channels
            keep = self.generator.random(shape) >= module.p
            layer.next_mask = keep
            scale = 0.0 if module.p == 1.0 else 1.0 / (1.0 - module.p)
            return x * (torch.from_numpy(keep).to(x.dtype) * scale)
        return hook

    def remove(self) -> None:
        for h in self.handles:
            h.remove()


def _paired_modules(model: Module, twin) -> list:
    tmods = dict(twin.named_modules())
    return [(m, tmods[name]) for name, m in model.named_modules() if name in tmods]


# --------------------------------------------------------------------------- compare
def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def _cast_model(model: Module, dtype: str) -> Module:
    m = copy.deepcopy(model)
    return m.double() if dtype == "float64" else m.float()


def compare(model: Module, x, target, loss="cross_entropy", dtype=("float64", "float32"),
            train=(True, False), name: str | None = None, seed: int = 0) -> ParityReport:
    """Run ``model`` and its PyTorch twin on one batch and compare every tensor.

    Args:
        model: any tinynet model :func:`to_torch` can convert (it is copied, not changed).
        x: the input batch, e.g. ``(N, C, H, W)``; cast to each dtype compared.
        target: class indices ``(N,)`` for cross-entropy, or an array of the output's shape
            for MSE.
        loss: ``"cross_entropy"``, ``"mse"`` or a tinynet ``CrossEntropyLoss``/``MSELoss``.
        dtype: a dtype name or a tuple of them (default both ``float64`` and ``float32``).
        train: True (train mode), False (eval mode) or a tuple of both (the default).
        name: the case name in the report (default the model's class name).
        seed: seeds the Dropout masks shared by both frameworks.

    Compared per (dtype, mode): the output, the loss, dLoss/dx, dLoss/dp for every
    parameter p and, after the pass, every buffer (BatchNorm running statistics updated
    by a train-mode forward). Each row carries the tolerance of its dtype
    (``TOLERANCES``).
    """
    torch = _torch()
    name = name or type(model).__name__
    report = ParityReport()
    for dt in _as_list(dtype):
        dt = numpy.dtype(dt).name
        if dt not in TOLERANCES:
            raise TinynetError(f"compare: dtype must be float64 or float32, got {dt}")
        for mode in _as_list(train):
            m = _cast_model(model, dt).train(bool(mode))
            report.extend(_compare_once(torch, m, x, target, loss, dt, name,
                                        "train" if mode else "eval", seed))
    return report


def _torch_pass(torch, twin, m: Module, x_host, t_host, torch_loss, seed: int) -> dict:
    """One forward/backward of ``twin``: every compared tensor, by row name."""
    masks = _DropoutMasks(m, twin, seed)
    try:
        xt = torch.from_numpy(x_host.copy()).requires_grad_(True)
        yt = twin(xt)
        lt = torch_loss(yt, torch.from_numpy(t_host))
        lt.backward()
    finally:
        masks.remove()
    out = {"output": yt.detach(), "loss": lt.detach(), "dL/dx": xt.grad}
    for key, p in twin.named_parameters():
        out[f"grad {key}"] = p.grad if p.grad is not None else torch.zeros_like(p)
    for key, b in twin.named_buffers():
        out[f"buffer {key}"] = b
    return out


def _array_module(m: Module):
    """The array module of ``m``'s parameters or buffers (NumPy, CuPy, the stand-in)."""
    for a in list(m.parameters()) + list(m.buffers()):
        if a is not None:
            return get_array_module(a.data if isinstance(a, Parameter) else a)
    return numpy


def _tinynet_pass(m: Module, x_host, t_host, loss_fn) -> dict:
    xp = _array_module(m)
    m.zero_grad()
    y = m(xp.asarray(x_host))
    value = loss_fn(y, xp.asarray(t_host))
    dx = m.backward(loss_fn.backward())
    out = {"output": y, "loss": numpy.array(value), "dL/dx": dx}
    for key, p in m.named_parameters():
        out[f"grad {key}"] = p.grad if p.grad is not None else numpy.zeros(p.shape, p.dtype)
    for key, b in m.named_buffers():
        if b is not None:
            out[f"buffer {key}"] = b
    return out


def _compare_once(torch, m: Module, x, target, loss, dt: str, name: str, mode: str,
                  seed: int) -> ParityReport:
    loss_fn, torch_loss, kind = _loss_pair(loss)
    loss_fn = copy.copy(loss_fn)
    x_host = numpy.asarray(to_numpy(x)).astype(dt)
    t_host = _targets(target, kind, dt)
    twin = to_torch(m)
    theirs = _torch_pass(torch, twin, m, x_host, t_host, torch_loss, seed)
    reference = None
    if dt == "float32":  # torch in float64 from the same float32 values: the float32 floor
        twin64 = to_torch(m).double()
        reference = _torch_pass(torch, twin64, m, x_host.astype("float64"),
                                t_host if kind == "cross_entropy" else t_host.astype("float64"),
                                torch_loss, seed)
    ours = _tinynet_pass(m, x_host, t_host, loss_fn)
    if list(ours) != list(theirs):
        raise TinynetError(f"compare: {name}: tinynet and torch name different tensors: "
                           f"{list(ours)} vs {list(theirs)}")
    rows = []
    for key, a in ours.items():
        tol = TOLERANCES[dt]
        torch_err = math.nan
        if reference is not None:
            torch_err = difference(theirs[key], reference[key])[1]
            tol = max(tol, FLOAT32_FLOOR_FACTOR * torch_err)
        rows.append(Row(name, dt, mode, key, *difference(a, theirs[key]), tol,
                        raised=tol > TOLERANCES[dt]))
    return ParityReport(rows)


# --------------------------------------------------------------------------- trajectories
def _optimizers(optimizer: str, model: Module, twin, hyper: dict):
    torch = _torch()
    hyper = dict(hyper)
    if optimizer == "sgd":
        hyper.setdefault("lr", 0.1)
        return SGD(model.parameters(), **hyper), torch.optim.SGD(twin.parameters(), **hyper)
    if optimizer == "adam":
        return Adam(model.parameters(), **hyper), torch.optim.Adam(twin.parameters(), **hyper)
    raise TinynetError(f"trajectory: unknown optimizer {optimizer!r}: expected 'sgd' or 'adam'")


@dataclass
class Trajectory:
    """Per-step losses of both frameworks and the comparison rows of a trajectory check."""
    tinynet_losses: list
    torch_losses: list
    report: ParityReport

    @property
    def ok(self) -> bool:
        return self.report.ok


def trajectory(model: Module, batches: Iterable, optimizer: str = "sgd", hyper: dict | None = None,
               dtype: str = "float64", loss="cross_entropy", name: str | None = None,
               seed: int = 0, tol: float | None = None, baseline: bool = True) -> Trajectory:
    """Train ``model`` and its twin side by side on ``batches`` and compare the runs.

    Both start from the same weights (the twin is made by :func:`to_torch`), see the same
    batches in the same order, share Dropout masks, and take one optimizer step per batch
    with the same hyper-parameters (``optimizer`` "sgd" or "adam", ``hyper`` the keyword
    arguments of ``torch.optim.SGD``/``Adam``). Reported: the largest relative loss
    difference over the steps (each step's loss relative to torch's), and every final
    parameter and buffer (BatchNorm running statistics included). ``model`` itself is
    not changed.

    Tolerance: ``tol``, by default ``TRAJECTORY_TOLERANCES[dtype][optimizer]``. With
    ``baseline``, when a row is above it, a third run measures how far rounding alone
    carries this training:
    in float32, PyTorch in float64 from the same (float32) weights and data; in float64,
    PyTorch from weights moved by one ulp (``nextafter``). Where that run drifts from
    PyTorch by d, tinynet may drift as far, and the row's tolerance is raised to
    ``FLOAT32_FLOOR_FACTOR * d`` (marked ``*`` in the table).
    """
    torch = _torch()
    dt = numpy.dtype(dtype).name
    if dt not in TRAJECTORY_TOLERANCES:
        raise TinynetError(f"trajectory: dtype must be float64 or float32, got {dt}")
    if optimizer not in TRAJECTORY_TOLERANCES[dt]:
        raise TinynetError(f"trajectory: unknown optimizer {optimizer!r}: expected 'sgd' or "
                           "'adam'")
    base_tol = TRAJECTORY_TOLERANCES[dt][optimizer] if tol is None else float(tol)
    hyper = dict(hyper or {})
    name = name or type(model).__name__
    m = _cast_model(model, dt).train()
    loss_fn, torch_loss, kind = _loss_pair(loss)
    loss_fn = copy.copy(loss_fn)
    xp = _array_module(m)
    data = [(numpy.asarray(to_numpy(x)).astype(dt), _targets(t, kind, dt)) for x, t in batches]
    if not data:
        raise TinynetError("trajectory: no batches given")
    start = to_torch(m)  # before any step: the baseline run starts here too
    twin = copy.deepcopy(start)
    opt, topt = _optimizers(optimizer, m, twin, hyper)
    masks = _DropoutMasks(m, twin, seed)
    ours, theirs = [], []
    try:
        for x_host, t_host in data:
            theirs.append(_torch_step(torch, twin, topt, torch_loss, x_host, t_host))
            opt.zero_grad()
            y = m(xp.asarray(x_host))
            ours.append(loss_fn(y, xp.asarray(t_host)))
            m.backward(loss_fn.backward(), input_grad=False)
            opt.step()
    finally:
        masks.remove()
    hp = ", ".join(f"{k}={v}" for k, v in hyper.items())
    mode = f"{optimizer}({hp}) x{len(ours)}"
    tstate = twin.state_dict()
    worst = max(range(len(ours)), key=lambda i: difference(ours[i], theirs[i])[1])
    diffs = {"loss": difference(ours[worst], theirs[worst])}
    labels = {"loss": f"loss (worst: step {worst + 1})"}
    for key, value in m.state_dict().items():
        diffs[f"final {key}"] = difference(value, tstate[key])
        labels[f"final {key}"] = f"final {key}"
    drifts = dict.fromkeys(diffs, 0.0)
    if baseline and any(rel > base_tol for _, rel in diffs.values()):
        drifts = _rounding_drift(torch, start, optimizer, hyper, torch_loss, data, dt, seed,
                                 theirs, tstate, m)
    rows = []
    for key, (abs_err, rel_err) in diffs.items():
        row_tol = max(base_tol, FLOAT32_FLOOR_FACTOR * drifts[key])
        rows.append(Row(name, dt, mode, labels[key], abs_err, rel_err, row_tol,
                        raised=row_tol > base_tol))
    return Trajectory(ours, theirs, ParityReport(rows))


def _torch_step(torch, twin, topt, torch_loss, x_host, t_host, to=None) -> float:
    xt, tt = torch.from_numpy(x_host), torch.from_numpy(t_host)
    if to is not None:
        xt = xt.to(to)
        tt = tt if not tt.is_floating_point() else tt.to(to)
    topt.zero_grad()
    lt = torch_loss(twin(xt), tt)
    lt.backward()
    topt.step()
    return float(lt.detach())


def _rounding_drift(torch, start, optimizer, hyper, torch_loss, data, dt, seed, theirs,
                    tstate, m) -> dict:
    """How far rounding alone carries PyTorch's run: max_rel per final tensor (and loss).

    float32: PyTorch in float64 from the same float32 weights and data; float64: PyTorch
    from weights moved by one ulp. Same batches, same Dropout masks (same seed).
    """
    shadow = copy.deepcopy(start)
    to = None
    if dt == "float32":
        shadow, to = shadow.double(), torch.float64
    else:
        with torch.no_grad():
            for p in shadow.parameters():
                p.copy_(torch.nextafter(p, torch.full_like(p, math.inf)))
    _, sopt = _optimizers(optimizer, m, shadow, hyper)
    masks = _DropoutMasks(m, shadow, seed)
    try:
        losses = [_torch_step(torch, shadow, sopt, torch_loss, x, t, to) for x, t in data]
    finally:
        masks.remove()
        for layer in m.modules():  # the hooks handed masks to tinynet: drop them
            if isinstance(layer, _layers.Dropout):
                layer.next_mask = None
    sstate = shadow.state_dict()
    drifts = {f"final {key}": difference(sstate[key], tstate[key])[1] for key in tstate}
    drifts["loss"] = max(difference(a, b)[1] for a, b in zip(losses, theirs))
    return drifts


# --------------------------------------------------------------------------- cases
@dataclass
class Case:
    """A parity check: a model builder, the input shape of one batch and the loss."""
    name: str
    build: Callable[[], Module]
    input_shape: tuple
    loss: str = "mse"
    shift: float = 0.0

    def batch(self, seed: int = 0) -> tuple:
        """A random input ``N(shift, 1)`` of ``input_shape`` and a target for ``loss``
        (seeded, float64)."""
        model = self.build()
        rng = numpy.random.default_rng(seed)
        x = rng.standard_normal(self.input_shape) + self.shift
        y = model.eval()(x.astype(model.dtype))
        if self.loss == "cross_entropy":
            return x, rng.integers(0, y.shape[1], size=y.shape[0])
        return x, rng.standard_normal(tuple(y.shape))


def layer_cases() -> list:
    """Every tinynet layer type in several configurations, on small shapes.

    Each layer is checked alone with an MSE loss against a random target (so every
    output element gets its own gradient); containers wrap small bodies.
    """
    L = _layers
    S = Sequential

    def case(name, build, shape):
        return Case(name, build, shape, "mse")

    cases = [
        case("Linear(6,4)", lambda: L.Linear(6, 4), (5, 6)),
        case("Linear(6,4,bias=False)", lambda: L.Linear(6, 4, bias=False), (5, 6)),
        case("ReLU", L.ReLU, (4, 7)),
        case("Tanh", L.Tanh, (4, 7)),
        case("Sigmoid", L.Sigmoid, (4, 7)),
        case("LeakyReLU()", L.LeakyReLU, (4, 7)),
        case("LeakyReLU(0.2)", lambda: L.LeakyReLU(0.2), (4, 7)),
        case("ELU()", L.ELU, (4, 7)),
        case("ELU(0.5)", lambda: L.ELU(0.5), (4, 7)),
        case("Flatten()", L.Flatten, (2, 3, 4, 5)),
        case("Flatten(2)", lambda: L.Flatten(2), (2, 3, 4, 5)),
        case("Flatten(1,2)", lambda: L.Flatten(1, 2), (2, 3, 4, 5)),
        case("Dropout(0.5)", L.Dropout, (6, 8)),
        case("Dropout(0.2) 4d", lambda: L.Dropout(0.2), (2, 3, 4, 4)),
        case("Sequential(Linear,ReLU,Linear)",
             lambda: S(L.Linear(6, 5), L.ReLU(), L.Linear(5, 3)), (4, 6)),
        case("nested Sequential",
             lambda: S(S(L.Linear(6, 5), L.Tanh()), S(S(L.Linear(5, 4)), L.ELU())), (4, 6)),
    ]
    if hasattr(L, "Conv2d"):
        cases += [
            case("Conv2d(3,4,3)", lambda: L.Conv2d(3, 4, 3), (2, 3, 6, 7)),
            case("Conv2d(3,4,3,s2,p1)", lambda: L.Conv2d(3, 4, 3, 2, 1), (2, 3, 7, 6)),
            case("Conv2d(3,5,(3,2),s(2,1),p(1,0),bias=False)",
                 lambda: L.Conv2d(3, 5, (3, 2), (2, 1), (1, 0), bias=False), (2, 3, 7, 6)),
            case("Conv2d(2,3,1)", lambda: L.Conv2d(2, 3, 1), (3, 2, 4, 5)),
            case("Conv2d(2,3,5,p2)", lambda: L.Conv2d(2, 3, 5, 1, 2), (2, 2, 6, 6)),
        ]
    if hasattr(L, "MaxPool2d"):
        cases += [
            case("MaxPool2d(2)", lambda: L.MaxPool2d(2), (2, 3, 6, 8)),
            case("MaxPool2d(3,2,1)", lambda: L.MaxPool2d(3, 2, 1), (2, 3, 7, 6)),
            case("MaxPool2d((2,3),1)", lambda: L.MaxPool2d((2, 3), 1), (2, 2, 5, 6)),
            case("MaxPool2d(2) odd input", lambda: L.MaxPool2d(2), (2, 2, 5, 7)),
        ]
    if hasattr(L, "AvgPool2d"):
        cases += [
            case("AvgPool2d(2)", lambda: L.AvgPool2d(2), (2, 3, 6, 8)),
            case("AvgPool2d(3,2,1)", lambda: L.AvgPool2d(3, 2, 1), (2, 3, 7, 6)),
            case("AvgPool2d(3,2,1,count_include_pad=False)",
                 lambda: L.AvgPool2d(3, 2, 1, count_include_pad=False), (2, 3, 7, 6)),
            case("AvgPool2d((2,3),(1,2))", lambda: L.AvgPool2d((2, 3), (1, 2)), (2, 2, 5, 7)),
        ]
    if hasattr(L, "BatchNorm1d"):
        cases += [
            case("BatchNorm1d(5)", lambda: _perturbed(L.BatchNorm1d(5)), (6, 5)),
            case("BatchNorm1d(4) (N,C,L)", lambda: _perturbed(L.BatchNorm1d(4)), (3, 4, 5)),
            case("BatchNorm1d(5,momentum=0.5,eps=1e-3)",
                 lambda: _perturbed(L.BatchNorm1d(5, eps=1e-3, momentum=0.5)), (6, 5)),
            case("BatchNorm1d(5,momentum=None)",
                 lambda: _perturbed(L.BatchNorm1d(5, momentum=None)), (6, 5)),
            case("BatchNorm1d(5,affine=False)",
                 lambda: _perturbed(L.BatchNorm1d(5, affine=False)), (6, 5)),
            case("BatchNorm1d(5,track_running_stats=False)",
                 lambda: _perturbed(L.BatchNorm1d(5, track_running_stats=False)), (6, 5)),
        ]
    if hasattr(L, "BatchNorm2d"):
        cases += [
            case("BatchNorm2d(3)", lambda: _perturbed(L.BatchNorm2d(3)), (2, 3, 4, 5)),
            Case("BatchNorm2d(3) large M, mean 3", lambda: _perturbed(L.BatchNorm2d(3)),
                 (16, 3, 24, 24), "mse", shift=3.0),
            case("BatchNorm2d(3,momentum=0.3,affine=False)",
                 lambda: _perturbed(L.BatchNorm2d(3, momentum=0.3, affine=False)),
                 (2, 3, 4, 5)),
        ]
    cases += [
        case("Identity", L.Identity, (3, 5)),
        case("SiLU", L.SiLU, (4, 7)),
        case("GELU()", L.GELU, (4, 7)),
        case("GELU('tanh')", lambda: L.GELU("tanh"), (4, 7)),
        case("Softmax(1)", lambda: L.Softmax(1), (4, 7)),
        case("Softmax(-1) 3d", lambda: L.Softmax(-1), (2, 3, 5)),
        case("LogSoftmax(1)", lambda: L.LogSoftmax(1), (4, 7)),
        case("LogSoftmax(0)", lambda: L.LogSoftmax(0), (4, 7)),
        case("Dropout2d(0.3)", lambda: L.Dropout2d(0.3), (3, 4, 5, 5)),
        case("Linear(6,4) on (2,3,6)", lambda: L.Linear(6, 4), (2, 3, 6)),
        case("Conv2d(4,6,3,dilation=2,groups=2)",
             lambda: L.Conv2d(4, 6, 3, 1, 2, 2, 2), (2, 4, 7, 8)),
        case("Conv2d(4,4,3,groups=4) depthwise", lambda: L.Conv2d(4, 4, 3, groups=4),
             (2, 4, 6, 6)),
        case("Conv2d(2,3,(2,4),padding='same')",
             lambda: L.Conv2d(2, 3, (2, 4), padding="same"), (2, 2, 6, 5)),
        case("Conv2d(2,3,3,padding='valid')", lambda: L.Conv2d(2, 3, 3, padding="valid"),
             (2, 2, 5, 6)),
        case("Conv2d(2,3,3,p2,reflect)", lambda: L.Conv2d(2, 3, 3, 1, 2, padding_mode="reflect"),
             (2, 2, 6, 6)),
        case("Conv2d(2,3,3,s2,p(1,2),replicate)",
             lambda: L.Conv2d(2, 3, 3, 2, (1, 2), padding_mode="replicate"), (2, 2, 6, 6)),
        case("Conv2d(2,3,3,p(2,1),circular)",
             lambda: L.Conv2d(2, 3, 3, 1, (2, 1), padding_mode="circular"), (2, 2, 5, 6)),
        case("MaxPool2d(3,2,1,dilation=2)", lambda: L.MaxPool2d(3, 2, 1, 2), (2, 3, 9, 8)),
        case("MaxPool2d(2,ceil_mode)", lambda: L.MaxPool2d(2, ceil_mode=True), (2, 3, 5, 7)),
        case("MaxPool2d(3,2,1,ceil_mode)", lambda: L.MaxPool2d(3, 2, 1, ceil_mode=True),
             (2, 2, 6, 7)),
        case("AvgPool2d(3,2,1,ceil_mode)", lambda: L.AvgPool2d(3, 2, 1, ceil_mode=True),
             (2, 3, 6, 7)),
        case("AvgPool2d(3,2,1,ceil_mode,count_include_pad=False)",
             lambda: L.AvgPool2d(3, 2, 1, True, False), (2, 3, 6, 7)),
        case("AvgPool2d(2,divisor_override=3)", lambda: L.AvgPool2d(2, divisor_override=3),
             (2, 3, 6, 6)),
        case("AdaptiveAvgPool2d(3)", lambda: L.AdaptiveAvgPool2d(3), (2, 3, 7, 8)),
        case("AdaptiveAvgPool2d((1,None))", lambda: L.AdaptiveAvgPool2d((1, None)),
             (2, 3, 5, 6)),
        case("LayerNorm(7)", lambda: _perturbed_affine(L.LayerNorm(7)), (4, 7)),
        case("LayerNorm((4,5))", lambda: _perturbed_affine(L.LayerNorm((4, 5))), (2, 3, 4, 5)),
        case("LayerNorm(6,elementwise_affine=False)",
             lambda: L.LayerNorm(6, elementwise_affine=False), (3, 6)),
        case("LayerNorm(6,bias=False)", lambda: _perturbed_affine(L.LayerNorm(6, bias=False)),
             (3, 6)),
        case("BatchNorm1d(5,bias=False)", lambda: _perturbed(L.BatchNorm1d(5, bias=False)),
             (6, 5)),
    ]
    if hasattr(L, "Conv2d") and hasattr(L, "BatchNorm2d"):
        # Conv2d's output is channels-last in memory: BatchNorm2d's statistics then
        # reduce over strided axes, the case where naive float32 summation loses digits.
        cases.append(Case("Conv2d(3,8,3,p1,bias=False) + BatchNorm2d(8)",
                          lambda: S(L.Conv2d(3, 8, 3, 1, 1, bias=False),
                                    _perturbed(L.BatchNorm2d(8))),
                          (16, 3, 16, 16), "mse", shift=2.0))
    if hasattr(L, "Residual"):
        cases += [
            case("Residual(Linear,ReLU,Linear)",
                 lambda: L.Residual(S(L.Linear(6, 6), L.ReLU(), L.Linear(6, 6))), (4, 6)),
            case("Residual(Linear) + projection Linear",
                 lambda: L.Residual(S(L.Linear(6, 4), L.Tanh()), L.Linear(6, 4)), (4, 6)),
        ]
        if hasattr(L, "Conv2d") and hasattr(L, "BatchNorm2d"):
            cases += [
                case("Residual conv block",
                     lambda: S(L.Residual(S(L.Conv2d(3, 3, 3, 1, 1, bias=False),
                                            _perturbed(L.BatchNorm2d(3)),
                                            L.ReLU(), L.Conv2d(3, 3, 3, 1, 1, bias=False))),
                               L.ReLU()), (2, 3, 5, 5)),
                case("Residual conv block, projection (1x1 s2 + BN)",
                     lambda: L.Residual(
                         S(L.Conv2d(3, 4, 3, 2, 1, bias=False), _perturbed(L.BatchNorm2d(4)),
                           L.ReLU(), L.Conv2d(4, 4, 3, 1, 1, bias=False),
                           _perturbed(L.BatchNorm2d(4))),
                         S(L.Conv2d(3, 4, 1, 2, 0, bias=False), _perturbed(L.BatchNorm2d(4)))),
                     (2, 3, 6, 6)),
            ]
    return cases


def _perturbed_affine(norm: Module) -> Module:
    """A LayerNorm whose weight and bias are moved off their init (ones and zeros)."""
    rng = numpy.random.default_rng(5)
    for p in norm.parameters():
        p.data[...] = p.data + rng.uniform(-0.5, 0.5, p.shape).astype(p.dtype)
    return norm


def _perturbed(bn: Module) -> Module:
    """A BatchNorm with non-trivial gamma, beta and running statistics (seeded).

    The defaults (gamma 1, beta 0, mean 0, var 1) would hide a swapped or ignored one.
    """
    rng = numpy.random.default_rng(1234 + bn.num_features)
    if bn.affine:
        bn.weight.data[...] = rng.uniform(0.5, 1.5, bn.num_features)
    if bn.bias is not None:
        bn.bias.data[...] = rng.uniform(-0.5, 0.5, bn.num_features)
    if bn.track_running_stats:
        bn.running_mean[...] = rng.uniform(-0.5, 0.5, bn.num_features)
        bn.running_var[...] = rng.uniform(0.5, 2.0, bn.num_features)
        bn.num_batches_tracked[...] = 3
    return bn


def model_cases(batch_size: int = 4) -> list:
    """Every model of ``tinynet.models.MODELS`` (the studies' models), cross-entropy loss."""
    from .models import INPUT_SHAPES, MODELS
    return [Case(name, build, (batch_size,) + tuple(INPUT_SHAPES.get(name, (1, 28, 28))),
                 "cross_entropy") for name, build in MODELS.items()]


def check_case(case: Case, dtype=("float64", "float32"), train=(True, False),
               seed: int = 0) -> ParityReport:
    """:func:`compare` on ``case``: its model built with the global generator seeded."""
    from .random import manual_seed
    rng = get_rng_state()
    try:
        manual_seed(seed)
        model = case.build()
    finally:
        set_rng_state(rng)
    x, target = case.batch(seed)
    return compare(model, x, target, case.loss, dtype=dtype, train=train, name=case.name,
                   seed=seed)


# --------------------------------------------------------------------------- command
# Optimizer settings of the trajectory checks: ``(name, hyper-parameters)``.
TRAJECTORY_OPTIMIZERS = [
    ("sgd", {"lr": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "dampening": 0.1}),
    ("sgd", {"lr": 0.05, "momentum": 0.9, "nesterov": True, "weight_decay": 1e-4}),
    ("adam", {"lr": 1e-3}),
    ("adam", {"lr": 1e-3, "betas": (0.8, 0.99), "weight_decay": 1e-4}),
]


def _dropout_mlp() -> Sequential:
    """The base MLP with Dropout(0.2) after each hidden ReLU (trajectories with masks)."""
    L = _layers
    return Sequential(L.Flatten(), L.Linear(784, 512), L.ReLU(), L.Dropout(0.2),
                      L.Linear(512, 512), L.ReLU(), L.Dropout(0.2), L.Linear(512, 10))


def _trajectory_plan() -> list:
    """``(name, builder, optimizer settings)`` of the command's trajectory checks."""
    from .models import MODELS
    sgd_momentum = [TRAJECTORY_OPTIMIZERS[1]]
    plan = [("base", MODELS["base"], TRAJECTORY_OPTIMIZERS)]
    if "simplecnn" in MODELS and hasattr(_layers, "Conv2d"):
        plan.append(("simplecnn", MODELS["simplecnn"],
                     [TRAJECTORY_OPTIMIZERS[i] for i in (3, 4)]))
    if "bn" in MODELS and hasattr(_layers, "BatchNorm1d"):
        plan.append(("bn", MODELS["bn"], sgd_momentum + [TRAJECTORY_OPTIMIZERS[4]]))
    plan.append(("base + Dropout(0.2)", _dropout_mlp, sgd_momentum))
    return plan


def _threads(requested: int | None) -> int:
    """Threads for torch: as asked, else what NumPy's BLAS was told, else every core."""
    if requested:
        return int(requested)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinynet parity",
        description="Compare tinynet with PyTorch: every layer type in several "
                    "configurations and every study model (output, loss, dLoss/dx, every "
                    "parameter gradient and buffer; float64 and float32; train and eval "
                    "mode), then training trajectories of the base MLP, SimpleCNN, the BN "
                    "MLP and an MLP with Dropout on real Fashion-MNIST batches. Prints one "
                    "table; exits 1 if any difference is above its tolerance.")
    p.add_argument("--steps", type=int, default=50, help="training steps per trajectory "
                   "(default 50)")
    p.add_argument("--batch-size", type=int, default=64,
                   help="Fashion-MNIST batch size of the trajectories (default 64)")
    p.add_argument("--model-batch", type=int, default=16,
                   help="batch size of the single-step model checks (default 16)")
    p.add_argument("--data", default="fashion-mnist", help="data set of the trajectories")
    p.add_argument("--data-root", default=None,
                   help="folder holding the data set's files (default: the usual search)")
    p.add_argument("--skip", action="append", default=[],
                   choices=["layers", "models", "trajectories"],
                   help="leave out a group of checks (repeatable)")
    p.add_argument("--threads", type=int, default=None,
                   help="torch threads (default: $OMP_NUM_THREADS, as NumPy's BLAS, else "
                        "every core)")
    p.add_argument("--every", action="store_true",
                   help="one line per compared tensor instead of per check")
    p.add_argument("--seed", type=int, default=0, help="seed of weights, inputs and masks")
    return p


def main(argv: list[str] | None = None) -> int:
    """``tinynet parity``: run every check, print one table, 0 if all within tolerance."""
    args = parser().parse_args(argv)
    if args.steps <= 0 or args.batch_size <= 0 or args.model_batch <= 1:
        raise TinynetError(f"tinynet parity: --steps and --batch-size must be positive and "
                           f"--model-batch at least 2, got {args.steps}, {args.batch_size}, "
                           f"{args.model_batch}")
    torch = _torch()
    threads = _threads(args.threads)
    torch.set_num_threads(threads)
    print(f"tinynet parity: torch {torch.__version__} ({threads} thread(s)), "
          f"numpy {numpy.__version__}; tolerances per tensor: "
          + ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items()), file=sys.stderr)
    report = ParityReport()
    start = time.perf_counter()

    def section(title: str, checks: list) -> None:
        t0 = time.perf_counter()
        for label, run in checks:
            part = run()
            report.extend(part)
            if not part.ok:
                print(f"  FAIL {label}", file=sys.stderr)
        print(f"{title}: {len(checks)} checks in {time.perf_counter() - t0:.1f} s",
              file=sys.stderr)

    if "layers" not in args.skip:
        section("layers", [(c.name, lambda c=c: check_case(c, seed=args.seed))
                           for c in layer_cases()])
    if "models" not in args.skip:
        section("models", [(c.name, lambda c=c: check_case(c, seed=args.seed))
                           for c in model_cases(args.model_batch)])
    if "trajectories" not in args.skip:
        from . import data
        images, labels = data.load(args.data, "train", root=args.data_root)
        need = args.steps * args.batch_size
        if images.shape[0] < need:
            raise TinynetError(f"tinynet parity: {args.steps} steps of {args.batch_size} need "
                               f"{need} images, {args.data} has {images.shape[0]}")
        batches = [(data.to_float(images[i:i + args.batch_size], "float64"),
                    labels[i:i + args.batch_size]) for i in range(0, need, args.batch_size)]
        checks = []
        for name, build, settings in _trajectory_plan():
            for optimizer, hyper in settings:
                for dt in ("float64", "float32"):
                    checks.append((f"{name} {optimizer} {dt}",
                                   lambda n=name, b=build, o=optimizer, h=hyper, d=dt:
                                   _seeded_trajectory(n, b, batches, o, h, d, args.seed)))
        section(f"trajectories ({args.steps} steps of {args.batch_size} {args.data} images, "
                f"no shuffling)", checks)
    report.notes.append(
        "max rel = max|tinynet - torch| / max|torch| per tensor; trajectories: worst per-step "
        "loss and final weights/buffers after the steps, tolerances "
        + "; ".join(f"{dt} " + ", ".join(f"{o} {t:g}" for o, t in v.items())
                    for dt, v in TRAJECTORY_TOLERANCES.items()))
    report.notes.append(f"total {time.perf_counter() - start:.1f} s")
    print(report.table(every=args.every))
    return 0 if report.ok else 1


def _seeded_trajectory(name, build, batches, optimizer, hyper, dtype, seed) -> ParityReport:
    from .random import manual_seed
    rng = get_rng_state()
    try:
        manual_seed(seed)
        model = build()
    finally:
        set_rng_state(rng)
    return trajectory(model, batches, optimizer, hyper, dtype=dtype, name=name,
                      seed=seed).report


if __name__ == "__main__":
    sys.exit(main())
