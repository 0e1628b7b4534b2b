"""Fast cross-entropy: the same results as the reference for the plain case.

Same functions, arguments and results as :mod:`tinynet.functional.loss` (read that
first). For ``(N, C)`` logits with class indices, no class weights, no ignored target and
no label smoothing, the target weights A of the reference are a one-hot matrix, so it is
never built: the loss picks ``log p[n, t_n]`` by index and the backward subtracts the
scale at ``(n, t_n)`` from ``p * scale``. Everything else runs the reference.
"""

from __future__ import annotations

from ...backend import get_array_module
from .. import loss as reference


def _plain(logits, target, weight, ignore_index, label_smoothing) -> bool:
    return (logits.ndim == 2 and target.ndim == 1 and weight is None
            and not label_smoothing and target.dtype.kind in "iu"
            and not bool((target == ignore_index).any()))


def cross_entropy_forward(logits, target, weight=None, ignore_index: int = -100,
                          reduction: str = "mean", label_smoothing: float = 0.0):
    """``reference.cross_entropy_forward``; the plain case without the one-hot matrix."""
    if not _plain(logits, target, weight, ignore_index, label_smoothing):
        return reference.cross_entropy_forward(logits, target, weight, ignore_index,
                                               reduction, label_smoothing)
    xp = get_array_module(logits)
    n = logits.shape[0]
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=1)                                   # (N,)
    rows = xp.arange(n)
    t = target.astype(xp.int64, copy=False)
    losses = xp.log(s) - z[rows, t]                     # -log p[n, t_n]
    return reference.reduce(losses, reduction), ("fast", e, s, rows, t, reduction)


def cross_entropy_backward(dloss, cache):
    """dz = (p - onehot(t)) g, p = e / s, written as ``e * (g / s)`` then ``-g`` at t."""
    if not (isinstance(cache[0], str) and cache[0] == "fast"):
        return reference.cross_entropy_backward(dloss, cache)
    _, e, s, rows, t, reduction = cache
    g = reference.gradient_scale(dloss, reduction, e.shape[0], e.dtype)   # scalar or (N,)
    dz = e * (g / s)[:, None]
    dz[rows, t] -= g
    return dz
