"""tinynet.gradcheck: passes the real layers, fails broken ones (naming them, Taylor
slope ~1), skips kinks, leaves the caller's module alone, and the command works."""

from __future__ import annotations

import numpy as np
import pytest
from conftest import recording_kernels

import tinynet
import tinynet.cli
from tinynet import gradcheck, models
from tinynet.gradcheck import GradcheckError, check, suite
from tinynet.layers import (
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Linear,
    MaxPool2d,
    ReLU,
    Tanh,
    activation,
    linear,
)

LAYER_CONFIGS = [n for n in suite.configurations() if not n.startswith("model ")]


def _mlp(act=Tanh, d_in=5, hidden=4, d_out=3):
    tinynet.manual_seed(0)
    return tinynet.Sequential(Linear(d_in, hidden), act(), Linear(hidden, d_out))


def _data(n=6, d_in=5, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.standard_normal((n, d_in)), rng.integers(0, c, n)


# ----------------------------------------------------------------- real layers pass
@pytest.mark.parametrize("name", LAYER_CONFIGS)
def test_every_layer_configuration_passes(name):
    _, build = suite.configurations()[name]
    tinynet.manual_seed(1)
    module, x, target, loss_fn = build(np.random.default_rng(1))
    report = check(module, x, target, loss_fn, seed=1)
    assert report.ok, str(report)
    assert sum(r.checked for r in report.rows) > 0
    report.raise_if_failed()


@pytest.mark.parametrize("name", ["base", "bn", "simplecnn"])
def test_study_models_pass(name):
    _, build = suite.configurations()[f"model {name}"]
    tinynet.manual_seed(0)
    module, x, target, loss_fn = build(np.random.default_rng(0))
    report = check(module, x, target, loss_fn, samples=4)
    assert report.ok, str(report)
    # every parameter tensor has a row, with elements and directions checked
    names = [r.name for r in report.rows]
    assert names == ["input"] + [k for k, _ in module.named_parameters()]
    assert all(r.checked > 0 and r.directions > 0 for r in report.rows)


def test_float32_on_request_passes_an_mlp():
    x, t = _data()
    report = check(_mlp(), x, t, tinynet.CrossEntropyLoss(), dtype="float32")
    assert report.ok, str(report)
    assert report.dtype == "float32" and report.eps == gradcheck.DEFAULTS["float32"]["eps"]


def test_taylor_slope_is_two_for_a_right_gradient():
    x, t = _data()
    report = check(_mlp(), x, t, tinynet.CrossEntropyLoss())
    slopes = [r.taylor_slope for r in report.rows if r.taylor_slope is not None]
    assert len(slopes) >= 4
    assert all(1.8 < s < 2.3 for s in slopes), slopes


def test_linear_layer_with_random_upstream_is_linear_in_taylor():
    # L = sum(y * g) is linear in W, b and x: the remainder is round-off only
    x, _ = _data()
    tinynet.manual_seed(0)
    report = check(Linear(5, 4), x)
    assert report.ok
    assert {r.taylor for r in report.rows} == {"linear"}


# ----------------------------------------------------------------- broken backwards fail
def _failed_rows(report):
    return [r for r in report.rows if r.status == "FAIL"]


def test_wrong_relu_backward_fails_and_is_named(monkeypatch):
    # forgets the mask: passes dy through where x < 0 too
    monkeypatch.setattr(activation.ReLU, "backward", lambda self, dy, input_grad=True: dy * 1.0)
    x, t = _data()
    report = check(_mlp(ReLU), x, t, tinynet.CrossEntropyLoss())
    assert not report.ok
    bad = _failed_rows(report)
    assert {r.name for r in bad} >= {"input", "0.weight"}
    for r in bad:
        assert 0.8 < r.taylor_slope < 1.3, r.message()
    text = "\n".join(report.failures)
    assert "ReLU '1'" in text and "0.weight" in text and "worst at" in text
    alone = check(ReLU(), 2 * x)
    assert not alone.ok and "ReLU" in alone.failures[0] and "input" in alone.failures[0]
    with pytest.raises(GradcheckError, match="ReLU '1'"):
        report.raise_if_failed()


def test_transposed_linear_weight_grad_fails(monkeypatch):
    real = linear.Linear.backward

    def transposed(self, dy, input_grad=True):
        before = None if self.weight.grad is None else self.weight.grad.copy()
        out = real(self, dy, input_grad)
        g = self.weight.grad - (0 if before is None else before)
        self.weight.grad = (0 if before is None else before) + g.T
        return out

    monkeypatch.setattr(linear.Linear, "backward", transposed)
    rng = np.random.default_rng(3)
    tinynet.manual_seed(3)
    report = check(Linear(4, 4), rng.standard_normal((5, 4)), contract=False)
    assert not report.ok
    (bad,) = _failed_rows(report)
    assert bad.name == "weight" and bad.layer == "Linear"
    assert 0.8 < bad.taylor_slope < 1.3
    assert abs(bad.analytic - bad.numeric) > 1e-3
    assert "tensor 'weight'" in bad.message() and f"{bad.analytic:.6g}" in bad.message()


def test_missing_one_over_n_in_the_loss_fails(monkeypatch):
    real = tinynet.CrossEntropyLoss.backward

    def no_mean(self):
        return real(self) * 4                           # forgets the 1/N of the mean, N = 4

    monkeypatch.setattr(tinynet.CrossEntropyLoss, "backward", no_mean)
    x, t = _data(n=4)
    report = check(_mlp(), x, t, tinynet.CrossEntropyLoss())
    assert not report.ok
    assert all(r.status == "FAIL" for r in report.rows)
    assert all(0.8 < r.taylor_slope < 1.3 for r in report.rows)
    # the ratio analytic / numeric is N at the worst element
    worst = max(report.rows, key=lambda r: abs(r.analytic))
    assert worst.analytic / worst.numeric == pytest.approx(4.0, rel=1e-4)
    assert "loss function" in report.hint


def test_backward_that_overwrites_grad_breaks_the_contract(monkeypatch):
    real = linear.Linear.backward

    def overwrite(self, dy, input_grad=True):
        self.weight.grad = None
        return real(self, dy, input_grad)

    monkeypatch.setattr(linear.Linear, "backward", overwrite)
    x, _ = _data()
    tinynet.manual_seed(0)
    report = check(Linear(5, 4), x)
    assert not report.ok
    assert any("adds into .grad" in f for f in report.failures)


def test_backward_that_writes_into_dy_breaks_the_contract(monkeypatch):
    real = activation.Tanh.backward

    def in_place(self, dy, input_grad=True):
        out = real(self, dy, input_grad)
        dy *= 0
        return out

    monkeypatch.setattr(activation.Tanh, "backward", in_place)
    report = check(Tanh(), np.random.default_rng(0).standard_normal((3, 4)))
    assert not report.ok
    assert any("dy unchanged" in f for f in report.failures)


# ----------------------------------------------------------------- kinks are skipped
def test_relu_at_exact_zero_is_skipped_not_failed():
    x = np.random.default_rng(0).standard_normal((4, 6))
    x[:, ::2] = 0.0
    report = check(ReLU(), x)
    (row,) = report.rows
    assert row.skipped == 12 and row.checked == 12
    assert report.ok and row.status == "pass"


def test_leaky_relu_at_zero_is_skipped():
    x = np.array([[0.0, 1.0, -1.0, 0.0]])
    report = check(tinynet.LeakyReLU(0.1), x)
    assert report.rows[0].skipped == 2 and report.ok


def test_maxpool_ties_are_skipped_not_failed():
    x = np.zeros((1, 1, 4, 4))
    x[0, 0, 0, 0] = 1.0                 # one clear maximum, three windows of ties
    report = check(MaxPool2d(2, 2), x)
    (row,) = report.rows
    assert report.ok
    assert row.skipped == 12 and row.checked == 4


class _Hinge(tinynet.Module):
    """max(x, 0) written as a custom layer the checker knows nothing about."""

    def forward(self, x):
        self._x = x
        return np.maximum(x, 0)

    def backward(self, dy, input_grad=True):
        return dy * (self._x > 0)


class _HingeWithPattern(_Hinge):
    def kink_pattern(self):
        return self._x > 0


def test_unknown_kinks_are_caught_by_the_one_sided_quotients():
    x = np.array([[0.0, 1.5, -0.7, 0.0, 2.0]])
    report = check(_Hinge(), x)
    (row,) = report.rows
    assert report.ok, str(report)
    assert row.skipped == 2 and row.checked == 3
    assert row.skipped_directions > 0 and row.taylor == "kink"


def test_custom_kink_pattern_hook_is_used():
    x = np.array([[0.0, 1.5, -0.7, 0.0, 2.0]])
    layer = _HingeWithPattern()
    layer(x)
    assert len(gradcheck.kink_pattern(layer)) == 1
    report = check(layer, x)
    assert report.ok and report.rows[0].skipped == 2


def test_all_skipped_tensor_reports_skip():
    report = check(ReLU(), np.zeros((2, 3)))
    assert report.rows[0].status == "skip" and report.ok
    assert report.rows[0].checked == 0


# ----------------------------------------------------------------- module untouched
def test_caller_module_and_generator_are_unchanged():
    tinynet.manual_seed(5)
    model = tinynet.Sequential(Linear(5, 6), ReLU(), BatchNorm1d(6), Dropout(0.3), Linear(6, 3))
    model.train()
    before = {k: np.array(v, copy=True) for k, v in model.state_dict().items()}
    x, t = _data()
    state = tinynet.random.get_rng_state()
    report = check(model, x.astype("float32"), t, tinynet.CrossEntropyLoss())
    assert report.ok, str(report)
    after = model.state_dict()
    for k, v in before.items():
        assert after[k].dtype == v.dtype
        np.testing.assert_array_equal(after[k], v)
    assert all(p.grad is None for p in model.parameters())
    assert model.training and model.dtype == np.float32
    assert tinynet.random.get_rng_state() == state


def test_batchnorm_running_stats_do_not_drift_inside_the_check():
    tinynet.manual_seed(0)
    bn = BatchNorm1d(3)
    x = np.random.default_rng(0).standard_normal((5, 3)) * 2 + 1
    p = gradcheck.Problem(bn, x, None, None, "float64", 0)
    p.loss()
    once = p.module.running_mean.copy()
    assert np.abs(once).max() > 0.01           # one forward moved it by 0.1 * mean
    for _ in range(3):
        p.loss()
    np.testing.assert_array_equal(p.module.running_mean, once)   # no drift
    assert int(p.module.num_batches_tracked) == 1
    report = check(bn, x)
    assert report.ok and len(report.rows) == 3


def test_dropout_mask_is_fixed_and_injected_masks_are_reinjected():
    tinynet.manual_seed(0)
    model = tinynet.Sequential(Linear(4, 8), Dropout(0.5), Linear(8, 2))
    x = np.random.default_rng(1).standard_normal((3, 4))
    assert check(model, x).ok
    keep = (np.arange(24).reshape(3, 8) % 3 != 0)
    model[1].next_mask = keep
    assert check(model, x).ok
    assert model[1].next_mask is keep          # the caller's injected mask is not consumed


# ----------------------------------------------------------------- report and arguments
def test_report_table_and_errors():
    x, t = _data()
    report = check(_mlp(), x, t, tinynet.CrossEntropyLoss())
    text = str(report)
    for word in ("tensor", "max rel", "worst index", "taylor slope", "0.weight", "OK"):
        assert word in text
    assert report.table() == text
    with pytest.raises(tinynet.DTypeError, match="float64"):
        check(_mlp(), x, dtype="int32")
    with pytest.raises(TypeError, match="unknown option"):
        check(_mlp(), x, tolerance=1)
    with pytest.raises(TypeError, match="Module"):
        check(lambda v: v, x)


def test_only_restricts_the_tensors():
    x, t = _data()
    report = check(_mlp(), x, t, tinynet.CrossEntropyLoss(), only=["2.bias"])
    assert [r.name for r in report.rows] == ["2.bias"]


def test_check_runs_on_every_backend(xp):
    tinynet.manual_seed(0)
    model = xp.to(tinynet.Sequential(Conv2d(2, 3, 3, 1, 1), BatchNorm2d(3), ReLU(),
                                     MaxPool2d(2, 2), tinynet.Flatten(), Dropout(0.2),
                                     Linear(12, 3)))
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 2, 4, 4)))
    report = check(model, x, xp.asarray(np.array([0, 2])), tinynet.CrossEntropyLoss())
    assert report.ok, str(report)


def test_report_table_fits_100_columns_and_the_full_one_has_every_column():
    tinynet.manual_seed(0)
    model = tinynet.Sequential(Conv2d(2, 3, 3, 1, 1), BatchNorm2d(3), ReLU(),
                               tinynet.Flatten(), Linear(48, 3))
    x = np.random.default_rng(0).standard_normal((2, 2, 4, 4))
    report = check(model, x, np.array([0, 2]), tinynet.CrossEntropyLoss())
    assert report.ok
    assert all(len(line) <= 100 for line in report.table().splitlines()), report.table()
    full = report.table(full=True)
    assert full.splitlines()[1].split()[:3] == ["layer", "tensor", "shape"]
    assert "analytic" in full and "numeric" in full and "max abs" in full


def test_kernels_argument_is_in_force_while_checking(monkeypatch):
    seen = recording_kernels(monkeypatch)
    x, t = _data()
    for kernels in ("reference", "fast"):
        seen.clear()
        assert check(_mlp(), x, t, tinynet.CrossEntropyLoss(), kernels=kernels).ok
        assert seen and set(seen) == {kernels}
    seen.clear()
    with tinynet.reference_kernels():
        check(_mlp(), x, t, tinynet.CrossEntropyLoss())
    assert seen and set(seen) == {"reference"}
    assert tinynet.get_kernels() == "fast"


# ----------------------------------------------------------------- the command
def test_command_passes_and_prints_one_table(capsys, tmp_path):
    out_file = tmp_path / "gradcheck.txt"
    assert suite.main(["--only", "Conv2d", "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "configuration" in out and "Conv2d(2, 3, 3, 2, 1)" in out
    n = len(suite.select(suite.configurations(), "Conv2d"))
    assert n >= 16                      # dilation, groups, padding modes included
    assert f"all {n} configurations pass" in out
    assert f"{n} configurations, fast kernels" in out
    assert all(len(line) <= 100 for line in out.splitlines()
               if not line.startswith("full tables")), out
    assert f"full tables (every column, every tensor): {out_file}" in out
    full = out_file.read_text()
    assert "contract" in full and "seconds" in full and "[Conv2d(2, 3, 3, 2, 1)]" in full
    assert "analytic" in full


def test_command_runs_on_the_kernels_asked_for(capsys, tmp_path, monkeypatch):
    seen = recording_kernels(monkeypatch)
    assert suite.main(["--only", "Tanh", "--kernels", "reference",
                       "--out", str(tmp_path / "t.txt")]) == 0
    assert "reference kernels" in capsys.readouterr().out
    assert seen and set(seen) == {"reference"}
    assert tinynet.get_kernels() == "fast"


def test_command_fails_on_a_broken_layer(monkeypatch, capsys, tmp_path):
    monkeypatch.setattr(activation.ReLU, "backward", lambda self, dy, input_grad=True: dy * 1.0)
    assert tinynet.cli.main(["gradcheck", "--only", "ReLU", "--out",
                             str(tmp_path / "t.txt")]) == 1
    out = capsys.readouterr().out
    assert "FAILED" in out and "ReLU" in out
    assert all(len(line) <= 100 for line in out.splitlines()
               if not line.startswith("full tables")), out


def test_command_rejects_unknown_names(capsys):
    assert suite.main(["--only", "NoSuchLayer"]) == 2
    assert "matches no configuration" in capsys.readouterr().err


def test_every_study_model_has_a_configuration():
    names = suite.configurations()
    assert all(f"model {m}" in names for m in models.MODELS)


# ----------------------------------------------------------------- the S8 study
@pytest.mark.slow
def test_s8_quick_shows_the_v_in_both_dtypes(tmp_path):
    s08 = pytest.importorskip("experiments.s08_fd")
    try:
        result = s08.run(str(tmp_path), quick=True, use_torch=False)
    except tinynet.DataError as e:
        pytest.skip(f"Fashion-MNIST not available: {e}")
    import json
    assert (tmp_path / "fd_error.png").stat().st_size > 10_000
    assert "| N | eps = 1/N | float32 | float64 |" in (tmp_path / "table.md").read_text()
    assert result["summary"].startswith("S8:")
    fd = json.loads((tmp_path / "histories.json").read_text())["runs"]["fd"]
    assert fd["float32_minimum_at_larger_eps"] is True
    e32 = fd["results"]["float32"]["errors"]
    e64 = fd["results"]["float64"]["errors"]
    # float64 truncation arm: halving eps quarters the error (O(eps^2))
    assert 3.0 < e64["100"] / e64["200"] < 5.0
    # round-off arms: the error at the smallest eps is far above each minimum
    for e in (e32, e64):
        assert e["500000"] > 10 * min(e.values())
