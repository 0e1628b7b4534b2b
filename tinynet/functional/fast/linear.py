"""Fast Linear: the reference's products, split over CPU threads in a threaded region.

Same functions, arguments and results as :mod:`tinynet.functional.linear` (read that
first). Inside a convolutional model's forward and backward NumPy's BLAS is held at one
thread (:mod:`.threads`), so the products are split over tinynet's threads instead: the
forward's by ``threads.matmul``, the backward's three (dW, db, dx) per range of the
batch in one hand-off. Everywhere else (an MLP) these are the reference kernels, with
the BLAS's own threads (faster there: the wrappers cost ~5 % of the base MLP's step).
"""

from __future__ import annotations

from ...backend import get_array_module
from .. import linear as reference
from .threads import MATMUL_GRAIN, in_region, matmul, sum_over_ranges


def linear_forward(x, weight, bias=None):
    """y = x @ W.T + b, the product split over the threads in a region."""
    if not in_region():
        return reference.linear_forward(x, weight, bias)
    y = matmul(x, weight.T)
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache, input_grad: bool = True):
    """dW = dy.T @ x, db = column sums of dy, dx = dy @ W. In a region the three are
    computed per range of the batch in one hand-off to the threads (each costs ~90 us),
    the partial dW and db added in range order."""
    if not in_region():
        return reference.linear_backward(dy, cache, input_grad)
    x, weight, has_bias = cache
    xp = get_array_module(dy)
    n = dy.shape[0]
    dx = xp.empty((n, weight.shape[1]), dtype=dy.dtype) if input_grad else None

    def run(start: int, stop: int) -> tuple:
        g = dy[start:stop]
        if dx is not None:
            xp.matmul(g, weight, out=dx[start:stop])
        return g.T @ x[start:stop], \
            (xp.ones((stop - start,), dtype=dy.dtype) @ g if has_bias else None)

    if n == 0:
        return dx, xp.zeros(weight.shape, dtype=dy.dtype), \
            (xp.zeros((weight.shape[0],), dtype=dy.dtype) if has_bias else None)
    dw, db = sum_over_ranges(xp, n, run, grain=max(1, MATMUL_GRAIN // max(1, weight.size)))
    return dx, dw, db
