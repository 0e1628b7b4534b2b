"""Element-wise activations. Each caches the least its backward needs.

For y = f(x) applied element-wise, dL/dx = dL/dy * f'(x): the local derivative
multiplies the upstream gradient element by element, so every backward here is one
or two passes over the data.
"""

from __future__ import annotations

from ..backend import get_array_module
from ..checks import check_finite, checks_enabled
from ..errors import DTypeError, ShapeError
from ..module import Module


class _Elementwise(Module):
    """Shared plumbing: input checks, the opt-in finite checks and the "forward first" guard.

    ``_cached(value, dy)`` also checks that dy has the shape of the last forward's
    output (a cached value of that shape), so a wrong gradient cannot broadcast.
    """

    def _enter(self, x):
        if not hasattr(x, "shape"):
            raise ShapeError(f"{self.describe()}: expected an array, got {type(x).__name__}")
        if x.dtype.kind != "f":
            raise DTypeError(f"{self.describe()}: got {x.dtype} input, expected a "
                             f"floating-point dtype (float32 or float64)")
        if checks_enabled():
            check_finite(x, self.describe())
        return get_array_module(x)

    def _cached(self, value, dy=None):
        if value is None:
            raise RuntimeError(f"{self.describe()}: backward called before forward")
        if dy is not None:
            if tuple(getattr(dy, "shape", ())) != tuple(value.shape):
                raise ShapeError(f"{self.describe()}: got gradient of shape "
                                 f"{tuple(getattr(dy, 'shape', ()))}, expected "
                                 f"{tuple(value.shape)} (the last forward's output)")
            if checks_enabled():
                check_finite(dy, self.describe(), "gradient")
        return value


class ReLU(_Elementwise):
    """ReLU: y = max(x, 0);  dy/dx = 1 where x > 0, else 0 (0 at x = 0, as PyTorch).

    Caches the output y; ``y > 0`` is exactly ``x > 0``, so no copy of x is kept.
    """

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x):
        xp = self._enter(x)
        self._y = y = xp.maximum(x, 0)
        return y

    def backward(self, dy, input_grad: bool = True):
        y = self._cached(self._y, dy)
        xp = get_array_module(dy)
        return xp.multiply(dy, y > 0)


class Tanh(_Elementwise):
    """tanh: y = tanh(x);  dy/dx = 1 - tanh(x)^2 = 1 - y^2 (so y is all we cache)."""

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x):
        xp = self._enter(x)
        self._y = y = xp.tanh(x)
        return y

    def backward(self, dy, input_grad: bool = True):
        y = self._cached(self._y, dy)
        return dy * (1 - y * y)


class Sigmoid(_Elementwise):
    """Logistic sigmoid: y = 1 / (1 + exp(-x));  dy/dx = y (1 - y).

    Computed as 1/(1+e^-|x|) or e^-|x|/(1+e^-|x|) by the sign of x, so exp never
    overflows and small outputs keep their relative precision.
    """

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x):
        xp = self._enter(x)
        z = xp.exp(-xp.abs(x))
        self._y = y = xp.where(x >= 0, 1 / (1 + z), z / (1 + z)).astype(x.dtype, copy=False)
        return y

    def backward(self, dy, input_grad: bool = True):
        y = self._cached(self._y, dy)
        return dy * (y * (1 - y))


class LeakyReLU(_Elementwise):
    """y = x for x > 0, else negative_slope * x;  dy/dx = 1 for x > 0, else negative_slope.

    At x = 0 the slope is ``negative_slope``, as in PyTorch.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)
        self._positive = None

    def forward(self, x):
        xp = self._enter(x)
        self._positive = positive = x > 0
        return xp.where(positive, x, x * x.dtype.type(self.negative_slope))

    def backward(self, dy, input_grad: bool = True):
        positive = self._cached(self._positive, dy)
        xp = get_array_module(dy)
        return xp.where(positive, dy, dy * dy.dtype.type(self.negative_slope))

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(_Elementwise):
    """y = x for x > 0, else alpha (e^x - 1);  dy/dx = 1 for x > 0, else alpha e^x = y + alpha."""

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self._y = None
        self._positive = None

    def forward(self, x):
        xp = self._enter(x)
        a = x.dtype.type(self.alpha)
        self._positive = positive = x > 0
        self._y = y = xp.where(positive, x, a * xp.expm1(xp.minimum(x, 0)))
        return y

    def backward(self, dy, input_grad: bool = True):
        y, positive = self._cached(self._y, dy), self._positive
        xp = get_array_module(dy)
        return xp.where(positive, dy, dy * (y + y.dtype.type(self.alpha)))

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
