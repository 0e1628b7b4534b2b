"""Activation layers, as ``torch.nn.ReLU``, ``Tanh``, ``GELU``, ``Softmax``...

Each is a thin wrapper: input checks, one call into :mod:`tinynet.functional.activation`
(where every derivative is derived), the cache kept for the backward. Inputs may have
any shape, 0-d included. ``inplace=True`` is honoured as PyTorch does: the result is
also written into the input array, which is returned.
"""

from __future__ import annotations

from ..backend import get_array_module
from .base import Layer


class _Activation(Layer):
    """y = f(x) through the kernels ``<kernel>_forward`` / ``<kernel>_backward``."""

    kernel = ""

    def __init__(self, inplace: bool = False) -> None:
        super().__init__()
        self.inplace = bool(inplace)
        self._cache = None
        self._shape = None
        self._dtype = None

    def _args(self) -> tuple:
        return ()

    def forward(self, x):
        self._check_input(x)
        y, self._cache = getattr(self._forward_ops(), self.kernel + "_forward")(x, *self._args())
        self._shape, self._dtype = tuple(x.shape), x.dtype
        if x.ndim == 0:                    # NumPy's 0-d arithmetic gives scalars: an array
            y = get_array_module(x).asarray(y)
        if self.inplace:
            x[...] = y
            return x
        return y

    def backward(self, dy, input_grad: bool = True):
        ops = self._backward_ops()
        self._check_grad(dy, self._shape, self._dtype)
        dx = getattr(ops, self.kernel + "_backward")(dy, self._cache)
        return get_array_module(dy).asarray(dx) if dy.ndim == 0 else dx

    def extra_repr(self) -> str:
        return "inplace=True" if self.inplace else ""


class ReLU(_Activation):
    """``ReLU(inplace=False)``: y = max(x, 0); dy/dx = 1 where x > 0, else 0."""

    kernel = "relu"

    def kink_pattern(self):
        """Which side of the kink at 0 each input fell on in the last forward (``x > 0``),
        for gradient checks; the cache is that mask, or y (fast kernels, ``y > 0``)."""
        c = self._cache
        return None if c is None else (c if c.dtype.kind == "b" else c > 0)


class LeakyReLU(_Activation):
    """``LeakyReLU(negative_slope=0.01, inplace=False)``: y = x (x > 0), else slope * x."""

    kernel = "leaky_relu"

    def __init__(self, negative_slope: float = 0.01, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.negative_slope = float(negative_slope)

    def _args(self) -> tuple:
        return (self.negative_slope,)

    def kink_pattern(self):
        """``x > 0`` of the last forward (the kink at 0), for gradient checks."""
        return None if self._cache is None else self._cache[0]

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}" + (", inplace=True" if self.inplace else "")


class ELU(_Activation):
    """``ELU(alpha=1.0, inplace=False)``: y = x (x > 0), else alpha (e^x - 1)."""

    kernel = "elu"

    def __init__(self, alpha: float = 1.0, inplace: bool = False) -> None:
        super().__init__(inplace)
        self.alpha = float(alpha)

    def _args(self) -> tuple:
        return (self.alpha,)

    def kink_pattern(self):
        """``x > 0`` of the last forward (the kink at 0 when alpha != 1)."""
        return None if self._cache is None else self._cache[0]

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}" + (", inplace=True" if self.inplace else "")


class Tanh(_Activation):
    """``Tanh()``: y = tanh(x); dy/dx = 1 - y^2."""

    kernel = "tanh"

    def __init__(self) -> None:
        super().__init__()


class Sigmoid(_Activation):
    """``Sigmoid()``: y = 1 / (1 + e^-x), computed without overflow; dy/dx = y (1 - y)."""

    kernel = "sigmoid"

    def __init__(self) -> None:
        super().__init__()


class SiLU(_Activation):
    """``SiLU(inplace=False)``: y = x sigmoid(x)."""

    kernel = "silu"


class GELU(_Activation):
    """``GELU(approximate="none")``: y = x Phi(x) (Phi the normal CDF, through erf), or with
    ``approximate="tanh"`` PyTorch's tanh approximation."""

    kernel = "gelu"

    def __init__(self, approximate: str = "none") -> None:
        super().__init__()
        if approximate not in ("none", "tanh"):
            raise ValueError(f"GELU: approximate must be 'none' or 'tanh', got {approximate!r}")
        self.approximate = approximate

    def _args(self) -> tuple:
        return (self.approximate,)

    def extra_repr(self) -> str:
        return f"approximate={self.approximate!r}"


def legacy_softmax_dim(ndim: int) -> int:
    """PyTorch's choice when ``dim`` is None: 0 for 0-, 1- and 3-D inputs, else 1."""
    return 0 if ndim in (0, 1, 3) else 1


class _Softmax(_Activation):
    def __init__(self, dim: int | None = None) -> None:
        super().__init__()
        self.dim = None if dim is None else int(dim)

    def forward(self, x):
        self._check_input(x)
        ndim = max(x.ndim, 1)
        dim = legacy_softmax_dim(x.ndim) if self.dim is None else self.dim
        if not -ndim <= dim < ndim:
            from ..errors import ShapeError
            raise ShapeError(f"{self.describe()}: dim {dim} is out of range for an input of "
                             f"shape {tuple(x.shape)}")
        self._dim = dim if x.ndim else None
        return super().forward(x)

    def _args(self) -> tuple:
        return (self._dim,)

    def extra_repr(self) -> str:
        return f"dim={self.dim}"


class Softmax(_Softmax):
    """``Softmax(dim=None)``: y = e^x / sum(e^x) along ``dim`` (None: PyTorch's legacy
    choice, ``legacy_softmax_dim``)."""

    kernel = "softmax"


class LogSoftmax(_Softmax):
    """``LogSoftmax(dim=None)``: y = x - log sum(e^x) along ``dim``."""

    kernel = "log_softmax"
