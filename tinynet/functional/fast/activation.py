"""Fast activations: the same results as the reference, fewer or faster passes.

Same functions, arguments and results as :mod:`tinynet.functional.activation` (read
that first). What changes, per function, with the measurement that justified it:

* ``sigmoid_forward``, ``leaky_relu_*``, ``elu_*``: the same values without ``where``,
  which on a random mask costs several plain passes. Measured forward + backward on
  256x512 float32 (``python -m benchmarks.variants``, docs/benchmarks.md): sigmoid 2.6x,
  LeakyReLU 6.4x, ELU 2.5x faster than the reference.

* ``relu_forward`` / ``relu_backward``: the reference's passes, split over tinynet's
  threads inside a convolutional model's forward and backward (:mod:`.threads`), in
  the input's memory order. (Its former single-thread tricks, a kept row of zeros and a
  two-pass backward, measured no faster than the reference and were removed.)

Every other activation is the reference one.
"""

from __future__ import annotations

from ...backend import get_array_module
from .. import activation as reference
from .layout import memory_order_flat
from .threads import ELEMENT_GRAIN, in_region, parallel_for


def relu_forward(x):
    """y = max(x, 0) split over the threads in a region, whose cache is y (``y > 0`` is
    exactly ``x > 0``); outside one, the reference (its cache is the mask)."""
    xp = get_array_module(x)
    if not in_region():
        return reference.relu_forward(x)
    y = xp.empty_like(x)
    fx, fy = memory_order_flat(x), memory_order_flat(y, like=x)
    if fx is None or fy is None:
        y = xp.maximum(x, 0)
        return y, y
    parallel_for(xp, fx.size, lambda s, e: xp.maximum(fx[s:e], 0, out=fy[s:e]),
                 ELEMENT_GRAIN)
    return y, y


def relu_backward(dy, y):
    """dx = dy * [y > 0]."""
    xp = get_array_module(dy)
    if not isinstance(y, type(dy)) or y.dtype != dy.dtype:   # the reference's cache: a mask
        return reference.relu_backward(dy, y)
    dx = xp.empty_like(y)
    fy, fdx, fdy = (memory_order_flat(y), memory_order_flat(dx, like=y),
                    memory_order_flat(dy, like=y))
    if fy is None or fdx is None or fdy is None:
        return dy * (y > 0)
    parallel_for(xp, fy.size,
                 lambda s, e: xp.multiply(fdy[s:e], fy[s:e] > 0, out=fdx[s:e]), ELEMENT_GRAIN)
    return dx


def sigmoid_forward(x):
    """With z = e^-|x| (in (0, 1]) both of the reference's cases are one division
    ``max(z, [x >= 0]) / (1 + z)``: the numerator is 1 for x >= 0 and z for x < 0, exactly.
    """
    if x.ndim == 0:                       # the ``out=`` passes need arrays, not scalars
        return reference.sigmoid_forward(x)
    xp = get_array_module(x)
    z = xp.exp(-xp.abs(x))                    # e^-|x|
    y = z + x.dtype.type(1)                   # 1 + z
    xp.maximum(z, x >= 0, out=z)              # numerator: 1 (x >= 0) or z (x < 0)
    xp.divide(z, y, out=y)
    return y, y


sigmoid_backward = reference.sigmoid_backward


def leaky_relu_forward(x, negative_slope: float = 0.01):
    """For slopes s in [0, 1]: y = max(x, s x) exactly (s x <= x for x > 0, >= for x < 0).
    The cache is the mask x > 0 and the slope."""
    if not 0.0 <= negative_slope <= 1.0 or x.ndim == 0:
        return reference.leaky_relu_forward(x, negative_slope)
    xp = get_array_module(x)
    y = x * x.dtype.type(negative_slope)
    return xp.maximum(x, y, out=y), (x > 0, negative_slope)


def leaky_relu_backward(dy, cache):
    """For slopes in [0, 1] the slope max([x > 0], s) is 1 where x > 0, else s."""
    mask, negative_slope = cache
    if not 0.0 <= negative_slope <= 1.0 or dy.ndim == 0:
        return reference.leaky_relu_backward(dy, cache)
    xp = get_array_module(dy)
    slope = mask.astype(dy.dtype)
    xp.maximum(slope, dy.dtype.type(negative_slope), out=slope)
    return xp.multiply(slope, dy, out=slope)


def elu_forward(x, alpha: float = 1.0):
    """``alpha expm1(min(x, 0))`` is 0 for x > 0, so y = relu(x) + alpha expm1(min(x, 0))."""
    if x.ndim == 0:
        return reference.elu_forward(x, alpha)
    xp = get_array_module(x)
    e = xp.minimum(x, 0)
    xp.expm1(e, out=e)
    e *= x.dtype.type(alpha)
    y = xp.maximum(x, 0)
    y += e
    return y, (x > 0, y, alpha)


def elu_backward(dy, cache):
    """With p = [x > 0] as 0/1: dy/dx = p + (1 - p) (min(y, 0) + alpha), where
    ``min(y, 0) + alpha`` is finite everywhere and equals y + alpha for x <= 0."""
    xp = get_array_module(dy)
    mask, y, alpha = cache
    p = mask.astype(dy.dtype)
    g = xp.minimum(y, 0)
    g += y.dtype.type(alpha)
    g *= 1 - p
    g += p
    g *= dy
    return g
