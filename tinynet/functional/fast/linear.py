"""Fast Linear: the same results as the reference, with fewer passes over memory.

Same functions, arguments and results as :mod:`tinynet.functional.linear` (read that
first). What changes:

* the bias is added in place into the product (``y += b``) instead of into a new array;
* db is the column sum written as a matrix-vector product with a vector of ones,
  ``1_N @ dy``: NumPy's reduction over the outer axis of a tall matrix runs row by row
  (measured 2.5x slower).
"""

from __future__ import annotations

from ...backend import get_array_module


def linear_forward(x, weight, bias=None):
    """y = x @ W.T + b, the bias added in place."""
    y = x @ weight.T
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache, input_grad: bool = True):
    """dW = dy.T @ x, db = 1_N @ dy, dx = dy @ W."""
    xp = get_array_module(dy)
    x, weight, has_bias = cache
    dw = dy.T @ x
    db = xp.ones((dy.shape[0],), dtype=dy.dtype) @ dy if has_bias else None
    dx = dy @ weight if input_grad else None
    return dx, dw, db
