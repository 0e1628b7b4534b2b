"""Conv2d: the reference and fast kernels against the loop definition, the layer
contract, PyTorch; dilation, groups and padding modes."""

from __future__ import annotations

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

import tinynet
from tinynet import functional
from tinynet.errors import DTypeError, NonFiniteError, ShapeError
from tinynet.functional import fast
from tinynet.functional.conv import (
    col2im,
    conv2d_backward_naive,
    conv2d_naive,
    im2col,
)
from tinynet.layers import Conv2d

KERNEL_SETS = {"reference": functional, "fast": fast}


@pytest.fixture(params=list(KERNEL_SETS))
def F(request):
    """The functional namespace of one kernel set."""
    return KERNEL_SETS[request.param]

# (N, C, H, W, O, kernel, stride, padding, bias): strides 1-2, paddings 0-2, odd sizes,
# rectangular kernels, with and without bias.
CASES = [
    (2, 3, 7, 7, 4, 3, 1, 0, True),
    (2, 3, 7, 6, 4, 3, 1, 1, False),
    (1, 2, 9, 8, 3, 3, 2, 1, True),
    (2, 1, 5, 7, 2, 3, 2, 2, False),
    (3, 2, 6, 5, 3, (3, 2), (2, 1), (2, 0), True),
    (2, 4, 5, 5, 5, 1, 1, 0, True),
    (1, 3, 8, 9, 2, (2, 3), (1, 2), (0, 2), False),
    (2, 2, 5, 5, 3, 5, 1, 2, True),
]


def _channels_last(a: np.ndarray) -> np.ndarray:
    """Same values and logical shape, C-fastest memory (what a previous conv produces)."""
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _layer(case, rng, xp):
    n, c, h, w, o, k, s, p, bias = case
    layer = Conv2d(c, o, k, s, p, bias=bias).double()
    xp.to(layer)
    x = rng.standard_normal((n, c, h, w))
    return layer, x


@pytest.mark.parametrize("case", CASES)
def test_layer_matches_loop_reference(case, xp, kernels):
    rng = np.random.default_rng(0)
    layer, x = _layer(case, rng, xp)
    w = xp.asnumpy(layer.weight.data)
    b = xp.asnumpy(layer.bias.data) if layer.bias is not None else None
    y = layer(xp.asarray(x))
    y_ref = conv2d_naive(x, w, b, layer.stride, layer.padding)
    assert y.shape == y_ref.shape
    np.testing.assert_allclose(xp.asnumpy(y), y_ref, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y_ref.shape)
    dy_dev = xp.asarray(dy)
    dx = layer.backward(dy_dev)
    dx_ref, dw_ref, db_ref = conv2d_backward_naive(dy, x, w, layer.stride, layer.padding)
    np.testing.assert_allclose(xp.asnumpy(dx), dx_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.asnumpy(layer.weight.grad), dw_ref, rtol=1e-10, atol=1e-12)
    if b is not None:
        np.testing.assert_allclose(xp.asnumpy(layer.bias.grad), db_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_array_equal(xp.asnumpy(dy_dev), dy)  # backward never writes into dy


@pytest.mark.parametrize("case", CASES[:4])
def test_channels_last_input_gives_the_same_result(case, F):
    rng = np.random.default_rng(1)
    n, c, h, w, o, k, s, p, _bias = case
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c) + ((k, k) if isinstance(k, int) else k))
    y1, cache1 = F.conv2d_forward(x, wt, None, s, p)
    y2, cache2 = F.conv2d_forward(_channels_last(x), wt, None, s, p)
    np.testing.assert_allclose(y1, y2, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y1.shape)
    pairs = zip(F.conv2d_backward(dy, cache1), F.conv2d_backward(_channels_last(dy), cache2),
                strict=True)
    for a, b in pairs:
        if a is not None:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_col2im_is_the_adjoint_of_im2col():
    """<im2col(x), G> == <x, col2im(G)> for every x and G: col2im is im2col's transpose."""
    rng = np.random.default_rng(2)
    x = rng.standard_normal((2, 3, 7, 6))
    for kernel, stride, padding, dilation in [((3, 2), (2, 1), (1, 2), (1, 1)),
                                              ((2, 3), (1, 2), (2, 1), (2, 2))]:
        cols = im2col(x, kernel, stride, padding, dilation)
        g = rng.standard_normal(cols.shape)
        back = col2im(g, x.shape, kernel, stride, padding, dilation)
        assert back.shape == x.shape
        np.testing.assert_allclose((cols * g).sum(), (x * back).sum(), rtol=1e-12)


def test_gradients_accumulate_and_input_grad_false_skips_dx(xp, kernels):
    rng = np.random.default_rng(3)
    layer, x = _layer((2, 3, 6, 6, 4, 3, 1, 1, True), rng, xp)
    y = layer(xp.asarray(x))
    dy = xp.asarray(rng.standard_normal(y.shape))
    assert layer.backward(dy, input_grad=False) is None
    g1 = xp.asnumpy(layer.weight.grad).copy()
    b1 = xp.asnumpy(layer.bias.grad).copy()
    layer.backward(dy)
    np.testing.assert_allclose(xp.asnumpy(layer.weight.grad), 2 * g1, rtol=1e-12)
    np.testing.assert_allclose(xp.asnumpy(layer.bias.grad), 2 * b1, rtol=1e-12)


def test_finite_differences_on_weight():
    """Central differences on a few weight entries agree with the analytic dW."""
    rng = np.random.default_rng(4)
    layer = Conv2d(2, 3, 3, 2, 1).double()
    x = rng.standard_normal((2, 2, 5, 6))
    dy = rng.standard_normal(layer.output_shape(x.shape))
    layer(x)
    layer.backward(dy)
    eps = 1e-6
    w = layer.weight.data
    for idx in [(0, 0, 0, 0), (1, 1, 2, 1), (2, 0, 1, 2)]:
        old = w[idx]
        w[idx] = old + eps
        up = float((layer(x) * dy).sum())
        w[idx] = old - eps
        down = float((layer(x) * dy).sum())
        w[idx] = old
        assert abs((up - down) / (2 * eps) - layer.weight.grad[idx]) < 1e-6


def test_pytorch_default_init_bounds_and_state_dict_layout():
    tinynet.manual_seed(0)
    layer = Conv2d(4, 8, (3, 2))
    bound = 1 / np.sqrt(4 * 3 * 2)
    assert layer.weight.data.shape == (8, 4, 3, 2) and layer.weight.data.dtype == np.float32
    assert np.abs(layer.weight.data).max() <= bound and np.abs(layer.bias.data).max() <= bound
    assert np.abs(layer.weight.data).max() > 0.8 * bound   # really drawn, not zeros
    assert list(layer.state_dict()) == ["weight", "bias"]
    assert list(Conv2d(1, 2, 3, bias=False).state_dict()) == ["weight"]


@pytest.mark.parametrize("args, kwargs", [
    ((1, 32, 3, 1, 1), {}),
    ((2, 4, (3, 1)), {"stride": (2, 1), "bias": False}),
    ((3, 6, 3), {"padding": "same", "dilation": 2, "groups": 3, "padding_mode": "reflect"}),
    ((3, 6, 3), {"padding": "valid"}),
])
def test_extra_repr_matches_pytorch(args, kwargs, torch):
    assert repr(Conv2d(*args, **kwargs)) == repr(torch.nn.Conv2d(*args, **kwargs)) \
        .replace("padding=same", "padding='same'").replace("padding=valid", "padding='valid'")


def test_bad_inputs_raise_clear_errors(xp):
    layer = xp.to(tinynet.Sequential(Conv2d(3, 4, 3)))  # named '0' in errors
    conv = layer[0]
    with pytest.raises(ShapeError, match=r"Conv2d '0'.*\(2, 2, 5, 5\).*\(N, 3, H, W\)"):
        layer(xp.asarray(np.zeros((2, 2, 5, 5), np.float32)))
    with pytest.raises(ShapeError, match="expected"):
        layer(xp.asarray(np.zeros((5, 5), np.float32)))
    with pytest.raises(ShapeError, match="too small"):
        layer(xp.asarray(np.zeros((1, 3, 2, 5), np.float32)))
    with pytest.raises(DTypeError, match="float64.*float32"):
        layer(xp.asarray(np.zeros((1, 3, 5, 5), np.float64)))
    y = layer(xp.asarray(np.zeros((1, 3, 5, 5), np.float32)))
    with pytest.raises(ShapeError, match=r"gradient of shape \(1, 4, 2, 2\).*\(1, 4, 3, 3\)"):
        conv.backward(xp.asarray(np.zeros((1, 4, 2, 2), np.float32)))
    assert y.shape == (1, 4, 3, 3)
    with pytest.raises(ValueError, match="kernel_size"):
        Conv2d(1, 1, (3, 3, 3))
    with pytest.raises(ValueError, match="stride"):
        Conv2d(1, 1, 3, stride=0)
    with pytest.raises(RuntimeError, match="before forward"):
        Conv2d(1, 1, 3).backward(np.zeros((1, 1, 1, 1), np.float32))


def test_non_finite_check_names_the_layer():
    layer = Conv2d(1, 1, 3)
    x = np.zeros((1, 1, 4, 4), np.float32)
    x[0, 0, 1, 1] = np.nan
    layer(x)  # off by default
    with tinynet.checking(), pytest.raises(NonFiniteError, match="Conv2d"):
        layer(x)


@pytest.mark.parametrize("case", [CASES[0], CASES[2], CASES[4]])
def test_matches_pytorch_float32(case, torch, kernels):
    rng = np.random.default_rng(5)
    n, c, h, w, o, k, s, p, bias = case
    layer = Conv2d(c, o, k, s, p, bias=bias)
    twin = torch.nn.Conv2d(c, o, k, s, p, bias=bias)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(layer.weight.data))
        if bias:
            twin.bias.copy_(torch.from_numpy(layer.bias.data))
    x = rng.standard_normal((n, c, h, w)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = twin(tx)
    y = layer(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-5, atol=1e-5)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    dx = layer.backward(dy)
    assert dx.dtype == np.float32 and layer.weight.grad.dtype == np.float32
    np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(layer.weight.grad, twin.weight.grad.numpy(), rtol=1e-4, atol=1e-4)
    if bias:
        np.testing.assert_allclose(layer.bias.grad, twin.bias.grad.numpy(), rtol=1e-4, atol=1e-4)


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@hypothesis.given(n=st.integers(1, 2), c=st.integers(1, 3), o=st.integers(1, 3),
                  h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 3),
                  kw=st.integers(1, 3), sh=st.integers(1, 2), sw=st.integers(1, 2),
                  ph=st.integers(0, 2), pw=st.integers(0, 2), bias=st.booleans())
def test_random_shapes_match_loop_reference(n, c, o, h, w, kh, kw, sh, sw, ph, pw, bias):
    hypothesis.assume(h + 2 * ph >= kh and w + 2 * pw >= kw)
    rng = np.random.default_rng(n + 7 * c + 31 * h + 131 * w)
    x = rng.standard_normal((n, c, h, w))
    wt = rng.standard_normal((o, c, kh, kw))
    b = rng.standard_normal(o) if bias else None
    y_ref = conv2d_naive(x, wt, b, (sh, sw), (ph, pw))
    dy = rng.standard_normal(y_ref.shape)
    dx_ref, dw_ref, db_ref = conv2d_backward_naive(dy, x, wt, (sh, sw), (ph, pw))
    for F in KERNEL_SETS.values():
        y, cache = F.conv2d_forward(x, wt, b, (sh, sw), (ph, pw))
        np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
        dx, dw, db = F.conv2d_backward(dy, cache)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
        np.testing.assert_allclose(dw, dw_ref, rtol=1e-10, atol=1e-12)
        if bias:
            np.testing.assert_allclose(db, db_ref, rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("h, kernel, stride, padding", [
    (1, 3, 2, 2),    # the middle tap only ever reads padding
    (1, 1, 2, 1),    # every tap reads only padding: y does not depend on x, dx == 0
    (5, 3, 1, 1),    # stride-1 "same": the centre tap covers x and starts dx
    (6, 3, 1, 2),    # stride 1, larger output: no tap covers x exactly
    (7, 4, 3, 0),    # stride > kernel's reach in places: some x never read
])
def test_input_gradient_edge_taps_match_loop_reference(h, kernel, stride, padding, F):
    rng = np.random.default_rng(h + 10 * kernel + 100 * stride + 1000 * padding)
    x = rng.standard_normal((2, 3, h, h))
    wt = rng.standard_normal((4, 3, kernel, kernel))
    y, cache = F.conv2d_forward(x, wt, None, stride, padding)
    dy = rng.standard_normal(y.shape)
    dx, _, _ = F.conv2d_backward(dy, cache)
    dx_ref, _, _ = conv2d_backward_naive(dy, x, wt, (stride, stride), (padding, padding))
    np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)
    if (h, kernel, stride, padding) == (1, 1, 2, 1):
        assert not dx.any()


def test_fast_forward_in_sample_chunks_matches_one_product(monkeypatch):
    """The fast CPU forward unfolds and multiplies a few samples at a time; with a chunk
    smaller than one sample and one of several samples it still gives the columns (in
    its (KH, KW, C) order) and the outputs of the single im2col product."""
    from tinynet.functional.fast import conv as conv_mod
    rng = np.random.default_rng(11)
    x = rng.standard_normal((5, 3, 6, 7))
    wt = rng.standard_normal((4, 3, 3, 2))
    b = rng.standard_normal(4)
    y_ref = conv2d_naive(x, wt, b, (2, 1), (1, 1))
    # rows per sample OH*OW = 3*8, K = 3*2*3 = 18, float64: 2 samples per chunk, then 1
    for chunk_bytes in (1, 2 * 24 * 18 * 8, 1 << 30):
        monkeypatch.setattr(conv_mod, "CHUNK_BYTES", chunk_bytes)
        y, cache = conv_mod.conv2d_forward(x, wt, b, (2, 1), (1, 1))
        np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
        cols = im2col(x, (3, 2), (2, 1), (1, 1))              # (C, KH, KW) order
        cols = cols.reshape(-1, 3, 3, 2).transpose(0, 2, 3, 1).reshape(cols.shape)
        np.testing.assert_array_equal(cache[1], cols)


@pytest.mark.parametrize("hw, kernel, padding", [
    ((5, 6), (3, 3), (1, 1)),     # every tap shifts by at most one row / column
    ((4, 7), (3, 5), (1, 2)),     # non-square kernel, shifts of two columns
    ((1, 2), (5, 3), (2, 1)),     # taps shifting by >= H read only padding and drop out
    ((3, 3), (1, 1), (0, 0)),     # the centre tap alone
])
def test_fast_same_conv_input_gradient_in_sample_chunks_matches_loop_reference(
        monkeypatch, hw, kernel, padding):
    """The fast stride-1 "same" convolution adds each tap's gradient as one flat shifted
    addition after zeroing what would wrap into the next row or sample; with chunks of
    one sample, of two and of all samples it still gives the loop reference's dx."""
    from tinynet.functional.fast import conv as conv_mod
    rng = np.random.default_rng(sum(hw) + 10 * kernel[1])
    x = rng.standard_normal((5, 3, *hw))
    wt = rng.standard_normal((4, 3, *kernel))
    y, cache = conv_mod.conv2d_forward(x, wt, None, 1, padding)
    assert y.shape[2:] == x.shape[2:]
    dy = rng.standard_normal(y.shape)
    dx_ref, _, _ = conv2d_backward_naive(dy, x, wt, (1, 1), padding)
    block = hw[0] * hw[1] * 3 * 8          # one sample's (H*W, C) float64 block
    for chunk_bytes in (1, 2 * block, 1 << 30):
        monkeypatch.setattr(conv_mod, "DX_CHUNK_BYTES", chunk_bytes)
        dx, _, _ = conv_mod.conv2d_backward(dy, cache)
        np.testing.assert_allclose(dx, dx_ref, rtol=1e-10, atol=1e-12)


# ----------------------------------------------------------------- dilation, groups, padding
# (C, O, H, W, kernel, stride, padding, dilation, groups, padding_mode)
GENERAL = [
    (4, 6, 7, 8, 3, 1, 2, 2, 1, "zeros"),        # dilation
    (4, 6, 7, 8, 3, 2, 1, (2, 1), 2, "zeros"),   # dilation and groups, strided
    (4, 4, 6, 6, 3, 1, 1, 1, 4, "zeros"),        # depthwise
    (3, 6, 6, 7, 3, 1, "same", 1, 3, "zeros"),   # "same", grouped
    (2, 3, 6, 5, (2, 4), 1, "same", 1, 1, "zeros"),  # even kernel: uneven "same"
    (2, 3, 5, 6, 3, 1, "valid", 1, 1, "zeros"),
    (2, 3, 6, 6, 3, 1, 2, 1, 1, "reflect"),
    (2, 3, 6, 6, 3, 2, (1, 2), 1, 1, "replicate"),
    (2, 3, 5, 6, 3, 1, (2, 1), 1, 1, "circular"),
    (2, 4, 6, 6, 3, 1, "same", 2, 2, "reflect"),
]


def _general_layer(case, dtype="float64"):
    c, o, h, w, k, s, p, d, g, mode = case
    return Conv2d(c, o, k, s, p, d, g, padding_mode=mode, dtype=dtype), (2, c, h, w)


def _padded_naive(x, layer):
    """The input padded as the layer pads it, by plain NumPy (the naive loops then run
    with no padding)."""
    explicit, conv_pad = layer._paddings()
    if explicit is None:
        return x, conv_pad
    top, bottom, left, right = explicit
    mode = {"zeros": "constant", "reflect": "reflect", "replicate": "edge",
            "circular": "wrap"}[layer.padding_mode]
    return np.pad(x, ((0, 0), (0, 0), (top, bottom), (left, right)), mode=mode), (0, 0)


@pytest.mark.parametrize("case", GENERAL)
def test_dilation_groups_and_padding_modes_match_loop_reference(case, kernels):
    rng = np.random.default_rng(20)
    layer, shape = _general_layer(case)
    x = rng.standard_normal(shape)
    y = layer(x)
    xpad, pad = _padded_naive(x, layer)
    w, b = layer.weight.data, layer.bias.data
    y_ref = conv2d_naive(xpad, w, b, layer.stride, pad, layer.dilation, layer.groups)
    np.testing.assert_allclose(y, y_ref, rtol=1e-10, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    dxpad, dw_ref, db_ref = conv2d_backward_naive(dy, xpad, w, layer.stride, pad,
                                                  layer.dilation, layer.groups)
    np.testing.assert_allclose(layer.weight.grad, dw_ref, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(layer.bias.grad, db_ref, rtol=1e-10, atol=1e-12)
    # dx: the padded input's gradient folded back through the padding (its adjoint)
    probe = rng.standard_normal(x.shape)
    xpad_probe, _ = _padded_naive(probe, layer)
    np.testing.assert_allclose((dx * probe).sum(), (dxpad * xpad_probe).sum(), rtol=1e-10)


@pytest.mark.parametrize("case", GENERAL)
@pytest.mark.filterwarnings("ignore:Using padding='same' with even kernel lengths:UserWarning")
def test_dilation_groups_and_padding_modes_match_pytorch(case, torch, kernels):
    rng = np.random.default_rng(21)
    layer, shape = _general_layer(case)
    c, o, _h, _w, k, s, p, d, g, mode = case
    twin = torch.nn.Conv2d(c, o, k, s, p, d, g, padding_mode=mode, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(layer.weight.data))
        twin.bias.copy_(torch.from_numpy(layer.bias.data))
    x = rng.standard_normal(shape)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = twin(tx)
    y = layer(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y.shape)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(layer.weight.grad, twin.weight.grad.numpy(), rtol=1e-12,
                               atol=1e-12)


def test_unbatched_input_matches_a_batch_of_one(kernels):
    rng = np.random.default_rng(22)
    layer = Conv2d(3, 4, 3, padding=1).double()
    x = rng.standard_normal((3, 5, 6))
    y = layer(x)
    assert y.shape == (4, 5, 6)
    dy = rng.standard_normal(y.shape)
    dx = layer.backward(dy)
    g1 = layer.weight.grad.copy()
    layer.zero_grad()
    np.testing.assert_allclose(layer(x[None])[0], y, rtol=1e-14)
    np.testing.assert_allclose(layer.backward(dy[None])[0], dx, rtol=1e-14)
    np.testing.assert_allclose(layer.weight.grad, g1, rtol=1e-14)


def test_pytorch_positional_arguments_build_the_same_layer(torch):
    """The sixth positional argument is dilation, as in PyTorch (not bias)."""
    layer = Conv2d(3, 2, (3, 3), (2, 2), (1, 1), (2, 2))
    twin = torch.nn.Conv2d(3, 2, (3, 3), (2, 2), (1, 1), (2, 2))
    assert layer.dilation == (2, 2) and layer.bias is not None
    x = np.zeros((2, 3, 7, 7), np.float32)
    assert layer(x).shape == tuple(twin(torch.from_numpy(x)).shape) == (2, 2, 3, 3)


def test_arguments_tinynet_cannot_honour_are_refused():
    with pytest.raises(ValueError, match="padding_mode"):
        Conv2d(1, 1, 3, padding_mode="mirror")
    with pytest.raises(ValueError, match="strided"):
        Conv2d(1, 1, 3, stride=2, padding="same")
    with pytest.raises(ValueError, match="divisible by groups"):
        Conv2d(3, 4, 3, groups=2)
    with pytest.raises(ValueError, match="padding"):
        Conv2d(1, 1, 3, padding="full")
    with pytest.raises(ShapeError, match="too large for padding_mode='reflect'"):
        Conv2d(1, 1, 3, padding=3, padding_mode="reflect")(np.zeros((1, 1, 3, 3), np.float32))
