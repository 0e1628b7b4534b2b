"""2-D convolution by im2col + one matrix product, and col2im for the backward.

Shape names: x ``(N, C, H, W)``, weight ``(O, C, KH, KW)``, bias ``(O,)``, stride
``(SH, SW)``, padding ``(PH, PW)``, output ``(N, O, OH, OW)`` with::

    OH = (H + 2 PH - KH) // SH + 1        OW = (W + 2 PW - KW) // SW + 1

Layout. The arrays keep PyTorch's *logical* ``(N, C, H, W)`` shape everywhere, but the
fast kernels here work in channels-last *memory* (NHWC): the output of
``conv2d_forward`` is an ``(N, O, OH, OW)`` view of an ``(N, OH, OW, O)`` buffer, which is
exactly what the matrix product produces, so no transposing copy is ever made.
Element-wise layers (ReLU) and the pooling kernels preserve that memory order, and the
next convolution's padding copy reads it directly. Columns are ordered ``(KH, KW, C)``
so that one im2col row is ``KH*KW`` contiguous runs of ``C`` values. Every pass over
memory costs about as much as the arithmetic at these sizes, so the forward is: one
padding copy, one im2col copy, one matrix product, the bias addition; the backward:
one matrix product for dW, a row sum for db, and for dx, per kernel tap, the columns'
gradient of that tap (one product) added into dx (col2im): one strided addition, or for
a stride-1 "same" convolution one contiguous shifted addition (a loop over kernel taps,
never over samples or pixels). On the CPU the samples are split over tinynet's threads
(``tinynet.parallel``): convolution never mixes samples, so each thread pads, unfolds,
multiplies and adds back its own samples; dW's product splits its long inner axis.

``conv2d_naive`` and ``conv2d_backward_naive`` are the direct loop definitions the
tests compare the fast kernels with.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ..parallel import column_sums, parallel_for
from ..parallel import matmul as parallel_matmul


def _pair(value, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3, 2) -> (3, 2)``; anything else is a ValueError."""
    if isinstance(value, (tuple, list)):
        if len(value) != 2:
            raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
        a, b = value
    else:
        a = b = value
    try:
        a_int, b_int = int(a), int(b)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if a_int != a or b_int != b:
        raise ValueError(f"{name} must be an int or a pair of ints, got {value!r}")
    return a_int, b_int


def conv_output_size(size: int, kernel: int, stride: int, padding: int) -> int:
    """``(size + 2 padding - kernel) // stride + 1`` (may be <= 0 for a too-small input)."""
    return (size + 2 * padding - kernel) // stride + 1


def pad_nhwc(x, padding: tuple[int, int]):
    """Copy x ``(N, C, H, W)`` (any memory order) into a zero-padded channels-last buffer.

    Returns ``(N, H + 2 PH, W + 2 PW, C)``, C-contiguous. This is the only copy of the
    input the forward makes before im2col; when x is already channels-last in memory and
    needs no padding it is returned as a view.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    ph, pw = padding
    xt = x.transpose(0, 2, 3, 1)
    if ph == 0 and pw == 0:
        return xp.ascontiguousarray(xt)
    buf = xp.zeros((n, h + 2 * ph, w + 2 * pw, c), dtype=x.dtype)
    buf[:, ph:ph + h, pw:pw + w, :] = xt
    return buf


def im2col(x, kernel_size: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]):
    """Unfold every receptive field of x into one row.

    Args:
        x: ``(N, C, H, W)``.

    Returns:
        cols ``(N*OH*OW, KH*KW*C)``, C-contiguous: row ``(n, oh, ow)`` holds
        ``xpad[n, oh*SH + i, ow*SW + j, c]`` at column ``(i*KW + j)*C + c``.

    How: the padded channels-last input ``(N, HP, WP, C)`` is viewed, without copying,
    as ``(N, OH, OW, KH, KW, C)`` with strides ``(sN, SH*sH, SW*sW, sH, sW, sC)``
    (``as_strided``), and that view is copied once into the column matrix (for C = 1
    tap by tap, which NumPy does faster).
    """
    xp = get_array_module(x)
    kh, kw = kernel_size
    sh, sw = stride
    n, c, h, w = x.shape
    oh = conv_output_size(h, kh, sh, padding[0])
    ow = conv_output_size(w, kw, sw, padding[1])
    xpad = pad_nhwc(x, padding)
    if c == 1:
        # One input channel (a first layer on grey images): NumPy copies the 6-D view
        # below element by element; one strided copy per tap was measured 3x faster
        # (0.25 vs 0.78 ms on 64x1x28x28). Every element is still written once.
        cols = xp.empty((n, oh, ow, kh * kw), dtype=x.dtype)
        for i in range(kh):
            for j in range(kw):
                cols[..., i * kw + j] = xpad[:, i:i + sh * (oh - 1) + 1:sh,
                                             j:j + sw * (ow - 1) + 1:sw, 0]
        return cols.reshape(n * oh * ow, kh * kw)
    windows = _windows(xpad, kernel_size, stride, (oh, ow))
    return xp.ascontiguousarray(windows).reshape(n * oh * ow, kh * kw * c)


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

    Returns ``(cols, Y)``: cols ``(N*OH*OW, K)`` as ``im2col`` gives it, Y
    ``(N*OH*OW, O)``. The samples are split over tinynet's threads
    (``tinynet.parallel``); each thread pads, unfolds, multiplies and adds the bias for
    its samples in chunks of about ``CHUNK_BYTES`` of columns, each multiplied right after
    it is unfolded, while it is still in cache (measured 3.4 vs 3.8 ms on SimpleCNN's
    second conv). On a GPU: one range, one chunk. The products are the same row blocks of
    the same matrices, so Y is the same as ``im2col(x) @ wmat.T`` up to BLAS's blocking.
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


def col2im(dcols, x_shape: tuple, kernel_size: tuple[int, int], stride: tuple[int, int],
           padding: tuple[int, int]):
    """The adjoint of ``im2col``: add every column entry back where it was read from.

    Args:
        dcols: ``(KH*KW, N*OH*OW, C)``, tap-major: ``dcols[i*KW + j, (n, oh, ow), c]`` is
            the gradient of im2col's entry at row ``(n, oh, ow)``, column ``(i, j, c)``.
            (Tap-major makes each tap's slab one contiguous ``(N, OH, OW, C)`` block, so
            the additions below run over long contiguous ``OW*C`` rows.)
        x_shape: ``(N, C, H, W)``.

    Returns:
        dx ``(N, C, H, W)``, a view of a channels-last ``(N, H, W, C)`` buffer.

    im2col copies ``xpad[n, oh*SH + i, ow*SW + j, c]`` into many rows, so its adjoint sums
    the gradients of all copies: for each kernel tap ``(i, j)`` the slab ``dcols[i*KW + j]``
    viewed as ``(N, OH, OW, C)`` is added into ``dx[n, i - PH::SH, j - PW::SW, :]``,
    clipped to the input (entries that were read from the zero padding have no input to
    go to and are dropped). That is KH*KW vectorised strided additions.
    ``conv2d_backward`` does the same additions, one tap's product at a time.
    """
    xp = get_array_module(dcols)
    n, c, h, w = x_shape
    oh = conv_output_size(h, kernel_size[0], stride[0], padding[0])
    ow = conv_output_size(w, kernel_size[1], stride[1], padding[1])
    dx = xp.zeros((n, h, w, c), dtype=dcols.dtype)
    for t, (xs_h, xs_w), (os_h, os_w), _ in _tap_spans(x_shape, kernel_size, stride, padding):
        dx[:, xs_h, xs_w, :] += dcols[t].reshape(n, oh, ow, c)[:, os_h, os_w, :]
    return dx.transpose(0, 3, 1, 2)


# Bytes of one ``(samples*H*W, C)`` block of the column gradient in ``_input_grad_same``:
# the block and dx's rows for the same samples stay in the L2 cache while every tap is
# added (measured 5.9 vs 7.4 ms unchunked, 9.0 ms strided per tap on SimpleCNN's second
# conv, 2 threads).
DX_CHUNK_BYTES = 512 << 10


def _input_grad(dy2, wmat, x_shape: tuple, kernel_size: tuple[int, int],
                stride: tuple[int, int], padding: tuple[int, int]):
    """dx = col2im(dY @ W_mat), one kernel tap at a time.

    dy2 ``(N*OH*OW, O)``, wmat ``(O, KH*KW*C)``; returns dx ``(N, C, H, W)`` (a view of a
    channels-last buffer). For tap ``t`` the columns' gradient is ``dY @ W_t`` with
    ``W_t = W_mat[:, t*C:(t+1)*C]`` ``(O, C)``, which is added into dx as in ``col2im``.
    Doing it tap by tap reuses one ``(N*OH*OW, C)`` buffer instead of writing and
    re-reading the whole ``(KH*KW, N*OH*OW, C)`` column gradient. A stride-1 "same"
    convolution (one tap covers every input position once) takes ``_input_grad_same``.
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

    parallel_for(xp, n, run)
    return dx.transpose(0, 3, 1, 2)


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
    chunk. ``spans`` is ``_tap_spans``'s list, the centre tap first.
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

    parallel_for(xp, n, run)
    return dx.reshape(n, h, w, c).transpose(0, 3, 1, 2)


def weight_matrix(weight):
    """Weight ``(O, C, KH, KW)`` as the ``(O, KH*KW*C)`` matrix im2col's columns need."""
    xp = get_array_module(weight)
    o = weight.shape[0]
    return xp.ascontiguousarray(weight.transpose(0, 2, 3, 1)).reshape(o, -1)


def conv2d_forward(x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
    """y = conv2d(x, weight, bias), as ``torch.nn.functional.conv2d`` (cross-correlation).

    Shapes: x ``(N, C, H, W)``, weight ``(O, C, KH, KW)``, bias ``(O,)`` or None;
    returns ``(y, cache)`` with y ``(N, O, OH, OW)`` (channels-last in memory).

    Definition::

        y[n, o, oh, ow] = b[o] + sum_{c, i, j} W[o, c, i, j] xpad[n, c, oh*SH + i, ow*SW + j]

    With the columns ``X_col = im2col(x)`` ``(N*OH*OW, K)``, ``K = KH*KW*C`` and the
    weight as a matrix ``W_mat`` ``(O, K)`` (same column order) the sum is one product::

        Y = X_col @ W_mat^T        (N*OH*OW, O) = (N, OH, OW, O) channels-last

    plus the bias broadcast over the rows. (Folding the bias into the product as a column
    of ones was measured slower: a row length of K + 1 costs the BLAS more than the
    separate addition.)
    cache = (cols, W_mat, x.shape, kernel, stride, padding, has_bias).
    The work is split over the samples on tinynet's CPU threads (``tinynet.parallel``).
    """
    stride, padding = _pair(stride, "stride"), _pair(padding, "padding")
    o, _c, kh, kw = weight.shape
    n, _, h, w = x.shape
    oh = conv_output_size(h, kh, stride[0], padding[0])
    ow = conv_output_size(w, kw, stride[1], padding[1])
    wmat = weight_matrix(weight)
    cols, y = _im2col_matmul(x, wmat, bias, (kh, kw), stride, padding)
    y = y.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)
    cache = (cols, wmat, tuple(x.shape), (kh, kw), stride, padding, bias is not None)
    return y, cache


def conv2d_backward(dy, cache, input_grad: bool = True, dw_out=None):
    """Gradients of ``conv2d_forward``.

    Args:
        dy: dL/dy ``(N, O, OH, OW)`` (any memory order; never written).
        cache: from ``conv2d_forward``.
        input_grad: compute dx (False skips the col2im, e.g. for a first layer).
        dw_out: optional ``(O, C, KH, KW)`` array to write dW into.

    Returns:
        ``(dx, dW, db)``: dx ``(N, C, H, W)`` or None, dW ``(O, C, KH, KW)``, db ``(O,)``
        or None.

    Derivation, with ``dY = dy`` as ``(N*OH*OW, O)`` (channels-last rows) and
    ``Y = X_col @ W_mat^T + b``::

        dL/dW_mat = dY^T @ X_col        (O, K): every output row used W_mat
        dL/db     = sum over rows of dY (O,)
        dL/dX_col = dY @ W_mat          (N*OH*OW, K): each column entry is a copy of
                                        one xpad element (computed tap-major, one
                                        (N*OH*OW, O) @ (O, C) product per tap)
        dL/dx     = col2im(dL/dX_col)   sums the gradients of all copies of an element
    """
    xp = get_array_module(dy)
    cols, wmat, x_shape, kernel, stride, padding, has_bias = cache
    _n, c, _h, _w = x_shape
    kh, kw = kernel
    o = wmat.shape[0]
    dy2 = dy.transpose(0, 2, 3, 1).reshape(-1, o)   # a view when dy is channels-last
    # dW_mat^T = X_col^T @ dY rather than dY^T @ X_col: OpenBLAS measured faster this
    # way for every conv of the study models (2x on an AMD EPYC for K = 9 < O = 32;
    # 8-17% on a Xeon for K = 9, 288 and 576).
    dwmat = parallel_matmul(cols.T, dy2).T           # (O, K)
    dw4 = dwmat.reshape(o, kh, kw, c).transpose(0, 3, 1, 2)
    if dw_out is not None:
        dw_out[...] = dw4
        dw = dw_out
    else:
        dw = xp.ascontiguousarray(dw4)
    # db = column sums of dY, as a matrix-vector product: measured ~10x faster than
    # dy2.sum(axis=0) (NumPy's axis-0 reduction of a tall matrix is slow).
    db = column_sums(dy2) if has_bias else None
    dx = None
    if input_grad:
        # dX_col = dY @ W_mat, added into dx (col2im) one tap's (N*OH*OW, C) block at a time
        dx = _input_grad(dy2, wmat, x_shape, kernel, stride, padding)
    return dx, dw, db


# ----------------------------------------------------------------------- references
def conv2d_naive(x, weight, bias=None, stride=(1, 1), padding=(0, 0)):
    """The definition, by loops over output positions (tests only; NumPy, float64 is fine).

    ``y[n, o, oh, ow] = b[o] + sum_{c,i,j} W[o, c, i, j] xpad[n, c, oh*SH + i, ow*SW + j]``
    """
    x, weight = numpy.asarray(x), numpy.asarray(weight)
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    n, _c, h, w = x.shape
    o, _, kh, kw = weight.shape
    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh = conv_output_size(h, kh, sh, ph)
    ow = conv_output_size(w, kw, sw, pw)
    y = numpy.zeros((n, o, oh, ow), dtype=x.dtype)
    for a in range(oh):
        for b in range(ow):
            patch = xpad[:, :, a * sh:a * sh + kh, b * sw:b * sw + kw]  # (N, C, KH, KW)
            for oc in range(o):
                y[:, oc, a, b] = (patch * weight[oc]).sum(axis=(1, 2, 3))
    if bias is not None:
        y += numpy.asarray(bias).reshape(1, o, 1, 1)
    return y


def conv2d_backward_naive(dy, x, weight, stride=(1, 1), padding=(0, 0)):
    """dx, dW, db of the definition, by the same loops (tests only).

    For each output position (oh, ow) the patch ``xpad[:, :, oh*SH:+KH, ow*SW:+KW]``
    contributed ``sum W * patch``, so it receives ``dy[:, o, oh, ow] * W[o]`` and W
    receives ``dy[:, o, oh, ow] * patch``; db[o] = sum of dy[:, o].
    """
    dy, x, weight = numpy.asarray(dy), numpy.asarray(x), numpy.asarray(weight)
    (sh, sw), (ph, pw) = _pair(stride, "stride"), _pair(padding, "padding")
    n, _c, h, w = x.shape
    o, _, kh, kw = weight.shape
    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxpad = numpy.zeros_like(xpad)
    dw = numpy.zeros_like(weight)
    oh, ow = dy.shape[2], dy.shape[3]
    for a in range(oh):
        for b in range(ow):
            patch = xpad[:, :, a * sh:a * sh + kh, b * sw:b * sw + kw]
            for oc in range(o):
                g = dy[:, oc, a, b].reshape(n, 1, 1, 1)
                dxpad[:, :, a * sh:a * sh + kh, b * sw:b * sw + kw] += g * weight[oc]
                dw[oc] += (g * patch).sum(axis=0)
    dx = dxpad[:, :, ph:ph + h, pw:pw + w]
    db = dy.sum(axis=(0, 2, 3))
    return dx, dw, db
