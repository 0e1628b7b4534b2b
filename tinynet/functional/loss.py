"""Losses: the reference kernels.

A loss ends the chain: ``*_forward`` returns ``(loss, cache)``, the loss as an array
(0-d for ``reduction="mean"`` or ``"sum"``, one value per element for ``"none"``), and
``*_backward(dloss, cache)`` returns dL/dinput given dloss = dL/dloss (1 for a loss that
is the final objective; an array of the loss's shape for ``"none"``).

Reductions: ``"sum"`` adds the per-element losses, ``"mean"`` divides that sum by the
count of elements (for the class losses with weights: by the summed weights of the
targets, as PyTorch), ``"none"`` keeps them. The mean over nothing is NaN, as in PyTorch.
So every backward starts from the per-element gradient scale ``g``: dloss times 1, or
times 1/count, or dloss's own entries.
"""

from __future__ import annotations

from ..backend import get_array_module
from .activation import log_softmax_forward, sigmoid

REDUCTIONS = ("none", "mean", "sum")


def reduce(losses, reduction: str, denominator=None):
    """Sum, mean (over ``denominator``, default the count) or none of per-element losses.
    Sums are accumulated in float64."""
    xp = get_array_module(losses)
    if reduction == "none":
        return losses
    total = losses.sum(dtype=xp.float64)
    if reduction == "sum":
        return total.astype(losses.dtype)
    count = losses.size if denominator is None else float(denominator)
    if count == 0:                                             # the mean of nothing
        return xp.full((), float("nan"), dtype=losses.dtype)
    return (total / count).astype(losses.dtype)


def gradient_scale(dloss, reduction: str, count, dtype):
    """The per-element gradient g: dloss (per element for "none"), or dloss / count."""
    if reduction == "none":
        return dloss
    if reduction == "sum":
        return dtype.type(float(dloss))
    return dtype.type(float(dloss) / float(count)) if float(count) else dtype.type(0)


# ----------------------------------------------------------------------- class losses
def class_target_weights(target, num_classes: int, dtype, weight=None,
                         ignore_index: int = -100, label_smoothing: float = 0.0):
    """The matrix A ``(M, C)`` with loss_m = -sum_c A[m, c] log p[m, c].

    Class indices t ``(M,)``: A[m, c] = w_c ((1 - s) [c == t_m] + s / C), s the label
    smoothing, rows of ignored targets zero; the mean's denominator is sum_m w_{t_m}
    over the targets not ignored. Probabilities t ``(M, C)``: A = w (t (1 - s) + s / C),
    and the mean divides by M. ``w`` is ``weight`` ``(C,)`` or all ones.
    Returns ``(A, denominator)``.
    """
    xp = get_array_module(target)
    w = xp.ones((num_classes,), dtype=dtype) if weight is None else weight.astype(dtype)
    s = label_smoothing
    if target.ndim == 2:                                       # probabilities (M, C)
        return (target.astype(dtype) * (1 - s) + s / num_classes) * w, target.shape[0]
    valid = target != ignore_index                             # (M,)
    safe = xp.where(valid, target, 0)                          # ignored rows index class 0
    onehot = (safe[:, None] == xp.arange(num_classes)[None, :]).astype(dtype)
    a = ((1 - s) * onehot + s / num_classes) * w * valid[:, None]
    denominator = (w[safe] * valid).sum()
    return a, denominator


def _as_rows(x):
    """``(N, C, d1, ...)`` -> ``(N*d1*..., C)``, the classes moved last; and that shape."""
    moved = get_array_module(x).moveaxis(x, 1, -1) if x.ndim > 2 else x
    return moved.reshape(-1, moved.shape[-1]), moved.shape


def _from_rows(rows, shape, ndim: int):
    """The way back from ``_as_rows``: rows -> ``(N, C, d1, ...)``."""
    a = rows.reshape(shape)
    return get_array_module(a).moveaxis(a, -1, 1) if ndim > 2 else a


def cross_entropy_forward(logits, target, weight=None, ignore_index: int = -100,
                          reduction: str = "mean", label_smoothing: float = 0.0):
    """Softmax cross-entropy, as ``torch.nn.functional.cross_entropy``.

    logits ``(N, C)`` or ``(N, C, d1, ...)``; target class indices ``(N,)`` /
    ``(N, d1, ...)`` or class probabilities of logits' shape. With log p = log_softmax(z)
    over the classes and A from ``class_target_weights``::

        loss_m = -sum_c A[m, c] log p[m, c]
    """
    z, shape = _as_rows(logits)                               # (M, C)
    t = _as_rows(target)[0] if target.shape == logits.shape else target.reshape(-1)
    logp, (p, _) = log_softmax_forward(z, 1)
    a, denominator = class_target_weights(t, z.shape[1], z.dtype, weight, ignore_index,
                                          label_smoothing)
    losses = -(a * logp).sum(axis=1)                           # (M,)
    out_shape = shape[:-1] if logits.ndim > 2 else shape[:1]
    loss = reduce(losses.reshape(out_shape), reduction, denominator)
    return loss, (p, a, denominator, reduction, shape, logits.ndim)


def cross_entropy_backward(dloss, cache):
    """d loss_m / d z_k = -sum_c A_c ([c == k] - p_k) = p_k sum_c A_c - A_k, since
    d log p_c / d z_k = [c == k] - p_k. Times the per-element scale g of the reduction."""
    p, a, denominator, reduction, shape, ndim = cache
    g = gradient_scale(dloss, reduction, denominator, p.dtype)
    if reduction == "none":
        g = g.reshape(-1, 1)
    dz = (p * a.sum(axis=1, keepdims=True) - a) * g
    return _from_rows(dz, shape, ndim)


def nll_loss_forward(logp, target, weight=None, ignore_index: int = -100,
                     reduction: str = "mean"):
    """Negative log-likelihood of log-probabilities ``(N, C)`` / ``(N, C, d1, ...)``:
    loss_m = -w_{t_m} logp[m, t_m] (0 for ignored targets)."""
    rows, shape = _as_rows(logp)
    a, denominator = class_target_weights(target.reshape(-1), rows.shape[1], rows.dtype,
                                          weight, ignore_index)
    losses = -(a * rows).sum(axis=1)
    out_shape = shape[:-1] if logp.ndim > 2 else shape[:1]
    return reduce(losses.reshape(out_shape), reduction, denominator), \
        (a, denominator, reduction, shape, logp.ndim)


def nll_loss_backward(dloss, cache):
    """d loss_m / d logp[m, c] = -A[m, c] (only the target's entry, weighted)."""
    a, denominator, reduction, shape, ndim = cache
    g = gradient_scale(dloss, reduction, denominator, a.dtype)
    if reduction == "none":
        g = g.reshape(-1, 1)
    return _from_rows(-a * g, shape, ndim)


# ----------------------------------------------------------------------- regression
def mse_loss_forward(y, target, reduction: str = "mean"):
    """loss_k = (y_k - t_k)^2, element-wise (same shapes)."""
    diff = y - target
    return reduce(diff * diff, reduction), (diff, reduction)


def mse_loss_backward(dloss, cache):
    """d (y - t)^2 / dy = 2 (y - t)."""
    diff, reduction = cache
    return 2 * diff * gradient_scale(dloss, reduction, diff.size, diff.dtype)


def l1_loss_forward(y, target, reduction: str = "mean"):
    """loss_k = |y_k - t_k|."""
    xp = get_array_module(y)
    diff = y - target
    return reduce(xp.abs(diff), reduction), (diff, reduction)


def l1_loss_backward(dloss, cache):
    """d |y - t| / dy = sign(y - t) (0 where y = t, as PyTorch)."""
    xp = get_array_module(cache[0])
    diff, reduction = cache
    return xp.sign(diff) * gradient_scale(dloss, reduction, diff.size, diff.dtype)


def softplus(x):
    """log(1 + e^x) without overflow: max(x, 0) + log1p(e^-|x|)."""
    xp = get_array_module(x)
    return xp.maximum(x, 0) + xp.log1p(xp.exp(-xp.abs(x)))


def bce_with_logits_forward(x, target, weight=None, pos_weight=None, reduction: str = "mean"):
    """Binary cross-entropy on logits, as ``torch.nn.BCEWithLogitsLoss``.

    With s = sigmoid(x), log s = -softplus(-x) and log(1 - s) = -softplus(x), so::

        loss = -w [pw t log s + (1 - t) log(1 - s)] = w [pw t softplus(-x) + (1 - t) softplus(x)]

    ``weight`` w broadcasts to x; ``pos_weight`` pw broadcasts along the last axis.
    """
    pw = 1 if pos_weight is None else pos_weight
    losses = pw * target * softplus(-x) + (1 - target) * softplus(x)
    if weight is not None:
        losses = losses * weight
    cache = (sigmoid(x), target, weight, pw, reduction)
    return reduce(losses.astype(x.dtype), reduction), cache


def bce_with_logits_backward(dloss, cache):
    """d/dx: d log s/dx = 1 - s and d log(1 - s)/dx = -s, so
    dloss/dx = -w [pw t (1 - s) - (1 - t) s] = w [s (1 - t + pw t) - pw t]."""
    s, t, weight, pw, reduction = cache
    dx = s * (1 - t + pw * t) - pw * t
    if weight is not None:
        dx = dx * weight
    return (dx * gradient_scale(dloss, reduction, s.size, s.dtype)).astype(s.dtype)
