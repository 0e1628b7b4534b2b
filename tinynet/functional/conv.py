"""2-D convolution: the reference kernels (im2col, three matrix products, col2im).

Shapes: x ``(N, C, H, W)``, weight ``(O, C/G, KH, KW)`` for G groups, bias ``(O,)``,
stride ``(SH, SW)``, zero padding ``(PH, PW)``, dilation ``(DH, DW)``, y ``(N, O, OH, OW)``::

    OH = (H + 2 PH - DH (KH - 1) - 1) // SH + 1           (OW alike)

Definition (cross-correlation, as ``torch.nn.Conv2d``), for G = 1::

    y[n, o, a, b] = b[o] + sum_{c, i, j} W[o, c, i, j] xpad[n, c, a SH + i DH, b SW + j DW]

With G groups the C input channels and the O outputs are cut into G equal blocks, and
output block g sees input block g only (depthwise: G = C).

The matrix form. ``im2col`` copies every receptive field into one row of a matrix
``X_col`` ``(N*OH*OW, C*KH*KW)``, and the weight is read as ``W_mat`` ``(O, C*KH*KW)``
(same column order: channel, then kernel row, then column). Then the whole sum is one
matrix product, and the three gradients are three more (derived in ``conv2d_backward``).
``conv2d_naive`` / ``conv2d_backward_naive`` at the end are the loop definitions the
tests hold both these kernels and the fast ones (:mod:`tinynet.functional.fast.conv`) to.

Padding modes other than zeros ("reflect", "replicate", "circular") and uneven "same"
padding are an explicit :func:`pad2d_forward` before a convolution with no padding.
"""

from __future__ import annotations

import numpy

from ..backend import get_array_module
from ..errors import ArgumentError


def pair(value, name: str) -> tuple[int, int]:
    """``3 -> (3, 3)``; ``(3,) -> (3, 3)``; ``(3, 2) -> (3, 2)``; anything else is an
    ArgumentError (a ValueError) naming ``name``."""
    if isinstance(value, (tuple, list)):
        if len(value) not in (1, 2):
            raise ArgumentError(f"{name} must be an int or a pair of ints, got {value!r}")
        a, b = (value[0], value[0]) if len(value) == 1 else value
    else:
        a = b = value
    try:
        a_int, b_int = int(a), int(b)
    except (TypeError, ValueError):
        raise ArgumentError(f"{name} must be an int or a pair of ints, got {value!r}") from None
    if isinstance(a, bool) or isinstance(b, bool) or a_int != a or b_int != b:
        raise ArgumentError(f"{name} must be an int or a pair of ints, got {value!r}")
    return a_int, b_int


def conv_output_size(size: int, kernel: int, stride: int = 1, padding: int = 0,
                     dilation: int = 1) -> int:
    """``(size + 2 padding - dilation (kernel - 1) - 1) // stride + 1`` (<= 0: too small)."""
    return (size + 2 * padding - dilation * (kernel - 1) - 1) // stride + 1


def im2col(x, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """Every receptive field of x ``(N, C, H, W)`` as one row: ``(N*OH*OW, C*KH*KW)``.

    Row ``(n, a, b)``, column ``(c, i, j)`` holds ``xpad[n, c, a SH + i DH, b SW + j DW]``.
    Built one kernel tap (i, j) at a time: tap (i, j) of every window at once is the
    strided slice of xpad starting at ``(i DH, j DW)`` with steps ``(SH, SW)``.
    """
    xp = get_array_module(x)
    n, c, h, w = x.shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    xpad = xp.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    cols = xp.empty((n, c, kh, kw, oh, ow), dtype=x.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            cols[:, :, i, j] = xpad[:, :, top:top + sh * (oh - 1) + 1:sh,
                                    left:left + sw * (ow - 1) + 1:sw]      # (N, C, OH, OW)
    return cols.transpose(0, 4, 5, 1, 2, 3).reshape(n * oh * ow, c * kh * kw)


def col2im(dcols, x_shape, kernel_size, stride=(1, 1), padding=(0, 0), dilation=(1, 1)):
    """The adjoint of ``im2col``: ``(N*OH*OW, C*KH*KW)`` -> dx ``(N, C, H, W)``.

    im2col copies each xpad element into every row whose window covers it, so the
    gradient of the element is the SUM of the gradients of its copies: tap by tap, the
    slab of column (c, i, j) is added back into the strided slice it was read from.
    What lands in the padding has no input to go to and is cropped.
    """
    xp = get_array_module(dcols)
    n, c, h, w = x_shape
    (kh, kw), (sh, sw), (ph, pw), (dh, dw) = kernel_size, stride, padding, dilation
    oh = conv_output_size(h, kh, sh, ph, dh)
    ow = conv_output_size(w, kw, sw, pw, dw)
    cols = dcols.reshape(n, oh, ow, c, kh, kw).transpose(0, 3, 4, 5, 1, 2)  # (N,C,KH,KW,OH,OW)
    dxpad = xp.zeros((n, c, h + 2 * ph, w + 2 * pw), dtype=dcols.dtype)
    for i in range(kh):
        for j in range(kw):
            top, left = i * dh, j * dw
            dxpad[:, :, top:top + sh * (oh - 1) + 1:sh,
                  left:left + sw * (ow - 1) + 1:sw] += cols[:, :, i, j]
    return dxpad[:, :, ph:ph + h, pw:pw + w]


def conv2d_forward(x, weight, bias=None, stride=(1, 1), padding=(0, 0), dilation=(1, 1),
                   groups: int = 1):
    """y = conv2d(x, weight, bias), as ``torch.nn.functional.conv2d``. Returns ``(y, cache)``.

    Per group g (channels ``C/G`` in, ``O/G`` out), with X_g the group's im2col columns::

        Y_g = X_g @ W_g^T            (N*OH*OW, O/G), then bias, then back to (N, O, OH, OW)

    stride, padding and dilation are ints or ``(h, w)`` pairs.
    """
    xp = get_array_module(x)
    stride, padding = pair(stride, "stride"), pair(padding, "padding")
    dilation = pair(dilation, "dilation")
    n, _c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    oh = conv_output_size(h, kh, stride[0], padding[0], dilation[0])
    ow = conv_output_size(w, kw, stride[1], padding[1], dilation[1])
    cols = im2col(x, (kh, kw), stride, padding, dilation)              # (N*OH*OW, C*KH*KW)
    wmat = weight.reshape(o, cg * kh * kw)                             # (O, C/G*KH*KW)
    k, og = cg * kh * kw, o // groups
    y = xp.concatenate([cols[:, g * k:(g + 1) * k] @ wmat[g * og:(g + 1) * og].T
                        for g in range(groups)], axis=1)                # (N*OH*OW, O)
    if bias is not None:
        y = y + bias
    y = y.reshape(n, oh, ow, o).transpose(0, 3, 1, 2)                  # (N, O, OH, OW)
    return y, (cols, weight, tuple(x.shape), stride, padding, dilation, groups,
               bias is not None)


def conv2d_backward(dy, cache, input_grad: bool = True):
    """Gradients of ``conv2d_forward``: dy ``(N, O, OH, OW)`` -> ``(dx, dW, db)``.

    Read dy as dY ``(N*OH*OW, O)``, the rows of the product Y = X_col @ W_mat^T + b. A
    product's gradients are products (as for Linear, with the rows as the batch)::

        dW_mat = dY^T @ X_col      (O, K)        every row used the same weights
        db     = sum of dY's rows  (O,)
        dX_col = dY @ W_mat        (N*OH*OW, K)  the gradient of every copied element
        dx     = col2im(dX_col)    (N, C, H, W)  sums the gradients of all copies

    With groups, each block pairs group g's rows of W_mat with its columns of X_col.
    """
    xp = get_array_module(dy)
    cols, weight, x_shape, stride, padding, dilation, groups, has_bias = cache
    o, cg, kh, kw = weight.shape
    dy_rows = dy.transpose(0, 2, 3, 1).reshape(-1, o)                  # dY (N*OH*OW, O)
    wmat = weight.reshape(o, -1)
    k, og = cg * kh * kw, o // groups
    blocks = [(dy_rows[:, g * og:(g + 1) * og], cols[:, g * k:(g + 1) * k],
               wmat[g * og:(g + 1) * og]) for g in range(groups)]
    dw = xp.concatenate([dy_g.T @ x_g for dy_g, x_g, _ in blocks])      # (O, K)
    db = dy_rows.sum(axis=0) if has_bias else None                     # (O,)
    dx = None
    if input_grad:
        dcols = xp.concatenate([dy_g @ w_g for dy_g, _, w_g in blocks], axis=1)
        dx = col2im(dcols, x_shape, (kh, kw), stride, padding, dilation)
    return dx, dw.reshape(weight.shape), db


# ----------------------------------------------------------------------- padding
PADDING_MODES = ("zeros", "reflect", "replicate", "circular")


def _pad_matrix(xp, size: int, before: int, after: int, mode: str, dtype):
    """The ``(before + size + after, size)`` 0/1 matrix P with ``xpad = P @ x`` on one axis.

    Row r of P picks the input position that padded position r copies: ``r - before``
    when inside; outside, zeros picks nothing (a zero row), replicate the nearest edge,
    reflect the mirror image without repeating the edge, circular wraps around.
    """
    src = xp.arange(-before, size + after)
    if mode == "replicate":
        src = xp.clip(src, 0, size - 1)
    elif mode == "reflect":
        src = xp.abs(src)
        src = xp.where(src > size - 1, 2 * (size - 1) - src, src)
    elif mode == "circular":
        src = src % size
    return (src[:, None] == xp.arange(size)[None, :]).astype(dtype)


def pad2d_forward(x, padding, mode: str = "zeros"):
    """Pad the last two axes of x ``(N, C, H, W)``: padding ``(top, bottom, left, right)``.

    Padding on one axis is a linear map, multiplication by a 0/1 matrix (``_pad_matrix``),
    so ``xpad = P_h @ x @ P_w^T``. Returns ``(xpad, cache)``.
    """
    xp = get_array_module(x)
    top, bottom, left, right = padding
    p_h = _pad_matrix(xp, x.shape[-2], top, bottom, mode, x.dtype)    # (H + top + bottom, H)
    p_w = _pad_matrix(xp, x.shape[-1], left, right, mode, x.dtype)    # (W + left + right, W)
    return p_h @ x @ p_w.T, (p_h, p_w)


def pad2d_backward(dy, cache):
    """The transpose of the same maps: ``dx = P_h^T @ dy @ P_w``. A position copied to
    several padded places (the edge in replicate, any in circular) sums their gradients."""
    p_h, p_w = cache
    return p_h.T @ dy @ p_w


# ----------------------------------------------------------------------- loop definitions
def conv2d_naive(x, weight, bias=None, stride=1, padding=0, dilation=1, groups: int = 1):
    """The definition, a loop over output positions and output channels (tests only).

    ``y[n, o, a, b] = b[o] + sum_{c in o's group, i, j} W[o, c, i, j] xpad[n, c, a SH + i DH,
    b SW + j DW]``. NumPy arrays in and out.
    """
    x, weight = numpy.asarray(x), numpy.asarray(weight)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding")
    dh, dw = pair(dilation, "dilation")
    n, _c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    oh, ow = conv_output_size(h, kh, sh, ph, dh), conv_output_size(w, kw, sw, pw, dw)
    y = numpy.zeros((n, o, oh, ow), dtype=x.dtype)
    for a in range(oh):
        for b in range(ow):
            patch = xpad[:, :, a * sh:a * sh + dh * (kh - 1) + 1:dh,
                         b * sw:b * sw + dw * (kw - 1) + 1:dw]         # (N, C, KH, KW)
            for oc in range(o):
                g = oc // (o // groups)
                y[:, oc, a, b] = (patch[:, g * cg:(g + 1) * cg] * weight[oc]).sum(axis=(1, 2, 3))
    if bias is not None:
        y += numpy.asarray(bias).reshape(1, o, 1, 1)
    return y


def conv2d_backward_naive(dy, x, weight, stride=1, padding=0, dilation=1, groups: int = 1):
    """dx, dW, db of the definition by the same loops (tests only): the window of output
    (a, b) contributed ``sum W[o] * patch``, so it receives ``dy[:, o, a, b] W[o]`` and
    W[o] receives ``dy[:, o, a, b] patch``; db[o] = sum of dy[:, o]."""
    dy, x, weight = numpy.asarray(dy), numpy.asarray(x), numpy.asarray(weight)
    (sh, sw), (ph, pw) = pair(stride, "stride"), pair(padding, "padding")
    dh, dw_ = pair(dilation, "dilation")
    n, _c, h, w = x.shape
    o, cg, kh, kw = weight.shape
    xpad = numpy.pad(x, ((0, 0), (0, 0), (ph, ph), (pw, pw)))
    dxpad = numpy.zeros_like(xpad)
    dw = numpy.zeros_like(weight)
    for a in range(dy.shape[2]):
        for b in range(dy.shape[3]):
            rows = slice(a * sh, a * sh + dh * (kh - 1) + 1, dh)
            cols = slice(b * sw, b * sw + dw_ * (kw - 1) + 1, dw_)
            for oc in range(o):
                g = oc // (o // groups)
                chans = slice(g * cg, (g + 1) * cg)
                grad = dy[:, oc, a, b].reshape(n, 1, 1, 1)
                dxpad[:, chans, rows, cols] += grad * weight[oc]
                dw[oc] += (grad * xpad[:, chans, rows, cols]).sum(axis=0)
    return dxpad[:, :, ph:ph + h, pw:pw + w], dw, dy.sum(axis=(0, 2, 3))
