"""Reference solutions of the exercises: the layers of ``exercises/`` with their backward.

Each class has the forward of its template in ``exercises/`` (the same attributes: a
student's layer and its solution are graded alike) and a backward that hands what the
forward kept to tinynet's REFERENCE kernel, :mod:`tinynet.functional`, where each
gradient is derived next to the line that computes it. So the answers are not written
twice: read ``tinynet/functional/linear.py`` (and ``activation``, ``loss``, ``conv``,
``pool``, ``normalization``) for the derivations.

Spoiler warning: a student should write their own backward first (``tinynet grade``).
"""

from __future__ import annotations

import numpy

from tinynet import functional as F
from tinynet.backend import get_array_module
from tinynet.functional.normalization import NormCache
from tinynet.init import pytorch_default_
from tinynet.module import Module
from tinynet.parameter import Parameter


def _pair(v) -> tuple[int, int]:
    return (int(v), int(v)) if isinstance(v, (int, numpy.integer)) else (int(v[0]), int(v[1]))


class Linear(Module):
    """y = x W^T + b. x ``(N, D_in)``, W ``(D_out, D_in)``, b ``(D_out,)``, y ``(N, D_out)``."""

    def __init__(self, in_features: int, out_features: int, bias: bool = True) -> None:
        super().__init__()
        self.weight = Parameter(numpy.empty((out_features, in_features)))
        self.bias = Parameter(numpy.empty((out_features,))) if bias else None
        pytorch_default_(self.weight, self.bias)
        self._x = None

    def forward(self, x):
        self._x = x
        y = x @ self.weight.data.T
        if self.bias is not None:
            y = y + self.bias.data
        return y

    def backward(self, dy, input_grad: bool = True):
        """dW = dy.T @ x, db = dy.sum(0), dx = dy @ W: ``F.linear_backward``."""
        cache = (self._x, self.weight.data, self.bias is not None)
        dx, dw, db = F.linear_backward(dy, cache, input_grad)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx


class ReLU(Module):
    """y = max(x, 0); any shape."""

    def __init__(self) -> None:
        super().__init__()
        self._mask = None

    def forward(self, x):
        xp = get_array_module(x)
        self._mask = x > 0
        return xp.maximum(x, 0)

    def backward(self, dy, input_grad: bool = True):
        """dx = dy * [x > 0], the mask taken before the clamp: ``F.relu_backward``."""
        return F.relu_backward(dy, self._mask)


class Sigmoid(Module):
    """y = 1 / (1 + exp(-x)); any shape."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x):
        xp = get_array_module(x)
        z = xp.exp(-xp.abs(x))
        self._y = y = xp.where(x >= 0, 1 / (1 + z), z / (1 + z))
        return y

    def backward(self, dy, input_grad: bool = True):
        """sigma'(x) = y (1 - y): ``F.sigmoid_backward``."""
        return F.sigmoid_backward(dy, self._y)


class SoftmaxCrossEntropy:
    """L = -(1/N) sum_n log softmax(z)[n, t_n]. z ``(N, C)`` logits, t ``(N,)`` ints."""

    def __init__(self) -> None:
        self._cache = None

    def __call__(self, logits, target) -> float:
        xp = get_array_module(logits)
        n = logits.shape[0]
        z = logits - logits.max(axis=1, keepdims=True)
        logp = z - xp.log(xp.exp(z).sum(axis=1, keepdims=True))
        self._cache = (xp.exp(logp), target)
        self._kernel_cache = F.cross_entropy_forward(logits, target)[1]
        return float(-logp[xp.arange(n), target].sum() / n)

    def backward(self):
        """dL/dz = (p - onehot(t)) / N: ``F.cross_entropy_backward``."""
        return F.cross_entropy_backward(1.0, self._kernel_cache)


class Conv2d(Module):
    """Cross-correlation. x ``(N, C, H, W)``, W ``(C_out, C, KH, KW)``, y ``(N, C_out, OH, OW)``
    with OH = (H + 2 PH - KH) // SH + 1 (same for OW)."""

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1, padding=0,
                 bias: bool = True) -> None:
        super().__init__()
        self.kernel_size = kh, kw = _pair(kernel_size)
        self.stride = _pair(stride)
        self.padding = _pair(padding)
        self.weight = Parameter(numpy.empty((out_channels, in_channels, kh, kw)))
        self.bias = Parameter(numpy.empty((out_channels,))) if bias else None
        pytorch_default_(self.weight, self.bias)
        self._xpad = None
        self._shape = None

    def _out_size(self, h, w):
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        return (h + 2 * ph - kh) // sh + 1, (w + 2 * pw - kw) // sw + 1

    def forward(self, x):
        xp = get_array_module(x)
        n, _c, h, w = x.shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = self._out_size(h, w)
        xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
        weight = self.weight.data
        y = xp.zeros((n, weight.shape[0], oh, ow), dtype=x.dtype)
        for i in range(kh):          # one pass per kernel offset, never per pixel
            for j in range(kw):
                patch = xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]      # (N, C, OH, OW)
                y += xp.einsum("nchw,oc->nohw", patch, weight[:, :, i, j])
        if self.bias is not None:
            y += self.bias.data[None, :, None, None]
        self._xpad, self._shape = xpad, x.shape
        return y

    def backward(self, dy, input_grad: bool = True):
        """dW = dY^T @ X_col, db = sum of dY, dx = col2im(dY @ W_mat): ``F.conv2d_backward``,
        given the columns of the unpadded input and the weight."""
        (ph, pw), (_n, _c, h, w) = self.padding, self._shape
        x = self._xpad[:, :, ph:ph + h, pw:pw + w]
        cols = F.im2col(x, self.kernel_size, self.stride, self.padding)
        cache = (cols, self.weight.data, tuple(x.shape), self.stride, self.padding, (1, 1), 1,
                 self.bias is not None)
        dx, dw, db = F.conv2d_backward(dy, cache, input_grad)
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx


class MaxPool2d(Module):
    """Max over KH x KW windows, stride (SH, SW) (default: the kernel). x ``(N, C, H, W)``,
    y ``(N, C, OH, OW)``, OH = (H - KH) // SH + 1. Ties: the first maximum in the window
    (row-major order) is the one chosen, as in PyTorch."""

    def __init__(self, kernel_size, stride=None) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size)
        self.stride = _pair(stride if stride is not None else kernel_size)
        self._argmax = None
        self._shape = None

    def forward(self, x):
        xp = get_array_module(x)
        _n, _c, h, w = x.shape
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = (h - kh) // sh + 1, (w - kw) // sw + 1
        windows = xp.stack([x[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                            for i in range(kh) for j in range(kw)])   # (KH*KW, N, C, OH, OW)
        self._argmax = windows.argmax(axis=0)      # first maximum on ties
        self._shape = x.shape
        return windows.max(axis=0)

    def backward(self, dy, input_grad: bool = True):
        """Each window's dy goes to its arg-max, overlapping windows add up:
        ``F.maxpool2d_backward`` with the arg-max the forward kept."""
        cache = (self._argmax, tuple(self._shape), tuple(self._shape), self.kernel_size,
                 self.stride, (0, 0), (1, 1))
        return F.maxpool2d_backward(dy, cache)


class BatchNorm1d(Module):
    """Batch normalisation in training mode. x ``(N, C)``; gamma = weight, beta = bias ``(C,)``.

    mu = mean_n x, var = mean_n (x - mu)^2 (biased), xhat = (x - mu) / sqrt(var + eps),
    y = gamma xhat + beta. running_var is updated with the unbiased variance, as PyTorch.
    """

    def __init__(self, num_features: int, eps: float = 1e-5, momentum: float = 0.1) -> None:
        super().__init__()
        self.eps, self.momentum = float(eps), float(momentum)
        self.weight = Parameter(numpy.ones((num_features,)))
        self.bias = Parameter(numpy.zeros((num_features,)))
        self.register_buffer("running_mean", numpy.zeros((num_features,)))
        self.register_buffer("running_var", numpy.ones((num_features,)))
        self._cache = None

    def forward(self, x):
        xp = get_array_module(x)
        n = x.shape[0]
        mu = x.mean(axis=0)
        var = ((x - mu) ** 2).mean(axis=0)
        invstd = 1 / xp.sqrt(var + self.eps)
        xhat = (x - mu) * invstd
        m = self.momentum
        self.running_mean = (1 - m) * self.running_mean + m * mu
        self.running_var = (1 - m) * self.running_var + m * var * (n / max(n - 1, 1))
        self._cache = (xhat, invstd)
        return self.weight.data * xhat + self.bias.data

    def backward(self, dy, input_grad: bool = True):
        """dbeta = sum dy, dgamma = sum dy xhat, and the three-term dx (mu and var depend
        on every x of the batch): ``F.norm_backward`` with the batch statistics' cache."""
        xhat, invstd = self._cache
        cache = NormCache(xhat, invstd[None, :], self.weight.data[None, :], (0,), (0,), True)
        dx, dgamma, dbeta = F.norm_backward(dy, cache, input_grad)
        self.bias.accumulate(dbeta)
        self.weight.accumulate(dgamma)
        return dx


EXERCISE_CLASSES = {cls.__name__: cls for cls in (
    Linear, ReLU, Sigmoid, SoftmaxCrossEntropy, Conv2d, MaxPool2d, BatchNorm1d)}
