"""Losses: ``loss = loss_fn(y, target)``, then ``dy = loss_fn.backward()``.

A loss ends the chain: its backward starts from dL/dL = 1 and returns dL/dy of the
prediction's shape, which goes into ``model.backward``. With ``reduction="mean"`` or
``"sum"`` the loss is a Python float; with ``"none"`` it is an array of per-element
losses, and ``backward(grad)`` takes their gradient (an array of that shape), as
PyTorch's ``loss.backward(grad)`` does for a non-scalar loss.

Constructors take PyTorch's arguments in PyTorch's order, the deprecated
``size_average`` and ``reduce`` included (mapped to ``reduction`` as PyTorch maps them).
The maths, derived, is :mod:`tinynet.functional.loss`.
"""

from __future__ import annotations

import numpy

from . import kernels
from .backend import get_array_module, to_numpy
from .checks import check_finite, checks_enabled
from .errors import ArgumentError, DTypeError, LabelError, ShapeError
from .functional.loss import REDUCTIONS


def _legacy_reduction(size_average, reduce, reduction: str) -> str:
    """PyTorch's mapping of the deprecated arguments: reduce=False -> "none",
    size_average=False -> "sum", otherwise "mean"; ``reduction`` when both are None."""
    if size_average is None and reduce is None:
        return reduction
    size_average = True if size_average is None else bool(size_average)
    reduce = True if reduce is None else bool(reduce)
    if not reduce:
        return "none"
    return "mean" if size_average else "sum"


def _shape(a) -> tuple:
    return tuple(getattr(a, "shape", ()))


def _first_array(cache):
    """The first array in a kernel's cache (nested tuples searched in order): it lives
    where the prediction did, so dL/dloss is made there too (a GPU array on a GPU)."""
    items = list(cache) if isinstance(cache, (tuple, list)) else [cache]
    while items:
        item = items.pop(0)
        if isinstance(item, (tuple, list)):
            items[:0] = list(item)
        elif hasattr(item, "shape") and hasattr(item, "dtype"):
            return item
    return None


class _Loss:
    """Reduction, the kernel set of the last call, and the "call first" guard."""

    kernel = ""

    def __init__(self, size_average=None, reduce=None, reduction: str = "mean") -> None:
        reduction = _legacy_reduction(size_average, reduce, reduction)
        if reduction not in REDUCTIONS:
            raise ArgumentError(f"{type(self).__name__}: reduction must be one of "
                                f"{', '.join(map(repr, REDUCTIONS))}, got {reduction!r}")
        self.reduction = reduction
        self._cache = None
        self._kernels = None
        self._out_shape = None
        self._dtype = None

    def _check_prediction(self, y, what: str = "input"):
        name = type(self).__name__
        if not hasattr(y, "dtype") or not hasattr(y, "shape"):
            raise ShapeError(f"{name}: expected an array as {what}, got {type(y).__name__}")
        if y.dtype.kind != "f":
            raise DTypeError(f"{name}: got {what} of dtype {y.dtype}, expected a "
                             f"floating-point dtype (float32 or float64)")
        if checks_enabled():
            check_finite(y, name, what)

    def _as_array(self, value, like, name: str):
        """A weight given as a NumPy/CuPy array, a torch tensor or a list, on like's
        device and in its dtype."""
        if value is None:
            return None
        xp = get_array_module(like)
        if hasattr(value, "detach"):
            value = to_numpy(value)
        if xp is numpy or isinstance(value, (list, tuple)):
            value = numpy.asarray(value)
        arr = xp.asarray(value)
        if arr.dtype.kind not in "fiu":
            raise DTypeError(f"{type(self).__name__}: {name} must be real numbers, got "
                             f"dtype {arr.dtype}")
        return arr.astype(like.dtype)

    def _run(self, *args):
        self._kernels = kernels.get_kernels()
        self._dtype = args[0].dtype                    # of the default dL/dloss
        loss, self._cache = getattr(kernels.ops(self._kernels), self.kernel + "_forward")(*args)
        self._out_shape = _shape(loss)
        if self.reduction == "none":
            return loss
        return float(loss)

    def backward(self, grad=None):
        """dL/dinput for the last call; ``grad`` = dL/dloss (1 by default; for
        ``reduction="none"`` an array of the per-element losses' shape, required)."""
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before the loss")
        if self.reduction == "none" and (self._out_shape or grad is not None):
            if grad is None or _shape(grad) != self._out_shape:
                raise ShapeError(f"{type(self).__name__}: reduction='none' gives one loss per "
                                 f"element, of shape {self._out_shape}; pass their gradient "
                                 f"as backward(grad) with that shape, got {_shape(grad)}")
        elif grad is None:
            grad = 1.0 if self.reduction != "none" else \
                get_array_module(_first_array(self._cache)).ones((), dtype=self._dtype)
        backward = getattr(kernels.ops(self._kernels), self.kernel + "_backward")
        return backward(self._kernel_grad(grad), self._cache)

    def _kernel_grad(self, grad):
        """dL/dloss as the kernel's loss has it (subclasses reshape unbatched ones)."""
        return grad

    def extra_repr(self) -> str:
        return f"reduction={self.reduction!r}"

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.extra_repr()})"


class _ClassLoss(_Loss):
    """Shared by CrossEntropyLoss and NLLLoss: class-index targets, weights, ignore_index,
    unbatched ``(C,)`` and K-dimensional ``(N, C, d1, ...)`` inputs."""

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean") -> None:
        super().__init__(size_average, reduce, reduction)
        self.weight = weight
        self.ignore_index = int(ignore_index)
        self._unbatched = False

    def _targets(self, z, target):
        """Validate; return ``(z, target, weight)`` batched, classes on axis 1."""
        name = type(self).__name__
        self._check_prediction(z, self.input_name)
        if z.ndim == 0:
            raise ShapeError(f"{name}: got input of shape (), expected (N, C), (C,) or "
                             f"(N, C, d1, ...)")
        if not hasattr(target, "shape") or not hasattr(target, "dtype"):
            raise ShapeError(f"{name}: expected an array of targets, got {type(target).__name__}")
        c = z.shape[1] if z.ndim > 1 else z.shape[0]
        batched = z.ndim > 1
        expected = ((z.shape[0],) + _shape(z)[2:]) if batched else ()
        if target.dtype.kind == "f":
            if _shape(target) != _shape(z):
                raise DTypeError(f"{name}: got targets of dtype {target.dtype} and shape "
                                 f"{_shape(target)}: expected integer class indices of shape "
                                 f"{expected} or float class probabilities of the input's "
                                 f"shape {_shape(z)}")
        elif target.dtype.kind not in "iu":
            raise DTypeError(f"{name}: targets must be integer class indices or float class "
                             f"probabilities, got dtype {target.dtype}")
        elif _shape(target) != expected:
            raise ShapeError(f"{name}: got targets of shape {_shape(target)}, expected "
                             f"{expected} class indices for input of shape {_shape(z)}")
        else:
            self._check_labels(target, c)
        self._unbatched = not batched
        if self._unbatched:
            z, target = z[None], target[None]
        weight = self._as_array(self.weight, z, "weight")
        if weight is not None and _shape(weight) != (c,):
            raise ShapeError(f"{name}: weight must have one entry per class, shape ({c},), "
                             f"got {_shape(weight)}")
        return z, target, weight

    def _check_labels(self, target, c: int) -> None:
        if target.size == 0:
            return
        lo, hi = int(target.min()), int(target.max())
        if lo < 0 or hi >= c:                      # then look again without ignore_index
            picked = target[target != self.ignore_index]
            if picked.size == 0:
                return
            lo, hi = int(picked.min()), int(picked.max())
            if lo < 0 or hi >= c:
                raise LabelError(f"{type(self).__name__}: class labels must be in [0, {c}), "
                                 f"got values from {lo} to {hi} (ignore_index="
                                 f"{self.ignore_index} marks a target to skip)")

    def _kernel_grad(self, grad):
        return grad.reshape(1) if self._unbatched and self.reduction == "none" else grad

    def backward(self, grad=None):
        dz = super().backward(grad)
        return dz[0] if self._unbatched else dz

    def _finish(self, loss):
        """An unbatched input's per-element loss is one value, shape ()."""
        if self._unbatched and self.reduction == "none":
            self._out_shape = ()
            return loss[0]
        return loss


class CrossEntropyLoss(_ClassLoss):
    """``CrossEntropyLoss(weight=None, size_average=None, ignore_index=-100, reduce=None,
    reduction="mean", label_smoothing=0.0)``: softmax cross-entropy on logits.

    Input ``(N, C)``, ``(C,)`` or ``(N, C, d1, ...)``; targets class indices ``(N,)`` /
    ``()`` / ``(N, d1, ...)`` in ``[0, C)`` (or ``ignore_index``), or class probabilities
    of the input's shape. ``weight`` ``(C,)`` rescales each class; ``label_smoothing``
    mixes the target with the uniform distribution. Derivation: dL/dz = p sum(A) - A for
    the target weights A, :func:`tinynet.functional.loss.cross_entropy_backward`.
    """

    kernel = "cross_entropy"
    input_name = "logits"

    def __init__(self, weight=None, size_average=None, ignore_index: int = -100, reduce=None,
                 reduction: str = "mean", label_smoothing: float = 0.0) -> None:
        super().__init__(weight, size_average, ignore_index, reduce, reduction)
        try:
            smoothing = float(label_smoothing)
        except (TypeError, ValueError):
            smoothing = float("nan")
        if not 0.0 <= smoothing <= 1.0:
            raise ArgumentError(f"CrossEntropyLoss: label_smoothing must be in [0, 1], got "
                                f"{label_smoothing!r}")
        self.label_smoothing = smoothing

    def __call__(self, logits, target):
        z, t, weight = self._targets(logits, target)
        loss = self._run(z, t, weight, self.ignore_index, self.reduction, self.label_smoothing)
        return self._finish(loss)

    def extra_repr(self) -> str:
        s = super().extra_repr()
        if self.ignore_index != -100:
            s += f", ignore_index={self.ignore_index}"
        if self.label_smoothing:
            s += f", label_smoothing={self.label_smoothing}"
        return s


class NLLLoss(_ClassLoss):
    """``NLLLoss(weight=None, size_average=None, ignore_index=-100, reduce=None,
    reduction="mean")``: the negative log-likelihood of log-probabilities (LogSoftmax's
    output), loss = -w[t] logp[t]. Shapes as CrossEntropyLoss (class indices only)."""

    kernel = "nll_loss"
    input_name = "log-probabilities"

    def __call__(self, logp, target):
        if getattr(target, "dtype", None) is not None and target.dtype.kind == "f":
            raise DTypeError("NLLLoss: targets must be integer class indices, got dtype "
                             f"{target.dtype}")
        z, t, weight = self._targets(logp, target)
        return self._finish(self._run(z, t, weight, self.ignore_index, self.reduction))


class _PairLoss(_Loss):
    """Element-wise losses of a prediction and a target of the same shape."""

    def _pair(self, y, target):
        name = type(self).__name__
        self._check_prediction(y)
        if _shape(y) != _shape(target):
            raise ShapeError(f"{name}: prediction shape {_shape(y)} and target shape "
                             f"{_shape(target)} differ")
        if getattr(target, "dtype", numpy.dtype("O")).kind not in "fiub":
            raise DTypeError(f"{name}: targets must be real numbers, got dtype "
                             f"{getattr(target, 'dtype', type(target).__name__)}")
        return target.astype(y.dtype) if target.dtype != y.dtype else target


class MSELoss(_PairLoss):
    """``MSELoss(size_average=None, reduce=None, reduction="mean")``: (y - t)^2 per element;
    dL/dy = 2 (y - t), over M elements for the mean."""

    kernel = "mse_loss"

    def __call__(self, y, target):
        return self._run(y, self._pair(y, target), self.reduction)


class L1Loss(_PairLoss):
    """``L1Loss(size_average=None, reduce=None, reduction="mean")``: |y - t| per element;
    dL/dy = sign(y - t) (0 where equal, as PyTorch)."""

    kernel = "l1_loss"

    def __call__(self, y, target):
        return self._run(y, self._pair(y, target), self.reduction)


class BCEWithLogitsLoss(_PairLoss):
    """``BCEWithLogitsLoss(weight=None, size_average=None, reduce=None, reduction="mean",
    pos_weight=None)``: binary cross-entropy on logits, computed without overflow.

    ``weight`` broadcasts to the input; ``pos_weight`` weighs the positive term and
    broadcasts along the last axis (one entry per class).
    """

    kernel = "bce_with_logits"

    def __init__(self, weight=None, size_average=None, reduce=None, reduction: str = "mean",
                 pos_weight=None) -> None:
        super().__init__(size_average, reduce, reduction)
        self.weight = weight
        self.pos_weight = pos_weight

    def __call__(self, x, target):
        t = self._pair(x, target)
        weight = self._as_array(self.weight, x, "weight")
        pos_weight = self._as_array(self.pos_weight, x, "pos_weight")
        for name, w in (("weight", weight), ("pos_weight", pos_weight)):
            if w is not None:
                try:
                    numpy.broadcast_shapes(_shape(w), _shape(x))
                except ValueError:
                    raise ShapeError(f"BCEWithLogitsLoss: {name} of shape {_shape(w)} does not "
                                     f"broadcast to the input's shape {_shape(x)}") from None
        return self._run(x, t, weight, pos_weight, self.reduction)
