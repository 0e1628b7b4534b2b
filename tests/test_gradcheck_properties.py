"""Hypothesis: random shapes, strides, paddings and kernel sizes for Conv2d and pooling,
random widths and activations for MLPs; the float64 gradient check must pass on all.

Deterministic (``derandomize=True``) with modest ``max_examples`` so the file runs in
seconds; the checker itself is seeded by the drawn seed.
"""

from __future__ import annotations

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import tinynet
from tinynet import models
from tinynet.gradcheck import check
from tinynet.layers import AvgPool2d, Conv2d, MaxPool2d

SETTINGS = settings(max_examples=20, deadline=None, derandomize=True,
                    suppress_health_check=[HealthCheck.too_slow])


@st.composite
def conv_case(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    ph, pw = draw(st.integers(0, 2)), draw(st.integers(0, 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # the padded input must hold at least one window
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    n, c_in, c_out = draw(st.integers(1, 2)), draw(st.integers(1, 3)), draw(st.integers(1, 3))
    bias = draw(st.booleans())
    seed = draw(st.integers(0, 2**16))
    return (c_in, c_out, (kh, kw), (sh, sw), (ph, pw), bias), (n, c_in, h, w), seed


@st.composite
def pool_case(draw):
    kh, kw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    # PyTorch: padding at most half the kernel
    ph, pw = draw(st.integers(0, kh // 2)), draw(st.integers(0, kw // 2))
    sh, sw = draw(st.integers(1, 3)), draw(st.integers(1, 3))
    h = draw(st.integers(max(1, kh - 2 * ph), 7))
    w = draw(st.integers(max(1, kw - 2 * pw), 7))
    n, c = draw(st.integers(1, 2)), draw(st.integers(1, 3))
    seed = draw(st.integers(0, 2**16))
    return ((kh, kw), (sh, sw), (ph, pw)), (n, c, h, w), seed


@SETTINGS
@given(conv_case())
def test_conv2d_passes(case):
    (c_in, c_out, k, s, p, bias), shape, seed = case
    tinynet.manual_seed(seed)
    layer = Conv2d(c_in, c_out, k, s, p, bias=bias)
    x = np.random.default_rng(seed).standard_normal(shape)
    report = check(layer, x, seed=seed)
    assert report.ok, str(report)
    assert [r.name for r in report.rows] == ["input", "weight"] + (["bias"] if bias else [])


@SETTINGS
@given(pool_case(), st.sampled_from(["max", "avg"]))
def test_pooling_passes(case, kind):
    (k, s, p), shape, seed = case
    layer = MaxPool2d(k, s, p) if kind == "max" else AvgPool2d(k, s, p)
    x = np.random.default_rng(seed).standard_normal(shape)
    report = check(layer, x, seed=seed)
    assert report.ok, str(report)
    assert report.rows[0].checked > 0


@SETTINGS
@given(st.lists(st.integers(1, 9), min_size=0, max_size=3),
       st.sampled_from(sorted(models.ACTIVATIONS)), st.booleans(), st.integers(0, 2**16))
def test_mlp_passes(hidden, act, batchnorm, seed):
    tinynet.manual_seed(seed)
    rng = np.random.default_rng(seed)
    model = models.mlp(6, tuple(hidden), 4, act=act, batchnorm=batchnorm, flatten=False)
    n = 5
    x = rng.standard_normal((n, 6))
    report = check(model, x, rng.integers(0, 4, n), tinynet.CrossEntropyLoss(), seed=seed)
    assert report.ok, str(report)
    assert len(report.rows) == 1 + len(list(model.parameters()))
