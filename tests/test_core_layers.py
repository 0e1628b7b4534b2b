"""MLP layers: forward and backward against direct NumPy references of each formula.

Every test runs on each ``xp`` backend (NumPy, the strict CuPy stand-in, CuPy when a GPU
is present), so a stray host call inside a layer fails here. References are computed
on the host in float64 from the textbook formulas, independently of the layer code.
"""

from __future__ import annotations

import numpy as np
import pytest

import tinynet
from tinynet import (
    ELU,
    Dropout,
    Flatten,
    LeakyReLU,
    Linear,
    ReLU,
    Sequential,
    Sigmoid,
    Tanh,
    init,
)
from tinynet.errors import DTypeError, ShapeError, TinynetError

RTOL = 1e-10  # float64 everywhere below; the references are exact formulas


def _rng(seed: int = 0) -> np.random.Generator:
    return np.random.default_rng(seed)


# ------------------------------------------------------------------------ Linear
def _linear(xp, d_in=5, d_out=4, bias=True):
    layer = Linear(d_in, d_out, bias=bias).double()
    return xp.to(layer)


@pytest.mark.parametrize("bias", [True, False])
def test_linear_forward_backward_match_formula(xp, bias):
    rng = _rng(1)
    layer = _linear(xp, 5, 4, bias)
    w = xp.asnumpy(layer.weight.data)
    b = xp.asnumpy(layer.bias.data) if bias else np.zeros(4)
    x = rng.normal(size=(3, 5))
    dy = rng.normal(size=(3, 4))

    y = layer(xp.asarray(x))
    # y[n, o] = sum_i x[n, i] W[o, i] + b[o], written as explicit sums
    ref_y = np.einsum("ni,oi->no", x, w) + b
    np.testing.assert_allclose(xp.asnumpy(y), ref_y, rtol=RTOL, atol=1e-12)

    dx = layer.backward(xp.asarray(dy))
    np.testing.assert_allclose(xp.asnumpy(dx), np.einsum("no,oi->ni", dy, w), rtol=RTOL)
    np.testing.assert_allclose(xp.asnumpy(layer.weight.grad), np.einsum("no,ni->oi", dy, x),
                               rtol=RTOL)
    if bias:
        np.testing.assert_allclose(xp.asnumpy(layer.bias.grad), dy.sum(axis=0), rtol=RTOL)
    else:
        assert layer.bias is None
        assert [n for n, _ in layer.named_parameters()] == ["weight"]


def test_linear_init_is_pytorch_default_range():
    tinynet.manual_seed(3)
    layer = Linear(400, 300)
    bound = 1 / np.sqrt(400)
    for p in (layer.weight.data, layer.bias.data):
        assert p.dtype == np.float32
        assert np.abs(p).max() <= bound
        assert np.abs(p).max() > 0.95 * bound  # uniform over the whole range, not narrower
    # U(-a, a) has variance a^2 / 3
    assert abs(layer.weight.data.var() - bound ** 2 / 3) < 0.05 * bound ** 2 / 3


def test_linear_seeded_construction_repeats():
    tinynet.manual_seed(7)
    a = Linear(6, 3)
    tinynet.manual_seed(7)
    b = Linear(6, 3)
    c = Linear(6, 3)
    np.testing.assert_array_equal(a.weight.data, b.weight.data)
    assert not np.array_equal(b.weight.data, c.weight.data)


def test_linear_grads_accumulate_and_zero_grad(xp):
    rng = _rng(2)
    layer = _linear(xp)
    x1, x2 = rng.normal(size=(3, 5)), rng.normal(size=(2, 5))
    d1, d2 = rng.normal(size=(3, 4)), rng.normal(size=(2, 4))
    layer(xp.asarray(x1))
    layer.backward(xp.asarray(d1))
    layer(xp.asarray(x2))
    layer.backward(xp.asarray(d2))
    np.testing.assert_allclose(xp.asnumpy(layer.weight.grad), d1.T @ x1 + d2.T @ x2, rtol=RTOL)
    np.testing.assert_allclose(xp.asnumpy(layer.bias.grad), d1.sum(0) + d2.sum(0), rtol=RTOL)

    layer.zero_grad()
    assert layer.weight.grad is None and layer.bias.grad is None
    # After zero_grad the next backward starts from zero again (not from the kept buffer).
    layer(xp.asarray(x2))
    layer.backward(xp.asarray(d2))
    np.testing.assert_allclose(xp.asnumpy(layer.weight.grad), d2.T @ x2, rtol=RTOL)

    layer.zero_grad(set_to_none=False)
    np.testing.assert_array_equal(xp.asnumpy(layer.weight.grad), np.zeros((4, 5)))


def test_linear_input_grad_false_skips_dx_only(xp):
    rng = _rng(3)
    x, dy = rng.normal(size=(3, 5)), rng.normal(size=(3, 4))
    a, b = _linear(xp), _linear(xp)
    b.load_state_dict(a.state_dict())
    a(xp.asarray(x))
    b(xp.asarray(x))
    assert a.backward(xp.asarray(dy), input_grad=False) is None
    assert b.backward(xp.asarray(dy)) is not None
    np.testing.assert_array_equal(xp.asnumpy(a.weight.grad), xp.asnumpy(b.weight.grad))
    np.testing.assert_array_equal(xp.asnumpy(a.bias.grad), xp.asnumpy(b.bias.grad))


def test_linear_backward_does_not_write_into_dy(xp):
    rng = _rng(4)
    layer = _linear(xp)
    dy_host = rng.normal(size=(3, 4))
    dy = xp.asarray(dy_host)
    layer(xp.asarray(rng.normal(size=(3, 5))))
    layer.backward(dy)
    layer.backward(dy)
    np.testing.assert_array_equal(xp.asnumpy(dy), dy_host)


def test_linear_shape_and_dtype_errors_name_the_layer():
    model = Sequential(Flatten(), Linear(6, 3))
    with pytest.raises(ShapeError, match=r"Linear '1'.*\(2, 5\).*\(\*, 6\)"):
        model[1](np.zeros((2, 5), np.float32))
    with pytest.raises(ShapeError, match=r"Linear '1'.*\(\*, 6\)"):
        model[1](np.zeros((2, 3, 2), np.float32))
    with pytest.raises(DTypeError, match=r"Linear '1'.*float64.*float32"):
        model[1](np.zeros((2, 6), np.float64))
    with pytest.raises(ShapeError):
        model[1]([[0.0] * 6])
    model(np.zeros((2, 2, 3), np.float32))
    with pytest.raises(ShapeError, match=r"Linear '1'.*\(2, 4\)"):
        model.backward(np.zeros((2, 4), np.float32))
    with pytest.raises(ValueError):
        Linear(0, 3)


def test_backward_before_forward_is_a_clear_error():
    for layer in (Linear(2, 2), ReLU(), Tanh(), Sigmoid(), LeakyReLU(), ELU(), Flatten()):
        with pytest.raises(RuntimeError, match="backward called before forward"):
            layer.backward(np.zeros((1, 2), np.float32))


# ------------------------------------------------------------------------ activations
def _sigmoid(x):
    return 1 / (1 + np.exp(-x))


# (layer factory, f(x), f'(x)) with the conventions PyTorch uses at x = 0.
ACTIVATIONS = {
    "relu": (ReLU, lambda x: np.where(x > 0, x, 0.0), lambda x: (x > 0).astype(float)),
    "tanh": (Tanh, np.tanh, lambda x: 1 - np.tanh(x) ** 2),
    "sigmoid": (Sigmoid, _sigmoid, lambda x: _sigmoid(x) * (1 - _sigmoid(x))),
    "leaky_relu": (lambda: LeakyReLU(0.2), lambda x: np.where(x > 0, x, 0.2 * x),
                   lambda x: np.where(x > 0, 1.0, 0.2)),
    "leaky_relu_default": (LeakyReLU, lambda x: np.where(x > 0, x, 0.01 * x),
                           lambda x: np.where(x > 0, 1.0, 0.01)),
    "leaky_relu_steep": (lambda: LeakyReLU(1.5), lambda x: np.where(x > 0, x, 1.5 * x),
                         lambda x: np.where(x > 0, 1.0, 1.5)),
    "leaky_relu_negative": (lambda: LeakyReLU(-0.3), lambda x: np.where(x > 0, x, -0.3 * x),
                            lambda x: np.where(x > 0, 1.0, -0.3)),
    "elu": (lambda: ELU(0.7), lambda x: np.where(x > 0, x, 0.7 * (np.exp(x) - 1)),
            lambda x: np.where(x > 0, 1.0, 0.7 * np.exp(x))),
    "elu_default": (ELU, lambda x: np.where(x > 0, x, np.exp(x) - 1),
                    lambda x: np.where(x > 0, 1.0, np.exp(x))),
}


def _activation_input(rng):
    x = rng.normal(scale=3.0, size=(4, 7))
    x[0, :3] = 0.0  # the kink
    x[1, 0], x[1, 1] = 40.0, -40.0  # saturation
    return x


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_forward_backward_match_formula(xp, name):
    make, f, df = ACTIVATIONS[name]
    rng = _rng(5)
    x, dy = _activation_input(rng), rng.normal(size=(4, 7))
    layer = make()
    xd, dyd = xp.asarray(x), xp.asarray(dy)
    y = layer(xd)
    np.testing.assert_allclose(xp.asnumpy(y), f(x), rtol=1e-12, atol=1e-15)
    dx = layer.backward(dyd)
    np.testing.assert_allclose(xp.asnumpy(dx), dy * df(x), rtol=1e-12, atol=1e-15)
    # the input and dy are left untouched, output dtype is the input's
    np.testing.assert_array_equal(xp.asnumpy(xd), x)
    np.testing.assert_array_equal(xp.asnumpy(dyd), dy)
    assert y.dtype == np.float64 and dx.dtype == np.float64


@pytest.mark.parametrize("name", sorted(ACTIVATIONS))
def test_activation_keeps_float32(xp, name):
    make, f, _ = ACTIVATIONS[name]
    x = _rng(6).normal(size=(3, 5)).astype(np.float32)
    layer = make()
    y = layer(xp.asarray(x))
    dx = layer.backward(xp.asarray(np.ones((3, 5), np.float32)))
    assert y.dtype == np.float32 and dx.dtype == np.float32
    np.testing.assert_allclose(xp.asnumpy(y), f(x.astype(np.float64)), rtol=2e-6, atol=1e-7)


def test_sigmoid_extremes_are_finite_and_precise():
    x = np.array([[-800.0, -50.0, 0.0, 50.0, 800.0]])
    y = Sigmoid()(x)
    assert np.all(np.isfinite(y))
    # for very negative x, sigmoid(x) ~ exp(x): relative precision kept
    np.testing.assert_allclose(y[0, 1], np.exp(-50.0) / (1 + np.exp(-50.0)), rtol=1e-12)
    assert y[0, 0] == 0.0 and y[0, 4] == 1.0 and y[0, 2] == 0.5


def test_activations_reject_non_arrays():
    for layer in (ReLU(), Tanh(), Sigmoid(), LeakyReLU(), ELU(), Flatten()):
        with pytest.raises(ShapeError):
            layer([1.0, 2.0])


def test_activation_repr_shows_arguments():
    assert "negative_slope=0.2" in repr(LeakyReLU(0.2))
    assert "alpha=0.7" in repr(ELU(0.7))


# ------------------------------------------------------------------------ Flatten
def test_flatten_forward_backward(xp):
    x = _rng(7).normal(size=(2, 3, 4, 5))
    layer = Flatten()
    y = layer(xp.asarray(x))
    np.testing.assert_array_equal(xp.asnumpy(y), x.reshape(2, 60))
    dy = _rng(8).normal(size=(2, 60))
    dx = layer.backward(xp.asarray(dy))
    np.testing.assert_array_equal(xp.asnumpy(dx), dy.reshape(2, 3, 4, 5))


def test_flatten_dims_as_torch():
    x = np.zeros((2, 3, 4, 5))
    assert Flatten(0, -1)(x).shape == (120,)
    assert Flatten(1, 2)(x).shape == (2, 12, 5)
    assert Flatten(2)(x).shape == (2, 3, 20)
    with pytest.raises(ShapeError, match="Flatten"):
        Flatten(3, 1)(x)
    # dims out of range are errors, as in torch (not wrapped around): (N,) has no dim 1
    with pytest.raises(ShapeError, match=r"Flatten.*dims 1..-1.*\(5,\)"):
        Flatten()(np.zeros(5))
    with pytest.raises(ShapeError, match="Flatten"):
        Flatten(0, 4)(x)


# ------------------------------------------------------------------------ Dropout
def test_dropout_mask_rate_and_scaling(xp):
    p = 0.3
    tinynet.manual_seed(11)
    x = _rng(9).uniform(1.0, 2.0, size=(200, 500))  # no zeros in the input
    layer = Dropout(p)
    y = xp.asnumpy(layer(xp.asarray(x)))
    dropped = y == 0
    n = x.size
    # binomial(n, p): the dropped fraction is p within 5 standard deviations
    assert abs(dropped.mean() - p) < 5 * np.sqrt(p * (1 - p) / n)
    np.testing.assert_allclose(y[~dropped], x[~dropped] / (1 - p), rtol=1e-12)
    # backward multiplies by the same mask
    dy = _rng(10).normal(size=x.shape)
    dx = xp.asnumpy(layer.backward(xp.asarray(dy)))
    np.testing.assert_allclose(dx, np.where(dropped, 0.0, dy / (1 - p)), rtol=1e-12)


def test_dropout_masks_differ_between_calls_and_repeat_with_seed():
    x = np.ones((50, 40), np.float32)
    layer = Dropout(0.5)
    tinynet.manual_seed(1)
    a, b = layer(x), layer(x)
    tinynet.manual_seed(1)
    c = layer(x)
    assert not np.array_equal(a, b)
    np.testing.assert_array_equal(a, c)


def test_dropout_eval_is_identity(xp):
    x = _rng(12).normal(size=(6, 9))
    layer = Dropout(0.5).eval()
    xd = xp.asarray(x)
    y = layer(xd)
    np.testing.assert_array_equal(xp.asnumpy(y), x)
    dy = xp.asarray(_rng(13).normal(size=(6, 9)))
    np.testing.assert_array_equal(xp.asnumpy(layer.backward(dy)), xp.asnumpy(dy))
    layer.train()
    assert not np.array_equal(xp.asnumpy(layer(xd)), x)


def test_dropout_edge_probabilities_and_injected_mask(xp):
    x = _rng(14).normal(size=(4, 5))
    np.testing.assert_array_equal(xp.asnumpy(Dropout(0.0)(xp.asarray(x))), x)
    np.testing.assert_array_equal(xp.asnumpy(Dropout(1.0)(xp.asarray(x))), np.zeros((4, 5)))
    keep = _rng(15).random((4, 5)) > 0.5
    layer = Dropout(0.25)
    layer.next_mask = keep
    y = layer(xp.asarray(x))
    np.testing.assert_allclose(xp.asnumpy(y), np.where(keep, x / 0.75, 0.0), rtol=1e-12)
    assert layer.next_mask is None  # used once
    layer.next_mask = np.ones((2, 2), bool)
    with pytest.raises(ShapeError, match=r"\(2, 2\).*\(4, 5\)"):
        layer(xp.asarray(x))
    for bad in (-0.1, 1.5):
        with pytest.raises(ValueError, match="Dropout"):
            Dropout(bad)


# ------------------------------------------------------------------------ Sequential
def _host_mlp(act=Tanh):
    tinynet.manual_seed(21)
    model = Sequential(Flatten(), Linear(6, 5), act(), Linear(5, 4), act(), Linear(4, 3))
    return model.double()


def _mlp(xp, act=Tanh):
    return xp.to(_host_mlp(act))


def test_sequential_backward_is_the_chain_rule(xp):
    rng = _rng(16)
    model = _mlp(xp)
    x, dy = rng.normal(size=(3, 2, 3)), rng.normal(size=(3, 3))
    w = [xp.asnumpy(model[i].weight.data) for i in (1, 3, 5)]
    b = [xp.asnumpy(model[i].bias.data) for i in (1, 3, 5)]
    # host reference of the whole chain
    h0 = x.reshape(3, 6)
    a1 = h0 @ w[0].T + b[0]
    h1 = np.tanh(a1)
    a2 = h1 @ w[1].T + b[1]
    h2 = np.tanh(a2)
    y_ref = h2 @ w[2].T + b[2]
    d_h2 = dy @ w[2]
    d_a2 = d_h2 * (1 - h2 ** 2)
    d_h1 = d_a2 @ w[1]
    d_a1 = d_h1 * (1 - h1 ** 2)
    dx_ref = (d_a1 @ w[0]).reshape(3, 2, 3)

    y = model(xp.asarray(x))
    np.testing.assert_allclose(xp.asnumpy(y), y_ref, rtol=1e-12)
    dx = model.backward(xp.asarray(dy))
    np.testing.assert_allclose(xp.asnumpy(dx), dx_ref, rtol=1e-10)
    np.testing.assert_allclose(xp.asnumpy(model[1].weight.grad), d_a1.T @ h0, rtol=1e-10)
    np.testing.assert_allclose(xp.asnumpy(model[3].weight.grad), d_a2.T @ h1, rtol=1e-10)
    np.testing.assert_allclose(xp.asnumpy(model[5].bias.grad), dy.sum(0), rtol=1e-10)


def test_sequential_input_grad_false_gives_same_parameter_grads(xp):
    rng = _rng(17)
    x, dy = rng.normal(size=(3, 2, 3)), rng.normal(size=(3, 3))
    a, b = _mlp(xp, ReLU), _mlp(xp, ReLU)
    a(xp.asarray(x))
    b(xp.asarray(x))
    assert a.backward(xp.asarray(dy), input_grad=False) is None
    b.backward(xp.asarray(dy))
    for (na, pa), (nb, pb) in zip(a.named_parameters(), b.named_parameters()):
        assert na == nb
        np.testing.assert_allclose(xp.asnumpy(pa.grad), xp.asnumpy(pb.grad), rtol=1e-12)


def test_sequential_matches_central_differences():
    """End to end in float64: dLoss/dx and dLoss/dW against finite differences."""
    rng = _rng(18)
    model = _host_mlp(Sigmoid)
    loss_fn = tinynet.CrossEntropyLoss()
    x, t = rng.normal(size=(4, 2, 3)), np.array([0, 2, 1, 2])

    def loss_at(xv):
        return loss_fn(model(xv), t)

    loss_at(x)
    dx = model.backward(loss_fn.backward())
    h = 1e-6
    for idx in [(0, 0, 0), (1, 1, 2), (3, 0, 1)]:
        e = np.zeros_like(x)
        e[idx] = h
        num = (loss_at(x + e) - loss_at(x - e)) / (2 * h)
        assert abs(num - dx[idx]) < 1e-7 * max(1.0, abs(num)), (idx, num, dx[idx])
    w = model[3].weight
    model.zero_grad()
    loss_at(x)
    model.backward(loss_fn.backward())
    analytic = w.grad.copy()
    for idx in [(0, 0), (3, 4), (2, 1)]:
        old = w.data[idx]
        w.data[idx] = old + h
        up = loss_at(x)
        w.data[idx] = old - h
        down = loss_at(x)
        w.data[idx] = old
        num = (up - down) / (2 * h)
        assert abs(num - analytic[idx]) < 1e-7 * max(1.0, abs(num)), (idx, num, analytic[idx])


def test_sequential_container_behaviour():
    model = Sequential(Linear(3, 2), ReLU())
    model.append(Linear(2, 1))
    assert len(model) == 3 and isinstance(model[2], Linear)
    assert isinstance(model[:2], Sequential) and len(model[:2]) == 2
    assert [type(m).__name__ for m in model] == ["Linear", "ReLU", "Linear"]
    assert model[2].describe() == "Linear '2'"
    with pytest.raises(TypeError, match="position 1"):
        Sequential(Linear(3, 2), "relu")
    assert "(0): Linear(in_features=3, out_features=2, bias=True)" in repr(model)


def test_errors_derive_from_tinynet_error():
    for err in (ShapeError, DTypeError, tinynet.LabelError, tinynet.DataError,
                tinynet.StateDictError, tinynet.DeviceError, tinynet.NonFiniteError):
        assert issubclass(err, TinynetError)


def test_checks_name_the_layer_on_non_finite_input():
    model = Sequential(Linear(3, 2), ReLU())
    x = np.array([[1.0, np.nan, 0.0]], np.float32)
    model(x)  # off by default: no error
    with tinynet.checking(), pytest.raises(tinynet.NonFiniteError, match=r"Linear '0'.*1 NaN"):
        model(x)


# ------------------------------------------------------------------------ init
def _stat_ok(sample, std):
    """Mean 0 and standard deviation ``std`` within 5 standard errors."""
    n = sample.size
    assert abs(sample.mean()) < 5 * std / np.sqrt(n)
    assert abs(sample.std() - std) < 5 * std / np.sqrt(2 * n)


def test_init_normal_and_glorot(xp):
    w = xp.asarray(np.zeros((300, 200)))
    init.normal_(w, 0.0, 0.3, generator=1)
    _stat_ok(xp.asnumpy(w), 0.3)
    init.glorot_normal_(w, generator=2)
    _stat_ok(xp.asnumpy(w), np.sqrt(2.0 / (200 + 300)))
    init.glorot_uniform_(w, generator=3)
    bound = np.sqrt(6.0 / (200 + 300))
    h = xp.asnumpy(w)
    assert np.abs(h).max() <= bound and np.abs(h).max() > 0.99 * bound
    _stat_ok(h, bound / np.sqrt(3))


def test_init_kaiming_uses_fan_in_and_gain(xp):
    w = xp.asarray(np.zeros((64, 16, 3, 3), np.float32))  # conv weight: fan_in = 16*9
    p = Linear(2, 2)
    assert init.calculate_fan_in_and_fan_out(w) == (144, 576)
    init.kaiming_normal_(w, nonlinearity="relu", generator=4)
    _stat_ok(xp.asnumpy(w).astype(np.float64), np.sqrt(2.0 / 144))
    init.kaiming_uniform_(w, a=0.2, mode="fan_out", generator=5)
    bound = np.sqrt(3.0) * np.sqrt(2.0 / (1 + 0.2 ** 2)) / np.sqrt(576)
    assert np.abs(xp.asnumpy(w)).max() <= bound * (1 + 1e-6)
    assert np.abs(xp.asnumpy(w)).max() > 0.99 * bound
    assert w.dtype == np.float32
    init.zeros_(p.weight)
    assert not np.any(p.weight.data)
    with pytest.raises(ValueError, match="mode"):
        init.kaiming_normal_(w, mode="fan_avg")


def test_init_is_seeded():
    a, b, c = (np.zeros((5, 4)) for _ in range(3))
    init.kaiming_uniform_(a, generator=7)
    init.kaiming_uniform_(b, generator=np.random.default_rng(7))
    init.kaiming_uniform_(c, generator=8)
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    with pytest.raises(TypeError, match="seed"):
        init.normal_(a, generator="seven")


def test_calculate_gain_matches_torch(torch):
    for name, param in [("linear", None), ("sigmoid", None), ("tanh", None), ("relu", None),
                        ("leaky_relu", None), ("leaky_relu", 0.2), ("selu", None)]:
        assert init.calculate_gain(name, param) == pytest.approx(
            torch.nn.init.calculate_gain(name, param), rel=1e-12)
