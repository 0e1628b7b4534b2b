"""Linear and Identity, as ``torch.nn.Linear`` / ``torch.nn.Identity``."""

from __future__ import annotations

import math

from ..errors import ShapeError
from ..init import pytorch_default_
from .base import Layer, check_size, new_parameter


class Linear(Layer):
    """``Linear(in_features, out_features, bias=True, device=None, dtype=None)``: y = x W^T + b.

    Shapes: x ``(*, D_in)`` (any leading axes, none for one unbatched sample), weight
    ``(D_out, D_in)``, bias ``(D_out,)``, y ``(*, D_out)``. The maths and its derivation:
    :mod:`tinynet.functional.linear` (``linear_forward`` / ``linear_backward``).
    """

    def __init__(self, in_features: int, out_features: int, bias: bool = True,
                 device=None, dtype=None) -> None:
        super().__init__()
        self.in_features = check_size(in_features, "Linear: in_features")
        self.out_features = check_size(out_features, "Linear: out_features")
        self.weight = new_parameter((self.out_features, self.in_features), dtype, device)
        self.bias = new_parameter((self.out_features,), dtype, device) if bias else None
        self._cache = None
        self._shapes = None
        self.reset_parameters()

    def reset_parameters(self, generator=None) -> None:
        """PyTorch's default: U(-1/sqrt(D_in), 1/sqrt(D_in)) for weight and bias."""
        pytorch_default_(self.weight, self.bias, generator)

    def forward(self, x):
        w = self.weight.data
        self._check_input(x, w.dtype)
        if x.ndim == 0 or x.shape[-1] != self.in_features:
            raise ShapeError(f"{self.describe()}: got input of shape {tuple(x.shape)}, "
                             f"expected (*, {self.in_features})")
        lead = tuple(x.shape[:-1])                      # (*), () for an unbatched sample
        x2 = x.reshape(math.prod(lead), self.in_features)
        b = self.bias.data if self.bias is not None else None
        y, self._cache = self._forward_ops().linear_forward(x2, w, b)
        self._shapes = (tuple(x.shape), lead + (self.out_features,))
        return y.reshape(self._shapes[1])

    def backward(self, dy, input_grad: bool = True):
        ops = self._backward_ops()
        x_shape, y_shape = self._shapes
        self._check_grad(dy, y_shape, self.weight.data.dtype)
        dx, dw, db = ops.linear_backward(dy.reshape(-1, self.out_features), self._cache,
                                         input_grad)
        self._accumulate(self.weight, dw)
        self._accumulate(self.bias, db)
        return None if dx is None else dx.reshape(x_shape)

    def extra_repr(self) -> str:
        return (f"in_features={self.in_features}, out_features={self.out_features}, "
                f"bias={self.bias is not None}")


class Identity(Layer):
    """``Identity(*args, **kwargs)``: y = x, dx = dy (arguments are ignored, as in PyTorch)."""

    reusable = True     # its backward needs nothing from the forward: one instance may
    #                     stand at several places of a model

    def __init__(self, *args, **kwargs) -> None:
        super().__init__()
        self._shape = None

    def forward(self, x):
        self._shape = tuple(getattr(x, "shape", ()))
        return x

    def backward(self, dy, input_grad: bool = True):
        if self._shape is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        self._check_grad(dy, self._shape)
        return dy
