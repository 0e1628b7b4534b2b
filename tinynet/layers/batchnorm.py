"""BatchNorm1d and BatchNorm2d, as ``torch.nn.BatchNorm1d`` / ``torch.nn.BatchNorm2d``."""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ..checks import check_finite, checks_enabled
from ..errors import DTypeError, ShapeError
from ..functional.pool import is_channels_last
from ..module import Module
from ..parallel import ELEMENT_GRAIN, parallel_for
from ..parameter import Parameter


class _BatchNorm(Module):
    """Batch normalisation over every axis but the channel axis 1.

    Shapes: x ``(N, C, *S)``; ``M = N * prod(S)`` values per channel; gamma = ``weight``
    ``(C,)``, beta = ``bias`` ``(C,)``; buffers ``running_mean``, ``running_var`` ``(C,)``
    and ``num_batches_tracked`` (int64 scalar), as PyTorch's state_dict.

    Train mode, per channel c (sums over the M values of that channel)::

        mu = (1/M) sum x               var = (1/M) sum (x - mu)^2     (biased)
        xhat = (x - mu) / sqrt(var + eps)        y = gamma * xhat + beta
        running_mean <- (1 - momentum) running_mean + momentum mu
        running_var  <- (1 - momentum) running_var  + momentum var * M / (M - 1)  (unbiased)

    (``momentum=None`` gives the cumulative average, factor 1/num_batches_tracked.)
    Eval mode uses the running statistics instead of mu and var.

    Backward, train mode. y depends on x directly and through mu and var. With
    ``g = dL/dxhat = gamma * dy`` and ``s = 1/sqrt(var + eps)``::

        dxhat/dx_k, through mu:   -s/M;   through var: dvar/dx_k = 2 (x_k - mu)/M, and
        d xhat_m / d var = -(x_m - mu) s^3 / 2 = -xhat_m s^2 / 2, so
        dL/dx_k = s (g_k - (1/M) sum_m g_m - xhat_k (1/M) sum_m g_m xhat_m)

    and since ``sum g = gamma dbeta`` and ``sum g xhat = gamma dgamma``, the compact
    three-term form used here is::

        dbeta  = sum dy               dgamma = sum dy * xhat
        dx     = (gamma s) * (dy - dbeta / M - xhat * dgamma / M)

    Eval mode: ``dx = dy * gamma / sqrt(running_var + eps)`` (the statistics are
    constants). The cache is xhat and s (and gamma), nothing else.
    """

    _expected = ""
    _ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True,
                 dtype: str = "float32") -> None:
        super().__init__()
        if int(num_features) <= 0:
            raise ValueError(f"{type(self).__name__} needs num_features > 0, got {num_features}")
        self.num_features = int(num_features)
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        if self.affine:
            self.weight = Parameter(numpy.ones((num_features,), dtype=dtype))
            self.bias = Parameter(numpy.zeros((num_features,), dtype=dtype))
        else:
            self.weight = None
            self.bias = None
        if self.track_running_stats:
            self.register_buffer("running_mean", numpy.zeros((num_features,), dtype=dtype))
            self.register_buffer("running_var", numpy.ones((num_features,), dtype=dtype))
            self.register_buffer("num_batches_tracked", numpy.zeros((), dtype=numpy.int64))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._dtype = numpy.dtype(dtype)
        self._cache = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
            self.bias.data[...] = 0

    def _check(self, x):
        shape = getattr(x, "shape", None)
        if shape is None or len(shape) not in self._ndims or shape[1] != self.num_features:
            got = tuple(shape) if shape is not None else type(x).__name__
            raise ShapeError(f"{self.describe()}: got input of shape {got}, expected "
                             f"{self._expected.format(C=self.num_features)}")
        dtype = self.weight.data.dtype if self.affine else (
            self.running_mean.dtype if self.track_running_stats else x.dtype)
        if x.dtype != dtype or x.dtype.kind != "f":
            raise DTypeError(f"{self.describe()}: got {x.dtype} input, expected {dtype} "
                             f"(the layer's dtype; cast the input or the model)")
        if checks_enabled():
            check_finite(x, self.describe())

    # ------------------------------------------------------------------ layout
    # The maths runs on a "frame" of the data in which every element-wise pass is over a
    # contiguous array and every per-channel sum is fast:
    #   "rows":  (M, C): (N, C) itself, or a channels-last (N, C, H, W) (Conv2d's output)
    #            viewed as (N*H*W, C) without a copy; broadcast shape (1, C);
    #   "cols":  (N, C, S): anything else, reshaped; broadcast shape (1, C, 1).
    # Element-wise NumPy passes over a transposed 4-D view with (1, C, 1, 1) broadcasts
    # were measured ~2x slower than on the frame.
    def _frame(self, a, kind: str):
        c = self.num_features
        if kind == "rows":
            return a if a.ndim == 2 else a.transpose(0, 2, 3, 1).reshape(-1, c)
        return a.reshape(a.shape[0], c, -1)

    def _unframe(self, f, kind: str, shape: tuple):
        if kind == "rows" and len(shape) == 4:
            n, c, h, w = shape
            return f.reshape(n, h, w, c).transpose(0, 3, 1, 2)
        return f.reshape(shape)

    def _units(self, f, kind: str, n: int):
        """f's frame cut into the units its partial sums are taken over (a view).

        "rows" frames ``(M, C)`` become ``(U, R, C)``: ``(N, H*W, C)`` for a channels-last
        map, 8 blocks of N/8 rows for a large ``(N, C)``, single rows for a small one;
        "cols" frames ``(N, C, S)`` are their own samples. Every unit's partial sums are
        computed the same way whichever thread takes it, so the statistics do not depend
        on the thread count.
        """
        if kind == "cols":
            return f
        c = self.num_features
        if f.shape[0] == n:                      # (N, C)
            if n < 64 or n % 8:
                return f.reshape(n, 1, c)
            return f.reshape(8, n // 8, c)
        return f.reshape(n, -1, c)               # (N*H*W, C) -> (N, H*W, C)

    @staticmethod
    def _partial_sums(units, kind: str, out) -> None:
        """``out[u] = `` the per-channel sum of unit u, for a block of units, ``(U, C)``.

        Per unit the sum is a matrix product with a vector of ones (BLAS, ~10x faster
        than NumPy's axis reductions here).
        """
        xp = get_array_module(units)
        if kind == "cols":
            out[...] = units.sum(axis=2)        # (U, C, S): contiguous last axis
        elif units.shape[1] == 1:
            out[...] = units[:, 0]
        else:                                   # (U, C) results: the copy is small
            out[...] = xp.matmul(xp.ones((units.shape[1],), dtype=units.dtype), units)

    @staticmethod
    def _total(partials):
        """The units' partial sums added in float64 (as PyTorch's CPU kernels; float32
        sums over M values lose ~1e-4), returned in their dtype, ``(C,)``."""
        xp = get_array_module(partials)
        return partials.sum(axis=0, dtype=xp.float64).astype(partials.dtype)

    def _unit_bshape(self, kind: str) -> tuple:
        """The per-channel vectors' shape that broadcasts over ``_units``' arrays."""
        return (1, 1, self.num_features) if kind == "rows" else (1, self.num_features, 1)

    def _grain(self, units) -> int:
        """Units per thread's range: at least ``ELEMENT_GRAIN`` elements."""
        per_unit = max(1, units[0].size) if units.shape[0] else 1
        return max(1, ELEMENT_GRAIN // per_unit)

    def forward(self, x):
        self._check(x)
        xp = get_array_module(x)
        n = x.shape[0]
        kind = "rows" if x.ndim == 2 or (x.ndim == 4 and is_channels_last(x)) else "cols"
        f = self._frame(x, kind)
        bshape = (1, self.num_features) + ((1,) if kind == "cols" else ())
        m = x.size // self.num_features
        use_batch = self.training or not self.track_running_stats
        if use_batch:
            if m <= 1:
                raise ShapeError(f"{self.describe()}: expected more than 1 value per channel "
                                 f"when training, got input of shape {tuple(x.shape)}")
            y, xhat, inv_std, mean, var = self._normalize_batch(xp, f, kind, n, m)
            if self.training and self.track_running_stats:
                self._update_running(mean, var, m)
        else:
            inv_std = 1.0 / xp.sqrt(self.running_var + x.dtype.type(self.eps))
            xhat = (f - self.running_mean.reshape(bshape)) * inv_std.reshape(bshape)
            if self.affine:
                y = xhat * self.weight.data.reshape(bshape)
                y += self.bias.data.reshape(bshape)
            else:
                y = xhat.copy()
        self._cache = (xhat, inv_std, use_batch, tuple(x.shape), kind)
        return self._unframe(y, kind, tuple(x.shape))

    def _normalize_batch(self, xp, f, kind: str, n: int, m: int):
        """Train-mode statistics and output, in three passes over the units, each split
        over tinynet's threads: the sums for mu; x - mu and the sums of its squares; the
        scaling by s and the affine map. Returns ``(y, xhat, s, mu, var)`` (frames)."""
        u = self._units(f, kind, n)
        ub = self._unit_bshape(kind)
        grain = self._grain(u)
        dtype = f.dtype
        inv_m = dtype.type(1.0 / m)
        part = xp.empty((u.shape[0], self.num_features), dtype=dtype)
        parallel_for(xp, u.shape[0], lambda s, e: self._partial_sums(u[s:e], kind, part[s:e]),
                     grain)
        mean = self._total(part) * inv_m
        mb = mean.reshape(ub)
        xhat_u = xp.empty(u.shape, dtype=dtype)

        def centre(s: int, e: int) -> None:
            xs = xhat_u[s:e]
            xp.subtract(u[s:e], mb, out=xs)               # x - mu
            self._partial_sums(xs * xs, kind, part[s:e])

        parallel_for(xp, u.shape[0], centre, grain)
        var = self._total(part) * inv_m
        inv_std = 1.0 / xp.sqrt(var + dtype.type(self.eps))
        sb = inv_std.reshape(ub)
        y_u = xp.empty(u.shape, dtype=dtype) if self.affine else None
        gb = self.weight.data.reshape(ub) if self.affine else None
        bb = self.bias.data.reshape(ub) if self.affine else None

        def scale(s: int, e: int) -> None:
            xs = xhat_u[s:e]
            xs *= sb
            if y_u is not None:
                ys = y_u[s:e]
                xp.multiply(xs, gb, out=ys)
                ys += bb

        parallel_for(xp, u.shape[0], scale, grain)
        xhat = xhat_u.reshape(f.shape)
        y = y_u.reshape(f.shape) if y_u is not None else xhat.copy()
        return y, xhat, inv_std, mean, var

    def _update_running(self, mean, var, m: int) -> None:
        self.num_batches_tracked += 1
        if self.momentum is None:
            factor = 1.0 / float(self.num_batches_tracked)
        else:
            factor = self.momentum
        dt = self.running_mean.dtype.type
        self.running_mean *= dt(1.0 - factor)
        self.running_mean += dt(factor) * mean
        self.running_var *= dt(1.0 - factor)
        self.running_var += dt(factor * m / (m - 1)) * var

    def backward(self, dy, input_grad: bool = True):
        if self._cache is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        xhat, inv_std, use_batch, x_shape, kind = self._cache
        if tuple(getattr(dy, "shape", ())) != x_shape:
            raise ShapeError(f"{self.describe()}: got gradient of shape "
                             f"{tuple(getattr(dy, 'shape', ()))}, expected {x_shape}")
        if checks_enabled():
            check_finite(dy, self.describe(), "gradient")
        xp = get_array_module(dy)
        n = x_shape[0]
        g = self._frame(dy, kind)     # a view when dy has x's layout, else one copy
        bshape = (1, self.num_features) + ((1,) if kind == "cols" else ())
        need_stats = self.affine or (use_batch and input_grad)
        u, gu = self._units(xhat, kind, n), self._units(g, kind, n)
        ub = self._unit_bshape(kind)
        grain = self._grain(u)
        if need_stats:
            pb = xp.empty((u.shape[0], self.num_features), dtype=dy.dtype)
            pg = xp.empty_like(pb)

            def stats(s: int, e: int) -> None:
                self._partial_sums(gu[s:e], kind, pb[s:e])
                self._partial_sums(gu[s:e] * u[s:e], kind, pg[s:e])

            parallel_for(xp, u.shape[0], stats, grain)
            dbeta, dgamma = self._total(pb), self._total(pg)
        if self.affine:
            self.weight.accumulate(dgamma)
            self.bias.accumulate(dbeta)
        if not input_grad:
            return None
        gamma = self.weight.data if self.affine else xp.ones_like(inv_std)
        k = gamma * inv_std
        if not use_batch:
            return self._unframe(g * k.reshape(bshape), kind, x_shape)
        m = dy.size // self.num_features
        inv_m = dy.dtype.type(1.0 / m)
        kb, dgb, dbb = k.reshape(ub), (dgamma * inv_m).reshape(ub), (dbeta * inv_m).reshape(ub)
        dx_u = xp.empty(u.shape, dtype=dy.dtype)

        def grad(s: int, e: int) -> None:
            d = dx_u[s:e]
            xp.multiply(u[s:e], dgb, out=d)
            xp.subtract(gu[s:e], d, out=d)
            d -= dbb
            d *= kb

        parallel_for(xp, u.shape[0], grad, grain)
        return self._unframe(dx_u.reshape(g.shape), kind, x_shape)

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` inputs (statistics per C).

    ``BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)``; the maths is in ``_BatchNorm``'s docstring.
    """

    _expected = "(N, {C}) or (N, {C}, L)"
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` inputs (statistics per C over N, H, W).

    ``BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True)``; the maths is in ``_BatchNorm``'s docstring.
    """

    _expected = "(N, {C}, H, W)"
    _ndims = (4,)
