"""Batch and layer normalisation: the reference kernels.

Both normalise x over some axes A to zero mean and unit variance, then scale and shift
by learned gamma (``weight``) and beta (``bias``). With M = the number of values each
mean is taken over::

    mu   = (1/M) sum_A x            var = (1/M) sum_A (x - mu)^2        (biased)
    xhat = (x - mu) s,  s = 1 / sqrt(var + eps)            y = gamma xhat + beta

* BatchNorm: x ``(N, C, *S)``, A = every axis but the channels (1), gamma ``(C,)``;
  at evaluation, mu and var are the running statistics instead (constants).
* LayerNorm: x ``(*, *normalized_shape)``, A = the last ``len(normalized_shape)`` axes,
  gamma of ``normalized_shape``; the statistics are always the sample's own.

Backward. Write g = dL/dxhat = gamma dy. Every x_k of a group moves xhat_m three ways:
directly (slope s), through mu (dmu/dx_k = 1/M, dxhat_m/dmu = -s) and through var
(dvar/dx_k = 2 (x_k - mu) / M, dxhat_m/dvar = -(x_m - mu) s^3 / 2). Adding the three::

    dL/dx_k = s (g_k - (1/M) sum_m g_m - xhat_k (1/M) sum_m g_m xhat_m)

and, summing over the axes gamma and beta are shared across::

    dL/dbeta = sum dy              dL/dgamma = sum dy * xhat

With fixed statistics (BatchNorm at evaluation) only the direct term is left: dx = g s.

Sums run in float64 (as PyTorch's CPU kernels accumulate them) and pairwise: in float32
a plain sum over M = 50,176 values (64 images of 28x28) would lose about four digits.
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ..backend import get_array_module


class NormCache(NamedTuple):
    """What the backward needs: xhat and s = 1/sqrt(var + eps) (broadcastable to x),
    gamma shaped to broadcast against x (or None), the axes of the statistics, the axes
    gamma is shared over, and whether the statistics came from the batch (then they
    carry a gradient) or were fixed."""

    xhat: Any
    inv_std: Any
    gamma: Any
    stat_axes: tuple
    param_axes: tuple
    batch_stats: bool
    mean: Any = None          # (C,) batch mean and biased variance, for the running stats
    var: Any = None


def _sum(a, axes: tuple, keepdims: bool = False):
    """Sum over ``axes`` in float64, the summed axes made the last, contiguous one first:
    NumPy then adds them pairwise (rounding error ~log2(M) eps rather than M eps, which
    matters for a channel of 50,176 values)."""
    xp = get_array_module(a)
    kept = [i for i in range(a.ndim) if i not in axes]
    rows = xp.ascontiguousarray(a.transpose(kept + list(axes)))
    total = rows.reshape(rows.shape[:len(kept)] + (-1,)).sum(axis=-1, dtype=xp.float64)
    if keepdims:
        total = total.reshape(tuple(1 if i in axes else a.shape[i] for i in range(a.ndim)))
    return total.astype(a.dtype)


def _mean(a, axes: tuple):
    """Mean over ``axes``, kept so it broadcasts back (``_sum`` divided by their count)."""
    count = 1
    for i in axes:
        count *= a.shape[i]
    return _sum(a, axes, keepdims=True) / count


def normalize(x, axes: tuple, eps: float):
    """``(xhat, s, mu, var)``: x standardised over ``axes`` (mu, var, s keep those axes).

    The mean of the centred values is taken once more and removed: it is 0 in exact
    arithmetic, and in floating point it is the rounding error of mu, which would
    otherwise be amplified by |mu| / std in xhat (the corrected two-pass algorithm of
    Chan, Golub and LeVeque). xhat is then exact to rounding even when |mu| >> std.
    """
    xp = get_array_module(x)
    mu = _mean(x, axes)
    centred = x - mu
    residual = _mean(centred, axes)                           # mu's rounding error
    centred = centred - residual
    var = _mean(centred * centred, axes)                      # biased: divided by M
    inv_std = 1 / xp.sqrt(var + eps)
    return centred * inv_std, inv_std, mu + residual, var


def normalize_backward(g, xhat, inv_std, axes: tuple):
    """dL/dx of xhat = normalize(x) over ``axes``, given g = dL/dxhat (the docstring above)."""
    return inv_std * (g - _mean(g, axes) - xhat * _mean(g * xhat, axes))


def _affine(xhat, gamma, bias, shape: tuple):
    """y = gamma xhat + beta, gamma already in broadcast shape, beta reshaped to ``shape``."""
    y = xhat if gamma is None else xhat * gamma
    return y if bias is None else y + bias.reshape(shape)


def batch_norm_forward(x, weight=None, bias=None, eps: float = 1e-5,
                       running_mean=None, running_var=None):
    """Batch normalisation of x ``(N, C, *S)`` per channel.

    With ``running_mean`` / ``running_var`` ``(C,)`` given, they are the statistics
    (evaluation); without, the batch's own are computed (training) and returned in the
    cache (``cache.mean``, ``cache.var``, shape ``(C,)``) for the layer's running update.
    Returns ``(y, cache)``, y of x's shape.
    """
    xp = get_array_module(x)
    axes = (0,) + tuple(range(2, x.ndim))                     # all but the channels
    shape = (1, -1) + (1,) * (x.ndim - 2)                     # (C,) -> (1, C, 1, ...)
    gamma = None if weight is None else weight.reshape(shape)
    if running_mean is None:
        xhat, inv_std, mu, var = normalize(x, axes, eps)
        cache = NormCache(xhat, inv_std, gamma, axes, axes, True,
                          mu.reshape(-1), var.reshape(-1))
    else:
        inv_std = (1 / xp.sqrt(running_var + eps)).reshape(shape)
        xhat = (x - running_mean.reshape(shape)) * inv_std
        cache = NormCache(xhat, inv_std, gamma, axes, axes, False)
    return _affine(xhat, gamma, bias, shape), cache


def layer_norm_forward(x, normalized_ndim: int, weight=None, bias=None, eps: float = 1e-5):
    """Layer normalisation of x ``(*, *normalized_shape)`` over its last ``normalized_ndim``
    axes; weight and bias have ``normalized_shape``. Returns ``(y, cache)``."""
    stat_axes = tuple(range(x.ndim - normalized_ndim, x.ndim))
    xhat, inv_std, _, _ = normalize(x, stat_axes, eps)
    param_axes = tuple(range(x.ndim - normalized_ndim))      # gamma is shared over these
    cache = NormCache(xhat, inv_std, weight, stat_axes, param_axes, True)
    return _affine(xhat, weight, bias, x.shape[x.ndim - normalized_ndim:]), cache


def norm_backward(dy, cache: NormCache, input_grad: bool = True):
    """Gradients of ``batch_norm_forward`` or ``layer_norm_forward``: ``(dx, dgamma, dbeta)``.

    dx has dy's shape (None if not ``input_grad``); dgamma and dbeta have gamma's shape
    (None when the layer has no weight/bias: their sums are cheap, the layer drops them).
    """
    xhat, inv_std, gamma, stat_axes, param_axes, batch_stats = cache[:6]
    dbeta = _sum(dy, param_axes)                              # sum dy
    dgamma = _sum(dy * xhat, param_axes)                      # sum dy * xhat
    if not input_grad:
        return None, dgamma, dbeta
    g = dy if gamma is None else dy * gamma                   # dL/dxhat
    if batch_stats:
        dx = normalize_backward(g, xhat, inv_std, stat_axes)
    else:
        dx = g * inv_std
    return dx, dgamma, dbeta
