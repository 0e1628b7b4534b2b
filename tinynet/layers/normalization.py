"""BatchNorm1d, BatchNorm2d and LayerNorm, as in ``torch.nn``.

Thin wrappers over :mod:`tinynet.functional.normalization`, where the statistics and
the three-term backward are derived. The layers add what is state: the running
statistics of BatchNorm and the train/eval switch.
"""

from __future__ import annotations

import math

import numpy

from ..errors import ArgumentError, ShapeError
from .base import Layer, check_size, new_buffer, new_parameter, resolve_dtype


class _BatchNorm(Layer):
    """Batch normalisation over every axis but the channel axis 1.

    Shapes: x ``(N, C, *S)``; gamma = ``weight`` ``(C,)``, beta = ``bias`` ``(C,)``;
    buffers ``running_mean``, ``running_var`` ``(C,)`` and ``num_batches_tracked`` (an
    int64 0-d array), as PyTorch's state_dict. In training the batch statistics are used
    and the running ones updated, M values per channel::

        running_mean <- (1 - momentum) running_mean + momentum mu
        running_var  <- (1 - momentum) running_var  + momentum var M / (M - 1)  (unbiased)

    ``bias=False`` (keyword only, as in PyTorch 2.13) keeps gamma without beta.
    ``momentum=None`` gives the cumulative average (factor 1/num_batches_tracked). In
    evaluation the running statistics are used, unless ``track_running_stats=False``
    (then there are none, and the batch's own are always used). An empty batch gives an
    empty output and leaves the statistics as they are (only the count moves), as PyTorch.
    """

    _expected = ""
    _ndims: tuple = ()

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float | None = 0.1,
                 affine: bool = True, track_running_stats: bool = True, device=None,
                 dtype=None, *, bias: bool = True) -> None:
        super().__init__()
        name = type(self).__name__
        num_features = check_size(num_features, f"{name}: num_features")
        if not float(eps) > 0:
            raise ArgumentError(f"{name}: eps must be positive, got {eps!r}")
        if momentum is not None and not 0.0 <= float(momentum) <= 1.0:
            raise ArgumentError(f"{name}: momentum must be in [0, 1] or None, got {momentum!r}")
        self.num_features = num_features
        self.eps = float(eps)
        self.momentum = None if momentum is None else float(momentum)
        self.affine = bool(affine)
        self.track_running_stats = bool(track_running_stats)
        c = self.num_features
        self.weight = new_parameter((c,), dtype, device, fill=1.0) if self.affine else None
        self.bias = new_parameter((c,), dtype, device, fill=0.0) if self.affine and bias \
            else None
        dt = resolve_dtype(dtype)
        if self.track_running_stats:
            self.register_buffer("running_mean", new_buffer(numpy.zeros((c,), dt), device))
            self.register_buffer("running_var", new_buffer(numpy.ones((c,), dt), device))
            self.register_buffer("num_batches_tracked",
                                 new_buffer(numpy.zeros((), numpy.int64), device))
        else:
            self.running_mean = self.running_var = self.num_batches_tracked = None
        self._dtype = dt
        self._cache = None
        self._shape = None

    def reset_running_stats(self) -> None:
        if self.track_running_stats:
            self.running_mean[...] = 0
            self.running_var[...] = 1
            self.num_batches_tracked[...] = 0

    def reset_parameters(self) -> None:
        self.reset_running_stats()
        if self.affine:
            self.weight.data[...] = 1
        if self.bias is not None:
            self.bias.data[...] = 0

    def _layer_dtype(self):
        if self.affine:
            return self.weight.data.dtype
        return self.running_mean.dtype if self.track_running_stats else None

    def forward(self, x):
        self._check_input(x, self._layer_dtype(), self._ndims,
                          self._expected.format(C=self.num_features))
        if x.shape[1] != self.num_features:
            raise ShapeError(f"{self.describe()}: got input of shape {tuple(x.shape)}, "
                             f"expected {self._expected.format(C=self.num_features)}")
        use_batch = self.training or not self.track_running_stats
        m = x.size // self.num_features
        if self.training and m == 1:
            raise ShapeError(f"{self.describe()}: expected more than 1 value per channel "
                             f"when training, got input of shape {tuple(x.shape)}")
        weight = self.weight.data if self.affine else None
        bias = self.bias.data if self.bias is not None else None
        ops = self._forward_ops()
        self._shape = tuple(x.shape)
        if use_batch and m == 0:                      # an empty batch: nothing to learn
            self._cache = None
            if self.training and self.track_running_stats:
                self.num_batches_tracked += 1
            return x.copy()
        if use_batch:
            y, self._cache = ops.batch_norm_forward(x, weight, bias, self.eps)
            if self.training and self.track_running_stats:
                self._update_running(self._cache.mean, self._cache.var, m)
        else:
            y, self._cache = ops.batch_norm_forward(x, weight, bias, self.eps,
                                                    self.running_mean, self.running_var)
        return y

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
        ops = self._backward_ops()
        self._check_grad(dy, self._shape, self._layer_dtype())
        if self._cache is None:                       # the empty batch: zero gradients
            for p in (self.weight, self.bias):
                self._accumulate(p, None if p is None else p.data * 0)
            return dy.copy() if input_grad else None
        dx, dgamma, dbeta = ops.norm_backward(dy, self._cache, input_grad)
        if self.affine:
            self._accumulate(self.weight, dgamma)
            self._accumulate(self.bias, dbeta)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.num_features}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.affine}, bias={self.bias is not None}, "
                f"track_running_stats={self.track_running_stats}")


class BatchNorm1d(_BatchNorm):
    """Batch normalisation of ``(N, C)`` or ``(N, C, L)`` (statistics per C).

    ``BatchNorm1d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True, device=None, dtype=None)``.
    """

    _expected = "(N, {C}) or (N, {C}, L)"
    _ndims = (2, 3)


class BatchNorm2d(_BatchNorm):
    """Batch normalisation of ``(N, C, H, W)`` (statistics per C over N, H, W).

    ``BatchNorm2d(num_features, eps=1e-5, momentum=0.1, affine=True,
    track_running_stats=True, device=None, dtype=None)``.
    """

    splits = True      # its fast kernels split the batch over CPU threads

    _expected = "(N, {C}, H, W)"
    _ndims = (4,)


class LayerNorm(Layer):
    """``LayerNorm(normalized_shape, eps=1e-5, elementwise_affine=True, bias=True,
    device=None, dtype=None)``: each sample normalised over its last axes.

    x ``(*, *normalized_shape)``; weight and bias (if any) have ``normalized_shape``.
    The statistics are always the sample's own, in training and evaluation alike.
    """

    def __init__(self, normalized_shape, eps: float = 1e-5, elementwise_affine: bool = True,
                 bias: bool = True, device=None, dtype=None) -> None:
        super().__init__()
        shape = (normalized_shape,) if isinstance(normalized_shape, int) \
            else tuple(normalized_shape)
        if not shape or any(isinstance(s, bool) or int(s) != s or s <= 0 for s in shape):
            raise ArgumentError(f"LayerNorm: normalized_shape must be positive integers, got "
                                f"{normalized_shape!r}")
        if not float(eps) > 0:
            raise ArgumentError(f"LayerNorm: eps must be positive, got {eps!r}")
        self.normalized_shape = tuple(int(s) for s in shape)
        self.eps = float(eps)
        self.elementwise_affine = bool(elementwise_affine)
        affine = self.elementwise_affine
        self.weight = new_parameter(self.normalized_shape, dtype, device, 1.0) if affine else None
        self.bias = new_parameter(self.normalized_shape, dtype, device, 0.0) \
            if affine and bias else None
        self._dtype = resolve_dtype(dtype)
        self._cache = None
        self._shape = None

    def forward(self, x):
        dtype = self.weight.data.dtype if self.weight is not None else None
        self._check_input(x, dtype)
        d = len(self.normalized_shape)
        if tuple(x.shape[x.ndim - d:]) != self.normalized_shape or x.ndim < d:
            raise ShapeError(f"{self.describe()}: got input of shape {tuple(x.shape)}, "
                             f"expected (*, {', '.join(map(str, self.normalized_shape))})")
        self._shape = tuple(x.shape)
        if math.prod(self.normalized_shape) == 0 or x.size == 0:
            self._cache = None
            return x.copy()
        weight = self.weight.data if self.weight is not None else None
        bias = self.bias.data if self.bias is not None else None
        y, self._cache = self._forward_ops().layer_norm_forward(x, d, weight, bias, self.eps)
        return y

    def backward(self, dy, input_grad: bool = True):
        ops = self._backward_ops()
        self._check_grad(dy, self._shape)
        if self._cache is None:
            return dy.copy() if input_grad else None
        dx, dgamma, dbeta = ops.norm_backward(dy, self._cache, input_grad)
        self._accumulate(self.weight, dgamma)
        self._accumulate(self.bias, dbeta)
        return dx

    def extra_repr(self) -> str:
        return (f"{self.normalized_shape}, eps={self.eps}, "
                f"elementwise_affine={self.elementwise_affine}, bias={self.bias is not None}")
