"""Dropout, Dropout2d and Flatten: layers with no parameters that mask or reshape."""

from __future__ import annotations

import math

from ..backend import get_array_module
from ..errors import ShapeError
from ..random import default_generator
from .base import Layer, check_probability


class Dropout(Layer):
    """``Dropout(p=0.5, inplace=False)``: inverted dropout of single elements.

    Train mode: each element is kept with probability 1 - p and scaled by 1/(1 - p)
    (:mod:`tinynet.functional.dropout`); eval mode: the identity. Masks are drawn from
    tinynet's generator (``tinynet.manual_seed``) on the host, so they repeat exactly on
    every device. For parity checks a mask can be injected: ``layer.next_mask = keep``
    (0/1 entries of the mask's shape) is used by the next forward only.
    """

    def __init__(self, p: float = 0.5, inplace: bool = False) -> None:
        super().__init__()
        self.p = check_probability(p, f"{type(self).__name__}: p")
        self.inplace = bool(inplace)
        self.next_mask = None
        self._cache = None
        self._shape = None

    def _mask_shape(self, x) -> tuple:
        """Dropout masks every element."""
        return tuple(x.shape)

    def forward(self, x):
        self._check_input(x)
        self._shape = tuple(x.shape)
        if not self.training or self.p == 0.0:
            self._cache = None
            return x
        xp = get_array_module(x)
        shape = self._mask_shape(x)
        if self.next_mask is not None:
            keep = xp.asarray(self.next_mask)
            if tuple(keep.shape) != shape:
                raise ShapeError(f"{self.describe()}: injected mask has shape "
                                 f"{tuple(keep.shape)}, expected {shape}")
            self.next_mask = None
        else:
            keep = xp.asarray(default_generator().random(shape, dtype="float32") >= self.p)
        y, self._cache = self._forward_ops().dropout_forward(x, keep, self.p)
        if self.inplace:
            x[...] = y
            return x
        return y

    def backward(self, dy, input_grad: bool = True):
        if self._shape is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        self._check_grad(dy, self._shape)
        if self._cache is None:
            return dy
        return self._backward_ops().dropout_backward(dy, self._cache)

    def extra_repr(self) -> str:
        return f"p={self.p}, inplace={self.inplace}"


class Dropout2d(Dropout):
    """``Dropout2d(p=0.5, inplace=False)``: drops whole channels.

    x ``(N, C, H, W)``; the mask is ``(N, C, 1, 1)``, one draw per channel, broadcast over
    H and W. A 3-D input is read as ``(N, C, L)`` (PyTorch's current behaviour, with its
    warning left out), mask ``(N, C, 1)``.
    """

    def _mask_shape(self, x) -> tuple:
        if x.ndim not in (3, 4):
            raise ShapeError(f"{self.describe()}: got input of shape {tuple(x.shape)}, "
                             f"expected (N, C, H, W) or (N, C, L)")
        return tuple(x.shape[:2]) + (1,) * (x.ndim - 2)


class Flatten(Layer):
    """``Flatten(start_dim=1, end_dim=-1)``: ``(N, C, H, W) -> (N, C*H*W)``.

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
