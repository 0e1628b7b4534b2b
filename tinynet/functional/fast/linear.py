"""Fast Linear: the reference's products, split over CPU threads in a threaded region.

Same functions, arguments and results as :mod:`tinynet.functional.linear` (read that
first). Inside a convolutional model's forward and backward NumPy's BLAS is held at one
thread (:mod:`.threads`), so the three products are split over tinynet's threads instead
(``threads.matmul``) and db is a column sum per range; everywhere else (an MLP) these are
the reference's single BLAS calls with the BLAS's own threads.
"""

from __future__ import annotations

from .threads import column_sums, matmul


def linear_forward(x, weight, bias=None):
    """y = x @ W.T + b, the product split over the threads in a region."""
    y = matmul(x, weight.T)
    if bias is not None:
        y += bias
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache, input_grad: bool = True):
    """dW = dy.T @ x, db = column sums of dy, dx = dy @ W, each split in a region."""
    x, weight, has_bias = cache
    dw = matmul(dy.T, x)
    db = column_sums(dy) if has_bias else None
    dx = matmul(dy, weight) if input_grad else None
    return dx, dw, db
