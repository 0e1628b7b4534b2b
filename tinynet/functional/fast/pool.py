"""Fast max pooling: the same results as the reference, in the input's memory order.

Same functions, arguments and results as :mod:`tinynet.functional.pool` (read that
first), for dilation 1 without ``ceil_mode`` (other poolings, and average pooling, run
the reference kernels). What changes:

* Outputs keep x's memory order, so channels-last activations from a convolution stay
  channels-last: the kernels work on a 5-D "frame" view whose last axis is the fastest
  one in memory and allocate every output C-contiguous in that frame. Measured on the
  SimpleCNN pool (64x32x28x28, channels-last): a reduction ``max(axis=(3, 5))`` over a
  reshape took ~10 ms and chained ufuncs without ``out=`` ~8 ms, the framed version with
  ``out=`` buffers ~1 ms.
* The arg-max is found without an arg-max reduction or a stacked copy of the windows:
  with ne_k = (tap_k != y), the first maximum's index is ne_0 + ne_0 ne_1 + ne_0 ne_1
  ne_2 + ... (one comparison, one AND and one addition per tap), kept as int8.
* The samples are split over tinynet's CPU threads (:mod:`.threads`).
"""

from __future__ import annotations

import math

from ...backend import get_array_module
from .. import pool as reference
from ..pool import pool_output_size
from .layout import is_channels_last
from .threads import ELEMENT_GRAIN, parallel_for


def _frame(a, channels_last: bool):
    """View ``(N, C, H, W)`` as 5-D ``(N, P, H, W, Q)`` with the memory order's last axis last.

    Channels-last: ``(N, 1, H, W, C)``; otherwise ``(N, C, H, W, 1)``. Kernels allocate
    their outputs C-contiguous in this frame, so they keep the input's memory order
    (NumPy's ufuncs would otherwise pick a slow iteration order for strided views).
    """
    return a.transpose(0, 2, 3, 1)[:, None] if channels_last else a[..., None]


def _unframe(f, channels_last: bool):
    """Inverse of ``_frame``: the ``(N, C, H, W)`` view of a 5-D frame array."""
    return f[:, 0].transpose(0, 3, 1, 2) if channels_last else f[..., 0]


def _frame_shape(n: int, c: int, h: int, w: int, channels_last: bool) -> tuple:
    return (n, 1, h, w, c) if channels_last else (n, c, h, w, 1)


def _taps(frame, kernel, stride, out_hw):
    """Yield ``(k, view)`` per kernel tap ``(i, j)``, k = i*KW + j, view (N, P, OH, OW, Q)."""
    kh, kw = kernel
    sh, sw = stride
    oh, ow = out_hw
    for i in range(kh):
        for j in range(kw):
            yield i * kw + j, frame[:, :, i:i + sh * (oh - 1) + 1:sh, j:j + sw * (ow - 1) + 1:sw]


def _padded_frame(x, padding, value, channels_last):
    """x in the 5-D frame, padded by ``(PH, PW)`` with ``value`` (a view when no padding)."""
    ph, pw = padding
    if ph == 0 and pw == 0:
        return _frame(x, channels_last)
    xp = get_array_module(x)
    n, c, h, w = x.shape
    out = xp.full(_frame_shape(n, c, h + 2 * ph, w + 2 * pw, channels_last), value,
                  dtype=x.dtype)
    out[:, :, ph:ph + h, pw:pw + w, :] = _frame(x, channels_last)
    return out


def _sample_grain(x_shape) -> int:
    """Samples per thread's range: at least ``ELEMENT_GRAIN`` input elements."""
    _n, c, h, w = x_shape
    return max(1, ELEMENT_GRAIN // max(1, c * h * w))


def maxpool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1,
                      ceil_mode: bool = False):
    """``reference.maxpool2d_forward``; y keeps x's memory order. The cache holds the
    arg-max tap index per output (int8 for up to 127 taps) in the frame layout."""
    kernel, stride, padding, dilation = reference.pool_arguments(kernel_size, stride, padding,
                                                                 dilation)
    if dilation != (1, 1) or ceil_mode:
        return reference.maxpool2d_forward(x, kernel, stride, padding, dilation, ceil_mode)
    xp = get_array_module(x)
    n, c, h, w = x.shape
    oh = pool_output_size(h, kernel[0], stride[0], padding[0])
    ow = pool_output_size(w, kernel[1], stride[1], padding[1])
    cl = is_channels_last(x)
    frame = _padded_frame(x, padding, -math.inf, cl)
    fshape = _frame_shape(n, c, oh, ow, cl)
    yf = xp.empty(fshape, dtype=x.dtype)
    ntaps = kernel[0] * kernel[1]
    itype = "int8" if ntaps <= 127 else ("int16" if ntaps <= 32767 else "int32")
    argmax = xp.zeros(fshape, dtype=itype)

    def run(start: int, stop: int) -> None:       # the samples [start, stop)
        taps = [t for _, t in _taps(frame[start:stop], kernel, stride, (oh, ow))]
        y, arg = yf[start:stop], argmax[start:stop]
        if ntaps == 1:
            y[...] = taps[0]
            return
        xp.maximum(taps[0], taps[1], out=y)
        for tap in taps[2:]:
            xp.maximum(y, tap, out=y)
        leading = xp.empty(y.shape, dtype=bool)     # all taps so far differ from the max
        differs = xp.empty(y.shape, dtype=bool)
        xp.not_equal(taps[0], y, out=leading)
        xp.add(arg, leading, out=arg)
        for tap in taps[1:-1]:
            xp.not_equal(tap, y, out=differs)
            xp.logical_and(leading, differs, out=leading)
            xp.add(arg, leading, out=arg)

    parallel_for(xp, n, run, grain=_sample_grain(x.shape))
    return _unframe(yf, cl), ("fast", argmax, cl, tuple(x.shape), kernel, stride, padding)


def maxpool2d_backward(dy, cache):
    """dL/dx: each window's gradient goes to its (first) arg-max, nothing to the rest.

    Shapes: dy ``(N, C, OH, OW)`` -> dx ``(N, C, H, W)``. ``dy/dx`` is 1 at the arg-max
    and 0 elsewhere, so for tap k the positions whose arg-max is k receive dy:
    ``dxpad[tap k] = where(argmax == k, dy, 0)`` when windows do not overlap (then each
    input position belongs to one tap of one window), ``+=`` when they do.
    """
    if not _is_fast(cache):
        return reference.maxpool2d_backward(dy, cache)
    xp = get_array_module(dy)
    _, argmax, cl, x_shape, kernel, stride, padding = cache
    n, c, h, w = x_shape
    ph, pw = padding
    oh, ow = dy.shape[2], dy.shape[3]
    disjoint = stride[0] >= kernel[0] and stride[1] >= kernel[1]
    covers = stride == kernel and padding == (0, 0) and oh * kernel[0] == h \
        and ow * kernel[1] == w
    fshape = _frame_shape(n, c, h + 2 * ph, w + 2 * pw, cl)
    dxf = xp.empty(fshape, dtype=dy.dtype) if covers else xp.zeros(fshape, dtype=dy.dtype)
    dyf = _frame(dy, cl)

    def run(start: int, stop: int) -> None:       # the samples [start, stop)
        arg, g = argmax[start:stop], dyf[start:stop]
        hit = xp.empty(arg.shape, dtype=bool)
        for k, tap in _taps(dxf[start:stop], kernel, stride, (oh, ow)):
            xp.equal(arg, k, out=hit)
            if disjoint:
                xp.multiply(g, hit, out=tap)
            else:
                tap += g * hit

    parallel_for(xp, n, run, grain=_sample_grain(x_shape))
    return _unframe(dxf, cl)[:, :, ph:ph + h, pw:pw + w]




def maxpool2d_indices(cache):
    """``reference.maxpool2d_indices`` of a fast cache (the arg-max read out of its frame)."""
    if not _is_fast(cache):
        return reference.maxpool2d_indices(cache)
    _, argmax, cl, x_shape, kernel, stride, padding = cache
    pad_shape = x_shape[:2] + (x_shape[2] + 2 * padding[0], x_shape[3] + 2 * padding[1])
    return reference.maxpool2d_indices((_unframe(argmax, cl), x_shape, pad_shape, kernel,
                                        stride, padding, (1, 1)))


def _is_fast(cache) -> bool:
    """A cache this module's forward made (the reference's, for what it left to it, not)."""
    return isinstance(cache[0], str) and cache[0] == "fast"
