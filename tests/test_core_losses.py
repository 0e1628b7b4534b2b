"""CrossEntropyLoss and MSELoss: forward and backward against references and PyTorch."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import tinynet
from tinynet import CrossEntropyLoss, MSELoss, NLLLoss
from tinynet.errors import DTypeError, LabelError, ShapeError


def _logits(seed=0, n=5, c=4, scale=2.0):
    rng = np.random.default_rng(seed)
    return rng.normal(scale=scale, size=(n, c)), rng.integers(0, c, size=n)


def _ce_reference(z, t):
    """Textbook softmax cross-entropy in float64 and its gradient (mean over N)."""
    p = np.exp(z) / np.exp(z).sum(axis=1, keepdims=True)
    n = z.shape[0]
    loss = -np.mean(np.log(p[np.arange(n), t]))
    onehot = np.eye(z.shape[1])[t]
    return loss, (p - onehot) / n


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_cross_entropy_matches_reference(xp, reduction):
    z, t = _logits(1)
    loss_fn = CrossEntropyLoss(reduction=reduction)
    loss = loss_fn(xp.asarray(z), xp.asarray(t))
    ref, dref = _ce_reference(z, t)
    scale = z.shape[0] if reduction == "sum" else 1
    assert isinstance(loss, float)
    assert loss == pytest.approx(ref * scale, rel=1e-12)
    dz = loss_fn.backward()
    np.testing.assert_allclose(xp.asnumpy(dz), dref * scale, rtol=1e-10, atol=1e-14)


def test_cross_entropy_is_stable_for_large_logits(xp):
    z = np.array([[1000.0, 0.0, -1000.0], [-5000.0, 5000.0, 0.0]])
    t = np.array([0, 0])
    loss_fn = CrossEntropyLoss()
    loss = loss_fn(xp.asarray(z), xp.asarray(t))
    # sample 0: log p_0 = 0 (up to e^-1000); sample 1: log p_0 = -10000
    assert loss == pytest.approx(10000.0 / 2, rel=1e-12)
    dz = xp.asnumpy(loss_fn.backward())
    assert np.all(np.isfinite(dz))
    np.testing.assert_allclose(dz, [[0, 0, 0], [-0.5, 0.5, 0]], atol=1e-15)


def test_cross_entropy_float32_and_uint8_targets(xp):
    z, t = _logits(2)
    loss_fn = CrossEntropyLoss()
    loss = loss_fn(xp.asarray(z.astype(np.float32)), xp.asarray(t.astype(np.uint8)))
    assert loss == pytest.approx(_ce_reference(z, t)[0], rel=1e-6)
    assert loss_fn.backward().dtype == np.float32


def test_cross_entropy_against_torch(torch):
    z, t = _logits(3, n=16, c=10, scale=4.0)
    zt = torch.tensor(z, dtype=torch.float64, requires_grad=True)
    ref = torch.nn.functional.cross_entropy(zt, torch.tensor(t))
    ref.backward()
    loss_fn = CrossEntropyLoss()
    assert loss_fn(z, t) == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(loss_fn.backward(), zt.grad.numpy(), rtol=1e-11, atol=1e-16)


def test_cross_entropy_label_errors(xp):
    z = xp.asarray(np.zeros((3, 4)))
    loss_fn = CrossEntropyLoss()
    with pytest.raises(LabelError, match=r"\[0, 4\).*from 0 to 4"):
        loss_fn(z, xp.asarray(np.array([0, 1, 4])))
    with pytest.raises(LabelError, match=r"\[0, 4\).*from -1 to 2"):
        loss_fn(z, xp.asarray(np.array([-1, 1, 2])))
    with pytest.raises(DTypeError, match="float64.*integer class indices of shape \\(3,\\)"):
        loss_fn(z, xp.asarray(np.array([0.0, 1.0, 2.0])))


def test_cross_entropy_shape_errors(xp):
    loss_fn = CrossEntropyLoss()
    z = xp.asarray(np.zeros((3, 4)))
    with pytest.raises(ShapeError, match=r"targets of shape \(2,\), expected \(3,\)"):
        loss_fn(z, xp.asarray(np.array([0, 1])))
    with pytest.raises(ShapeError, match=r"targets of shape \(3, 1\)"):
        loss_fn(z, xp.asarray(np.zeros((3, 1), np.int64)))
    with pytest.raises(ShapeError, match=r"targets of shape \(1,\), expected \(\)"):
        loss_fn(xp.asarray(np.zeros(4)), xp.asarray(np.array([0])))  # unbatched: one index
    with pytest.raises(ShapeError, match=r"input of shape \(\)"):
        loss_fn(xp.asarray(np.zeros(())), xp.asarray(np.array(0)))


def test_backward_before_loss_is_a_clear_error():
    for loss_fn in (CrossEntropyLoss(), MSELoss()):
        with pytest.raises(RuntimeError, match="backward called before"):
            loss_fn.backward()
    with pytest.raises(ValueError, match="reduction"):
        CrossEntropyLoss(reduction="average")


@pytest.mark.parametrize("reduction", ["mean", "sum"])
def test_mse_matches_reference(xp, reduction):
    rng = np.random.default_rng(4)
    y, t = rng.normal(size=(3, 5)), rng.normal(size=(3, 5))
    loss_fn = MSELoss(reduction=reduction)
    loss = loss_fn(xp.asarray(y), xp.asarray(t))
    m = 1 if reduction == "sum" else y.size
    assert loss == pytest.approx(((y - t) ** 2).sum() / m, rel=1e-12)
    np.testing.assert_allclose(xp.asnumpy(loss_fn.backward()), 2 * (y - t) / m, rtol=1e-12)


def test_mse_against_torch(torch):
    rng = np.random.default_rng(5)
    y, t = rng.normal(size=(4, 3)), rng.normal(size=(4, 3))
    yt = torch.tensor(y, requires_grad=True)
    ref = torch.nn.functional.mse_loss(yt, torch.tensor(t))
    ref.backward()
    loss_fn = MSELoss()
    assert loss_fn(y, t) == pytest.approx(ref.item(), rel=1e-13)
    np.testing.assert_allclose(loss_fn.backward(), yt.grad.numpy(), rtol=1e-12)


def test_mse_shape_error(xp):
    with pytest.raises(ShapeError, match=r"\(3, 5\).*\(5, 3\)"):
        MSELoss()(xp.asarray(np.zeros((3, 5))), xp.asarray(np.zeros((5, 3))))


@settings(max_examples=40, deadline=None)
@given(st.integers(1, 6), st.integers(1, 7), st.floats(1e-3, 1e3), st.integers(0, 2 ** 31))
def test_cross_entropy_random_shapes_and_scales(n, c, scale, seed):
    """Against log-softmax written with logaddexp (no max-subtraction trick)."""
    rng = np.random.default_rng(seed)
    z, t = rng.normal(scale=scale, size=(n, c)), rng.integers(0, c, size=n)
    log_p = z - np.logaddexp.reduce(z, axis=1, keepdims=True)
    loss_fn = CrossEntropyLoss()
    assert loss_fn(z, t) == pytest.approx(-log_p[np.arange(n), t].mean(), rel=1e-9, abs=1e-12)
    expected = (np.exp(log_p) - np.eye(c)[t]) / n
    # log p is a difference of numbers of size |z|, so it carries an absolute rounding
    # error of a few eps * |z| (in the reference too): p - onehot cannot be better.
    atol = 4 * np.finfo(np.float64).eps * max(1.0, np.abs(z).max()) / n
    np.testing.assert_allclose(loss_fn.backward(), expected, rtol=1e-9, atol=atol)


@pytest.mark.parametrize("kernels", ["reference", "fast"])
@pytest.mark.parametrize("make", [lambda: CrossEntropyLoss(reduction="none"),
                                  lambda: NLLLoss(reduction="none"),
                                  lambda: MSELoss(reduction="none")])
def test_unbatched_none_reduction_backward_stays_on_the_arrays_device(xp, kernels, make):
    """An unbatched prediction with reduction='none' gives a 0-d loss; its default
    dL/dloss = 1 must be made where the prediction lives (on a GPU, not the host)."""
    loss_fn = make()
    if isinstance(loss_fn, MSELoss):                  # a 0-d prediction and target
        z, target = np.array(0.5, np.float32), np.array(0.25, np.float32)
    else:                                             # one sample's C scores, one class
        z, target = np.array([0.5, -1.0, 2.0], np.float32), np.array(2)
    with tinynet.use_kernels(kernels):
        loss = loss_fn(xp.asarray(z), xp.asarray(target))
        assert loss.shape == ()
        dz = loss_fn.backward()
        dz_explicit = loss_fn.backward(xp.asarray(np.ones((), np.float32)))
    assert xp.asnumpy(dz).dtype == np.float32
    np.testing.assert_array_equal(xp.asnumpy(dz), xp.asnumpy(dz_explicit))
    assert np.abs(xp.asnumpy(dz)).sum() > 0


def test_a_loss_deep_copies_after_a_call():
    """gradcheck and users deep-copy losses: nothing unpicklable (a module) is kept."""
    import copy
    for loss_fn in (CrossEntropyLoss(reduction="none"), MSELoss()):
        z = np.zeros((2, 3), np.float32)
        t = np.array([0, 2]) if isinstance(loss_fn, CrossEntropyLoss) else z + 1
        loss_fn(z, t)
        twin = copy.deepcopy(loss_fn)
        np.testing.assert_array_equal(np.asarray(twin.backward(np.ones(2, np.float32))
                                                 if loss_fn.reduction == "none"
                                                 else twin.backward()),
                                      np.asarray(loss_fn.backward(np.ones(2, np.float32))
                                                 if loss_fn.reduction == "none"
                                                 else loss_fn.backward()))
