"""Memory-layout helpers of the fast kernels (the reference kernels ignore layout)."""

from __future__ import annotations

__all__ = ["is_channels_last", "memory_order_flat"]


def is_channels_last(a) -> bool:
    """True when the ``(N, C, H, W)`` array ``a`` has C as its fastest axis in memory
    (what the fast convolution returns)."""
    strides = getattr(a, "strides", None)
    if strides is None or len(a.shape) != 4 or a.shape[1] == 1:
        return False
    return strides[1] < strides[3] and strides[1] < strides[2]


def memory_order_flat(a, like=None):
    """A 1-D view of ``a``'s elements in memory order, or None when there is none.

    Works for any array that is contiguous in some axis order (C order, F order, the
    channels-last ``(N, C, H, W)`` views the fast Conv2d returns). With ``like``, the axis
    order is taken from ``like`` (so two arrays of one layout are flattened alike) and
    None is returned unless ``a`` is contiguous in that order too.
    """
    ref = a if like is None else like
    if tuple(a.shape) != tuple(ref.shape) or a.ndim == 0:
        return None
    order = sorted(range(a.ndim), key=lambda i: -ref.strides[i])
    t = a.transpose(order)
    if not t.flags.c_contiguous:
        return None
    return t.reshape(-1)
