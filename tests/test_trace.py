"""tinynet.trace: records per layer call, no residue outside the block, torch-equal norms."""

from __future__ import annotations

import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tinynet
from tinynet import models
from tinynet.trace import main as trace_main


def _mlp(seed=0, dtype="float64"):
    tinynet.manual_seed(seed)
    model = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(12, 9), tinynet.ReLU(),
                               tinynet.Linear(9, 7), tinynet.Tanh(), tinynet.Linear(7, 5))
    return model.double() if dtype == "float64" else model


def _batch(n=6, seed=1):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, 3, 2, 2)), rng.integers(0, 5, n)


def _step(model, x, t):
    loss_fn = tinynet.CrossEntropyLoss()
    loss = loss_fn(model(x), t)
    model.backward(loss_fn.backward())
    return loss


def test_records_every_layer_call_in_both_phases():
    model = _mlp()
    x, t = _batch()
    with tinynet.trace(model) as tr:
        _step(model, x, t)
    rows = tr.rows()
    assert [r["phase"] for r in rows] == ["forward"] * 6 + ["backward"] * 6
    assert [r["layer"] for r in rows] == [str(i) for i in range(6)] + \
        [str(i) for i in reversed(range(6))]
    assert [r["call"] for r in rows] == list(range(12))
    fwd = {r["layer"]: r for r in tr.rows("forward")}
    assert fwd["0"]["type"] == "Flatten"
    assert fwd["0"]["in_shape"] == (6, 3, 2, 2) and fwd["0"]["out_shape"] == (6, 12)
    assert fwd["1"]["out_shape"] == (6, 9) and fwd["5"]["out_shape"] == (6, 5)
    bwd = {r["layer"]: r for r in tr.rows("backward")}
    assert bwd["1"]["in_shape"] == (6, 9) and bwd["1"]["out_shape"] == (6, 12)
    assert bwd["0"]["out_shape"] == (6, 3, 2, 2)
    assert all(r["dtype"] == "float64" and r["seconds"] >= 0 for r in rows)


def test_statistics_equal_recomputed_values():
    model = _mlp()
    x, _t = _batch()
    with tinynet.trace(model) as tr:
        y = model(x)
    h = np.maximum(x.reshape(6, 12) @ model[1].weight.data.T + model[1].bias.data, 0)
    relu = tr.rows("forward")[2]
    assert relu["type"] == "ReLU"
    assert relu["norm"] == pytest.approx(np.linalg.norm(h), rel=1e-12)
    assert relu["mean"] == pytest.approx(h.mean(), rel=1e-12)
    assert relu["std"] == pytest.approx(h.std(), rel=1e-12)
    assert relu["min"] == h.min() and relu["max"] == h.max()
    assert relu["zeros"] == pytest.approx(np.mean(h == 0))
    assert 0 < relu["zeros"] < 1  # random data: some but not all units dead
    assert relu["in_norm"] == pytest.approx(tr.rows("forward")[1]["norm"], rel=1e-12)
    last = tr.rows("forward")[-1]
    assert last["norm"] == pytest.approx(np.linalg.norm(y), rel=1e-12)


def test_input_grad_false_describes_incoming_gradient():
    model = _mlp()
    x, t = _batch()
    loss_fn = tinynet.CrossEntropyLoss()
    with tinynet.trace(model) as tr:
        loss_fn(model(x), t)
        model.backward(loss_fn.backward(), input_grad=False)
    bwd = tr.rows("backward")
    assert [r["layer"] for r in bwd] == ["5", "4", "3", "2", "1"]  # Flatten skipped
    first = bwd[-1]
    assert first["out_shape"] is None and first["stats_of"] == "input"
    assert first["norm"] == pytest.approx(bwd[-2]["norm"])
    assert "input_grad=False" in tr.table()


def test_nothing_left_behind_and_nothing_recorded_outside():
    model = _mlp()
    x, t = _batch()
    before = [dict(m.__dict__) for m in model.modules()]
    with tinynet.trace(model) as tr:
        assert "forward" in model[1].__dict__
        _step(model, x, t)
    n = len(tr.rows())
    for m, d in zip(model.modules(), before):
        assert "forward" not in m.__dict__ and "backward" not in m.__dict__
        assert set(m.__dict__) == set(d)
        assert m.forward.__func__ is type(m).forward
        assert m.backward.__func__ is type(m).backward
    _step(model, x, t)
    assert len(tr.rows()) == n


def test_exit_on_exception_restores_and_nested_traces():
    model = _mlp()
    x, _t = _batch()
    with pytest.raises(tinynet.ShapeError), tinynet.trace(model):
        model(x[:, :2])
    assert all("forward" not in m.__dict__ for m in model.modules())
    with tinynet.trace(model) as outer:
        with tinynet.trace(model) as inner:
            model(x)
        model(x)
    assert len(inner.rows()) == 6 and len(outer.rows()) == 12
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_same_result_as_untraced():
    model = _mlp()
    x, t = _batch()
    loss0 = _step(model, x, t)
    g0 = {k: p.grad.copy() for k, p in model.named_parameters()}
    model.zero_grad()
    with tinynet.trace(model) as tr:
        loss1 = _step(model, x, t)
    assert loss0 == loss1
    for k, p in model.named_parameters():
        np.testing.assert_array_equal(p.grad, g0[k])
        assert tr.param_grad_norms()[k] == pytest.approx(np.linalg.norm(g0[k]), rel=1e-14)


def test_param_grad_norms_equal_torch():
    torch = pytest.importorskip("torch", reason="the parity check needs PyTorch")
    model = models.base_mlp().double()
    rng = np.random.default_rng(3)
    x = rng.random((16, 1, 28, 28))
    t = rng.integers(0, 10, 16)
    with tinynet.trace(model) as tr:
        _step(model, x, t)
    twin = torch.nn.Sequential(torch.nn.Flatten(), torch.nn.Linear(784, 512), torch.nn.ReLU(),
                               torch.nn.Linear(512, 512), torch.nn.ReLU(),
                               torch.nn.Linear(512, 10)).double()
    twin.load_state_dict({k: torch.from_numpy(np.array(v)) for k, v in
                          model.state_dict().items()})
    loss = torch.nn.functional.cross_entropy(twin(torch.from_numpy(x)), torch.from_numpy(t))
    loss.backward()
    ours = tr.param_grad_norms()
    assert list(ours) == [k for k, _ in twin.named_parameters()]
    for k, p in twin.named_parameters():
        assert ours[k] == pytest.approx(float(p.grad.norm()), rel=1e-12, abs=0)


def test_table_lists_every_row():
    model = _mlp()
    x, t = _batch()
    with tinynet.trace(model) as tr:
        _step(model, x, t)
    text = tr.table()
    lines = text.splitlines()
    assert lines[0] == "fast kernels (tinynet.set_kernels), float64"
    assert lines[1].split() == ["layer", "pass", "in", "out", "mean", "std", "max|v|",
                                "L2", "norm", "zeros", "ms"]
    assert len(lines) == 3 + 12
    assert lines[4].split()[:5] == ["1", "Linear", "fwd", "6x12", "6x9"]
    rows = tr.rows()
    r = rows[1]
    assert float(lines[4].split()[7]) == pytest.approx(max(abs(r["min"]), abs(r["max"])),
                                                       rel=5e-3)
    assert tr.table("backward").count(" bwd ") == 6
    assert " fwd " not in tr.table("backward")


def test_table_fits_100_columns_and_names_mixed_dtypes():
    model = _mlp()
    x, t = _batch()
    with tinynet.trace(model) as tr:
        _step(model, x, t)
        model.float()
        model(x.astype("float32"))
    text = tr.table()
    assert "dtype" in text.splitlines()[1].split()       # two dtypes: a column, not line 1
    assert "float32" in text and "float64" in text
    assert not text.splitlines()[0].endswith(("float32", "float64"))
    assert max(len(line) for line in text.splitlines()) <= 100


def test_plot_writes_png(tmp_path):
    pytest.importorskip("matplotlib", reason="plots need matplotlib")
    model = _mlp()
    x, t = _batch()
    with tinynet.trace(model) as tr:
        _step(model, x, t)
    path = tr.plot(str(tmp_path / "norms.png"), title="test")
    with open(path, "rb") as f:
        assert f.read(8) == b"\x89PNG\r\n\x1a\n"


def test_trace_rejects_non_module_and_bad_phase():
    with pytest.raises(TypeError, match="Module"):
        tinynet.trace(object())
    with pytest.raises(ValueError, match="phase"):
        tinynet.trace(_mlp()).rows("sideways")


def test_cli_random_base(capsys):
    assert trace_main(["--model", "base", "--batch", "3", "--random"]) == 0
    out = capsys.readouterr().out
    assert "1.weight" in out and " bwd " in out and "3x784" in out
    norms = [float(line.split()[1]) for line in out.splitlines()
             if line.strip().startswith(("1.weight", "5.bias"))]
    assert len(norms) == 2 and all(math.isfinite(v) and v > 0 for v in norms)


@pytest.mark.parametrize("model,batch", [("simplecnn", 64), ("convbn", 64), ("convbn", 256)])
def test_cli_table_of_a_cnn_fits_100_columns(model, batch, capsys):
    """The width does not grow with the batch: shapes print as Nx32x28x28."""
    assert trace_main(["--model", model, "--batch", str(batch), "--random"]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert f", N = {batch}" in "\n".join(lines) and " Nx32x28x28 " in "\n".join(lines)
    assert any("BatchNorm2d" in line or "MaxPool2d" in line for line in lines)
    assert max(len(line) for line in lines) <= 100
    table = "\n".join(lines)
    assert re.search(r"\d\.\d+e-[1-9]", table)                # small gradients: 1.23e-7
    assert not re.search(r"e[+-]0|e\+", table)                 # exponents unpadded


def _into_closed_pipe(args: list) -> subprocess.CompletedProcess:
    """Run ``python args`` with stdout a pipe nobody reads any more (``| head -1``)."""
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env = dict(os.environ, PYTHONPATH=repo, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    read, write = os.pipe()
    os.close(read)
    try:
        return subprocess.run([sys.executable, *args], stdout=write, stderr=subprocess.PIPE,
                              text=True, timeout=120, check=False, env=env, cwd=repo)
    finally:
        os.close(write)


def test_cli_output_into_a_closed_pipe_is_quiet():
    """``tinynet trace | head -1``: no BrokenPipeError traceback, exit status 141."""
    proc = _into_closed_pipe(["-m", "tinynet", "trace", "--random", "--batch", "2"])
    assert proc.stderr == "" and proc.returncode == 141, (proc.returncode, proc.stderr)



def test_cli_bad_thread_count_is_one_line_before_any_work(monkeypatch, capsys):
    def never(*a, **k):
        raise AssertionError("built a model before checking the environment")

    monkeypatch.setattr(models, "build", never)
    monkeypatch.setenv("TINYNET_NUM_THREADS", "abc")
    with pytest.raises(SystemExit) as e:
        trace_main(["--random"])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err == ("tinynet trace: error: environment variable TINYNET_NUM_THREADS='abc': "
                   "expected a whole number >= 1 (the fast kernels' CPU threads), or unset "
                   "it for one per core (see tinynet trace --help)\n")


@pytest.mark.parametrize("name", ["bn", "simplecnn", "convbn"])
def test_cli_traces_the_conv_and_batchnorm_models(name, capsys):
    assert trace_main(["--model", name, "--batch", "2", "--random"]) == 0
    assert "parameter gradient norms" in capsys.readouterr().out


def test_trace_on_every_backend(xp):
    """Statistics are computed with the data's own array module (no host copies)."""
    ref_model = _mlp(dtype="float32")
    x, t = _batch()
    x = x.astype("float32")
    with tinynet.trace(ref_model) as ref:
        _step(ref_model, x, t)
    model = xp.to(_mlp(dtype="float32"))
    with tinynet.trace(model) as tr:
        _step(model, xp.asarray(x), xp.asarray(t))
    assert [r["layer"] for r in tr.rows()] == [r["layer"] for r in ref.rows()]
    for a, b in zip(tr.rows(), ref.rows()):
        assert a["norm"] == pytest.approx(b["norm"], rel=1e-5)
        assert a["zeros"] == b["zeros"]
    for k, v in ref.param_grad_norms().items():
        assert tr.param_grad_norms()[k] == pytest.approx(v, rel=1e-5)


def test_nested_modules_are_named_by_their_state_dict_prefix():
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.layers.residual_block(2, 3, stride=2),
                               tinynet.Flatten(), tinynet.Linear(3 * 2 * 2, 4)).double()
    x = np.random.default_rng(0).standard_normal((3, 2, 4, 4))
    with tinynet.trace(model) as tr:
        _step(model, x, np.array([0, 1, 3]))
    names = [r["layer"] for r in tr.rows("forward")]
    leaves = [name for name, m in model.named_modules() if next(m.children(), None) is None]
    assert sorted(names) == sorted(leaves)          # every leaf once, containers never
    assert "0.0.body.0" in names and "0.0.projection.0" in names
    params = {name.rsplit(".", 1)[0] for name, _ in model.named_parameters()}
    assert params <= set(names)
    assert set(tr.param_grad_norms()) == {k for k, _ in model.named_parameters()}
    assert all("forward" not in m.__dict__ for m in model.modules())


def test_cli_fashion_mnist_batch_and_plot(tmp_path, capsys):
    from tinynet import data
    try:
        data.load("fashion-mnist", "test", download=False)
    except tinynet.DataError:
        pytest.skip("Fashion-MNIST is not installed here")
    png = tmp_path / "norms.png"
    assert trace_main(["--model", "base", "--batch", "5", "--plot", str(png)]) == 0
    out = capsys.readouterr().out
    assert "Fashion-MNIST" in out and "5x1x28x28" in out
    assert png.read_bytes()[:4] == b"\x89PNG"
    with pytest.raises(SystemExit) as exit_:
        trace_main(["--batch", "0", "--random"])
    assert exit_.value.code == 2
    assert "--batch: expected a whole number >= 1, got '0'" in capsys.readouterr().err


def test_the_batch_shorthand_only_when_asked_and_true():
    """``table(batch=N)`` writes Nx... only when every shape starts with N; unbatched
    inputs whose first axis happens to be large keep their shapes."""
    import numpy as np

    import tinynet
    conv = tinynet.Sequential(tinynet.Conv2d(16, 16, 3, padding=1), tinynet.ReLU())
    with tinynet.trace(conv) as tr:
        conv(np.zeros((16, 12, 12), np.float32))          # one unbatched sample
    assert "16x12x12" in tr.table() and "N = " not in tr.table()
    with tinynet.trace(conv) as tr:
        conv(np.zeros((20, 16, 12, 12), np.float32))
    assert "20x16x12x12" in tr.table()
    assert "Nx16x12x12" in tr.table(batch=20) and ", N = 20" in tr.table(batch=20)
