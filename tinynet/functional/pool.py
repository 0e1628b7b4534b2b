"""Max, average and adaptive average pooling: the reference kernels.

Shapes: x ``(N, C, H, W)``, kernel ``(KH, KW)``, stride ``(SH, SW)``, padding
``(PH, PW)``, dilation ``(DH, DW)`` (max pooling only); y ``(N, C, OH, OW)`` with::

    OH = floor_or_ceil((H + 2 PH - DH (KH - 1) - 1) / SH) + 1          (OW alike)

rounded down, or up with ``ceil_mode`` (then a last window that would start beyond the
input and its left padding is dropped, as in PyTorch). Windows may run past the right
edge in ceil mode; those positions count as padding.

Every kernel works one kernel *tap* (i, j) at a time: tap (i, j) of all windows at once
is the strided slice ``xpad[:, :, i DH::SH, j DW::SW]`` ``(N, C, OH, OW)``, a view, so
the loops run over the KH*KW taps, never over samples or pixels. ``*_naive`` at the end
are the loop definitions the tests compare with.
"""

from __future__ import annotations

import math

import numpy

from ..backend import get_array_module
from .conv import pair


def pool_output_size(size: int, kernel: int, stride: int, padding: int, dilation: int = 1,
                     ceil_mode: bool = False) -> int:
    """PyTorch's pooling output size (see the module docstring)."""
    span = size + 2 * padding - dilation * (kernel - 1) - 1
    out = (-(-span // stride) if ceil_mode else span // stride) + 1
    if ceil_mode and (out - 1) * stride >= size + padding:
        out -= 1                        # the last window would start in the right padding
    return out


def pool_arguments(kernel, stride, padding, dilation=1):
    """Ints, pairs or a None stride (= the kernel size) as four ``(h, w)`` pairs."""
    kernel = pair(kernel, "kernel_size")
    return (kernel, kernel if stride is None else pair(stride, "stride"),
            pair(padding, "padding"), pair(dilation, "dilation"))


def _padded(x, out_hw, kernel, stride, padding, dilation, value):
    """x padded by ``padding`` with ``value``, plus on the right/bottom whatever the last
    window (ceil mode) reaches beyond that, so every tap slice is in range."""
    xp = get_array_module(x)
    (oh, ow), (kh, kw), (sh, sw), (ph, pw), (dh, dw) = out_hw, kernel, stride, padding, dilation
    h, w = x.shape[2], x.shape[3]
    extra_h = max(0, (oh - 1) * sh + dh * (kh - 1) + 1 - (h + 2 * ph))
    extra_w = max(0, (ow - 1) * sw + dw * (kw - 1) + 1 - (w + 2 * pw))
    return xp.pad(x, ((0, 0), (0, 0), (ph, ph + extra_h), (pw, pw + extra_w)),
                  constant_values=value)


def _tap(a, i: int, j: int, out_hw, stride, dilation):
    """The ``(N, C, OH, OW)`` view of tap (i, j) of every window of the padded array a."""
    (oh, ow), (sh, sw), (dh, dw) = out_hw, stride, dilation
    return a[:, :, i * dh:i * dh + sh * (oh - 1) + 1:sh, j * dw:j * dw + sw * (ow - 1) + 1:sw]


# ----------------------------------------------------------------------- max pooling
def maxpool2d_forward(x, kernel_size, stride=None, padding=0, dilation=1,
                      ceil_mode: bool = False):
    """y = max over each window, the padding counting as -inf. Returns ``(y, cache)``.

    The cache is the arg-max tap k = i*KW + j of each window, ``(N, C, OH, OW)``: the
    FIRST maximum in row-major window order (PyTorch's tie rule; a NaN counts as the
    maximum and propagates, as in PyTorch). Sizes are ints or pairs; stride None is
    the kernel size.
    """
    xp = get_array_module(x)
    kernel_size, stride, padding, dilation = pool_arguments(kernel_size, stride, padding, dilation)
    h, w = x.shape[2], x.shape[3]
    oh = pool_output_size(h, kernel_size[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = pool_output_size(w, kernel_size[1], stride[1], padding[1], dilation[1], ceil_mode)
    xpad = _padded(x, (oh, ow), kernel_size, stride, padding, dilation, -math.inf)
    taps = xp.stack([_tap(xpad, i, j, (oh, ow), stride, dilation)
                     for i in range(kernel_size[0]) for j in range(kernel_size[1])])
    argmax = taps.argmax(axis=0)                 # (N, C, OH, OW): first maximum's tap
    y = taps.max(axis=0)
    return y, (argmax, tuple(x.shape), xpad.shape, kernel_size, stride, padding, dilation)


def maxpool2d_backward(dy, cache):
    """Each window's y is one of its inputs, so dy/dx is 1 at the arg-max and 0 elsewhere:
    the window's whole gradient goes to its arg-max. Windows that overlap add up."""
    xp = get_array_module(dy)
    argmax, x_shape, pad_shape, kernel, stride, padding, dilation = cache
    out_hw = dy.shape[2:]
    dxpad = xp.zeros(pad_shape, dtype=dy.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            _tap(dxpad, i, j, out_hw, stride, dilation)[...] += dy * (argmax == i * kernel[1] + j)
    (h, w), (ph, pw) = x_shape[2:], padding
    return dxpad[:, :, ph:ph + h, pw:pw + w]


def maxpool2d_indices(cache):
    """``return_indices``: each maximum's position in its input plane, ``row * W + col``
    (PyTorch's convention, int64 ``(N, C, OH, OW)``)."""
    xp = get_array_module(cache[0])
    argmax, (_, _, _h, w), _, (_kh, kw), (sh, sw), (ph, pw), (dh, dw) = cache
    oh, ow = argmax.shape[2], argmax.shape[3]
    rows = xp.arange(oh).reshape(oh, 1) * sh - ph + (argmax // kw) * dh
    cols = xp.arange(ow).reshape(1, ow) * sw - pw + (argmax % kw) * dw
    return (rows * w + cols).astype(xp.int64)


# ----------------------------------------------------------------------- average pooling
def avgpool_divisor(xp, x_hw, out_hw, kernel, stride, padding, ceil_mode: bool,
                    count_include_pad: bool, divisor_override, dtype):
    """The ``(OH, OW)`` divisor of each window, by PyTorch's rule: the window clipped to
    the padded input (``count_include_pad``) or to the input itself; or the override."""
    if divisor_override:
        return xp.full(out_hw, divisor_override, dtype=dtype)
    counts = []
    for size, out, k, s, p in zip(x_hw, out_hw, kernel, stride, padding, strict=True):
        start = xp.arange(out) * s - p
        end = xp.minimum(start + k, size + p)        # clipped to the padded input
        if not count_include_pad:
            start, end = xp.maximum(start, 0), xp.minimum(end, size)
        counts.append(end - start)
    return (counts[0][:, None] * counts[1][None, :]).astype(dtype)


def avgpool2d_forward(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                      count_include_pad: bool = True, divisor_override=None):
    """y = (sum of each window, zero padding) / divisor. Returns ``(y, cache)``."""
    xp = get_array_module(x)
    kernel_size, stride, padding, _ = pool_arguments(kernel_size, stride, padding)
    h, w = x.shape[2], x.shape[3]
    oh = pool_output_size(h, kernel_size[0], stride[0], padding[0], 1, ceil_mode)
    ow = pool_output_size(w, kernel_size[1], stride[1], padding[1], 1, ceil_mode)
    xpad = _padded(x, (oh, ow), kernel_size, stride, padding, (1, 1), 0)
    total = sum(_tap(xpad, i, j, (oh, ow), stride, (1, 1))
                for i in range(kernel_size[0]) for j in range(kernel_size[1]))
    divisor = avgpool_divisor(xp, (h, w), (oh, ow), kernel_size, stride, padding, ceil_mode,
                              count_include_pad, divisor_override, x.dtype)
    return total / divisor, (divisor, tuple(x.shape), xpad.shape, kernel_size, stride, padding)


def avgpool2d_backward(dy, cache):
    """y is linear in x, each window input with weight 1/divisor, so every position of a
    window receives dy / divisor; overlapping windows add up."""
    xp = get_array_module(dy)
    divisor, x_shape, pad_shape, kernel, stride, padding = cache
    g = dy / divisor
    dxpad = xp.zeros(pad_shape, dtype=dy.dtype)
    for i in range(kernel[0]):
        for j in range(kernel[1]):
            _tap(dxpad, i, j, dy.shape[2:], stride, (1, 1))[...] += g
    (h, w), (ph, pw) = x_shape[2:], padding
    return dxpad[:, :, ph:ph + h, pw:pw + w]


# ----------------------------------------------------------------------- adaptive average
def _adaptive_matrix(xp, size: int, out: int, dtype):
    """``(out, size)``: row i averages input positions [floor(i size/out), ceil((i+1) size/out))."""
    pos = xp.arange(size)[None, :]
    i = xp.arange(out)[:, None]
    start, end = (i * size) // out, -((-(i + 1) * size) // out)
    inside = (pos >= start) & (pos < end)
    return inside.astype(dtype) / (end - start).astype(dtype)


def adaptive_avgpool2d_forward(x, output_size):
    """Average pooling to a fixed ``(OH, OW)``, as ``torch.nn.AdaptiveAvgPool2d``.

    Output row i averages the input rows [floor(i H/OH), ceil((i+1) H/OH)), columns alike.
    The average of a rectangle is a row average then a column average, so with the two
    averaging matrices ``A_h`` ``(OH, H)`` and ``A_w`` ``(OW, W)``::

        y = A_h @ x @ A_w^T           and its backward is the transpose: dx = A_h^T @ dy @ A_w
    """
    xp = get_array_module(x)
    a_h = _adaptive_matrix(xp, x.shape[-2], output_size[0], x.dtype)
    a_w = _adaptive_matrix(xp, x.shape[-1], output_size[1], x.dtype)
    return a_h @ x @ a_w.T, (a_h, a_w)


def adaptive_avgpool2d_backward(dy, cache):
    a_h, a_w = cache
    return a_h.T @ dy @ a_w


# ----------------------------------------------------------------------- loop definitions
def _windows_naive(x, kernel, stride, padding, dilation, ceil_mode):
    """NumPy x, and for each output (a, b) the (row, col) positions its window covers,
    padding included (tests only)."""
    kernel, stride, padding, dilation = pool_arguments(kernel, stride, padding, dilation)
    x = numpy.asarray(x)
    h, w = x.shape[2], x.shape[3]
    oh = pool_output_size(h, kernel[0], stride[0], padding[0], dilation[0], ceil_mode)
    ow = pool_output_size(w, kernel[1], stride[1], padding[1], dilation[1], ceil_mode)
    windows = {}
    for a in range(oh):
        for b in range(ow):
            cells = [(a * stride[0] - padding[0] + i * dilation[0],
                      b * stride[1] - padding[1] + j * dilation[1])
                     for i in range(kernel[0]) for j in range(kernel[1])]
            windows[a, b] = cells
    return x, (oh, ow), windows


def maxpool2d_naive(x, kernel_size, stride=None, padding=0, dilation=1,
                    ceil_mode: bool = False):
    """Loop definition: ``(y, indices)``, indices as ``row * W + col`` of the first max."""
    x, (oh, ow), windows = _windows_naive(x, kernel_size, stride, padding, dilation, ceil_mode)
    n, c, h, w = x.shape
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
    idx = numpy.empty((n, c, oh, ow), dtype=numpy.int64)
    for (a, b), cells in windows.items():
        inside = [(r, q) for r, q in cells if 0 <= r < h and 0 <= q < w]
        for p in range(n):
            for ch in range(c):
                vals = [x[p, ch, r, q] for r, q in inside]
                k = int(numpy.argmax(vals))          # first maximum (a NaN wins)
                y[p, ch, a, b] = vals[k]
                idx[p, ch, a, b] = inside[k][0] * w + inside[k][1]
    return y, idx


def maxpool2d_backward_naive(dy, x, kernel_size, stride=None, padding=0, dilation=1,
                             ceil_mode: bool = False):
    """dx of the definition: dy of each window added at its first maximum (tests only)."""
    x = numpy.asarray(x)
    _, idx = maxpool2d_naive(x, kernel_size, stride, padding, dilation, ceil_mode)
    dy = numpy.asarray(dy)
    dx = numpy.zeros(x.shape, dtype=dy.dtype)
    n, c = x.shape[:2]
    for p in range(n):
        for ch in range(c):
            flat = dx[p, ch].reshape(-1)
            numpy.add.at(flat, idx[p, ch].reshape(-1), dy[p, ch].reshape(-1))
    return dx


def avgpool2d_naive(x, kernel_size, stride=None, padding=0, ceil_mode: bool = False,
                    count_include_pad: bool = True, divisor_override=None):
    """Loop definition of average pooling with PyTorch's divisor rule (tests only)."""
    padding = pool_arguments(kernel_size, stride, padding)[2]
    x, (oh, ow), windows = _windows_naive(x, kernel_size, stride, padding, 1, ceil_mode)
    n, c, h, w = x.shape
    y = numpy.empty((n, c, oh, ow), dtype=x.dtype)
    for (a, b), cells in windows.items():
        y[:, :, a, b] = _naive_sum(x, cells) / _naive_count(
            cells, h, w, padding, count_include_pad, divisor_override)
    return y


def avgpool2d_backward_naive(dy, x, kernel_size, stride=None, padding=0, ceil_mode=False,
                             count_include_pad: bool = True, divisor_override=None):
    """dx of the definition: each window's dy / divisor added to its inputs (tests only)."""
    padding = pool_arguments(kernel_size, stride, padding)[2]
    x, _, windows = _windows_naive(x, kernel_size, stride, padding, 1, ceil_mode)
    dy = numpy.asarray(dy)
    _n, _c, h, w = x.shape
    dx = numpy.zeros(x.shape, dtype=dy.dtype)
    for (a, b), cells in windows.items():
        g = dy[:, :, a, b] / _naive_count(cells, h, w, padding, count_include_pad,
                                          divisor_override)
        for r, q in cells:
            if 0 <= r < h and 0 <= q < w:
                dx[:, :, r, q] += g
    return dx


def _naive_sum(x, cells):
    h, w = x.shape[2], x.shape[3]
    total = numpy.zeros(x.shape[:2], dtype=x.dtype)
    for r, q in cells:
        if 0 <= r < h and 0 <= q < w:
            total += x[:, :, r, q]
    return total


def _naive_count(cells, h, w, padding, count_include_pad, divisor_override):
    if divisor_override:
        return divisor_override
    ph, pw = padding
    if count_include_pad:     # positions inside the padded input
        return sum(1 for r, q in cells if -ph <= r < h + ph and -pw <= q < w + pw)
    return sum(1 for r, q in cells if 0 <= r < h and 0 <= q < w)


def adaptive_avgpool2d_naive(x, output_size):
    """Loop definition of adaptive average pooling (tests only)."""
    x = numpy.asarray(x)
    h, w = x.shape[-2:]
    oh, ow = output_size
    y = numpy.empty(x.shape[:-2] + (oh, ow), dtype=x.dtype)
    for a in range(oh):
        for b in range(ow):
            r0, r1 = (a * h) // oh, -((-(a + 1) * h) // oh)
            c0, c1 = (b * w) // ow, -((-(b + 1) * w) // ow)
            y[..., a, b] = x[..., r0:r1, c0:c1].mean(axis=(-2, -1))
    return y
