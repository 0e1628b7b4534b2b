"""Training-trajectory parity with PyTorch, and Dropout's mask statistics.

Same model and initial weights, same batches in the same order, same optimizer settings
(SGD plain, with momentum, dampening, weight decay, Nesterov; Adam with and without
weight decay): per-step losses and final weights (and BatchNorm running statistics) must
agree within ``parity.TRAJECTORY_TOLERANCES``. Dropout masks are shared between the two
frameworks for that; a separate statistical test checks tinynet's mask rate and its
1/(1-p) scaling (and PyTorch's, for comparison).
"""

from __future__ import annotations

import math

import numpy as np
import pytest

import tinynet
from tinynet import optim, parity
from tinynet.errors import DataError, TinynetError

L = tinynet.layers


def _batches(steps: int, batch: int = 16, d_in: int = 12, classes: int = 4, seed: int = 0):
    rng = np.random.default_rng(seed)
    return [(rng.standard_normal((batch, d_in)), rng.integers(0, classes, batch))
            for _ in range(steps)]


def _small_mlp(seed: int = 0):
    tinynet.manual_seed(seed)
    return tinynet.Sequential(L.Linear(12, 16), L.ReLU(), L.Linear(16, 16), L.Tanh(),
                              L.Linear(16, 4))


def _settings_id(setting) -> str:
    name, hyper = setting
    return name + "(" + ",".join(f"{k}={v}" for k, v in hyper.items()) + ")"


@pytest.mark.parametrize("setting", parity.TRAJECTORY_OPTIMIZERS,
                         ids=[_settings_id(s) for s in parity.TRAJECTORY_OPTIMIZERS])
@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_agrees_with_torch(torch, setting, dtype):
    optimizer, hyper = setting
    model = _small_mlp()
    before = {k: v.copy() for k, v in model.state_dict().items()}
    tr = parity.trajectory(model, _batches(20), optimizer, hyper, dtype=dtype)
    assert tr.ok, tr.report.table(every=True)
    assert len(tr.tinynet_losses) == len(tr.torch_losses) == 20
    assert tr.torch_losses[-1] != tr.torch_losses[0]  # the runs did train
    tensors = [r.tensor for r in tr.report.rows]
    assert tensors[0].startswith("loss") and "final 0.weight" in tensors
    for key, value in model.state_dict().items():  # the caller's model is untouched
        np.testing.assert_array_equal(value, before[key])


def test_trajectory_compares_batchnorm_running_stats(torch):
    tinynet.manual_seed(0)
    model = tinynet.Sequential(L.Linear(12, 10), L.ReLU(), L.BatchNorm1d(10), L.Linear(10, 4))
    tr = parity.trajectory(model, _batches(10), "sgd", {"lr": 0.1, "momentum": 0.9},
                           dtype="float64")
    assert tr.ok, tr.report.table(every=True)
    rows = {r.tensor: r for r in tr.report.rows}
    for name in ("running_mean", "running_var", "num_batches_tracked"):
        assert f"final 2.{name}" in rows


def test_trajectory_with_dropout_shares_the_masks(torch):
    tinynet.manual_seed(0)
    model = tinynet.Sequential(L.Linear(12, 32), L.ReLU(), L.Dropout(0.3), L.Linear(32, 4))
    for dtype in ("float64", "float32"):
        tr = parity.trajectory(model, _batches(10), "adam", {"lr": 1e-2}, dtype=dtype,
                               seed=7)
        assert tr.ok, tr.report.table(every=True)


def test_rounding_baseline_raises_only_the_tolerances_it_must(torch):
    """With a tolerance no float32 run can meet, the baseline (PyTorch in float64) shows
    how far float32 rounding carries PyTorch itself, and raises the tolerance to ten
    times that; without the baseline the same comparison fails."""
    model = _small_mlp()
    batches = _batches(15)
    tr = parity.trajectory(model, batches, "sgd", {"lr": 0.2, "momentum": 0.9},
                           dtype="float32", tol=1e-12)
    assert tr.ok, tr.report.table(every=True)
    assert all(r.raised for r in tr.report.rows if r.max_rel > 1e-12)
    assert all(r.tol >= 10 * 1e-12 for r in tr.report.rows if r.raised)
    plain = parity.trajectory(model, batches, "sgd", {"lr": 0.2, "momentum": 0.9},
                              dtype="float32", tol=1e-12, baseline=False)
    assert not plain.ok and not any(r.raised for r in plain.report.rows)
    assert plain.torch_losses == tr.torch_losses  # the baseline run did not disturb torch's


def test_trajectory_detects_a_wrong_optimizer(torch, monkeypatch):
    """SGD whose step is 1e-6 too long drifts past the float64 tolerance."""
    original = optim.SGD.step

    def long_step(self):
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is not None:
                    p.grad *= 1 + 1e-6
        original(self)

    monkeypatch.setattr(optim.SGD, "step", long_step)
    tr = parity.trajectory(_small_mlp(), _batches(5), "sgd", {"lr": 0.1}, dtype="float64")
    assert not tr.ok
    assert any(r.tensor.startswith("final") for r in tr.report.failures())


def test_trajectory_rejects_bad_arguments(torch):
    with pytest.raises(TinynetError, match="unknown optimizer"):
        parity.trajectory(_small_mlp(), _batches(1), "rmsprop")
    with pytest.raises(TinynetError, match="no batches"):
        parity.trajectory(_small_mlp(), [], "sgd")
    with pytest.raises(TinynetError, match="float64 or float32"):
        parity.trajectory(_small_mlp(), _batches(1), "sgd", dtype="int32")


# ----------------------------------------------------------------------------- real data
def _fashion_batches(steps: int, batch: int):
    try:
        images, labels = tinynet.data.load("fashion-mnist", "train", download=False)
    except DataError as e:
        pytest.skip(f"Fashion-MNIST not installed: {e}")
    return [(tinynet.data.to_float(images[i:i + batch], "float64"), labels[i:i + batch])
            for i in range(0, steps * batch, batch)]


def test_base_mlp_50_steps_on_fashion_mnist(torch):
    from tinynet.models import base_mlp
    batches = _fashion_batches(50, 64)
    tinynet.manual_seed(0)
    model = base_mlp()
    for setting, dtype in ((parity.TRAJECTORY_OPTIMIZERS[1], "float64"),
                           (parity.TRAJECTORY_OPTIMIZERS[4], "float64"),
                           (parity.TRAJECTORY_OPTIMIZERS[0], "float32")):
        tr = parity.trajectory(model, batches, *setting, dtype=dtype, name="base")
        assert tr.ok, tr.report.table(every=True)
        assert tr.torch_losses[-1] < tr.torch_losses[0]


def test_simplecnn_steps_on_fashion_mnist(torch):
    from tinynet.models import simple_cnn
    batches = _fashion_batches(8, 32)
    tinynet.manual_seed(0)
    tr = parity.trajectory(simple_cnn(), batches, *parity.TRAJECTORY_OPTIMIZERS[3],
                           dtype="float64", name="simplecnn")
    assert tr.ok, tr.report.table(every=True)


# ----------------------------------------------------------------------------- dropout stats
def _five_sigma(p: float, n: int) -> float:
    return 5 * math.sqrt(p * (1 - p) / n)


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_dropout_mask_rate_and_scaling(p, dtype):
    tinynet.manual_seed(0)
    layer = L.Dropout(p)
    x = np.full((200, 500), 3.0, dtype=dtype)
    y = layer(x)
    assert y.dtype == x.dtype
    dropped = y == 0
    n = x.size
    assert abs(dropped.mean() - p) <= _five_sigma(p, n)
    scale = np.dtype(dtype).type(1.0 / (1.0 - p))
    np.testing.assert_array_equal(y[~dropped], (x * scale)[~dropped])
    # E[y] = x: the mean is 3 within five standard errors (std of y is 3 sqrt(p/(1-p))).
    assert abs(y.mean(dtype=np.float64) - 3.0) <= 5 * 3.0 * math.sqrt(p / (1 - p) / n)
    dy = np.random.default_rng(1).standard_normal(x.shape).astype(dtype)
    dx = layer.backward(dy)
    np.testing.assert_array_equal(dx == 0, dropped)
    np.testing.assert_array_equal(dx[~dropped], (dy * scale)[~dropped])
    # A second forward draws a new, independent mask: agreement p^2 + (1-p)^2.
    again = layer(x) == 0
    agree = np.mean(again == dropped)
    q = p * p + (1 - p) * (1 - p)
    assert abs(agree - q) <= _five_sigma(q, n)
    layer.eval()
    assert layer(x) is x


def test_dropout_extremes_and_injected_mask():
    x = np.arange(1.0, 7.0).reshape(2, 3)
    assert L.Dropout(0.0)(x) is x
    np.testing.assert_array_equal(L.Dropout(1.0)(x), np.zeros_like(x))
    layer = L.Dropout(0.5)
    layer.next_mask = np.array([[1, 0, 1], [0, 0, 1]])
    np.testing.assert_array_equal(layer(x), [[2.0, 0.0, 6.0], [0.0, 0.0, 12.0]])
    assert layer.next_mask is None  # used by one forward only


@pytest.mark.parametrize("p", [0.1, 0.5, 0.8])
def test_torch_dropout_has_the_same_rate_and_scaling(torch, p):
    """PyTorch's own Dropout: the same rate and exactly the same kept value as tinynet."""
    torch.manual_seed(0)
    x = np.full((200, 500), 3.0, dtype=np.float32)
    theirs = torch.nn.Dropout(p).train()(torch.from_numpy(x)).numpy()
    tinynet.manual_seed(0)
    ours = L.Dropout(p)(x)
    assert abs((theirs == 0).mean() - p) <= _five_sigma(p, x.size)
    assert set(np.unique(theirs[theirs != 0])) == set(np.unique(ours[ours != 0]))


def test_command_trajectories_on_fashion_mnist(torch, capsys):
    if tinynet.data.find("fashion-mnist", "train") is None:
        pytest.skip("Fashion-MNIST not installed")
    code = parity.main(["--skip", "layers", "--skip", "models", "--steps", "2",
                        "--batch-size", "8", "--threads", "1"])
    out = capsys.readouterr().out
    assert code == 0, out
    for name in ("base", "simplecnn", "bn", "base + Dropout(0.2)"):
        assert f"\n{name} " in out
    assert "x2" in out and "all within tolerance" in out
