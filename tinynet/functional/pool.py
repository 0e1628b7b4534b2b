"""Max and average pooling over ``(N, C, H, W)``, as PyTorch (floor mode, no dilation).

Shapes: x ``(N, C, H, W)``, kernel ``(KH, KW)``, stride ``(SH, SW)``, padding
``(PH, PW)``; y ``(N, C, OH, OW)`` with ``OH = (H + 2 PH - KH) // SH + 1`` (OW alike).

Every kernel here loops over the KH*KW kernel *taps* ``(i, j)``: tap ``(i, j)`` of all
windows at once is the strided slice ``xpad[:, :, i::SH, j::SW]`` (OH x OW positions), a
view, so a loop over taps is KH*KW vectorised passes and never a loop over samples or
pixels. For the 2x2 stride-2 case (every study model) the four taps are exactly the
slices of the reshape ``(N, C, OH, 2, OW, 2)``.

Outputs keep x's memory order: channels-last activations from a convolution stay
channels-last. The kernels work on a 5-D "frame" view whose last axis is the fastest
one in memory and allocate every output C-contiguous in that frame; measured on the
SimpleCNN pool (64x32x28x28, channels-last), a reduction ``max(axis=(3, 5))`` over the
reshape took ~10 ms and chained ufuncs without ``out=`` ~8 ms, the framed version
with ``out=`` buffers ~1 ms.

``maxpool2d_naive`` / ``avgpool2d_naive`` and their backward twins are the loop
definitions the tests compare against.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ..parallel import ELEMENT_GRAIN, parallel_for
from .conv import _pair, conv_output_size


def is_channels_last(a) -> bool:
    """True when the ``(N, C, H, W)`` array ``a`` has C as its fastest axis in memory."""
    strides = getattr(a, "strides", None)
    if strides is None or len(a.shape) != 4 or a.shape[1] == 1:
        return False
    return strides[1] < strides[3] and strides[1] < strides[2]


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


def _parse(kernel_size, stride, padding):
    kernel = _pair(kernel_size, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    return kernel, stride, _pair(padding, "padding")


def pool_output_shape(x_shape, kernel, stride, padding) -> tuple[int, int]:
    _, _, h, w = x_shape
    return (conv_output_size(h, kernel[0], stride[0], padding[0]),
            conv_output_size(w, kernel[1], stride[1], padding[1]))


def maxpool2d_forward(x, kernel_size, stride=None, padding=0):
    """y[n, c, oh, ow] = max over the window; the padding counts as -inf.

    Shapes: x ``(N, C, H, W)`` -> y ``(N, C, OH, OW)`` in x's memory order. Returns
    ``(y, cache)``; the cache holds ``argmax`` (int8 for up to 127 taps): the flat tap
    index ``i*KW + j`` of the FIRST maximum in row-major window order (PyTorch's tie
    rule). With ``ne_k = (tap_k != y)`` the first index equals the number of leading taps
    that differ from the max::

        argmax = ne_0 + ne_0 ne_1 + ne_0 ne_1 ne_2 + ...

    which takes one comparison, one AND and one addition per tap (no arg-max reduction,
    no stacked copy of the windows). For the 2x2 stride-2 case the taps are the four
    slices of the ``(N, C, OH, 2, OW, 2)`` split of x, and y = max of the four.
    """
    xp = get_array_module(x)
    kernel, stride, padding = _parse(kernel_size, stride, padding)
    n, c, _h, _w = x.shape
    oh, ow = pool_output_shape(x.shape, kernel, stride, padding)
    cl = is_channels_last(x)
    frame = _padded_frame(x, padding, -numpy.inf, cl)
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
    return _unframe(yf, cl), (argmax, cl, tuple(x.shape), kernel, stride, padding)


def maxpool2d_backward(dy, cache):
    """dL/dx: each window's gradient goes to its (first) arg-max, nothing to the rest.

    Shapes: dy ``(N, C, OH, OW)`` -> dx ``(N, C, H, W)``. ``dy/dx`` is 1 at the arg-max
    and 0 elsewhere, so for tap k the positions whose arg-max is k receive dy:
    ``dxpad[tap k] = where(argmax == k, dy, 0)`` when windows do not overlap (then each
    input position belongs to one tap of one window), ``+=`` when they do.
    """
    xp = get_array_module(dy)
    argmax, cl, x_shape, kernel, stride, padding = cache
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


def avgpool2d_forward(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """y = mean of each window (zero padding). x ``(N, C, H, W)`` -> y ``(N, C, OH, OW)``.

    With ``count_include_pad`` the divisor is always KH*KW (the padding's zeros count);
    otherwise it is the number of window positions inside the input, computed once per
    output position as ``rows_in(oh) * cols_in(ow)``. Returns ``(y, cache)``.
    """
    xp = get_array_module(x)
    kernel, stride, padding = _parse(kernel_size, stride, padding)
    n, c, _h, _w = x.shape
    oh, ow = pool_output_shape(x.shape, kernel, stride, padding)
    cl = is_channels_last(x)
    frame = _padded_frame(x, padding, 0, cl)
    yf = xp.zeros(_frame_shape(n, c, oh, ow, cl), dtype=x.dtype)
    for _, tap in _taps(frame, kernel, stride, (oh, ow)):
        xp.add(yf, tap, out=yf)
    divisor = _avg_divisor(xp, x.shape, kernel, stride, padding, (oh, ow),
                           count_include_pad, x.dtype)
    yf *= divisor
    return _unframe(yf, cl), (cl, tuple(x.shape), kernel, stride, padding, divisor)


def _avg_divisor(xp, x_shape, kernel, stride, padding, out_hw, count_include_pad, dtype):
    """``1 / count``: a scalar, or an ``(OH, OW, 1)`` array when the padding is excluded."""
    kh, kw = kernel
    if count_include_pad or padding == (0, 0):
        return dtype.type(1.0 / (kh * kw))
    _, _, h, w = x_shape
    (sh, sw), (ph, pw) = stride, padding
    oh, ow = out_hw
    starts_h = numpy.arange(oh) * sh - ph
    starts_w = numpy.arange(ow) * sw - pw
    rows = numpy.minimum(starts_h + kh, h) - numpy.maximum(starts_h, 0)
    cols = numpy.minimum(starts_w + kw, w) - numpy.maximum(starts_w, 0)
    return xp.asarray((1.0 / numpy.outer(rows, cols)).astype(dtype)[:, :, None])


def avgpool2d_backward(dy, cache):
    """dL/dx: y is linear in x, each window position with weight 1/count, so every input
    position of a window receives ``dy / count``: ``dxpad[tap k] += dy * divisor`` for each
    tap, then the padding is cropped. dy ``(N, C, OH, OW)`` -> dx ``(N, C, H, W)``.
    """
    xp = get_array_module(dy)
    cl, x_shape, kernel, stride, padding, divisor = cache
    n, c, h, w = x_shape
    ph, pw = padding
    oh, ow = dy.shape[2], dy.shape[3]
    g = _frame(dy, cl) * divisor
    dxf = xp.zeros(_frame_shape(n, c, h + 2 * ph, w + 2 * pw, cl), dtype=dy.dtype)
    for _, tap in _taps(dxf, kernel, stride, (oh, ow)):
        tap += g
    return _unframe(dxf, cl)[:, :, ph:ph + h, pw:pw + w]


# ----------------------------------------------------------------------- references
def _windows_naive(x, kernel, stride, padding, value):
    kernel = _pair(kernel, "kernel_size")
    stride = kernel if stride is None else _pair(stride, "stride")
    padding = _pair(padding, "padding")
    x = numpy.asarray(x)
    ph, pw = padding
    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)), constant_values=value)
    oh, ow = pool_output_shape(x.shape, kernel, stride, padding)
    return x, xpad, kernel, stride, padding, oh, ow


def maxpool2d_naive(x, kernel_size, stride=None, padding=0):
    """Loop definition: y and the first arg-max of each window (row-major), dx given dy."""
    x, xpad, (kh, kw), (sh, sw), _, oh, ow = _windows_naive(x, kernel_size, stride, padding,
                                                            -numpy.inf)
    n, c = x.shape[:2]
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
    arg = numpy.empty((n, c, oh, ow), dtype=numpy.int64)
    for a in range(n):
        for b in range(c):
            for p in range(oh):
                for q in range(ow):
                    win = xpad[a, b, p * sh:p * sh + kh, q * sw:q * sw + kw].ravel()
                    k = int(numpy.argmax(win))  # numpy's argmax returns the first maximum
                    arg[a, b, p, q], y[a, b, p, q] = k, win[k]
    return y, arg


def maxpool2d_backward_naive(dy, x, kernel_size, stride=None, padding=0):
    x, xpad, (_kh, kw), (sh, sw), (ph, pw), oh, ow = _windows_naive(
        x, kernel_size, stride, padding, -numpy.inf)
    _, arg = maxpool2d_naive(x, kernel_size, stride, padding)
    dy = numpy.asarray(dy)
    dxpad = numpy.zeros(xpad.shape, dtype=dy.dtype)
    n, c = x.shape[:2]
    for a in range(n):
        for b in range(c):
            for p in range(oh):
                for q in range(ow):
                    i, j = divmod(int(arg[a, b, p, q]), kw)
                    dxpad[a, b, p * sh + i, q * sw + j] += dy[a, b, p, q]
    return dxpad[:, :, ph:ph + x.shape[2], pw:pw + x.shape[3]]


def avgpool2d_naive(x, kernel_size, stride=None, padding=0, count_include_pad=True):
    """Loop definition of average pooling (the divisor counts padding or not)."""
    x, xpad, (kh, kw), (sh, sw), (ph, pw), oh, ow = _windows_naive(
        x, kernel_size, stride, padding, 0.0)
    n, c, h, w = x.shape
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
    for p in range(oh):
        for q in range(ow):
            win = xpad[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw]
            if count_include_pad:
                count = kh * kw
            else:
                r0, c0 = p * sh - ph, q * sw - pw
                count = (min(r0 + kh, h) - max(r0, 0)) * (min(c0 + kw, w) - max(c0, 0))
            y[:, :, p, q] = win.sum(axis=(2, 3)) / count
    return y


def avgpool2d_backward_naive(dy, x, kernel_size, stride=None, padding=0,
                             count_include_pad=True):
    x, xpad, (kh, kw), (sh, sw), (ph, pw), oh, ow = _windows_naive(
        x, kernel_size, stride, padding, 0.0)
    _n, _c, h, w = x.shape
    dy = numpy.asarray(dy)
    dxpad = numpy.zeros(xpad.shape, dtype=dy.dtype)
    for p in range(oh):
        for q in range(ow):
            if count_include_pad:
                count = kh * kw
            else:
                r0, c0 = p * sh - ph, q * sw - pw
                count = (min(r0 + kh, h) - max(r0, 0)) * (min(c0 + kw, w) - max(c0, 0))
            dxpad[:, :, p * sh:p * sh + kh, q * sw:q * sw + kw] += \
                dy[:, :, p:p + 1, q:q + 1] / count
    return dxpad[:, :, ph:ph + h, pw:pw + w]
