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
from ..parallel import ELEMENT_GRAIN, parallel_for

# Width of the rows of zeros the fast ReLU compares against (64 KiB of float32: stays
# in the L2 cache). See ``relu_forward``.
ZERO_ROW = 16384


def memory_order_flat(a, like=None):
    """A 1-D view of ``a``'s elements in memory order, or None when there is none.

    Works for any array that is contiguous in some axis order (C order, F order, the
    channels-last ``(N, C, H, W)`` views Conv2d returns). With ``like``, the axis order
    is taken from ``like`` (so two arrays of one layout are flattened alike) and None is
    returned unless ``a`` is contiguous in that order too.
    """
    ref = a if like is None else like
    if tuple(a.shape) != tuple(ref.shape):
        return None
    order = sorted(range(a.ndim), key=lambda i: -ref.strides[i])
    t = a.transpose(order)
    if not t.flags.c_contiguous:
        return None
    return t.reshape(-1)


def relu_forward(x, zeros=None):
    """y = max(x, 0), in x's memory order. Shapes: any; y has x's shape and layout.

    NumPy's ``maximum(x, 0)`` against a scalar runs a slow scalar loop (measured 2.6x
    slower than against an array on 256x512 float32, and than ``x + 0``); comparing the
    memory-order rows of x with a kept row of ``ZERO_ROW`` zeros takes the vectorised
    array-array loop. Same ufunc, same results (NaN propagates as in ``maximum``).
    ``zeros`` is that row (made when None); ``relu_naive`` is the reference.
    """
    xp = get_array_module(x)
    y = xp.empty_like(x)
    fx, fy = memory_order_flat(x), memory_order_flat(y, like=x)
    if fx is None or fy is None:
        return xp.maximum(x, 0, out=y)
    if zeros is None or zeros.dtype != x.dtype or type(zeros) is not type(x):
        zeros = xp.zeros((ZERO_ROW,), dtype=x.dtype)
    rows = fx.size // ZERO_ROW * ZERO_ROW
    if rows:
        fx2, fy2 = fx[:rows].reshape(-1, ZERO_ROW), fy[:rows].reshape(-1, ZERO_ROW)
        parallel_for(xp, rows // ZERO_ROW,
                     lambda s, e: xp.maximum(fx2[s:e], zeros, out=fy2[s:e]),
                     grain=max(1, ELEMENT_GRAIN // ZERO_ROW))
    if rows < fx.size:
        xp.maximum(fx[rows:], 0, out=fy[rows:])
    return y


def relu_backward(dy, y):
    """dx = dy * (y > 0) for y = relu(x) (``y > 0`` is exactly ``x > 0``). Shapes: any.

    Written as two passes in y's memory order: the comparison written straight into dx
    as 0.0 / 1.0, then dx *= dy in place. NumPy's ``dy * (y > 0)`` mixes float and bool
    and converts the mask in a slower buffered loop (0.56 vs 0.69 ms on 64x32x28x28
    float32). Same products, so the same results, NaN and infinities included.
    """
    xp = get_array_module(dy)
    dx = xp.empty_like(y)
    fy, fdx, fdy = memory_order_flat(y), memory_order_flat(dx, like=y), \
        memory_order_flat(dy, like=y)
    if fy is None or fdx is None or fdy is None:
        return xp.multiply(dy, y > 0)

    def run(s: int, e: int) -> None:
        xp.greater(fy[s:e], 0, out=fdx[s:e])
        xp.multiply(fdx[s:e], fdy[s:e], out=fdx[s:e])

    parallel_for(xp, fy.size, run, grain=ELEMENT_GRAIN)
    return dx


def relu_naive(x):
    """The definition, element by element: y = x if x > 0 else 0 (tests only)."""
    import math

    import numpy
    x = numpy.asarray(x)
    return numpy.array([v if v > 0 or math.isnan(v) else 0.0 for v in x.ravel()],
                       dtype=x.dtype).reshape(x.shape)


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

    Caches the output y; ``y > 0`` is exactly ``x > 0``, so no copy of x is kept. The
    forward is :func:`relu_forward` (a kept row of zeros makes NumPy vectorise it).
    """

    def __init__(self) -> None:
        super().__init__()
        self._y = None
        self._zeros = None

    def forward(self, x):
        self._enter(x)
        z = self._zeros
        if z is None or z.dtype != x.dtype or type(z) is not type(x):
            z = self._zeros = get_array_module(x).zeros((ZERO_ROW,), dtype=x.dtype)
        self._y = y = relu_forward(x, z)
        return y

    def backward(self, dy, input_grad: bool = True):
        return relu_backward(dy, self._cached(self._y, dy))


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
    overflows and small outputs keep their relative precision. With z = e^-|x| (in
    (0, 1]) both cases are one division ``max(z, [x >= 0]) / (1 + z)``: the numerator is
    1 for x >= 0 and z for x < 0, exactly, with no select (NumPy's ``where`` on a random
    mask was measured 10x slower than this whole forward).
    """

    def __init__(self) -> None:
        super().__init__()
        self._y = None

    def forward(self, x):
        xp = self._enter(x)
        z = xp.abs(x)
        xp.negative(z, out=z)
        xp.exp(z, out=z)                          # z = e^-|x|
        y = xp.add(z, x.dtype.type(1))            # 1 + z
        xp.maximum(z, x >= 0, out=z)              # numerator: 1 (x >= 0) or z (x < 0)
        xp.divide(z, y, out=y)
        self._y = y
        return y

    def backward(self, dy, input_grad: bool = True):
        y = self._cached(self._y, dy)
        return dy * (y * (1 - y))


class LeakyReLU(_Elementwise):
    """y = x for x > 0, else negative_slope * x;  dy/dx = 1 for x > 0, else negative_slope.

    At x = 0 the slope is ``negative_slope``, as in PyTorch. For the usual slopes
    s in [0, 1] both are computed without a select (NumPy's ``where`` on a random mask
    was measured ~10x slower than a plain element-wise pass), exactly:

        y = max(x, s x)                 (s x <= x for x > 0, s x >= x for x < 0)
        dy/dx = max([x > 0], s)         (1 where x > 0, else s)

    Other slopes take ``where``.
    """

    def __init__(self, negative_slope: float = 0.01) -> None:
        super().__init__()
        self.negative_slope = float(negative_slope)
        self._positive = None

    def forward(self, x):
        xp = self._enter(x)
        s = x.dtype.type(self.negative_slope)
        self._positive = positive = x > 0
        if 0.0 <= self.negative_slope <= 1.0:
            y = xp.multiply(x, s)
            return xp.maximum(x, y, out=y)
        return xp.where(positive, x, x * s)

    def backward(self, dy, input_grad: bool = True):
        positive = self._cached(self._positive, dy)
        xp = get_array_module(dy)
        s = dy.dtype.type(self.negative_slope)
        if 0.0 <= self.negative_slope <= 1.0:
            slope = positive.astype(dy.dtype)
            xp.maximum(slope, s, out=slope)
            return xp.multiply(slope, dy, out=slope)
        return xp.where(positive, dy, dy * s)

    def extra_repr(self) -> str:
        return f"negative_slope={self.negative_slope}"


class ELU(_Elementwise):
    """y = x for x > 0, else alpha (e^x - 1);  dy/dx = 1 for x > 0, else alpha e^x = y + alpha.

    Without a select (see LeakyReLU), exactly: ``alpha * expm1(min(x, 0))`` is 0 for
    x > 0, so ``y = relu(x) + alpha * expm1(min(x, 0))``; and with p = [x > 0] as 0/1,
    ``dy/dx = p + (1 - p) (min(y, 0) + alpha)``, where ``min(y, 0) + alpha`` is finite
    everywhere (so 0 times it is 0) and equals y + alpha for x <= 0.
    """

    def __init__(self, alpha: float = 1.0) -> None:
        super().__init__()
        self.alpha = float(alpha)
        self._y = None
        self._positive = None

    def forward(self, x):
        xp = self._enter(x)
        a = x.dtype.type(self.alpha)
        self._positive = x > 0
        e = xp.minimum(x, 0)
        xp.expm1(e, out=e)
        e *= a                                   # 0 for x > 0
        y = relu_forward(x)
        y += e
        self._y = y
        return y

    def backward(self, dy, input_grad: bool = True):
        y, positive = self._cached(self._y, dy), self._positive
        xp = get_array_module(dy)
        p = positive.astype(dy.dtype)
        g = xp.minimum(y, 0)
        g += y.dtype.type(self.alpha)            # y + alpha where x <= 0, alpha elsewhere
        g *= 1 - p
        g += p
        g *= dy
        return g

    def extra_repr(self) -> str:
        return f"alpha={self.alpha}"
