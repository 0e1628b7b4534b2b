"""Reference solutions of the exercises: the layers of ``exercises/`` with their backward.

Each class has the forward of its template in ``exercises/`` and a backward that the
grader accepts. They are written the way the exercise asks (plain array code, one
formula per gradient, the derivation next to it), not the fastest way: tinynet's own
layers (``tinynet.layers``) are the production versions.

Spoiler warning: a student should write their own backward first (``tinynet grade``).
"""

from __future__ import annotations

import numpy

from tinynet.backend import get_array_module
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
        """y[n,o] = sum_i x[n,i] W[o,i] + b[o], so by the chain rule
        dW[o,i] = sum_n dy[n,o] x[n,i] (dy.T @ x), db[o] = sum_n dy[n,o],
        dx[n,i] = sum_o dy[n,o] W[o,i] (dy @ W). W and b are shared by every
        sample, so their gradients sum over the batch."""
        x = self._x
        self.weight.accumulate(dy.T @ x)
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=0))
        if not input_grad:
            return None
        return dy @ self.weight.data


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
        """dy/dx = 1 where x > 0 else 0, so dx = dy * [x > 0] (mask from *before* the clamp)."""
        return dy * self._mask


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
        """sigma'(x) = sigma(x) (1 - sigma(x)) = y (1 - y), so dx = dy * y * (1 - y)."""
        y = self._y
        return dy * y * (1 - y)


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
        return float(-logp[xp.arange(n), target].sum() / n)

    def backward(self):
        """dL/dz[n, c] = (p[n, c] - [c == t_n]) / N: softmax's Jacobian diag(p) - p p^T
        times -1/p_t collapses to p - onehot(t); the mean over N gives the 1/N."""
        p, t = self._cache
        xp = get_array_module(p)
        n = p.shape[0]
        dz = p.copy()
        dz[xp.arange(n), t] -= 1
        return dz / n


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
        """y[n,o,a,b] = sum_{c,i,j} xpad[n,c,a SH+i,b SW+j] W[o,c,i,j] + b[o]. Hence
        dW[o,c,i,j] = sum_{n,a,b} dy[n,o,a,b] xpad[n,c,a SH+i,b SW+j]; db[o] = sum_{n,a,b} dy;
        dxpad[n,c,a SH+i,b SW+j] += sum_o dy[n,o,a,b] W[o,c,i,j] (each dy goes back to the
        inputs its window touched, with the same, unflipped, W), then crop the padding."""
        xp = get_array_module(dy)
        xpad, (n, c, h, w) = self._xpad, self._shape
        (kh, kw), (sh, sw), (ph, pw) = self.kernel_size, self.stride, self.padding
        oh, ow = dy.shape[2], dy.shape[3]
        weight = self.weight.data
        dw = xp.zeros_like(weight)
        dxpad = xp.zeros_like(xpad)
        for i in range(kh):
            for j in range(kw):
                patch = xpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw]
                dw[:, :, i, j] = xp.einsum("nohw,nchw->oc", dy, patch)
                dxpad[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += \
                    xp.einsum("nohw,oc->nchw", dy, weight[:, :, i, j])
        self.weight.accumulate(dw)
        if self.bias is not None:
            self.bias.accumulate(dy.sum(axis=(0, 2, 3)))
        if not input_grad:
            return None
        return dxpad[:, :, ph:ph + h, pw:pw + w]


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
        """y = x[argmax of the window], so dy flows to that one input and nowhere else;
        windows that overlap (stride < kernel) *add* their contributions."""
        xp = get_array_module(dy)
        (kh, kw), (sh, sw) = self.kernel_size, self.stride
        oh, ow = dy.shape[2], dy.shape[3]
        dx = xp.zeros(self._shape, dtype=dy.dtype)
        for k in range(kh * kw):
            i, j = divmod(k, kw)
            dx[:, :, i:i + sh * oh:sh, j:j + sw * ow:sw] += dy * (self._argmax == k)
        return dx


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
        """dbeta = sum_n dy; dgamma = sum_n dy xhat; with g = dy gamma (the gradient at xhat)
        and mu, var depending on every x in the batch, the three terms are
        dx = invstd / N (N g - sum_n g - xhat sum_n g xhat)."""
        xhat, invstd = self._cache
        n = dy.shape[0]
        self.bias.accumulate(dy.sum(axis=0))
        self.weight.accumulate((dy * xhat).sum(axis=0))
        if not input_grad:
            return None
        g = dy * self.weight.data
        return invstd / n * (n * g - g.sum(axis=0) - xhat * (g * xhat).sum(axis=0))


EXERCISE_CLASSES = {cls.__name__: cls for cls in (
    Linear, ReLU, Sigmoid, SoftmaxCrossEntropy, Conv2d, MaxPool2d, BatchNorm1d)}
