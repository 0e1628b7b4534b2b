"""MaxPool2d and AvgPool2d against their loop definitions and PyTorch, ties included,
on the reference and the fast kernels."""

from __future__ import annotations

import hypothesis
import numpy as np
import pytest
from hypothesis import strategies as st

import tinynet
from tinynet.errors import DTypeError, ShapeError
from tinynet.functional.fast.layout import is_channels_last
from tinynet.functional.pool import (
    avgpool2d_backward_naive,
    avgpool2d_naive,
    maxpool2d_backward_naive,
    maxpool2d_naive,
)
from tinynet.layers import AvgPool2d, MaxPool2d

# (H, W, kernel, stride, padding): the 2x2/2 fast path, overlapping windows, odd sizes
# (floor mode drops the last row/column), paddings 0-2, rectangular windows.
CASES = [
    (6, 6, 2, 2, 0),
    (7, 5, 2, None, 0),
    (7, 7, 3, 1, 1),
    (7, 6, 3, 2, 1),
    (9, 8, 5, 2, 2),
    (6, 7, (2, 3), (1, 2), (1, 1)),
    (5, 5, 1, 1, 0),
]


def _channels_last(a: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(a.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)


def _inputs(h, w, rng, ties: bool):
    """Small integers make many windows hold tied maxima; normals make none."""
    if ties:
        return rng.integers(0, 3, (2, 3, h, w)).astype(np.float64)
    return rng.standard_normal((2, 3, h, w))


@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("channels_last", [False, True])
@pytest.mark.parametrize("case", CASES)
def test_maxpool_matches_loop_reference(case, channels_last, ties, xp, kernels):
    h, w, k, s, p = case
    rng = np.random.default_rng(0)
    x = _inputs(h, w, rng, ties)
    layer = MaxPool2d(k, s, p)
    x_in = _channels_last(x) if channels_last else x
    y = layer(xp.asarray(x_in))
    y_ref, _ = maxpool2d_naive(x, k, s, p)
    np.testing.assert_array_equal(xp.asnumpy(y), y_ref)
    dy = rng.standard_normal(y_ref.shape)
    dy_dev = xp.asarray(dy)
    dx = layer.backward(dy_dev)
    np.testing.assert_allclose(xp.asnumpy(dx), maxpool2d_backward_naive(dy, x, k, s, p),
                               rtol=1e-12, atol=1e-12)
    np.testing.assert_array_equal(xp.asnumpy(dy_dev), dy)


@pytest.mark.parametrize("count_include_pad", [True, False])
@pytest.mark.parametrize("case", CASES)
def test_avgpool_matches_loop_reference(case, count_include_pad, xp, kernels):
    h, w, k, s, p = case
    rng = np.random.default_rng(1)
    x = rng.standard_normal((2, 3, h, w))
    layer = AvgPool2d(k, s, p, count_include_pad=count_include_pad)
    y = layer(xp.asarray(x))
    y_ref = avgpool2d_naive(x, k, s, p, count_include_pad=count_include_pad)
    np.testing.assert_allclose(xp.asnumpy(y), y_ref, rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(y_ref.shape)
    dx = layer.backward(xp.asarray(dy))
    np.testing.assert_allclose(xp.asnumpy(dx),
                               avgpool2d_backward_naive(dy, x, k, s, p,
                                                        count_include_pad=count_include_pad),
                               rtol=1e-12, atol=1e-12)


def test_maxpool_tie_goes_to_the_first_index(kernels):
    """A window of four equal values sends its whole gradient to the top-left one."""
    x = np.ones((1, 1, 2, 4))
    x[0, 0, :, 2:] = [[1.0, 5.0], [5.0, 5.0]]   # second window: tie between (0,1),(1,0),(1,1)
    layer = MaxPool2d(2)
    layer(x)
    dx = layer.backward(np.array([[[[3.0, 7.0]]]]))
    np.testing.assert_array_equal(dx[0, 0], [[3.0, 0.0, 0.0, 7.0], [0.0, 0.0, 0.0, 0.0]])


def test_maxpool_padding_counts_as_minus_infinity(kernels):
    x = -np.ones((1, 1, 3, 3))   # all negative: a zero padding would win every border max
    y = MaxPool2d(2, 2, 1)(x)
    np.testing.assert_array_equal(y, -np.ones((1, 1, 2, 2)))


@pytest.mark.parametrize("case", [CASES[0], CASES[1], CASES[3], CASES[5]])
def test_maxpool_matches_pytorch_with_ties(case, torch, kernels):
    h, w, k, s, p = case
    rng = np.random.default_rng(2)
    x = rng.integers(0, 2, (2, 3, h, w)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.nn.MaxPool2d(k, s, p)(tx)
    layer = MaxPool2d(k, s, p)
    y = layer(x)
    np.testing.assert_array_equal(y, ty.detach().numpy())
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


@pytest.mark.parametrize("count_include_pad", [True, False])
def test_avgpool_matches_pytorch(count_include_pad, torch, kernels):
    rng = np.random.default_rng(3)
    x = rng.standard_normal((2, 3, 7, 6)).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = torch.nn.AvgPool2d(3, 2, 1, count_include_pad=count_include_pad)(tx)
    layer = AvgPool2d(3, 2, 1, count_include_pad=count_include_pad)
    y = layer(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-6, atol=1e-6)
    dy = rng.standard_normal(y.shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=1e-6, atol=1e-6)


def test_fast_maxpool_keeps_channels_last_memory_order():
    """The fast kernels keep a convolution's channels-last output channels-last."""
    x = _channels_last(np.random.default_rng(4).standard_normal((2, 8, 6, 6)).astype(np.float32))
    for layer in (MaxPool2d(2), MaxPool2d(3, 1, 1), MaxPool2d(3, 2, 1)):
        y = layer(x)
        assert y.transpose(0, 2, 3, 1).flags.c_contiguous, type(layer).__name__
        dx = layer.backward(y)   # with padding: a crop of a channels-last buffer
        assert is_channels_last(dx) and dx.strides[1] == dx.itemsize, type(layer).__name__


def test_defaults_and_repr_match_pytorch():
    assert MaxPool2d(2).stride == (2, 2)
    assert repr(MaxPool2d(2)) == \
        "MaxPool2d(kernel_size=2, stride=2, padding=0, dilation=1, ceil_mode=False)"
    assert repr(AvgPool2d(3, 1, 1)) == "AvgPool2d(kernel_size=3, stride=1, padding=1)"
    assert AvgPool2d(2).count_include_pad is True


def test_bad_arguments_and_inputs():
    with pytest.raises(ValueError, match="at most half"):
        MaxPool2d(2, 1, 2)
    with pytest.raises(ValueError, match="kernel_size"):
        AvgPool2d(0)
    with pytest.raises(ShapeError, match=r"MaxPool2d.*\(4, 4\).*\(N, C, H, W\)"):
        MaxPool2d(2)(np.zeros((4, 4), np.float32))
    with pytest.raises(ShapeError, match="smaller than the window"):
        MaxPool2d(3)(np.zeros((1, 1, 2, 2), np.float32))
    with pytest.raises(DTypeError, match="int64"):
        AvgPool2d(2)(np.zeros((1, 1, 2, 2), np.int64))
    layer = MaxPool2d(2)
    layer(np.zeros((1, 1, 4, 4), np.float32))
    with pytest.raises(ShapeError, match=r"\(1, 1, 2, 2\)"):
        layer.backward(np.zeros((1, 1, 3, 3), np.float32))
    with pytest.raises(RuntimeError, match="before forward"):
        MaxPool2d(2).backward(np.zeros((1, 1, 1, 1), np.float32))


@hypothesis.settings(max_examples=40, deadline=None, derandomize=True)
@hypothesis.given(h=st.integers(1, 7), w=st.integers(1, 7), kh=st.integers(1, 3),
                  kw=st.integers(1, 3), sh=st.integers(1, 3), sw=st.integers(1, 3),
                  ph=st.integers(0, 1), pw=st.integers(0, 1), channels_last=st.booleans())
def test_random_shapes_match_loop_reference(h, w, kh, kw, sh, sw, ph, pw, channels_last):
    for kind in ("reference", "fast"):
        with tinynet.use_kernels(kind):
            _check_random_shape(h, w, kh, kw, sh, sw, ph, pw, channels_last)


def _check_random_shape(h, w, kh, kw, sh, sw, ph, pw, channels_last):
    hypothesis.assume(ph <= kh // 2 and pw <= kw // 2 and h + 2 * ph >= kh and w + 2 * pw >= kw)
    rng = np.random.default_rng(h + 7 * w + 31 * kh + 131 * kw)
    x = rng.integers(0, 3, (2, 3, h, w)).astype(np.float64)   # ties on purpose
    x_in = _channels_last(x) if channels_last else x
    k, s, p = (kh, kw), (sh, sw), (ph, pw)
    pool = MaxPool2d(k, s, p)
    y_ref, _ = maxpool2d_naive(x, k, s, p)
    np.testing.assert_array_equal(pool(x_in), y_ref)
    dy = rng.standard_normal(y_ref.shape)
    np.testing.assert_allclose(pool.backward(dy), maxpool2d_backward_naive(dy, x, k, s, p),
                               rtol=1e-12, atol=1e-12)
    for include in (True, False):
        avg = AvgPool2d(k, s, p, count_include_pad=include)
        np.testing.assert_allclose(avg(x_in), avgpool2d_naive(x, k, s, p,
                                                              count_include_pad=include),
                                   rtol=1e-12, atol=1e-12)
        np.testing.assert_allclose(avg.backward(dy),
                                   avgpool2d_backward_naive(dy, x, k, s, p,
                                                            count_include_pad=include),
                                   rtol=1e-12, atol=1e-12)
