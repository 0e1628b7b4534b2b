"""Linear (fully connected) layer: the reference kernels.

Shapes: x ``(N, D_in)``, weight W ``(D_out, D_in)`` (PyTorch's layout), bias b
``(D_out,)``, y ``(N, D_out)``. (Inputs with more leading axes, ``(*, D_in)``, are
flattened to ``(N, D_in)`` by the layer before they get here.)

Forward, one dot product per output::

    y[n, o] = sum_i x[n, i] W[o, i] + b[o]            y = x @ W.T + b

Backward. Given dy = dL/dy ``(N, D_out)``, the chain rule on that sum: y[n, o] depends on
x[n, i] with slope W[o, i], on W[o, i] with slope x[n, i], and on b[o] with slope 1, so::

    dL/dx[n, i] = sum_o dy[n, o] W[o, i]              dx = dy @ W        (N, D_in)
    dL/dW[o, i] = sum_n dy[n, o] x[n, i]              dW = dy.T @ x      (D_out, D_in)
    dL/db[o]    = sum_n dy[n, o]                      db = dy.sum(0)     (D_out,)

dW and db sum over the batch because every sample used the same weights.
"""

from __future__ import annotations


def linear_forward(x, weight, bias=None):
    """y = x @ W.T + b. x ``(N, D_in)``, weight ``(D_out, D_in)``, bias ``(D_out,)`` or None.

    Returns ``(y, cache)``: y ``(N, D_out)``; the cache keeps x and W for the backward.
    """
    y = x @ weight.T                                  # (N, D_out)
    if bias is not None:
        y = y + bias                                  # b broadcast over the N rows
    return y, (x, weight, bias is not None)


def linear_backward(dy, cache, input_grad: bool = True):
    """dy ``(N, D_out)`` -> ``(dx, dW, db)``: ``(N, D_in)`` (None if not ``input_grad``),
    ``(D_out, D_in)``, ``(D_out,)`` (None without bias)."""
    x, weight, has_bias = cache
    dw = dy.T @ x                                     # (D_out, N) @ (N, D_in)
    db = dy.sum(axis=0) if has_bias else None         # (D_out,)
    dx = dy @ weight if input_grad else None          # (N, D_out) @ (D_out, D_in)
    return dx, dw, db
