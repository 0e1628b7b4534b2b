"""Fast 2-D convolution: the same results as the reference, in channels-last memory.

Same functions, arguments and results as :mod:`tinynet.functional.conv` (read that
first); this module changes only how the work is laid out in memory, for groups = 1
and dilation = 1 (other convolutions run the reference kernels):

* Layout. The arrays keep PyTorch's *logical* ``(N, C, H, W)`` shape, but the work is
  done in channels-last *memory* (NHWC): ``conv2d_forward`` returns an ``(N, O, OH, OW)``
  view of the ``(N, OH, OW, O)`` product, so no transposing copy is ever made; ReLU and
  the fast pooling kernels keep that memory order and the next convolution's padding
  copy reads it directly. Columns are ordered ``(KH, KW, C)`` (the reference: ``(C, KH,
  KW)``), so one im2col row is KH*KW contiguous runs of C values.
* The forward unfolds and multiplies a few samples at a time (``CHUNK_BYTES`` of columns,
  about one core's L2 cache), each block multiplied while it is still in cache.
* dx is ``col2im(dY @ W_mat)`` done one kernel tap at a time, ``dY @ W_t`` into one
  reused buffer and added back; for a stride-1 "same" convolution each tap is one
  contiguous shifted addition (``_input_grad_same``).
* dW is ``(X_col^T dY)^T`` and db a product with a vector of ones (NumPy's axis-0 sum of
  a tall matrix is slow).
* The samples are split over tinynet's CPU threads (:mod:`.threads`).

Measured against the reference on the study models: see ``docs/benchmarks.md``
("Reference against fast kernels"); ``tests/test_kernels.py`` holds the two equal.
"""

from __future__ import annotations

import numpy

from ...backend import get_array_module
from .. import conv as reference
from ..conv import conv_output_size, pair
from .threads import parallel_for, sum_over_ranges


def _windows(xpad, kernel_size: tuple[int, int], stride: tuple[int, int],
             out_hw: tuple[int, int]):
    """The padded channels-last input ``(N, HP, WP, C)`` viewed (no copy) as the
    ``(N, OH, OW, KH, KW, C)`` array of its receptive fields."""
    xp = get_array_module(xpad)
    n, _hp, _wp, c = xpad.shape
    s_n, s_h, s_w, s_c = xpad.strides
    return xp.lib.stride_tricks.as_strided(
        xpad, shape=(n, *out_hw, *kernel_size, c),
        strides=(s_n, stride[0] * s_h, stride[1] * s_w, s_h, s_w, s_c))


# Bytes of columns unfolded per step of ``_im2col_matmul`` on the CPU, per thread: about
# one core's L2 cache, so the product reads columns that were just written instead of
# fetching them back from memory.
CHUNK_BYTES = 1 << 20


def _im2col_matmul(x, wmat, bias, kernel_size: tuple[int, int], stride: tuple[int, int],
                   padding: tuple[int, int]):
    """``cols = im2col(x)`` and ``Y = cols @ wmat.T + bias``, a few samples at a time.

    Returns ``(cols, Y)``: cols ``(N*OH*OW, K)`` (columns in ``(KH, KW, C)`` order), Y
    ``(N*OH*OW, O)``. The samples are split over tinynet's threads (:mod:`.threads`);
    each thread pads, unfolds, multiplies and adds the bias for
    its samples in chunks of about ``CHUNK_BYTES`` of columns, each multiplied right after
    it is unfolded, while it is still in cache (measured 3.4 vs 3.8 ms on SimpleCNN's
    second conv). On a GPU: one range, one chunk. The products are the same row blocks of
    the same matrices, so Y is the same as one product ``cols @ wmat.T`` up to BLAS's blocking.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    kh, kw = kernel_size
    ph, pw = padding
    oh = conv_output_size(h, kh, stride[0], padding[0])
    ow = conv_output_size(w, kw, stride[1], padding[1])
    k, o = kh * kw * c, wmat.shape[0]
    rows = oh * ow
    cols = xp.empty((n * rows, k), dtype=x.dtype)
    y = xp.empty((n * rows, o), dtype=x.dtype)
    step = n if xp is not numpy else max(1, CHUNK_BYTES // (rows * k * x.dtype.itemsize))
    xt = x.transpose(0, 2, 3, 1)                      # (N, H, W, C) view
    wt = wmat.T
    bias_row = None if bias is None else xp.tile(bias, ow)   # (OW*O,)

    def run(start: int, stop: int) -> None:
        # The padded samples of one chunk, channels-last; the border is zeroed once
        # and only the inside is rewritten per chunk.
        pad = xp.zeros((min(step, stop - start), h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
        for s in range(start, stop, step):
            e = min(stop, s + step)
            xpad = pad[:e - s]
            xpad[:, ph:ph + h, pw:pw + w, :] = xt[s:e]
            block = cols[s * rows:e * rows]
            if c == 1:
                # One input channel (a first layer on grey images): NumPy copies the 6-D
                # window view element by element; one strided copy per tap was measured
                # 3x faster (0.25 vs 0.78 ms on 64x1x28x28).
                taps = block.reshape(e - s, oh, ow, kh * kw)
                for i in range(kh):
                    for j in range(kw):
                        taps[..., i * kw + j] = xpad[:, i:i + stride[0] * (oh - 1) + 1:stride[0],
                                                     j:j + stride[1] * (ow - 1) + 1:stride[1], 0]
            else:
                block.reshape(e - s, oh, ow, kh, kw, c)[...] = \
                    _windows(xpad, kernel_size, stride, (oh, ow))
            yb = y[s * rows:e * rows]
            xp.matmul(block, wt, out=yb)
            if bias_row is not None:
                # Seen as (samples*OH, OW*O) rows, y gets the bias tiled OW times: a long
                # inner loop, measured 2x faster than broadcasting (O,) over short rows.
                yb.reshape(-1, ow * o)[...] += bias_row

    parallel_for(xp, n, run)
    return cols, y


def _tap_span(tap: int, size: int, out_size: int, stride: int, pad: int):
    """Where kernel tap ``tap`` of one axis lands in the *unpadded* input.

    Output position ``o`` reads input position ``o*stride + tap - pad``; positions in the
    padding (outside ``[0, size)``) are dropped. Returns ``(x_slice, o_slice)`` such that
    ``x[x_slice]`` and ``out[o_slice]`` are the pairs that land inside, or None when none
    does (a tap that only ever reads padding).
    """
    offset = tap - pad
    lo = max(0, -(offset // stride) if offset < 0 else 0)      # first o with o*s+offset >= 0
    hi = min(out_size - 1, (size - 1 - offset) // stride)       # last o with o*s+offset < size
    if hi < lo:
        return None
    start = lo * stride + offset
    return slice(start, hi * stride + offset + 1, stride), slice(lo, hi + 1)


def _tap_spans(x_shape: tuple, kernel_size: tuple[int, int], stride: tuple[int, int],
               padding: tuple[int, int]):
    """``[(t, (xs_h, xs_w), (os_h, os_w), covers_all), ...]`` for every kernel tap
    ``t = i*KW + j`` that lands inside the input, the taps that cover every input
    position exactly once (a stride-1 "same" tap) first."""
    _n, _c, h, w = x_shape
    kh, kw = kernel_size
    oh = conv_output_size(h, kh, stride[0], padding[0])
    ow = conv_output_size(w, kw, stride[1], padding[1])
    spans = []
    for i in range(kh):
        span_h = _tap_span(i, h, oh, stride[0], padding[0])
        for j in range(kw):
            span_w = _tap_span(j, w, ow, stride[1], padding[1])
            if span_h is None or span_w is None:
                continue
            (xs_h, os_h), (xs_w, os_w) = span_h, span_w
            covers_all = (stride == (1, 1) and (oh, ow) == (h, w)
                          and (os_h.start, os_w.start) == (0, 0)
                          and (xs_h.start, xs_w.start) == (0, 0))
            spans.append((i * kw + j, (xs_h, xs_w), (os_h, os_w), covers_all))
    spans.sort(key=lambda s: not s[3])
    return spans


# Bytes of one ``(samples*H*W, C)`` block of the column gradient in ``_input_grad_same``:
# the block and dx's rows for the same samples stay in the L2 cache while every tap is
# added (measured 5.9 vs 7.4 ms unchunked, 9.0 ms strided per tap on SimpleCNN's second
# conv, 2 threads).
DX_CHUNK_BYTES = 512 << 10


def _input_grad(dy2, wmat, x_shape: tuple, kernel_size: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int]):
    """dx = col2im(dY @ W_mat) (the reference's ``col2im``), one kernel tap at a time.

    dy2 ``(N*OH*OW, O)``, wmat ``(O, KH*KW*C)``; returns dx ``(N, C, H, W)`` (a view of a
    channels-last buffer). For tap ``t`` the columns' gradient is ``dY @ W_t`` with
    ``W_t = W_mat[:, t*C:(t+1)*C]`` ``(O, C)``, which is added into dx where that tap read from.
    Doing it tap by tap reuses one ``(N*OH*OW, C)`` buffer instead of writing and
    re-reading the whole ``(KH*KW, N*OH*OW, C)`` column gradient. A stride-1 "same"
    convolution (one tap covers every input position once) takes ``_input_grad_same``.

    Returns ``(dx, run)``: dx's buffer and ``run(start, stop)``, which fills the samples
    ``[start, stop)``; the caller runs it over the batch.
    """
    xp = get_array_module(dy2)
    n, c, h, w = x_shape
    kh, kw = kernel_size
    o = wmat.shape[0]
    oh = conv_output_size(h, kh, stride[0], padding[0])
    ow = conv_output_size(w, kw, stride[1], padding[1])
    w_taps = xp.ascontiguousarray(wmat.reshape(o, kh * kw, c).transpose(1, 0, 2))  # (T, O, C)
    spans = _tap_spans(x_shape, kernel_size, stride, padding)
    if spans and spans[0][3]:
        return _input_grad_same(dy2, w_taps, x_shape, kernel_size, padding, spans)
    dx = xp.zeros((n, h, w, c), dtype=dy2.dtype)   # stays 0 if every tap reads padding
    rows = oh * ow

    def run(start: int, stop: int) -> None:       # the samples [start, stop)
        dyc, dxc = dy2[start * rows:stop * rows], dx[start:stop]
        tmp = xp.empty((dyc.shape[0], c), dtype=dy2.dtype)
        for t, (xs_h, xs_w), (os_h, os_w), _ in spans:
            xp.matmul(dyc, w_taps[t], out=tmp)
            dxc[:, xs_h, xs_w, :] += tmp.reshape(stop - start, oh, ow, c)[:, os_h, os_w, :]

    return dx.transpose(0, 3, 1, 2), run


def _input_grad_same(dy2, w_taps, x_shape: tuple, kernel_size: tuple[int, int],
                     padding: tuple[int, int], spans: list):
    """``_input_grad`` for a stride-1 convolution whose output grid is its input grid.

    With ``OH = H``, ``OW = W`` and stride 1, tap ``(i, j)`` sends the gradient of output
    ``(n, oh, ow)`` to input ``(n, oh + di, ow + dj)``, ``di = i - PH``, ``dj = j - PW``:
    in the flat channels-last index ``((n*H + h)*W + w)*C + c`` of both the tap's block
    ``dY @ W_t`` ``(N*H*W, C)`` and dx that is a shift by ``s = (di*W + dj)*C``. Entries
    whose input position is padding (the first or last ``|di|`` rows, ``|dj|`` columns
    of each sample) would wrap into the neighbouring row or sample, so they are zeroed
    first; then the tap is ONE contiguous addition ``dx_flat[s:] += block_flat[:-s]``
    (``s < 0`` alike) instead of N*H strided row additions. The centre tap (``s = 0``)
    is written straight into dx. Samples go in chunks of about ``DX_CHUNK_BYTES`` per
    block on the CPU, so the block and those samples' dx stay in cache; on a GPU in one
    chunk. ``spans`` is ``_tap_spans``'s list, the centre tap first. Returns
    ``(dx, run)`` as ``_input_grad`` does.
    """
    xp = get_array_module(dy2)
    n, c, h, w = x_shape
    kw = kernel_size[1]
    ph, pw = padding
    rows = h * w
    step = n if xp is not numpy else max(1, DX_CHUNK_BYTES // (rows * c * dy2.dtype.itemsize))
    dx = xp.empty((n * rows, c), dtype=dy2.dtype)
    centre, others = spans[0][0], [t for t, *_ in spans[1:]]

    def run(start: int, stop: int) -> None:       # the samples [start, stop)
        tmp = xp.empty((min(step, stop - start) * rows, c), dtype=dy2.dtype)
        for s0 in range(start, stop, step):
            e = min(stop, s0 + step)
            dyc = dy2[s0 * rows:e * rows]
            dxc = dx[s0 * rows:e * rows]
            xp.matmul(dyc, w_taps[centre], out=dxc)
            block = tmp[:(e - s0) * rows]
            block4 = block.reshape(e - s0, h, w, c)
            dx_flat, block_flat = dxc.reshape(-1), block.reshape(-1)
            size = dx_flat.size
            for t in others:
                di, dj = t // kw - ph, t % kw - pw
                xp.matmul(dyc, w_taps[t], out=block)
                if di < 0:        # outputs reading the padding above row 0
                    block4[:, :-di] = 0
                elif di > 0:
                    block4[:, h - di:] = 0
                if dj < 0:
                    block4[:, :, :-dj] = 0
                elif dj > 0:
                    block4[:, :, w - dj:] = 0
                shift = (di * w + dj) * c
                if shift >= 0:
                    dx_flat[shift:] += block_flat[:size - shift]
                else:
                    dx_flat[:size + shift] += block_flat[-shift:]

    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2), run


def weight_matrix(weight):
    """Weight ``(O, C, KH, KW)`` as the ``(O, KH*KW*C)`` matrix the columns need."""
    xp = get_array_module(weight)
    o = weight.shape[0]
    return xp.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1)


def conv2d_forward(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                   groups: int = 1):
    """``reference.conv2d_forward``; y ``(N, O, OH, OW)`` is channels-last in memory.

    cache = (cols, W_mat, x.shape, kernel, stride, padding, has_bias), columns and W_mat
    in ``(KH, KW, C)`` order.
    """
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    if pair(dilation, "dilation") != (1, 1) or groups != 1:
        return reference.conv2d_forward(x, weight, bias, stride, padding, dilation, groups)
    o, _c, kh, kw = weight.shape
    n, _, h, w = x.shape
    oh = conv_output_size(h, kh, stride[0], padding[0])
    ow = conv_output_size(w, kw, stride[1], padding[1])
    wmat = weight_matrix(weight)
    cols, y = _im2col_matmul(x, wmat, bias, (kh, kw), tuple(stride), tuple(padding))
    y = y.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    return y, ("fast", cols, wmat, tuple(x.shape), (kh, kw), tuple(stride), tuple(padding),
               bias is not None)


def conv2d_backward(dy, cache, input_grad: bool = True):
    """``reference.conv2d_backward``, with dY read from dy's channels-last memory.

    dW_mat^T = X_col^T @ dY rather than dY^T @ X_col: OpenBLAS measured faster this way
    for every convolution of the study models (2x on an AMD EPYC for K = 9 < O = 32;
    8-17 % on a Xeon for K = 9, 288 and 576). db = 1_M @ dY (a matrix-vector product,
    measured ~10x faster than NumPy's axis-0 sum of a tall matrix). dW, db and dx are
    computed per range of samples in ONE pass over the batch (one hand-off to the
    threads: each costs about 90 us on a 2-core VM), the partial dW and db added in
    range order.
    """
    if not _is_fast(cache):
        return reference.conv2d_backward(dy, cache, input_grad)
    xp = get_array_module(dy)
    _, cols, wmat, x_shape, kernel, stride, padding, has_bias = cache
    c = x_shape[1]
    kh, kw = kernel
    o = wmat.shape[0]
    dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, o)   # a view when dy is channels-last
    n = x_shape[0]
    rows = dy2.shape[0] // max(1, n)
    dx, dx_run = (_input_grad(dy2, wmat, x_shape, kernel, stride, padding) if input_grad
                  else (None, None))
    ones = xp.ones((dy2.shape[0],), dtype=dy2.dtype) if has_bias else None

    def run(start: int, stop: int) -> tuple:       # the samples [start, stop)
        r = slice(start * rows, stop * rows)
        if dx_run is not None:
            dx_run(start, stop)
        return (cols[r].T @ dy2[r],                                   # (K, O)
                ones[r] @ dy2[r] if has_bias else None)               # (O,)

    if n == 0:
        dwmat_t = xp.zeros((cols.shape[1], o), dtype=dy2.dtype)
        db = xp.zeros((o,), dtype=dy2.dtype) if has_bias else None
    else:
        dwmat_t, db = sum_over_ranges(xp, n, run, grain=1)
    dw = xp.ascontiguousarray(dwmat_t.T.reshape(o, kh, kw, c).transpose(0, 3, 1, 2))
    return dx, dw, db


def _is_fast(cache) -> bool:
    """A cache this module's forward made (the reference's, for what it left to it, not)."""
    return isinstance(cache[0], str) and cache[0] == "fast"
