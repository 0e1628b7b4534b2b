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
    assert tensors[0].startswith("loss")
    assert ("final 0.weight" if dtype == "float64" else "update 0.weight") in tensors
    for key, value in model.state_dict().items():  # the caller's model is untouched
        np.testing.assert_array_equal(value, before[key])


def test_float32_rows_compare_each_step_with_float64(torch):
    """float32: one row per tensor; its error is the median of tinynet's per-step errors
    against float64, its limit FLOAT32_STEP_FACTOR x PyTorch's own median."""
    tr = parity.trajectory(_small_mlp(), _batches(12), "adam", {"lr": 1e-2}, dtype="float32")
    assert tr.ok, tr.report.table(every=True)
    assert set(tr.errors) == {r.tensor for r in tr.report.rows}
    for row in tr.report.rows:
        ours, theirs = tr.errors[row.tensor]
        assert ours.shape == theirs.shape == (12,)
        assert row.measure == "step" and row.max_rel == np.median(ours)
        assert row.reference == np.median(theirs)
        assert row.tol == parity.FLOAT32_STEP_FACTOR * max(row.reference,
                                                           parity.STEP_ERROR_FLOOR)
    # float32 against float64 is not exact, and tinynet's error is PyTorch's size
    ours, theirs = tr.errors["update 0.weight"]
    assert 0 < np.median(ours) < 1e-4 and 0 < np.median(theirs) < 1e-4
    assert "median over the steps" in tr.report.table()


def test_float64_baseline_raises_only_the_tolerances_it_must(torch):
    """With a tolerance no float64 run can meet, the baseline (PyTorch started one ulp
    away) shows how far rounding carries PyTorch itself, and raises the tolerance to ten
    times that; without the baseline the same comparison fails."""
    model = _small_mlp()
    batches = _batches(15)
    tr = parity.trajectory(model, batches, "sgd", {"lr": 0.2, "momentum": 0.9},
                           dtype="float64", tol=1e-18)
    assert tr.ok, tr.report.table(every=True)
    assert all(r.raised for r in tr.report.rows if r.max_rel > 1e-18)
    assert all(r.tol >= 10 * 1e-18 for r in tr.report.rows if r.raised)
    plain = parity.trajectory(model, batches, "sgd", {"lr": 0.2, "momentum": 0.9},
                              dtype="float64", tol=1e-18, baseline=False)
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


# ----------------------------------------------------------------------------- float32 defects
def _plant_float16_update(monkeypatch, cls) -> None:
    """``cls.step`` whose update of a float32 parameter is rounded to float16 (a float32-only
    defect: float64 parameters are updated as before)."""
    original = cls.step

    def step(self):
        params = [p for group in self.param_groups for p in group["params"]]
        before = [p.data.copy() for p in params]
        original(self)
        for p, old in zip(params, before):
            if p.data.dtype == np.float32:
                p.data[...] = old + (p.data - old).astype(np.float16).astype(np.float32)

    monkeypatch.setattr(cls, "step", step)


def _plant_float16_batchnorm_variance(monkeypatch) -> None:
    """BatchNorm whose float32 train-mode output is normalised by a batch variance summed
    in float16: ``y`` rescaled by ``sqrt((var + eps) / (var16 + eps))`` (float64 and eval
    mode untouched; the backward is the layer's own)."""
    for cls in (L.BatchNorm1d, L.BatchNorm2d):
        original = cls.forward

        def forward(self, x, original=original):
            y = original(self, x)
            if x.dtype != np.float32 or not self.training:
                return y
            axes = tuple(i for i in range(x.ndim) if i != 1)
            shape = [1] * x.ndim
            shape[1] = -1
            m = x.size // x.shape[1]
            centred = x - x.mean(axis=axes, dtype=np.float64, keepdims=True)
            var = (centred ** 2).sum(axis=axes, keepdims=True) / m
            var16 = (centred.astype(np.float32) ** 2).sum(
                axis=axes, dtype=np.float16, keepdims=True).astype(np.float64) / m
            shift = self.bias.data.reshape(shape) if self.affine else 0.0
            scale = np.sqrt((var + self.eps) / (var16 + self.eps))
            return ((y - shift) * scale + shift).astype(y.dtype)

        monkeypatch.setattr(cls, "forward", forward)


def _bn_mlp(seed: int = 0):
    tinynet.manual_seed(seed)
    return tinynet.Sequential(L.Linear(12, 32), L.ReLU(), L.BatchNorm1d(32), L.Linear(32, 16),
                              L.ReLU(), L.BatchNorm1d(16), L.Linear(16, 4))


@pytest.mark.parametrize("plant, build, setting", [
    ("adam update in float16", _small_mlp, ("adam", {"lr": 1e-2})),
    ("sgd update in float16", _small_mlp, ("sgd", {"lr": 0.1, "momentum": 0.9})),
    ("batchnorm variance summed in float16", _bn_mlp, ("sgd", {"lr": 0.1, "momentum": 0.9})),
    ("batchnorm variance summed in float16, adam", _bn_mlp, ("adam", {"lr": 1e-2})),
])
def test_float32_criterion_catches_float32_only_defects(torch, monkeypatch, plant, build,
                                                        setting):
    """The same settings pass on the real code (in both dtypes); with the defect planted
    float64 still passes (the defect is float32-only) and float32 fails."""
    batches = _batches(20, batch=32)
    for dtype in ("float64", "float32"):
        tr = parity.trajectory(build(), batches, *setting, dtype=dtype)
        assert tr.ok, tr.report.table(every=True)
    if plant.startswith("batchnorm"):
        _plant_float16_batchnorm_variance(monkeypatch)
    else:
        _plant_float16_update(monkeypatch, optim.Adam if plant.startswith("adam") else optim.SGD)
    assert parity.trajectory(build(), batches, *setting, dtype="float64").ok
    tr = parity.trajectory(build(), batches, *setting, dtype="float32")
    assert not tr.ok, tr.report.table(every=True)
    worst = max(tr.report.rows, key=lambda r: r.max_rel / r.tol)
    assert worst.max_rel > 3 * worst.tol  # not a near miss: an order of magnitude or more


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


def _threads(torch, n: int):
    """torch and (when threadpoolctl is there) NumPy's BLAS at ``n`` threads, then restored."""
    import contextlib
    try:
        from threadpoolctl import threadpool_limits
    except ImportError:
        threadpool_limits = None

    @contextlib.contextmanager
    def scope():
        before = torch.get_num_threads()
        torch.set_num_threads(n)
        try:
            with threadpool_limits(n) if threadpool_limits else contextlib.nullcontext():
                yield
        finally:
            torch.set_num_threads(before)
    return scope()


@pytest.mark.parametrize("threads, steps", [(1, 50), (2, 6)])
def test_simplecnn_adam_float32_on_fashion_mnist(torch, threads, steps):
    """The run whose free float32 trajectory ends 9.6e-2 from PyTorch's after 50 steps
    (SimpleCNN, Adam lr 1e-3, 64 images a step): every step is as accurate as PyTorch's."""
    from tinynet.models import simple_cnn
    batches = _fashion_batches(steps, 64)
    tinynet.manual_seed(0)
    with _threads(torch, threads):
        tr = parity.trajectory(simple_cnn(), batches, "adam", {"lr": 1e-3}, dtype="float32",
                               name="simplecnn")
    assert tr.ok, tr.report.table(every=True)
    ratio = max(r.max_rel / max(r.reference, parity.STEP_ERROR_FLOOR) for r in tr.report.rows)
    assert ratio < 3, tr.report.table(every=True)  # measured 1.0-1.3: a wide margin to 10


def test_simplecnn_adam_float32_fails_with_its_update_in_float16(torch, monkeypatch):
    from tinynet.models import simple_cnn
    batches = _fashion_batches(10, 64)
    _plant_float16_update(monkeypatch, optim.Adam)
    tinynet.manual_seed(0)
    tr = parity.trajectory(simple_cnn(), batches, "adam", {"lr": 1e-3}, dtype="float32")
    assert not tr.ok
    assert all(r.tensor.startswith("update") for r in tr.report.failures())


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


def test_command_trajectories_on_fashion_mnist(torch, capsys, tmp_path):
    if tinynet.data.find("fashion-mnist", "train") is None:
        pytest.skip("Fashion-MNIST not installed")
    out_file = tmp_path / "parity.txt"
    code = parity.main(["--skip", "layers", "--skip", "models", "--steps", "2",
                        "--batch-size", "8", "--threads", "1", "--out", str(out_file)])
    captured = capsys.readouterr()
    out = captured.out
    assert code == 0, out
    for name in ("base", "simplecnn", "bn", "base + Dropout(0.2)"):
        assert f"\n{name} " in out
    assert "x2" in out and "all within tolerance" in out
    assert "\ntrajectories: 2 steps of 8" in out
    # progress: the group's heading, then one line per trajectory check
    err = captured.err.splitlines()
    n = 2 * sum(len(settings) for _, _, settings in parity.trajectory_plan())
    start = err.index(f"trajectories: {n} checks")
    assert len([line for line in err[start + 1:] if line.startswith("  [")]) == n
    assert all(len(line) <= 100 for line in out.splitlines()
               if not line.startswith("full tables"))
    full = out_file.read_text()
    assert f"full tables (every tensor): {out_file}" in out
    assert "update 7.weight" in full and "final 7.weight" in full


def test_command_prints_trajectory_failures_under_their_heading(torch, capsys, monkeypatch,
                                                                tmp_path):
    if tinynet.data.find("fashion-mnist", "train") is None:
        pytest.skip("Fashion-MNIST not installed")
    _plant_float16_update(monkeypatch, optim.SGD)
    code = parity.main(["--skip", "layers", "--steps", "3", "--batch-size", "8",
                        "--threads", "1", "--out", str(tmp_path / "t.txt")])
    captured = capsys.readouterr()
    assert code == 1
    err = captured.err
    failures = [line for line in err.splitlines() if line.startswith("  [") and "FAIL" in line]
    assert failures and all("float32 sgd(" in line for line in failures)
    assert err.index("trajectories: ") < err.index(failures[0])
    out = captured.out
    tables = out.split("\ntrajectories: ")
    assert len(tables) == 2 and "FAIL" not in tables[0] and "FAIL" in tables[1]


def test_spread_measures_float32_runs_one_ulp_apart(torch):
    """``parity.spread``: one pair per run, each a distance from PyTorch's float64 run per
    tensor; float32 against float64 is never exact, and moved starts end elsewhere."""
    from tinynet.parity.spread import spread
    results = spread(_small_mlp(), _batches(8), "adam", {"lr": 1e-2}, runs=3)
    assert len(results) == 3
    keys = list(_small_mlp().state_dict())
    for theirs, ours in results:
        assert list(theirs) == list(ours) == keys
        assert all(0 < v < 1e-3 for v in theirs.values())
        assert all(0 < v < 1e-3 for v in ours.values())
    assert results[1][0] != results[0][0]  # a moved start is another run


def test_spread_command(torch, capsys):
    if tinynet.data.find("fashion-mnist", "train") is None:
        pytest.skip("Fashion-MNIST not installed")
    from tinynet.parity import spread
    assert spread.main(["--model", "base", "--setting", "4", "--runs", "2", "--steps", "3",
                        "--batch-size", "8"]) == 0
    out = capsys.readouterr().out
    assert "2 float32 runs from weights one ulp apart" in out
    assert "  torch: min" in out and "tinynet: min" in out
    assert spread.main(["--setting", "9"]) == 2


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_trajectory_runs_on_every_backend(torch, xp, dtype):
    """The tinynet side trains on the model's own array module (NumPy, stand-in, CuPy);
    float32 loads PyTorch's state into it before every step."""
    model = xp.to(_small_mlp())
    tr = parity.trajectory(model, _batches(6), "adam", {"lr": 1e-2}, dtype=dtype)
    assert tr.ok, tr.report.table(every=True)
