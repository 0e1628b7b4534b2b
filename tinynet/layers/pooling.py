"""MaxPool2d, AvgPool2d and AdaptiveAvgPool2d, as in ``torch.nn``.

Thin wrappers over :mod:`tinynet.functional.pool`, where the windows, the output sizes
and each backward are derived. Inputs are ``(N, C, H, W)`` or one unbatched ``(C, H, W)``.
"""

from __future__ import annotations

from ..errors import ArgumentError, ShapeError
from ..functional.conv import pair
from ..functional.pool import pool_output_size
from .base import Layer, add_batch_axis


class _Pool2d(Layer):
    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 ceil_mode: bool = False) -> None:
        super().__init__()
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = self.kernel_size if stride is None or stride == [] \
            else pair(stride, "stride")
        self.padding = pair(padding, "padding")
        self.dilation = pair(dilation, "dilation")
        self.ceil_mode = bool(ceil_mode)
        name = type(self).__name__
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.padding) < 0 \
                or min(self.dilation) <= 0:
            raise ArgumentError(f"{name} needs kernel_size, stride and dilation > 0 and "
                                f"padding >= 0, got kernel_size={kernel_size}, stride={stride}, "
                                f"padding={padding}, dilation={dilation}")
        if any(p > k // 2 for p, k in zip(self.padding, self.kernel_size, strict=True)):
            raise ArgumentError(f"{name}: padding {self.padding} must be at most half of "
                                f"kernel_size {self.kernel_size} (as PyTorch)")
        self._cache = None
        self._shapes = None

    def _enter(self, x):
        """Checks; returns x with a batch axis and whether it had none."""
        self._check_input(x, None, (3, 4), "(N, C, H, W) or (C, H, W)")
        x, unbatched = add_batch_axis(x, 4)
        oh, ow = self._output_hw(x.shape[2], x.shape[3])
        if oh <= 0 or ow <= 0:
            raise ShapeError(f"{self.describe()}: input of shape {tuple(x.shape)} is smaller "
                             f"than the window kernel_size={self.kernel_size} with "
                             f"padding={self.padding}, dilation={self.dilation}")
        out = tuple(x.shape[:2]) + (oh, ow)
        self._shapes = (out[1:] if unbatched else out, unbatched, x.dtype)
        return x, unbatched

    def _output_hw(self, h: int, w: int) -> tuple[int, int]:
        return tuple(pool_output_size(size, k, s, p, d, self.ceil_mode) for size, k, s, p, d in
                     zip((h, w), self.kernel_size, self.stride, self.padding, self.dilation,
                         strict=True))

    def _grad(self, dy):
        """dy checked against the last output, with the batch axis put back."""
        if self._shapes is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        out, unbatched, dtype = self._shapes
        self._check_grad(dy, out, dtype)
        return (dy[None] if unbatched else dy), unbatched

    @staticmethod
    def _value(pair_):
        return pair_[0] if pair_[0] == pair_[1] else pair_


class MaxPool2d(_Pool2d):
    """``MaxPool2d(kernel_size, stride=None, padding=0, dilation=1, return_indices=False,
    ceil_mode=False)``; stride defaults to kernel_size.

    y is the max of each window, the padding counting as -inf. Backward: the whole
    gradient of a window goes to its arg-max (the first in row-major window order on
    ties, as PyTorch). With ``return_indices`` the forward returns ``(y, indices)``,
    each maximum's position in its input plane (``row * W + col``, int64).
    """

    splits = True      # its fast kernels split the batch over CPU threads

    def __init__(self, kernel_size, stride=None, padding=0, dilation=1,
                 return_indices: bool = False, ceil_mode: bool = False) -> None:
        super().__init__(kernel_size, stride, padding, dilation, ceil_mode)
        self.return_indices = bool(return_indices)

    def forward(self, x):
        x, unbatched = self._enter(x)
        ops = self._forward_ops()
        y, self._cache = ops.maxpool2d_forward(x, self.kernel_size, self.stride, self.padding,
                                               self.dilation, self.ceil_mode)
        if unbatched:
            y = y[0]
        if not self.return_indices:
            return y
        indices = ops.maxpool2d_indices(self._cache)
        return y, (indices[0] if unbatched else indices)

    def backward(self, dy, input_grad: bool = True):
        dy, unbatched = self._grad(dy)
        dx = self._backward_ops().maxpool2d_backward(dy, self._cache)
        return dx[0] if unbatched else dx

    def kink_pattern(self):
        """Each window's arg-max in the last forward (a tie moving is a kink), for
        gradient checks."""
        if self._cache is None:
            return None
        return self._backward_ops().maxpool2d_indices(self._cache)

    def extra_repr(self) -> str:
        return (f"kernel_size={self._value(self.kernel_size)}, "
                f"stride={self._value(self.stride)}, padding={self._value(self.padding)}, "
                f"dilation={self._value(self.dilation)}, ceil_mode={self.ceil_mode}")


class AvgPool2d(_Pool2d):
    """``AvgPool2d(kernel_size, stride=None, padding=0, ceil_mode=False,
    count_include_pad=True, divisor_override=None)``.

    y is the mean of each window (zero padding): the window's sum over a divisor, which
    counts the padding with ``count_include_pad``, only the input positions without, or
    is ``divisor_override``. Backward: every position of a window receives dy / divisor.
    """

    def __init__(self, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                 count_include_pad: bool = True, divisor_override=None) -> None:
        super().__init__(kernel_size, stride, padding, 1, ceil_mode)
        self.count_include_pad = bool(count_include_pad)
        if divisor_override is not None and (isinstance(divisor_override, bool)
                                             or int(divisor_override) != divisor_override
                                             or divisor_override <= 0):
            raise ArgumentError(f"AvgPool2d: divisor_override must be a positive integer or "
                                f"None, got {divisor_override!r}")
        self.divisor_override = None if divisor_override is None else int(divisor_override)

    def forward(self, x):
        x, unbatched = self._enter(x)
        y, self._cache = self._forward_ops().avgpool2d_forward(
            x, self.kernel_size, self.stride, self.padding, self.ceil_mode,
            self.count_include_pad, self.divisor_override)
        return y[0] if unbatched else y

    def backward(self, dy, input_grad: bool = True):
        dy, unbatched = self._grad(dy)
        dx = self._backward_ops().avgpool2d_backward(dy, self._cache)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        s = (f"kernel_size={self._value(self.kernel_size)}, stride={self._value(self.stride)}, "
             f"padding={self._value(self.padding)}")
        if self.ceil_mode:
            s += ", ceil_mode=True"
        if not self.count_include_pad:
            s += ", count_include_pad=False"
        if self.divisor_override is not None:
            s += f", divisor_override={self.divisor_override}"
        return s


class AdaptiveAvgPool2d(Layer):
    """``AdaptiveAvgPool2d(output_size)``: average pooling to a fixed ``(OH, OW)``.

    ``output_size`` is an int, or a pair whose entries may be None (keep that input size).
    Output row i averages input rows [floor(i H/OH), ceil((i+1) H/OH)), columns alike.
    """

    def __init__(self, output_size) -> None:
        super().__init__()
        if isinstance(output_size, (tuple, list)):
            if len(output_size) != 2:
                raise ArgumentError(f"AdaptiveAvgPool2d: output_size must be an int or a pair, "
                                    f"got {output_size!r}")
            sizes = tuple(output_size)
        else:
            sizes = (output_size, output_size)
        for s in sizes:
            if s is not None and (isinstance(s, bool) or int(s) != s or s <= 0):
                raise ArgumentError(f"AdaptiveAvgPool2d: output_size entries must be positive "
                                    f"integers or None, got {output_size!r}")
        self.output_size = tuple(None if s is None else int(s) for s in sizes)
        self._cache = None
        self._shapes = None

    def forward(self, x):
        self._check_input(x, None, (3, 4), "(N, C, H, W) or (C, H, W)")
        out_hw = tuple(size if want is None else want
                       for size, want in zip(x.shape[-2:], self.output_size, strict=True))
        y, self._cache = self._forward_ops().adaptive_avgpool2d_forward(x, out_hw)
        self._shapes = (tuple(y.shape), x.dtype)
        return y

    def backward(self, dy, input_grad: bool = True):
        ops = self._backward_ops()
        self._check_grad(dy, *self._shapes)
        return ops.adaptive_avgpool2d_backward(dy, self._cache)

    def extra_repr(self) -> str:
        size = self.output_size
        return f"output_size={size[0] if size[0] == size[1] else size}"
