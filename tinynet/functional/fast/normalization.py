"""Fast batch normalisation: the same results as the reference, in fewer passes.

Same functions, arguments and results as :mod:`tinynet.functional.normalization` (read
that first), for batch statistics and fixed ones alike; LayerNorm runs the reference.
What changes:

* The maths runs on a "frame" of the data in which every element-wise pass is over a
  contiguous array and every per-channel sum is fast: ``(M, C)`` rows for ``(N, C)`` and
  for a channels-last ``(N, C, H, W)`` (the fast Conv2d's output, viewed without a copy),
  ``(N, C, S)`` columns otherwise. Element-wise passes over a transposed 4-D view with
  ``(1, C, 1, 1)`` broadcasts were measured ~2x slower than on the frame.
* Per-channel sums are products with a vector of ones (BLAS, ~10x faster than NumPy's
  axis reductions here), taken per "unit" (a sample, or a block of rows) and added in
  float64 in a fixed order, so the results do not depend on the thread count.
* Three passes for the statistics and output, two for the backward, each written into
  preallocated buffers and split over tinynet's CPU threads (:mod:`.threads`).
* In a channels-last frame with few channels, a per-channel vector is tiled along the
  row so NumPy's inner loops are long (:class:`_Channels`): a BatchNorm2d 10-15 %
  faster, the ConvBN step 1-9 % (docs/benchmarks.md).
"""

from __future__ import annotations

from typing import Any, NamedTuple

from ...backend import get_array_module
from .. import normalization as reference
from .layout import is_channels_last
from .threads import ELEMENT_GRAIN, parallel_for


class FastNormCache(NamedTuple):
    """The fast kernels' cache: xhat in its frame, s, gamma (C,), the frame kind, x's
    shape, whether the statistics came from the batch; mean and var (C,) as the
    reference's cache has them, for the layer's running statistics."""

    xhat: Any
    inv_std: Any
    gamma: Any
    kind: str
    x_shape: tuple
    batch_stats: bool
    mean: Any = None
    var: Any = None


def _frame(a, kind: str):
    if kind == "rows":
        return a if a.ndim == 2 else a.transpose(0, 2, 3, 1).reshape(-1, a.shape[1])
    return a.reshape(a.shape[0], a.shape[1], -1)


def _unframe(f, kind: str, shape: tuple):
    if kind == "rows" and len(shape) == 4:
        n, c, h, w = shape
        return f.reshape(n, h, w, c).transpose(0, 3, 1, 2)
    return f.reshape(shape)


def _units(f, kind: str, n: int):
    """The frame cut into the units partial sums are taken over (a view): ``(U, R, C)``
    for rows (a sample's H*W rows; 8 blocks of a large (N, C); single rows of a small
    one), the frame itself ``(N, C, S)`` for columns."""
    if kind == "cols":
        return f
    c = f.shape[1]
    if f.shape[0] == n:                      # (N, C)
        if n < 64 or n % 8:
            return f.reshape(n, 1, c)
        return f.reshape(8, n // 8, c)
    return f.reshape(n, -1, c)               # (N*H*W, C) -> (N, H*W, C)


def _partial_sums(units, kind: str, out) -> None:
    """``out[u] =`` the per-channel sum of unit u, ``(U, C)``."""
    xp = get_array_module(units)
    if kind == "cols":
        out[...] = units.sum(axis=2)         # (U, C, S): contiguous last axis
    elif units.shape[1] == 1:
        out[...] = units[:, 0]
    else:
        out[...] = xp.matmul(xp.ones((units.shape[1],), dtype=units.dtype), units)


def _total(partials):
    """The units' partial sums added in float64, returned in their dtype, ``(C,)``."""
    xp = get_array_module(partials)
    return partials.sum(axis=0, dtype=xp.float64).astype(partials.dtype)


def _grain(units) -> int:
    per_unit = max(1, units[0].size) if units.shape[0] else 1
    return max(1, ELEMENT_GRAIN // per_unit)


# _Channels tiles a vector only for fewer channels than this (longer rows are long loops
# already) and at least this many elements (below, the tiling costs what it saves: the BN
# MLP's step was 7 % slower with its BatchNorm1d(512..64) at batch 64 tiled).
LONG_BELOW, LONG_FROM = 256, 1 << 16


class _Channels:
    """How a per-channel vector ``(C,)`` meets the units in the element-wise passes.

    Broadcasting ``(C,)`` over channels-last rows ``(U, R, C)`` makes NumPy's inner loop C
    elements long (32 for SimpleCNN's first BatchNorm2d), and the loop's overhead then
    costs as much as the arithmetic. So for contiguous rows with R > 1 each pass sees a
    2-D ``(U, R*C)`` view and the vector tiled R times: one inner loop per unit, the same
    operations on the same numbers (measured on 64x784x32 float32, one thread: x - mu
    0.53 against 0.79 ms; 64x196x64: 0.25 against 0.38 ms). Otherwise (columns, a single
    row per unit, a strided input) the arrays as they are and the vector reshaped to
    broadcast.
    """

    def __init__(self, units, kind: str, ub: tuple, *others) -> None:
        self.long = kind == "rows" and units.shape[1] > 1 and units.shape[2] < LONG_BELOW \
            and units.size >= LONG_FROM and all(a.flags.c_contiguous for a in (units, *others))
        self.reps, self.ub = units.shape[1], ub

    def vec(self, v):
        """``(C,)`` as the passes take it: tiled to ``(R*C,)``, or shaped to broadcast."""
        return get_array_module(v).tile(v, self.reps) if self.long else v.reshape(self.ub)

    def view(self, a):
        """A units-shaped array (or a range of one) as the passes take it (a view)."""
        return a.reshape(a.shape[0], -1) if self.long else a


def batch_norm_forward(x, weight=None, bias=None, eps: float = 1e-5,
                       running_mean=None, running_var=None):
    """``reference.batch_norm_forward`` on the frame (y keeps a channels-last layout)."""
    xp = get_array_module(x)
    if x.shape[0] == 0 or x.size == 0:
        return reference.batch_norm_forward(x, weight, bias, eps, running_mean, running_var)
    n, c = x.shape[0], x.shape[1]
    kind = "rows" if x.ndim == 2 or (x.ndim == 4 and is_channels_last(x)) else "cols"
    f = _frame(x, kind)
    ub = (1, 1, c) if kind == "rows" else (1, c, 1)          # broadcast over the units
    u = _units(f, kind, n)
    ch = _Channels(u, kind, ub)
    dtype = f.dtype
    if running_mean is not None:
        inv_std = 1.0 / xp.sqrt(running_var + dtype.type(eps))
        xhat_u = ((ch.view(u) - ch.vec(running_mean)) * ch.vec(inv_std)).reshape(u.shape)
        mean = var = None
    else:
        m = x.size // c
        grain = _grain(u)
        part = xp.empty((u.shape[0], c), dtype=dtype)
        parallel_for(xp, u.shape[0], lambda s, e: _partial_sums(u[s:e], kind, part[s:e]),
                     grain)
        mean = _total(part) / dtype.type(m)
        xhat_u = xp.empty(u.shape, dtype=dtype)
        part2 = xp.empty_like(part)

        mean_v = ch.vec(mean)

        def centre(s: int, e: int) -> None:
            xs = xhat_u[s:e]
            xp.subtract(ch.view(u[s:e]), mean_v, out=ch.view(xs))    # x - mu
            _partial_sums(xs, kind, part[s:e])
            _partial_sums(xs * xs, kind, part2[s:e])

        parallel_for(xp, u.shape[0], centre, grain)
        # The reference's correction of mu's rounding error r = mean(x - mu), taken from
        # the same pass: var = mean((x - mu)^2) - r^2 and xhat = (x - mu - r) s.
        residual = _total(part) / dtype.type(m)
        var = _total(part2) / dtype.type(m) - residual * residual
        mean = mean + residual
        inv_std = 1.0 / xp.sqrt(var + dtype.type(eps))
        inv_std_v, shift = ch.vec(inv_std), ch.vec(-residual * inv_std)

        def scale(s: int, e: int) -> None:
            xs = ch.view(xhat_u[s:e])
            xp.multiply(xs, inv_std_v, out=xs)
            xs += shift

        parallel_for(xp, u.shape[0], scale, grain)
    y_u = (ch.view(xhat_u) * ch.vec(weight)).reshape(u.shape) if weight is not None \
        else xhat_u.copy()
    if bias is not None:
        y_view = ch.view(y_u)
        y_view += ch.vec(bias)
    cache = FastNormCache(xhat_u, inv_std, weight, kind, tuple(x.shape),
                          running_mean is None, mean, var)
    return _unframe(y_u.reshape(f.shape), kind, tuple(x.shape)), cache


layer_norm_forward = reference.layer_norm_forward


def norm_backward(dy, cache, input_grad: bool = True):
    """``reference.norm_backward`` on the frame: dbeta = sum dy, dgamma = sum dy xhat,
    dx = (gamma s) (dy - dbeta/M - xhat dgamma/M) (batch statistics), dy gamma s (fixed)."""
    if not isinstance(cache, FastNormCache):
        return reference.norm_backward(dy, cache, input_grad)
    xp = get_array_module(dy)
    xhat_u, inv_std, gamma, kind, x_shape, batch_stats = cache[:6]
    n, c = x_shape[0], x_shape[1]
    f = _frame(dy, kind)           # a view when dy has x's layout, else one copy
    gu = _units(f, kind, n)
    ub = (1, 1, c) if kind == "rows" else (1, c, 1)
    ch = _Channels(xhat_u, kind, ub, gu)
    grain = _grain(xhat_u)
    pb = xp.empty((xhat_u.shape[0], c), dtype=dy.dtype)
    pg = xp.empty_like(pb)

    def stats(s: int, e: int) -> None:
        _partial_sums(gu[s:e], kind, pb[s:e])
        _partial_sums(gu[s:e] * xhat_u[s:e], kind, pg[s:e])

    parallel_for(xp, xhat_u.shape[0], stats, grain)
    dbeta, dgamma = _total(pb), _total(pg)
    if not input_grad:
        return None, dgamma, dbeta
    k = inv_std if gamma is None else gamma * inv_std
    if not batch_stats:
        return _unframe((ch.view(gu) * ch.vec(k)).reshape(f.shape), kind, x_shape), \
            dgamma, dbeta
    inv_m = dy.dtype.type(1.0 / (dy.size // c))
    kb, dgb, dbb = ch.vec(k), ch.vec(dgamma * inv_m), ch.vec(dbeta * inv_m)
    dx_u = xp.empty(xhat_u.shape, dtype=dy.dtype)

    def grad(s: int, e: int) -> None:
        d = ch.view(dx_u[s:e])
        xp.multiply(ch.view(xhat_u[s:e]), dgb, out=d)
        xp.subtract(ch.view(gu[s:e]), d, out=d)
        d -= dbb
        d *= kb

    parallel_for(xp, xhat_u.shape[0], grad, grain)
    return _unframe(dx_u.reshape(f.shape), kind, x_shape), dgamma, dbeta
