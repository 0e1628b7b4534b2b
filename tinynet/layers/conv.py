"""Conv2d: 2-D convolution (cross-correlation), as ``torch.nn.Conv2d``."""

from __future__ import annotations

import numpy

from ..checks import check_finite, checks_enabled
from ..errors import DTypeError, ShapeError
from ..functional.conv import _pair, conv2d_backward, conv2d_forward, conv_output_size
from ..init import pytorch_default_
from ..module import Module, check_input
from ..parameter import Parameter


class Conv2d(Module):
    """``Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, bias=True)``.

    Shapes: x ``(N, C, H, W)`` with ``C = in_channels``; weight ``(O, C, KH, KW)``; bias
    ``(O,)``; y ``(N, O, OH, OW)``, ``OH = (H + 2 PH - KH) // SH + 1`` (OW alike).
    ``kernel_size``, ``stride`` and ``padding`` are an int or an ``(h, w)`` pair; padding
    is with zeros. No dilation or groups.

    Forward (``tinynet.functional.conv.conv2d_forward``)::

        y[n, o, oh, ow] = b[o] + sum_{c,i,j} W[o, c, i, j] xpad[n, c, oh*SH + i, ow*SW + j]
        Y = im2col(x) @ W_mat^T                  one matrix product

    Backward (``conv2d_backward``), with dY = dy as ``(N*OH*OW, O)``::

        dW = dY^T @ im2col(x)      db = sum of dY over rows      dx = col2im(dY @ W_mat)

    The cache is the column matrix (needed for dW) and the weight matrix; y is
    channels-last in memory (see ``tinynet.functional.conv``), which the next layers keep.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, bias: bool = True, dtype: str = "float32") -> None:
        super().__init__()
        if int(in_channels) <= 0 or int(out_channels) <= 0:
            raise ValueError(f"Conv2d needs positive channel counts, got in_channels="
                             f"{in_channels}, out_channels={out_channels}")
        self.in_channels = int(in_channels)
        self.out_channels = int(out_channels)
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ValueError(f"Conv2d needs kernel_size and stride > 0 and padding >= 0, got "
                             f"kernel_size={self.kernel_size}, stride={self.stride}, "
                             f"padding={self.padding}")
        kh, kw = self.kernel_size
        self.weight = Parameter(numpy.empty((out_channels, in_channels, kh, kw), dtype=dtype))
        self.bias = Parameter(numpy.empty((out_channels,), dtype=dtype)) if bias else None
        self._cache = None
        self.reset_parameters()

    def reset_parameters(self, generator=None) -> None:
        """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C*KH*KW."""
        pytorch_default_(self.weight, self.bias, generator)

    def output_shape(self, x_shape: tuple) -> tuple:
        n, _, h, w = x_shape
        return (n, self.out_channels,
                conv_output_size(h, self.kernel_size[0], self.stride[0], self.padding[0]),
                conv_output_size(w, self.kernel_size[1], self.stride[1], self.padding[1]))

    def forward(self, x):
        check_input(self, x, 4, f"(N, {self.in_channels}, H, W)", 1, self.in_channels)
        w = self.weight.data
        if x.dtype != w.dtype:
            raise DTypeError(f"{self.describe()}: got {x.dtype} input, expected {w.dtype} "
                             f"(the layer's dtype; cast the input or the model)")
        out = self.output_shape(tuple(x.shape))
        if out[2] <= 0 or out[3] <= 0:
            raise ShapeError(
                f"{self.describe()}: input of shape {tuple(x.shape)} is too small for "
                f"kernel_size={self.kernel_size} with padding={self.padding}: the output "
                f"would be {out[2]}x{out[3]}; expected H + 2*PH >= KH and W + 2*PW >= KW")
        if checks_enabled():
            check_finite(x, self.describe())
        bias = self.bias.data if self.bias is not None else None
        y, self._cache = conv2d_forward(x, w, bias, self.stride, self.padding)
        return y

    def backward(self, dy, input_grad: bool = True):
        cache = self._cache
        if cache is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        expected = self.output_shape(cache[2])
        if tuple(getattr(dy, "shape", ())) != expected:
            raise ShapeError(f"{self.describe()}: got gradient of shape "
                             f"{tuple(getattr(dy, 'shape', ()))}, expected {expected} "
                             f"(the shape of the last forward's output)")
        if checks_enabled():
            check_finite(dy, self.describe(), "gradient")
        w = self.weight
        fresh = w.grad is None
        dx, dw, db = conv2d_backward(dy, cache, input_grad,
                                     dw_out=w.grad_buffer() if fresh else None)
        if fresh:
            w.grad = dw
        else:
            w.grad += dw
        if self.bias is not None:
            self.bias.accumulate(db)
        return dx

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}, padding={self.padding}")
        return s if self.bias is not None else s + ", bias=False"
