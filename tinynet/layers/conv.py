"""Conv2d: 2-D convolution (cross-correlation), as ``torch.nn.Conv2d``."""

from __future__ import annotations

from ..errors import ArgumentError, ShapeError
from ..functional.conv import PADDING_MODES, conv_output_size, pair
from ..init import pytorch_default_
from .base import Layer, add_batch_axis, check_choice, check_size, new_parameter


class Conv2d(Layer):
    """``Conv2d(in_channels, out_channels, kernel_size, stride=1, padding=0, dilation=1,
    groups=1, bias=True, padding_mode="zeros", device=None, dtype=None)``.

    Shapes: x ``(N, C, H, W)`` or one unbatched ``(C, H, W)``, C = in_channels; weight
    ``(O, C/groups, KH, KW)``; bias ``(O,)``; y ``(N, O, OH, OW)`` with
    ``OH = (H + 2 PH - DH (KH - 1) - 1) // SH + 1`` (OW alike). ``kernel_size``, ``stride``,
    ``padding`` and ``dilation`` are an int or an ``(h, w)`` pair; ``padding`` may also be
    ``"valid"`` (none) or ``"same"`` (OH = H, stride 1 only; an odd total is split with
    the extra row/column after, as PyTorch). ``padding_mode``: "zeros", "reflect",
    "replicate" or "circular".

    The maths, derived, is :mod:`tinynet.functional.conv`: ``y = im2col(x) @ W_mat^T``
    and, in the backward, ``dW = dY^T @ X_col``, ``db = sum dY``, ``dx = col2im(dY @ W_mat)``.
    A padding the convolution cannot do by itself (another mode, an uneven "same") is a
    separate ``pad2d_forward`` first, whose backward folds the gradient back.
    """

    splits = True      # its fast kernels split the batch over CPU threads

    def __init__(self, in_channels: int, out_channels: int, kernel_size, stride=1,
                 padding=0, dilation=1, groups: int = 1, bias: bool = True,
                 padding_mode: str = "zeros", device=None, dtype=None) -> None:
        super().__init__()
        in_channels = check_size(in_channels, "Conv2d: in_channels")
        out_channels = check_size(out_channels, "Conv2d: out_channels")
        groups = check_size(groups, "Conv2d: groups")
        if in_channels % groups or out_channels % groups:
            raise ArgumentError(f"Conv2d: in_channels ({in_channels}) and out_channels "
                                f"({out_channels}) must be divisible by groups ({groups})")
        self.in_channels, self.out_channels = in_channels, out_channels
        self.groups = groups
        self.kernel_size = pair(kernel_size, "kernel_size")
        self.stride = pair(stride, "stride")
        self.dilation = pair(dilation, "dilation")
        self.padding_mode = check_choice(padding_mode, "Conv2d: padding_mode", PADDING_MODES)
        if isinstance(padding, str):
            self.padding = check_choice(padding, "Conv2d: padding", ("valid", "same"))
            if padding == "same" and self.stride != (1, 1):
                raise ArgumentError("Conv2d: padding='same' is not supported for strided "
                                    f"convolutions (stride={self.stride}), as in PyTorch")
        else:
            self.padding = pair(padding, "padding")
        if min(self.kernel_size) <= 0 or min(self.stride) <= 0 or min(self.dilation) <= 0 \
                or (not isinstance(self.padding, str) and min(self.padding) < 0):
            raise ArgumentError(f"Conv2d needs kernel_size, stride and dilation > 0 and "
                                f"padding >= 0, got kernel_size={self.kernel_size}, "
                                f"stride={self.stride}, dilation={self.dilation}, "
                                f"padding={self.padding}")
        kh, kw = self.kernel_size
        self.weight = new_parameter((out_channels, in_channels // groups, kh, kw), dtype,
                                    device)
        self.bias = new_parameter((out_channels,), dtype, device) if bias else None
        self._cache = None
        self._pad_cache = None
        self._shapes = None
        self.reset_parameters()

    def reset_parameters(self, generator=None) -> None:
        """PyTorch's default: U(-1/sqrt(fan_in), 1/sqrt(fan_in)), fan_in = C/groups*KH*KW."""
        pytorch_default_(self.weight, self.bias, generator)

    def _paddings(self) -> tuple[tuple, tuple[int, int]]:
        """``(explicit, conv)``: the (top, bottom, left, right) padding done by
        ``pad2d_forward`` first (or None), and the symmetric zero padding of the product."""
        if self.padding == "valid":
            return None, (0, 0)
        if self.padding == "same":
            sides = []
            for d, k in zip(self.dilation, self.kernel_size, strict=True):
                total = d * (k - 1)
                sides += [total // 2, total - total // 2]
            top, bottom, left, right = sides
        else:
            (top, left), (bottom, right) = self.padding, self.padding
        if self.padding_mode == "zeros" and top == bottom and left == right:
            return None, (top, left)
        return (top, bottom, left, right), (0, 0)

    def output_shape(self, x_shape: tuple) -> tuple:
        n, _, h, w = x_shape
        explicit, (ph, pw) = self._paddings()
        if explicit is not None:
            h, w = h + explicit[0] + explicit[1], w + explicit[2] + explicit[3]
        (kh, kw), (sh, sw), (dh, dw) = self.kernel_size, self.stride, self.dilation
        return (n, self.out_channels, conv_output_size(h, kh, sh, ph, dh),
                conv_output_size(w, kw, sw, pw, dw))

    def forward(self, x):
        w = self.weight.data
        self._check_input(x, w.dtype, (3, 4), f"(N, {self.in_channels}, H, W) or "
                                               f"({self.in_channels}, H, W)")
        if x.shape[-3] != self.in_channels:
            raise ShapeError(f"{self.describe()}: got input of shape {tuple(x.shape)}, "
                             f"expected (N, {self.in_channels}, H, W) or "
                             f"({self.in_channels}, H, W)")
        x, unbatched = add_batch_axis(x, 4)
        out = self.output_shape(tuple(x.shape))
        if out[2] <= 0 or out[3] <= 0:
            raise ShapeError(
                f"{self.describe()}: input of shape {tuple(x.shape)} is too small for "
                f"kernel_size={self.kernel_size}, dilation={self.dilation}, "
                f"padding={self.padding}: the output would be {out[2]}x{out[3]}")
        ops = self._forward_ops()
        explicit, padding = self._paddings()
        self._pad_cache = None
        if explicit is not None:
            self._check_pad_fits(x, explicit)
            x, self._pad_cache = ops.pad2d_forward(x, explicit, self.padding_mode)
        bias = self.bias.data if self.bias is not None else None
        y, self._cache = ops.conv2d_forward(x, w, bias, self.stride, padding, self.dilation,
                                            self.groups)
        self._shapes = (out, unbatched)
        return y[0] if unbatched else y

    def _check_pad_fits(self, x, explicit: tuple) -> None:
        h, w = x.shape[2], x.shape[3]
        limit = {"reflect": (h - 1, w - 1), "circular": (h, w)}.get(self.padding_mode)
        if limit is not None and (max(explicit[:2]) > limit[0] or max(explicit[2:]) > limit[1]):
            raise ShapeError(f"{self.describe()}: padding {explicit} (top, bottom, left, "
                             f"right) is too large for padding_mode={self.padding_mode!r} on "
                             f"an input of {h}x{w}")

    def backward(self, dy, input_grad: bool = True):
        ops = self._backward_ops()
        out, unbatched = self._shapes
        self._check_grad(dy, out[1:] if unbatched else out, self.weight.data.dtype)
        if unbatched:
            dy = dy[None]
        dx, dw, db = ops.conv2d_backward(dy, self._cache, input_grad)
        self._accumulate(self.weight, dw)
        self._accumulate(self.bias, db)
        if dx is None:
            return None
        if self._pad_cache is not None:
            dx = ops.pad2d_backward(dx, self._pad_cache)
        return dx[0] if unbatched else dx

    def extra_repr(self) -> str:
        s = (f"{self.in_channels}, {self.out_channels}, kernel_size={self.kernel_size}, "
             f"stride={self.stride}")
        if self.padding != (0, 0):
            s += f", padding={self.padding!r}" if isinstance(self.padding, str) \
                else f", padding={self.padding}"
        if self.dilation != (1, 1):
            s += f", dilation={self.dilation}"
        if self.groups != 1:
            s += f", groups={self.groups}"
        if self.bias is None:
            s += ", bias=False"
        if self.padding_mode != "zeros":
            s += f", padding_mode={self.padding_mode}"
        return s
