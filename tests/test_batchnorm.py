"""BatchNorm1d/2d: train and eval against PyTorch, running statistics, the three-term backward."""

from __future__ import annotations

import numpy as np
import pytest

import tinynet
from tinynet.errors import DTypeError, ShapeError
from tinynet.layers import BatchNorm1d, BatchNorm2d

# (128, 5): N >= 64 takes BatchNorm1d's blocked channel sums (8 float32 blocks of N/8 rows)
SHAPES = [(BatchNorm1d, (8, 5)), (BatchNorm1d, (128, 5)), (BatchNorm1d, (6, 4, 3)),
          (BatchNorm2d, (4, 3, 5, 3))]


def _reference(x, gamma, beta, eps):
    """The textbook forward in float64: normalise per channel with the biased variance."""
    axes = (0,) + tuple(range(2, x.ndim))
    shape = (1, -1) + (1,) * (x.ndim - 2)
    mu = x.mean(axis=axes, keepdims=True)
    var = x.var(axis=axes, keepdims=True)
    return (x - mu) / np.sqrt(var + eps) * gamma.reshape(shape) + beta.reshape(shape)


def _layer(cls, shape, rng, xp):
    layer = cls(shape[1]).double()
    layer.weight.data[...] = rng.uniform(0.5, 1.5, shape[1])
    layer.bias.data[...] = rng.standard_normal(shape[1])
    return xp.to(layer)


@pytest.mark.parametrize("cls,shape", SHAPES)
def test_train_forward_and_backward_by_finite_differences(cls, shape, xp):
    rng = np.random.default_rng(0)
    layer = _layer(cls, shape, rng, xp)
    x = rng.standard_normal(shape) * 2 + 1
    gamma, beta = xp.asnumpy(layer.weight.data), xp.asnumpy(layer.bias.data)
    y = layer(xp.asarray(x))
    np.testing.assert_allclose(xp.asnumpy(y), _reference(x, gamma, beta, 1e-5), rtol=1e-10,
                               atol=1e-10)
    dy = rng.standard_normal(shape)
    dy_dev = xp.asarray(dy)
    dx = xp.asnumpy(layer.backward(dy_dev))
    np.testing.assert_array_equal(xp.asnumpy(dy_dev), dy)

    def loss(x_, g_=gamma, b_=beta):
        return float((_reference(x_, g_, b_, 1e-5) * dy).sum())

    eps = 1e-6
    flat = x.reshape(-1)
    for i in rng.choice(flat.size, 6, replace=False):
        e = np.zeros_like(flat)
        e[i] = eps
        num = (loss(x + e.reshape(shape)) - loss(x - e.reshape(shape))) / (2 * eps)
        assert abs(num - dx.reshape(-1)[i]) < 1e-6, (i, num, dx.reshape(-1)[i])
    for c in range(shape[1]):
        e = np.zeros(shape[1])
        e[c] = eps
        num_g = (loss(x, gamma + e) - loss(x, gamma - e)) / (2 * eps)
        num_b = (loss(x, gamma, beta + e) - loss(x, gamma, beta - e)) / (2 * eps)
        assert abs(num_g - xp.asnumpy(layer.weight.grad)[c]) < 1e-6
        assert abs(num_b - xp.asnumpy(layer.bias.grad)[c]) < 1e-6


@pytest.mark.parametrize("momentum", [0.1, 0.3, None])
@pytest.mark.parametrize("cls,shape", SHAPES)
def test_running_statistics_train_and_eval_match_pytorch(cls, shape, momentum, torch):
    rng = np.random.default_rng(1)
    layer = cls(shape[1], momentum=momentum)
    twin = getattr(torch.nn, cls.__name__)(shape[1], momentum=momentum)
    gamma = rng.uniform(0.5, 1.5, shape[1]).astype(np.float32)
    layer.weight.data[...] = gamma
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(gamma))
    for step in range(3):
        x = (rng.standard_normal(shape) * (step + 1) + step).astype(np.float32)
        tx = torch.from_numpy(x).requires_grad_(True)
        ty = twin(tx)
        y = layer(x)
        np.testing.assert_allclose(y, ty.detach().numpy(), rtol=1e-4, atol=1e-5)
        dy = rng.standard_normal(shape).astype(np.float32)
        ty.backward(torch.from_numpy(dy))
        layer.zero_grad()
        dx = layer.backward(dy)
        np.testing.assert_allclose(dx, tx.grad.numpy(), rtol=1e-4, atol=1e-4)
        np.testing.assert_allclose(layer.weight.grad, twin.weight.grad.numpy(), rtol=1e-4,
                                   atol=1e-4)
        np.testing.assert_allclose(layer.bias.grad, twin.bias.grad.numpy(), rtol=1e-4,
                                   atol=1e-4)
        twin.zero_grad()
    state, tstate = layer.state_dict(), twin.state_dict()
    assert list(state) == list(tstate)
    for key in state:
        assert state[key].dtype == np.dtype(str(tstate[key].dtype).replace("torch.", ""))
        np.testing.assert_allclose(state[key], tstate[key].numpy(), rtol=1e-5, atol=1e-6)
    assert int(state["num_batches_tracked"]) == 3
    layer.eval()
    twin.eval()
    x = rng.standard_normal(shape).astype(np.float32)
    tx = torch.from_numpy(x).requires_grad_(True)
    ty = twin(tx)
    np.testing.assert_allclose(layer(x), ty.detach().numpy(), rtol=1e-4, atol=1e-5)
    dy = rng.standard_normal(shape).astype(np.float32)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), rtol=1e-4, atol=1e-5)
    before = layer.running_mean.copy()
    layer(x)
    np.testing.assert_array_equal(layer.running_mean, before)   # eval never updates


def test_running_update_uses_unbiased_variance():
    x = np.array([[0.0], [1.0], [2.0], [5.0]], np.float32)   # var: biased 3.5, unbiased 4.667
    layer = BatchNorm1d(1, momentum=1.0)
    layer(x)
    np.testing.assert_allclose(layer.running_mean, [2.0], rtol=1e-6)
    np.testing.assert_allclose(layer.running_var, [14.0 / 3.0], rtol=1e-6)


def test_channels_last_input_and_eval_mode(xp):
    rng = np.random.default_rng(2)
    x = rng.standard_normal((3, 4, 5, 5))
    x_cl = np.ascontiguousarray(x.transpose(0, 2, 3, 1)).transpose(0, 3, 1, 2)
    a, b = xp.to(BatchNorm2d(4).double()), xp.to(BatchNorm2d(4).double())
    np.testing.assert_allclose(xp.asnumpy(a(xp.asarray(x))), xp.asnumpy(b(xp.asarray(x_cl))),
                               rtol=1e-12, atol=1e-12)
    dy = rng.standard_normal(x.shape)
    np.testing.assert_allclose(xp.asnumpy(a.backward(xp.asarray(dy))),
                               xp.asnumpy(b.backward(xp.asarray(dy))), rtol=1e-12, atol=1e-12)
    a.eval()   # eval on this backend: y = (x - running_mean) / sqrt(running_var + eps) * g + b
    mean, var = xp.asnumpy(a.running_mean), xp.asnumpy(a.running_var)
    expected = (x - mean.reshape(1, -1, 1, 1)) / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5)
    np.testing.assert_allclose(xp.asnumpy(a(xp.asarray(x_cl))), expected, rtol=1e-10, atol=1e-12)
    np.testing.assert_allclose(xp.asnumpy(a.backward(xp.asarray(dy))),
                               dy / np.sqrt(var.reshape(1, -1, 1, 1) + 1e-5), rtol=1e-10)


def test_no_affine_and_no_running_stats():
    rng = np.random.default_rng(3)
    x = rng.standard_normal((6, 3)).astype(np.float32)
    layer = BatchNorm1d(3, affine=False, track_running_stats=False)
    assert list(layer.state_dict()) == [] and list(layer.parameters()) == []
    layer.eval()   # without running stats eval normalises with the batch statistics
    y = layer(x)
    np.testing.assert_allclose(y.mean(axis=0), 0, atol=1e-6)
    v = x.astype(np.float64).var(axis=0)            # the biased batch variance it used
    # var(y) = v / (v + eps) exactly; float32 y: measured 8.4e-8 relative, 1e-6 is ~8 ulps
    # (eps/v is up to 4.4e-5 here, so a layer that dropped eps fails)
    np.testing.assert_allclose(y.astype(np.float64).var(axis=0), v / (v + layer.eps),
                               rtol=1e-6, atol=0)
    assert layer.backward(np.ones_like(x)).shape == x.shape


def test_input_grad_false_still_accumulates_parameters():
    rng = np.random.default_rng(4)
    layer = BatchNorm2d(2)
    x = rng.standard_normal((2, 2, 3, 3)).astype(np.float32)
    layer(x)
    dy = rng.standard_normal(x.shape).astype(np.float32)
    assert layer.backward(dy, input_grad=False) is None
    g = layer.weight.grad.copy()
    layer.backward(dy)
    np.testing.assert_allclose(layer.weight.grad, 2 * g, rtol=1e-6)


def test_defaults_buffers_and_repr_match_pytorch():
    layer = BatchNorm2d(8)
    assert (layer.eps, layer.momentum, layer.affine) == (1e-5, 0.1, True)
    assert list(layer.state_dict()) == ["weight", "bias", "running_mean", "running_var",
                                        "num_batches_tracked"]
    assert layer.num_batches_tracked.dtype == np.int64 and layer.num_batches_tracked.shape == ()
    np.testing.assert_array_equal(layer.weight.data, 1)
    np.testing.assert_array_equal(layer.running_var, 1)
    assert repr(layer) == ("BatchNorm2d(8, eps=1e-05, momentum=0.1, affine=True, bias=True, "
                           "track_running_stats=True)")   # PyTorch 2.13's, with its bias


def test_bad_inputs_raise_clear_errors():
    model = tinynet.Sequential(BatchNorm1d(4))
    with pytest.raises(ShapeError, match=r"BatchNorm1d '0'.*\(2, 3\).*\(N, 4\) or \(N, 4, L\)"):
        model(np.zeros((2, 3), np.float32))
    with pytest.raises(ShapeError, match=r"\(N, 4, H, W\)"):
        BatchNorm2d(4)(np.zeros((2, 4), np.float32))
    with pytest.raises(ShapeError, match="more than 1 value per channel"):
        model(np.zeros((1, 4), np.float32))
    with pytest.raises(DTypeError, match="float64.*float32"):
        model(np.zeros((2, 4), np.float64))
    with pytest.raises(RuntimeError, match="before forward"):
        BatchNorm1d(2).backward(np.zeros((2, 2), np.float32))
    model.eval()
    assert model(np.zeros((1, 4), np.float32)).shape == (1, 4)   # eval: one sample is fine


@pytest.mark.parametrize("train", [True, False])
@pytest.mark.parametrize("shape", [(8, 16, 24, 24), (8, 300, 12, 12), (4, 16, 2, 2)])
def test_tiled_channel_vectors_give_the_broadcast_results_bit_for_bit(shape, train,
                                                                      monkeypatch):
    """The fast kernel's long-row passes (a (C,) vector tiled along channels-last rows)
    must compute exactly what the plain broadcast computes."""
    from tinynet.functional.fast import normalization as fast
    rng = np.random.default_rng(0)
    n, c, h, w = shape
    x = (3 + 2 * rng.standard_normal((n, h, w, c))).astype(np.float32).transpose(0, 3, 1, 2)
    dy = rng.standard_normal((n, h, w, c)).astype(np.float32).transpose(0, 3, 1, 2)
    gamma, beta = rng.random(c, dtype=np.float32) + 0.5, rng.random(c, dtype=np.float32)
    stats = {} if train else {"running_mean": rng.random(c, dtype=np.float32),
                              "running_var": rng.random(c, dtype=np.float32) + 0.5}
    seen = []
    real = fast._Channels.__init__

    def spy(self, *args):
        real(self, *args)
        seen.append(self.long)

    monkeypatch.setattr(fast._Channels, "__init__", spy)
    results, default = [], fast.LONG_FROM
    for long_from in (default, 1 << 62):                  # default, then never tiled
        monkeypatch.setattr(fast, "LONG_FROM", long_from)
        y, cache = fast.batch_norm_forward(x, gamma, beta, 1e-5, **stats)
        results.append((y, *fast.norm_backward(dy, cache)))
    assert seen[:2] == [c < fast.LONG_BELOW and x.size >= default] * 2
    assert seen[2:] == [False, False]
    for a, b in zip(*results):
        np.testing.assert_array_equal(a, b)
