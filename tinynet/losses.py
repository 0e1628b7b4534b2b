"""Loss functions: ``loss = loss_fn(y, target)`` returns a float, ``dy = loss_fn.backward()``.

A loss ends the chain: its backward takes no upstream gradient (dL/dL = 1) and
returns dL/dy of the prediction's shape, which goes into ``model.backward``.
"""

from __future__ import annotations

from .backend import get_array_module
from .checks import check_finite, checks_enabled
from .errors import DTypeError, LabelError, ShapeError


class _Loss:
    def __init__(self, reduction: str = "mean") -> None:
        if reduction not in ("mean", "sum"):
            raise ValueError(f"reduction must be 'mean' or 'sum', got {reduction!r}")
        self.reduction = reduction
        self._cache = None

    def _cached(self):
        if self._cache is None:
            raise RuntimeError(f"{type(self).__name__}: backward called before the loss")
        return self._cache

    def __repr__(self) -> str:
        return f"{type(self).__name__}(reduction={self.reduction!r})"


class CrossEntropyLoss(_Loss):
    """Softmax cross-entropy on logits, as ``torch.nn.CrossEntropyLoss()``.

    Shapes: logits z ``(N, C)``, integer targets t ``(N,)`` in ``[0, C)``.

    Forward, with the max subtracted so exp never overflows (log-sum-exp)::

        m_n = max_c z[n, c]
        log p[n, c] = z[n, c] - m_n - log sum_k exp(z[n, k] - m_n)
        L = -(1/N) sum_n log p[n, t_n]                 (reduction="mean")

    Backward. For one sample, dL/dz_c = p_c - [c == t]: the softmax's Jacobian
    (diag(p) - p p^T) times the log's derivative -1/p_t on the target collapses to
    this. With the mean over N samples::

        dL/dz = (p - onehot(t)) / N                      (N, C)
    """

    def __call__(self, logits, target) -> float:
        if getattr(logits, "ndim", None) != 2:
            raise ShapeError(f"CrossEntropyLoss: got logits of shape "
                             f"{tuple(getattr(logits, 'shape', ()))}, expected (N, C)")
        n, c = logits.shape
        if getattr(target, "ndim", None) != 1 or target.shape[0] != n:
            raise ShapeError(f"CrossEntropyLoss: got targets of shape "
                             f"{tuple(getattr(target, 'shape', ()))}, expected ({n},) class "
                             f"indices for logits of shape ({n}, {c})")
        if target.dtype.kind not in "iu":
            raise DTypeError(f"CrossEntropyLoss: targets must be integer class indices, "
                             f"got dtype {target.dtype}")
        xp = get_array_module(logits)
        if n:
            lo, hi = int(target.min()), int(target.max())
            if lo < 0 or hi >= c:
                raise LabelError(f"CrossEntropyLoss: class labels must be in [0, {c}), "
                                 f"got values from {lo} to {hi}")
        if checks_enabled():
            check_finite(logits, "CrossEntropyLoss", "logits")
        z = logits - logits.max(axis=1, keepdims=True)
        e = xp.exp(z)
        s = e.sum(axis=1)
        rows = xp.arange(n)
        t = target.astype(xp.int64, copy=False)
        losses = xp.log(s) - z[rows, t]
        total = losses.sum()
        self._cache = (e, s, rows, t)
        return float(total / n) if self.reduction == "mean" else float(total)

    def backward(self):
        e, s, rows, t = self._cached()
        n = e.shape[0]
        scale = 1.0 / n if self.reduction == "mean" else 1.0
        dz = e * (scale / s)[:, None].astype(e.dtype, copy=False)
        dz[rows, t] -= e.dtype.type(scale)
        return dz


class MSELoss(_Loss):
    """Mean squared error, as ``torch.nn.MSELoss()``: L = (1/M) sum (y - t)^2 over all M elements.

    Backward: dL/dy = 2 (y - t) / M (without the 1/M for ``reduction="sum"``).
    """

    def __call__(self, y, target) -> float:
        if getattr(y, "shape", None) != getattr(target, "shape", None):
            raise ShapeError(f"MSELoss: prediction shape {tuple(getattr(y, 'shape', ()))} "
                             f"and target shape {tuple(getattr(target, 'shape', ()))} differ")
        if target.dtype != y.dtype:
            target = target.astype(y.dtype)
        diff = y - target
        total = (diff * diff).sum()
        self._cache = diff
        return float(total / diff.size) if self.reduction == "mean" else float(total)

    def backward(self):
        diff = self._cached()
        scale = 2.0 / diff.size if self.reduction == "mean" else 2.0
        return diff * diff.dtype.type(scale)
