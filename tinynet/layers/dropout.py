"""Dropout and Flatten: layers with no parameters that reshape or mask."""

from __future__ import annotations

import math

from ..backend import get_array_module
from ..checks import check_finite, checks_enabled
from ..errors import DTypeError, ShapeError
from ..module import Module
from ..random import default_generator


class Dropout(Module):
    """Inverted dropout, as ``torch.nn.Dropout(p=0.5)``.

    Train mode: each element is kept with probability 1 - p and scaled by 1/(1 - p),
    so the expected output equals the input; eval mode: the identity. With the mask
    M (entries 0 or 1/(1-p)) fixed by the forward::

        y = x * M        dL/dx = dL/dy * M

    Masks are drawn from the global generator (``tinynet.manual_seed``) on the host,
    so they repeat exactly on every device. For parity checks a mask can be injected:
    ``layer.next_mask = m`` (0/1 entries, x's shape) is used by the next forward only.
    """

    def __init__(self, p: float = 0.5) -> None:
        super().__init__()
        if not 0.0 <= p <= 1.0:
            raise ValueError(f"Dropout probability must be in [0, 1], got {p}")
        self.p = float(p)
        self.next_mask = None
        self._mask = None
        self._shape = None

    def forward(self, x):
        if not hasattr(x, "shape"):
            raise ShapeError(f"{self.describe()}: expected an array, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise DTypeError(f"{self.describe()}: got {x.dtype} input, expected a "
                             f"floating-point dtype (float32 or float64)")
        if checks_enabled():
            check_finite(x, self.describe())
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._mask = None
            return x
        xp = get_array_module(x)
        if self.next_mask is not None:
            keep = xp.asarray(self.next_mask)
            if tuple(keep.shape) != tuple(x.shape):
                raise ShapeError(f"{self.describe()}: injected mask has shape "
                                 f"{tuple(keep.shape)}, expected {tuple(x.shape)}")
            self.next_mask = None
        else:
            keep = xp.asarray(default_generator().random(x.shape, dtype="float32") >= self.p)
        scale = 0.0 if self.p == 1.0 else 1.0 / (1.0 - self.p)
        self._mask = mask = keep.astype(x.dtype) * x.dtype.type(scale)
        return x * mask

    def backward(self, dy, input_grad: bool = True):
        if self._shape is not None and tuple(getattr(dy, "shape", ())) != self._shape:
            raise ShapeError(f"{self.describe()}: got gradient of shape "
                             f"{tuple(getattr(dy, 'shape', ()))}, expected {self._shape} "
                             f"(the last forward's output)")
        if checks_enabled():
            check_finite(dy, self.describe(), "gradient")
        if self._mask is None:
            return dy
        return dy * self._mask

    def extra_repr(self) -> str:
        return f"p={self.p}"


class Flatten(Module):
    """Flatten dims ``start_dim..end_dim`` into one: ``(N, C, H, W) -> (N, C*H*W)``.

    A reshape moves no values, so backward reshapes dy back to the input's shape.
    """

    def __init__(self, start_dim: int = 1, end_dim: int = -1) -> None:
        super().__init__()
        self.start_dim = int(start_dim)
        self.end_dim = int(end_dim)
        self._shape = None
        self._out_shape = None

    def forward(self, x):
        if not hasattr(x, "shape"):
            raise ShapeError(f"{self.describe()}: expected an array, got {type(x).__name__}")
        shape = tuple(x.shape)
        nd = len(shape)
        start = self.start_dim % nd if nd else 0
        end = self.end_dim % nd if nd else 0
        in_range = -nd <= self.start_dim < nd and -nd <= self.end_dim < nd  # no wrapping
        if nd == 0 or not in_range or start > end:
            raise ShapeError(f"{self.describe()}: cannot flatten dims {self.start_dim}.."
                             f"{self.end_dim} of an input of shape {shape}")
        self._shape = shape
        self._out_shape = shape[:start] + (math.prod(shape[start:end + 1]),) + shape[end + 1:]
        return x.reshape(self._out_shape)

    def backward(self, dy, input_grad: bool = True):
        if self._shape is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        if tuple(getattr(dy, "shape", ())) != self._out_shape:
            raise ShapeError(f"{self.describe()}: got gradient of shape "
                             f"{tuple(getattr(dy, 'shape', ()))}, expected {self._out_shape} "
                             f"(the last forward's output)")
        return dy.reshape(self._shape)

    def extra_repr(self) -> str:
        return f"start_dim={self.start_dim}, end_dim={self.end_dim}"
