"""Dropout: the reference kernels.

Inverted dropout: each element (Dropout) or each whole channel (Dropout2d) is kept with
probability 1 - p and scaled by 1/(1 - p), so the expected output equals the input and
evaluation needs no rescaling. With the keep mask K (0/1, drawn by the layer from
tinynet's generator; ``(N, C, 1, 1)`` for channels, broadcast over H and W)::

    y = x * K / (1 - p)                dL/dx = dL/dy * K / (1 - p)

The mask is a constant of the forward, so the backward is the same multiplication.
With p = 1 everything is dropped and y = 0 (the scale would be infinite; PyTorch
returns zeros too).
"""

from __future__ import annotations


def dropout_forward(x, keep, p: float):
    """y = x * keep / (1 - p). keep: 0/1 (or bool) broadcastable to x. Returns ``(y, cache)``."""
    scale = 0.0 if p >= 1 else 1.0 / (1.0 - p)
    mask = keep * x.dtype.type(scale)         # entries 0 or 1/(1 - p), in x's dtype
    return x * mask, mask


def dropout_backward(dy, mask):
    """dx = dy * K / (1 - p), the forward's mask."""
    return dy * mask
