"""MaxPool2d and AvgPool2d, as ``torch.nn.MaxPool2d`` / ``torch.nn.AvgPool2d``."""

from __future__ import annotations

from ..checks import check_finite, checks_enabled
from ..errors import DTypeError, ShapeError
from ..functional.conv import _pair
from ..functional.pool import (
    avgpool2d_backward,
    avgpool2d_forward,
    maxpool2d_backward,
    maxpool2d_forward,
    pool_output_shape,
)
from ..module import Module, check_input


class _Pool2d(Module):
    def __init__(self, kernel_size, stride=None, padding=0) -> None:
        super().__init__()
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None else _pair(stride, "stride")
        self.padding = _pair(padding, "padding")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0:
            raise ValueError(f"{type(self).__name__} needs kernel_size and stride > 0 and "
                             f"padding >= 0, got kernel_size={kernel_size}, stride={stride}, "
                             f"padding={padding}")
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ValueError(f"{type(self).__name__}: padding {self.padding} must be at most "
                             f"half of kernel_size {self.kernel_size} (as PyTorch)")
        self._cache = None
        self._out_shape = None

    def _enter(self, x):
        check_input(self, x, 4, "(N, C, H, W)")
        oh, ow = pool_output_shape(tuple(x.shape), self.kernel_size, self.stride, self.padding)
        if oh <= 0 or ow <= 0:
            raise ShapeError(f"{self.describe()}: input of shape {tuple(x.shape)} is smaller "
                             f"than the window kernel_size={self.kernel_size} with "
                             f"padding={self.padding}")
        if x.dtype.kind != "f":
            raise DTypeError(f"{self.describe()}: got {x.dtype} input, expected a "
                             f"floating-point dtype (float32 or float64)")
        if checks_enabled():
            check_finite(x, self.describe())
        self._out_shape = tuple(x.shape[:2]) + (oh, ow)

    def _check_dy(self, dy):
        if self._cache is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        if tuple(getattr(dy, "shape", ())) != self._out_shape:
            raise ShapeError(f"{self.describe()}: got gradient of shape "
                             f"{tuple(getattr(dy, 'shape', ()))}, expected {self._out_shape}")
        if checks_enabled():
            check_finite(dy, self.describe(), "gradient")

    def _repr_value(self, pair):
        return pair[0] if pair[0] == pair[1] else pair


class MaxPool2d(_Pool2d):
    """``MaxPool2d(kernel_size, stride=None, padding=0)``; stride defaults to kernel_size.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, OH, OW)``, ``OH = (H + 2 PH - KH) // SH + 1``.
    y is the max of each window, the padding counting as -inf. Backward: the whole
    gradient of a window goes to its arg-max (dy/dx = 1 there, 0 elsewhere); among equal
    values the first in row-major window order wins, as in PyTorch. The cache is the
    arg-max tap index per output (int8), not a copy of x.
    """

    def forward(self, x):
        self._enter(x)
        y, self._cache = maxpool2d_forward(x, self.kernel_size, self.stride, self.padding)
        return y

    def backward(self, dy, input_grad: bool = True):
        self._check_dy(dy)
        return maxpool2d_backward(dy, self._cache)

    def extra_repr(self) -> str:
        return (f"kernel_size={self._repr_value(self.kernel_size)}, "
                f"stride={self._repr_value(self.stride)}, "
                f"padding={self._repr_value(self.padding)}, dilation=1, ceil_mode=False")


class AvgPool2d(_Pool2d):
    """``AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False, count_include_pad=True)``.

    y is the mean of each window (zero padding). With ``count_include_pad`` the divisor
    is KH*KW, else the number of window positions inside the input. Backward: every
    position of a window receives ``dy / divisor`` (y is linear in x). ``ceil_mode`` must
    stay False (only PyTorch's default is implemented).
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True) -> None:
        super().__init__(kernel_size, stride, padding)
        if ceil_mode:
            raise NotImplementedError("AvgPool2d: ceil_mode=True is not implemented")
        self.count_include_pad = bool(count_include_pad)

    def forward(self, x):
        self._enter(x)
        y, self._cache = avgpool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                           self.count_include_pad)
        return y

    def backward(self, dy, input_grad: bool = True):
        self._check_dy(dy)
        return avgpool2d_backward(dy, self._cache)

    def extra_repr(self) -> str:
        return (f"kernel_size={self._repr_value(self.kernel_size)}, "
                f"stride={self._repr_value(self.stride)}, "
                f"padding={self._repr_value(self.padding)}")
