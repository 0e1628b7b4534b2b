"""torch.nn's signatures and inputs: every constructor in PyTorch's order, unbatched and
empty inputs, and the layers and losses added to match torch.nn, each against PyTorch
(float64, on both kernel sets) and against a loop or formula reference."""

from __future__ import annotations

import inspect
import math

import numpy as np
import pytest

import tinynet
from tinynet import layers as L
from tinynet.functional.pool import adaptive_avgpool2d_naive, maxpool2d_naive

torch = pytest.importorskip("torch", reason="these tests compare with PyTorch")
nn = torch.nn

TOL = {"rtol": 1e-12, "atol": 1e-12}


def _twin_check(layer, twin, x, dy=None, params=()):
    """Forward and backward of a tinynet layer and its torch twin in float64."""
    tx = torch.from_numpy(np.array(x)).requires_grad_(True)
    ty = twin(tx)
    y = layer(x)
    np.testing.assert_allclose(y, ty.detach().numpy(), **TOL)
    if dy is None:
        dy = np.random.default_rng(99).standard_normal(np.shape(y))
    ty.backward(torch.from_numpy(np.array(dy)))
    dx = layer.backward(np.array(dy))
    np.testing.assert_allclose(dx, tx.grad.numpy(), **TOL)
    for name in params:
        np.testing.assert_allclose(getattr(layer, name).grad,
                                   getattr(twin, name).grad.numpy(), **TOL)
    return y, dx


# ----------------------------------------------------------------------------- signatures
CONSTRUCTORS = [
    (L.Conv2d, nn.Conv2d), (L.MaxPool2d, nn.MaxPool2d), (L.AvgPool2d, nn.AvgPool2d),
    (L.BatchNorm1d, nn.BatchNorm1d), (L.BatchNorm2d, nn.BatchNorm2d), (L.Linear, nn.Linear),
    (L.LayerNorm, nn.LayerNorm), (L.AdaptiveAvgPool2d, nn.AdaptiveAvgPool2d),
    (L.GELU, nn.GELU), (L.SiLU, nn.SiLU), (L.Softmax, nn.Softmax),
    (L.LogSoftmax, nn.LogSoftmax), (L.Dropout, nn.Dropout), (L.Dropout2d, nn.Dropout2d),
    (L.ReLU, nn.ReLU), (L.LeakyReLU, nn.LeakyReLU), (L.ELU, nn.ELU), (L.Flatten, nn.Flatten),
    (tinynet.CrossEntropyLoss, nn.CrossEntropyLoss), (tinynet.MSELoss, nn.MSELoss),
    (tinynet.NLLLoss, nn.NLLLoss), (tinynet.L1Loss, nn.L1Loss),
    (tinynet.BCEWithLogitsLoss, nn.BCEWithLogitsLoss),
]


@pytest.mark.parametrize("ours, theirs", CONSTRUCTORS, ids=[c[0].__name__ for c in CONSTRUCTORS])
def test_constructor_takes_pytorchs_arguments_in_pytorchs_order(ours, theirs):
    mine = [(p.name, p.default, p.kind) for p in
            inspect.signature(ours.__init__).parameters.values() if p.name != "self"]
    torchs = [(p.name, p.default, p.kind) for p in
              inspect.signature(theirs.__init__).parameters.values() if p.name != "self"]
    assert [m[0] for m in mine] == [t[0] for t in torchs]
    for (name, default, kind), (_, t_default, t_kind) in zip(mine, torchs, strict=True):
        assert kind == t_kind, name
        if t_default is not inspect.Parameter.empty and not isinstance(t_default, torch.Tensor):
            assert default == t_default, (name, default, t_default)


# ----------------------------------------------------------------------------- activations
ACTIVATIONS = [
    (lambda: L.GELU(), lambda: nn.GELU()),
    (lambda: L.GELU("tanh"), lambda: nn.GELU("tanh")),
    (lambda: L.SiLU(), lambda: nn.SiLU()),
    (lambda: L.Sigmoid(), lambda: nn.Sigmoid()),
    (lambda: L.ELU(0.7), lambda: nn.ELU(0.7)),
    (lambda: L.LeakyReLU(0.2), lambda: nn.LeakyReLU(0.2)),
    (lambda: L.LeakyReLU(-1.5), lambda: nn.LeakyReLU(-1.5)),
    (lambda: L.ReLU(), lambda: nn.ReLU()),
    (lambda: L.Tanh(), lambda: nn.Tanh()),
    (lambda: L.Softmax(1), lambda: nn.Softmax(1)),
    (lambda: L.Softmax(-1), lambda: nn.Softmax(-1)),
    (lambda: L.LogSoftmax(0), lambda: nn.LogSoftmax(0)),
    (lambda: L.Identity(3, key=1), lambda: nn.Identity(3, key=1)),
]


@pytest.mark.parametrize("shape", [(4, 7), (2, 3, 5), (6,), (), (0, 4)])
@pytest.mark.parametrize("make", ACTIVATIONS, ids=lambda m: repr(m[0]()))
def test_activations_match_pytorch_on_any_shape(make, shape, kernels):
    ours, theirs = make
    layer, twin = ours(), theirs()
    x = np.asarray(np.random.default_rng(1).standard_normal(shape) * 3)
    if isinstance(layer, (L.Softmax, L.LogSoftmax)) and layer.dim >= max(len(shape), 1):
        with pytest.raises(IndexError):
            twin(torch.from_numpy(x))
        with pytest.raises(tinynet.ShapeError, match="out of range"):
            layer(x)
        return
    _twin_check(layer, twin, x)


def test_gelu_matches_its_definition_by_math_erf_and_tanh(kernels):
    x = np.linspace(-9, 9, 721)
    exact = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    # erf itself agrees with math.erf to 4e-16; 1 + erf(x/sqrt 2) cancels for x < 0,
    # which multiplies that by up to ~100 (PyTorch computes the same expression)
    np.testing.assert_allclose(L.GELU()(x), exact, rtol=1e-13, atol=1e-300)
    approx = np.array([0.5 * v * (1 + math.tanh(math.sqrt(2 / math.pi) * (v + 0.044715 * v ** 3)))
                       for v in x])
    # 1 + tanh(u) cancels completely for x << 0: compare on the scale of |x| there
    np.testing.assert_allclose(L.GELU("tanh")(x), approx, rtol=1e-14, atol=1e-14)


def test_softmax_matches_the_loop_definition(kernels):
    x = np.random.default_rng(2).standard_normal((3, 5, 4)) * 20
    y = L.Softmax(1)(x)
    for a in range(3):
        for c in range(4):
            col = x[a, :, c]
            e = [math.exp(v - max(col)) for v in col]
            np.testing.assert_allclose(y[a, :, c], [v / sum(e) for v in e], rtol=1e-14)
    assert L.Softmax()(np.zeros((2, 3)))[0].sum() == pytest.approx(1.0)   # legacy dim 1


def test_large_inputs_stay_finite(kernels):
    x = np.array([-1e4, -50.0, 0.0, 50.0, 1e4])
    with np.errstate(over="raise", invalid="raise", divide="raise"):   # no warnings either
        for layer in (L.Sigmoid(), L.SiLU(), L.GELU(), L.ELU(), L.Softmax(0), L.LogSoftmax(0)):
            y = layer(x)
            assert np.isfinite(y).all(), type(layer).__name__


# ----------------------------------------------------------------------------- Linear
@pytest.mark.parametrize("shape", [(5, 6), (2, 3, 6), (6,), (0, 6)])
def test_linear_takes_any_leading_axes(shape, kernels):
    layer = L.Linear(6, 4).double()
    twin = nn.Linear(6, 4, dtype=torch.float64)
    with torch.no_grad():
        twin.weight.copy_(torch.from_numpy(layer.weight.data))
        twin.bias.copy_(torch.from_numpy(layer.bias.data))
    x = np.random.default_rng(3).standard_normal(shape)
    _twin_check(layer, twin, x, params=("weight", "bias"))


def test_device_and_dtype_arguments():
    layer = L.Linear(3, 2, dtype=torch.float64)
    assert layer.weight.data.dtype == np.float64
    assert L.Conv2d(1, 1, 3, device="cpu", dtype="float64").weight.data.dtype == np.float64
    assert L.BatchNorm1d(3, dtype=np.float64).running_mean.dtype == np.float64
    with pytest.raises(tinynet.DTypeError, match="floating-point"):
        L.Linear(3, 2, dtype="int32")
    with pytest.raises(tinynet.DeviceError):
        L.Linear(3, 2, device="tpu")


# ----------------------------------------------------------------------------- pooling
POOLS = [
    ((3, 2, 1, 2), {}),                        # dilation 2
    ((2,), {"ceil_mode": True}),
    ((3, 2, 1), {"ceil_mode": True}),
    ((3, 1, 1, 1), {"return_indices": True}),
    ((2, 2, 0, 1, True, True), {}),            # positional return_indices, ceil_mode
]


@pytest.mark.parametrize("args, kwargs", POOLS)
def test_maxpool_options_match_pytorch_and_the_loops(args, kwargs, kernels):
    x = np.random.default_rng(4).integers(0, 4, (2, 3, 9, 8)).astype(np.float64)  # ties
    layer, twin = L.MaxPool2d(*args, **kwargs), nn.MaxPool2d(*args, **kwargs)
    tx = torch.from_numpy(x).requires_grad_(True)
    out, tout = layer(x), twin(tx)
    (y, idx), (ty, tidx) = (out, tout) if layer.return_indices else ((out, None), (tout, None))
    np.testing.assert_array_equal(y, ty.detach().numpy())
    y_ref, idx_ref = maxpool2d_naive(x, layer.kernel_size, layer.stride, layer.padding,
                                     layer.dilation, layer.ceil_mode)
    np.testing.assert_array_equal(y, y_ref)
    if idx is not None:
        np.testing.assert_array_equal(idx, tidx.numpy())
        np.testing.assert_array_equal(idx, idx_ref)
    dy = np.random.default_rng(5).standard_normal(y.shape)
    ty.backward(torch.from_numpy(dy))
    np.testing.assert_allclose(layer.backward(dy), tx.grad.numpy(), **TOL)


@pytest.mark.parametrize("kwargs", [{"ceil_mode": True}, {"ceil_mode": True,
                                    "count_include_pad": False}, {"divisor_override": 5},
                                    {"padding": (1,)}])
def test_avgpool_options_match_pytorch(kwargs, kernels):
    x = np.random.default_rng(6).standard_normal((2, 3, 7, 8))
    _twin_check(L.AvgPool2d(3, 2, **kwargs) if "padding" in kwargs else
                L.AvgPool2d(3, 2, 1, **kwargs),
                nn.AvgPool2d(3, 2, **kwargs) if "padding" in kwargs else
                nn.AvgPool2d(3, 2, 1, **kwargs), x)


@pytest.mark.parametrize("size", [1, 3, (2, 5), (None, 3), (7, 8)])
def test_adaptive_avgpool_matches_pytorch_and_the_loops(size, kernels):
    x = np.random.default_rng(7).standard_normal((2, 3, 7, 8))
    y, _ = _twin_check(L.AdaptiveAvgPool2d(size), nn.AdaptiveAvgPool2d(size), x)
    out = tuple(y.shape[-2:])
    np.testing.assert_allclose(y, adaptive_avgpool2d_naive(x, out), rtol=1e-12, atol=1e-15)


@pytest.mark.parametrize("make", [lambda: (L.MaxPool2d(2), nn.MaxPool2d(2)),
                                  lambda: (L.AvgPool2d(3, 1, 1), nn.AvgPool2d(3, 1, 1)),
                                  lambda: (L.AdaptiveAvgPool2d(2), nn.AdaptiveAvgPool2d(2))])
def test_pools_take_unbatched_inputs(make, kernels):
    layer, twin = make()
    _twin_check(layer, twin, np.random.default_rng(8).standard_normal((3, 6, 6)))


# ----------------------------------------------------------------------------- normalisation
def _torch_bn(layer):
    cls = nn.BatchNorm1d if isinstance(layer, L.BatchNorm1d) else nn.BatchNorm2d
    twin = cls(layer.num_features, layer.eps, layer.momentum, layer.affine,
               layer.track_running_stats, dtype=torch.float64, bias=layer.bias is not None)
    if layer.affine:
        rng = np.random.default_rng(9)
        layer.weight.data[...] = rng.uniform(0.5, 1.5, layer.num_features)
        with torch.no_grad():
            twin.weight.copy_(torch.from_numpy(layer.weight.data))
            if layer.bias is not None:
                layer.bias.data[...] = rng.uniform(-1, 1, layer.num_features)
                twin.bias.copy_(torch.from_numpy(layer.bias.data))
    return twin


BATCHNORMS = [
    (lambda: L.BatchNorm1d(4), (6, 4)),
    (lambda: L.BatchNorm1d(4), (3, 4, 5)),
    (lambda: L.BatchNorm1d(4, affine=False), (6, 4)),
    (lambda: L.BatchNorm1d(4, momentum=None), (6, 4)),
    (lambda: L.BatchNorm1d(4, bias=False), (6, 4)),
    (lambda: L.BatchNorm2d(3, track_running_stats=False), (2, 3, 4, 5)),
    (lambda: L.BatchNorm2d(3, 1e-3, 0.3), (2, 3, 4, 5)),
]


@pytest.mark.parametrize("mode", ["train", "eval"])
@pytest.mark.parametrize("make, shape", BATCHNORMS)
def test_batchnorm_options_match_pytorch_in_both_modes(make, shape, mode, kernels):
    layer = make().double()
    twin = _torch_bn(layer)
    layer.train(mode == "train")
    twin.train(mode == "train")
    x = np.random.default_rng(10).standard_normal(shape) + 2
    for _ in range(2):                  # twice: the running statistics move in between
        layer.zero_grad()
        twin.zero_grad()
        _twin_check(layer, twin, x, params=[n for n in ("weight", "bias")
                                            if getattr(layer, n) is not None])
    for name, value in layer.named_buffers():
        if value is not None:
            np.testing.assert_allclose(value, getattr(twin, name).numpy(), **TOL)


def test_batchnorm_on_an_empty_batch_is_empty_and_learns_nothing():
    for layer, twin, shape in [(L.BatchNorm1d(3), nn.BatchNorm1d(3), (0, 3)),
                               (L.BatchNorm2d(3), nn.BatchNorm2d(3), (0, 3, 4, 4))]:
        layer.double()
        x = np.zeros(shape)
        y = layer(x)
        ty = twin.double()(torch.from_numpy(x))
        assert y.shape == tuple(ty.shape)
        np.testing.assert_array_equal(layer.running_mean, twin.running_mean.numpy())
        assert int(layer.num_batches_tracked) == int(twin.num_batches_tracked)
        assert layer.backward(np.zeros(shape)).shape == shape
        np.testing.assert_array_equal(layer.weight.grad, 0)


@pytest.mark.parametrize("shape, normalized", [((4, 7), 7), ((2, 3, 4, 5), (4, 5)),
                                               ((5,), 5), ((3, 2, 6), [6])])
@pytest.mark.parametrize("affine, bias", [(True, True), (True, False), (False, False)])
def test_layernorm_matches_pytorch(shape, normalized, affine, bias, kernels):
    layer = L.LayerNorm(normalized, 1e-4, affine, bias).double()
    twin = nn.LayerNorm(normalized, 1e-4, affine, bias, dtype=torch.float64)
    rng = np.random.default_rng(11)
    with torch.no_grad():
        for name in ("weight", "bias"):
            p = getattr(layer, name)
            if p is not None:
                p.data[...] = rng.uniform(-1, 2, p.shape)
                getattr(twin, name).copy_(torch.from_numpy(p.data))
    params = [n for n in ("weight", "bias") if getattr(layer, n) is not None]
    _twin_check(layer, twin, rng.standard_normal(shape) * 3 + 1, params=params)


def test_layernorm_matches_the_loop_definition(kernels):
    x = np.random.default_rng(12).standard_normal((3, 4, 5))
    y = L.LayerNorm((4, 5), elementwise_affine=False).double()(x)
    for n in range(3):
        vals = x[n].ravel()
        mu = sum(vals) / len(vals)
        var = sum((v - mu) ** 2 for v in vals) / len(vals)
        np.testing.assert_allclose(y[n], (x[n] - mu) / math.sqrt(var + 1e-5), rtol=1e-12)


# ----------------------------------------------------------------------------- dropout
def test_dropout2d_drops_whole_channels():
    tinynet.manual_seed(0)
    layer = L.Dropout2d(0.5)
    x = np.ones((64, 16, 5, 5), np.float32)
    y = layer(x)
    per_channel = y.reshape(64, 16, -1)
    assert ((per_channel == 0).all(axis=2) | (per_channel == 2).all(axis=2)).all()
    kept = (per_channel[:, :, 0] == 2).mean()
    assert 0.45 < kept < 0.55
    np.testing.assert_array_equal(layer.backward(np.ones_like(x)), y)
    assert layer(np.ones((4, 3, 7), np.float32)).shape == (4, 3, 7)        # (N, C, L)
    assert L.Dropout2d(0.5).eval()(x) is x


# ----------------------------------------------------------------------------- losses
def _loss_check(ours, theirs, z, t, grad=None):
    tz = torch.from_numpy(np.array(z)).requires_grad_(True)
    tt = torch.from_numpy(np.array(t))
    tl = theirs(tz, tt)
    loss = ours(z, t)
    np.testing.assert_allclose(loss, tl.detach().numpy(), **TOL)
    if tl.dim() == 0:
        tl.backward()
        dz = ours.backward()
    else:
        g = np.random.default_rng(13).standard_normal(tuple(tl.shape)) if grad is None else grad
        tl.backward(torch.from_numpy(g))
        dz = ours.backward(g)
    np.testing.assert_allclose(dz, tz.grad.numpy(), **TOL)


W = np.array([0.5, 2.0, 1.0, 0.1])
CROSS_ENTROPY = [
    {}, {"reduction": "sum"}, {"reduction": "none"}, {"weight": W},
    {"weight": W, "reduction": "none"}, {"ignore_index": 2}, {"ignore_index": 2, "weight": W},
    {"label_smoothing": 0.2}, {"label_smoothing": 0.3, "weight": W, "ignore_index": 1},
    {"label_smoothing": 0.1, "reduction": "sum", "ignore_index": 0},
]


@pytest.mark.parametrize("kwargs", CROSS_ENTROPY, ids=lambda k: str(k).replace("array", ""))
@pytest.mark.parametrize("shape", [(6, 4), (3, 4, 5), (2, 4, 3, 2), (4,)])
def test_cross_entropy_with_class_indices(kwargs, shape, kernels):
    rng = np.random.default_rng(14)
    z = rng.standard_normal(shape) * 2
    t_shape = () if len(shape) == 1 else (shape[0],) + shape[2:]
    t = rng.integers(0, 4, t_shape)
    ours = tinynet.CrossEntropyLoss(**kwargs)
    theirs = nn.CrossEntropyLoss(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                    for k, v in kwargs.items()})
    _loss_check(ours, theirs, z, t)


@pytest.mark.parametrize("kwargs", [{}, {"label_smoothing": 0.25}, {"weight": W},
                                    {"reduction": "none", "weight": W, "label_smoothing": 0.1}])
@pytest.mark.parametrize("shape", [(5, 4), (2, 4, 3), (4,)])
def test_cross_entropy_with_class_probabilities(kwargs, shape, kernels):
    rng = np.random.default_rng(15)
    z = rng.standard_normal(shape)
    p = rng.random(shape)
    p /= p.sum(axis=0 if len(shape) == 1 else 1, keepdims=True)
    theirs = nn.CrossEntropyLoss(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                    for k, v in kwargs.items()})
    _loss_check(tinynet.CrossEntropyLoss(**kwargs), theirs, z, p)


def test_cross_entropy_matches_the_loop_definition(kernels):
    rng = np.random.default_rng(16)
    z, t = rng.standard_normal((5, 3)), np.array([0, 2, 1, 1, 0])
    s = 0.2
    loss = tinynet.CrossEntropyLoss(label_smoothing=s)(z, t)
    expected = 0.0
    for n in range(5):
        logp = [v - math.log(sum(math.exp(u) for u in z[n])) for v in z[n]]
        expected += -sum(((1 - s) * (c == t[n]) + s / 3) * logp[c] for c in range(3))
    assert loss == pytest.approx(expected / 5, rel=1e-13)


@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_nll_loss_matches_pytorch(reduction, kernels):
    rng = np.random.default_rng(17)
    logp = np.log(rng.dirichlet(np.ones(4), size=6))
    t = rng.integers(0, 4, 6)
    _loss_check(tinynet.NLLLoss(W, reduction=reduction, ignore_index=3),
                nn.NLLLoss(torch.from_numpy(W), reduction=reduction, ignore_index=3), logp, t)


@pytest.mark.parametrize("loss", ["MSELoss", "L1Loss"])
@pytest.mark.parametrize("reduction", ["mean", "sum", "none"])
def test_regression_losses_match_pytorch(loss, reduction, kernels):
    rng = np.random.default_rng(18)
    y, t = rng.standard_normal((4, 5)), rng.standard_normal((4, 5))
    t[0, 0] = y[0, 0]                       # |y - t| at its kink: slope 0, as PyTorch
    _loss_check(getattr(tinynet, loss)(reduction=reduction),
                getattr(nn, loss)(reduction=reduction), y, t)


@pytest.mark.parametrize("kwargs", [{}, {"reduction": "sum"}, {"reduction": "none"},
                                    {"weight": np.array([[1.0, 2.0, 0.5]])},
                                    {"pos_weight": np.array([3.0, 0.5, 1.0])},
                                    {"pos_weight": np.array([3.0, 0.5, 1.0]),
                                     "weight": np.array([2.0, 1.0, 1.0]), "reduction": "sum"}])
def test_bce_with_logits_matches_pytorch(kwargs, kernels):
    rng = np.random.default_rng(19)
    x = rng.standard_normal((4, 3)) * 30                 # far into both tails
    t = rng.random((4, 3))
    theirs = nn.BCEWithLogitsLoss(**{k: torch.from_numpy(v) if isinstance(v, np.ndarray) else v
                                     for k, v in kwargs.items()})
    _loss_check(tinynet.BCEWithLogitsLoss(**kwargs), theirs, x, t)


def test_legacy_reduction_arguments_map_as_pytorch():
    for size_average, reduce, expected in [(None, None, "mean"), (False, None, "sum"),
                                           (True, False, "none"), (None, False, "none")]:
        ours = tinynet.MSELoss(size_average, reduce)
        import warnings
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            theirs = nn.MSELoss(size_average, reduce)
        assert ours.reduction == theirs.reduction == expected


def test_empty_batches_give_what_pytorch_gives(kernels):
    for ours, theirs, z, t in [
            (tinynet.CrossEntropyLoss(), nn.CrossEntropyLoss(), np.zeros((0, 4)),
             np.zeros(0, np.int64)),
            (tinynet.CrossEntropyLoss(reduction="sum"), nn.CrossEntropyLoss(reduction="sum"),
             np.zeros((0, 4)), np.zeros(0, np.int64)),
            (tinynet.MSELoss(), nn.MSELoss(), np.zeros((0, 3)), np.zeros((0, 3))),
            (tinynet.L1Loss(reduction="sum"), nn.L1Loss(reduction="sum"), np.zeros(0),
             np.zeros(0))]:
        loss = ours(z, t)
        tl = theirs(torch.from_numpy(z), torch.from_numpy(t))
        np.testing.assert_array_equal(loss, tl.numpy())    # NaN for a mean, 0 for a sum
        assert ours.backward().shape == z.shape


def test_reduction_none_needs_the_gradient_of_each_loss():
    loss_fn = tinynet.CrossEntropyLoss(reduction="none")
    losses = loss_fn(np.zeros((3, 4)), np.array([0, 1, 2]))
    assert losses.shape == (3,)
    with pytest.raises(tinynet.ShapeError, match=r"reduction='none'.*\(3,\)"):
        loss_fn.backward()


def test_arguments_tinynet_cannot_honour_raise_clear_errors():
    with pytest.raises(ValueError, match="label_smoothing"):
        tinynet.CrossEntropyLoss(label_smoothing=1.5)
    with pytest.raises(ValueError, match="reduction"):
        tinynet.MSELoss(reduction="elementwise")
    with pytest.raises(tinynet.ShapeError, match="weight must have one entry per class"):
        tinynet.CrossEntropyLoss(weight=np.ones(3))(np.zeros((2, 4)), np.array([0, 1]))
    with pytest.raises(tinynet.ShapeError, match="pos_weight"):
        tinynet.BCEWithLogitsLoss(pos_weight=np.ones(4))(np.zeros((2, 3)), np.zeros((2, 3)))
    with pytest.raises(ValueError, match="approximate"):
        L.GELU("fast")
    with pytest.raises(ValueError, match="output_size"):
        L.AdaptiveAvgPool2d((2, 0))
    with pytest.raises(ValueError, match="normalized_shape"):
        L.LayerNorm(())
    with pytest.raises(tinynet.ShapeError, match=r"\(\*, 4, 5\)"):
        L.LayerNorm((4, 5))(np.zeros((2, 5, 4), np.float32))
