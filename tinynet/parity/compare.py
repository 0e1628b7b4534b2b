"""One forward/backward pass of a tinynet model and its PyTorch twin: :func:`compare`.

Both frameworks run the same batch from the same weights (the torch side first; every
``Dropout`` gets the same 0/1 mask in both); compared per tensor: the output, the loss,
dLoss/dx, every parameter gradient and every buffer after the pass. The tolerances are
in :mod:`tinynet.parity.tolerances`.
"""

from __future__ import annotations

import contextlib
import copy
import math

import numpy

from .. import layers as _layers
from ..backend import get_array_module, to_numpy
from ..errors import TinynetError
from ..kernels import use_kernels
from ..losses import CrossEntropyLoss, MSELoss
from ..parameter import Parameter
from ..module import Module
from .report import ParityReport, Row, difference
from .tolerances import FLOAT32_FLOOR_FACTOR, TOLERANCES
from .twins import to_torch, torch_module

__all__ = ["DropoutMasks", "array_module", "cast_model", "compare", "kernels_in_force",
           "loss_pair", "targets"]


def kernels_in_force(kernels: str | None) -> contextlib.AbstractContextManager:
    """``tinynet.use_kernels(kernels)``, or nothing when ``kernels`` is None."""
    return contextlib.nullcontext() if kernels is None else use_kernels(kernels)


def loss_pair(loss):
    """(tinynet loss, torch loss, kind) from "cross_entropy", "mse" or a tinynet loss object."""
    nn = torch_module().nn
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


def targets(target, kind: str, dtype: str):
    t = numpy.asarray(to_numpy(target))
    if kind == "cross_entropy":
        if t.dtype.kind not in "iu":
            raise TinynetError(f"compare: cross_entropy targets must be integer class "
                               f"indices, got dtype {t.dtype}")
        return t.astype(numpy.int64)
    return t.astype(dtype)


# --------------------------------------------------------------------------- dropout masks
class DropoutMasks:
    """Make every Dropout draw the same mask in both frameworks.

    A forward hook on each torch ``Dropout`` of the twin draws the 0/1 keep-mask of the
    input's shape from a seeded NumPy generator, hands it to the tinynet Dropout as
    ``next_mask`` and replaces torch's own output by ``x * keep / (1 - p)``. Run the
    torch forward first, then the tinynet one.
    """

    def __init__(self, model: Module, twin, seed: int = 0) -> None:
        torch = torch_module()
        self.generator = numpy.random.default_rng(seed)
        self.handles = []
        pairs = paired_modules(model, twin)
        for m, t in pairs:
            if isinstance(m, _layers.Dropout) and isinstance(t, (torch.nn.Dropout,
                                                                 torch.nn.Dropout2d)):
                self.handles.append(t.register_forward_hook(self._hook(m)))

    def _hook(self, layer):
        def hook(module, inputs, output):
            if not module.training or module.p == 0.0:
                return output
            torch = torch_module()
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


def paired_modules(model: Module, twin) -> list:
    tmods = dict(twin.named_modules())
    return [(m, tmods[name]) for name, m in model.named_modules() if name in tmods]


# --------------------------------------------------------------------------- compare
def _as_list(v) -> list:
    return list(v) if isinstance(v, (list, tuple)) else [v]


def cast_model(model: Module, dtype: str) -> Module:
    m = copy.deepcopy(model)
    return m.double() if dtype == "float64" else m.float()


def compare(model: Module, x, target, loss="cross_entropy", dtype=("float64", "float32"),
            train=(True, False), name: str | None = None, seed: int = 0,
            kernels: str | None = None) -> ParityReport:
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
        kernels: run tinynet on ``"reference"`` or ``"fast"`` kernels; None (the
            default): whatever is in force (``tinynet.get_kernels()``).

    Compared per (dtype, mode): the output, the loss, dLoss/dx, dLoss/dp for every
    parameter p and, after the pass, every buffer (BatchNorm running statistics updated
    by a train-mode forward). Each row carries the tolerance of its dtype
    (``TOLERANCES``).
    """
    torch = torch_module()
    name = name or type(model).__name__
    report = ParityReport()
    for dt in _as_list(dtype):
        dt = numpy.dtype(dt).name
        if dt not in TOLERANCES:
            raise TinynetError(f"compare: dtype must be float64 or float32, got {dt}")
        for mode in _as_list(train):
            m = cast_model(model, dt).train(bool(mode))
            with kernels_in_force(kernels):
                report.extend(_compare_once(torch, m, x, target, loss, dt, name,
                                            "train" if mode else "eval", seed))
    return report


def _torch_pass(torch, twin, m: Module, x_host, t_host, torch_loss, seed: int) -> dict:
    """One forward/backward of ``twin``: every compared tensor, by row name."""
    masks = DropoutMasks(m, twin, seed)
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


def array_module(m: Module):
    """The array module of ``m``'s parameters or buffers (NumPy, CuPy, the stand-in)."""
    for a in list(m.parameters()) + list(m.buffers()):
        if a is not None:
            return get_array_module(a.data if isinstance(a, Parameter) else a)
    return numpy


def _tinynet_pass(m: Module, x_host, t_host, loss_fn) -> dict:
    xp = array_module(m)
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
    loss_fn, torch_loss, kind = loss_pair(loss)
    loss_fn = copy.copy(loss_fn)
    x_host = numpy.asarray(to_numpy(x)).astype(dt)
    t_host = targets(target, kind, dt)
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
                        raised=tol > TOLERANCES[dt], reference=torch_err))
    return ParityReport(rows)
