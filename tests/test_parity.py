"""tinynet.parity: twins, exact round trips, and layer/model parity against PyTorch.

Every layer type in several configurations and every study model is run in both
frameworks (float64 and float32, train and eval mode); each compared tensor must be
within ``parity.TOLERANCES`` (float64: 1e-10, float32: 1e-5, or ten times PyTorch's own
float32 error against float64 where that is larger). Sabotage tests show the checks fail
when tinynet is wrong by more than the tolerance.
"""

from __future__ import annotations

import subprocess
import sys

import numpy as np
import pytest
from conftest import recording_kernels

import tinynet
from tinynet import parity
from tinynet.errors import ShapeError, TinynetError
from tinynet.layers import activation

LAYER_CASES = parity.layer_cases()
MODEL_CASES = parity.model_cases(16)


def _ids(cases):
    return [c.name for c in cases]


def _built(case, seed=0):
    tinynet.manual_seed(seed)
    return case.build()


def _assert_equal_state(a: dict, b: dict) -> None:
    """Same keys in the same order, and every value equal bit for bit with its dtype."""
    assert list(a) == list(b)
    for key, va in a.items():
        vb = b[key]
        va = va.detach().numpy() if hasattr(va, "detach") else np.asarray(va)
        vb = vb.detach().numpy() if hasattr(vb, "detach") else np.asarray(vb)
        assert va.dtype == vb.dtype, key
        assert va.shape == vb.shape, key
        assert va.tobytes() == vb.tobytes(), key


# ----------------------------------------------------------------------------- no torch
def test_import_and_clear_error_without_torch():
    """tinynet.parity imports without torch; using it says how to install torch."""
    code = (
        "import sys; sys.modules['torch'] = None\n"
        "import tinynet\n"
        "from tinynet import parity\n"
        "from tinynet.errors import TinynetError\n"
        "for call in (lambda: parity.to_torch(tinynet.Linear(2, 2)),\n"
        "             lambda: parity.from_torch(object()),\n"
        "             lambda: parity.main(['--skip', 'trajectories'])):\n"
        "    try:\n"
        "        call()\n"
        "    except TinynetError as e:\n"
        "        assert 'needs torch: pip install torch' in str(e), e\n"
        "    else:\n"
        "        raise SystemExit('no error')\n"
        "print('ok')\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         timeout=120, check=False)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "ok"


# ----------------------------------------------------------------------------- twins
@pytest.mark.parametrize("case", LAYER_CASES + MODEL_CASES, ids=_ids(LAYER_CASES + MODEL_CASES))
@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_round_trip_is_exact(torch, case, dtype):
    model = _built(case)
    model = model.double() if dtype == "float64" else model
    twin = parity.to_torch(model)
    _assert_equal_state(model.state_dict(), twin.state_dict())
    back = parity.from_torch(twin)
    _assert_equal_state(model.state_dict(), back.state_dict())
    assert type(back) is type(model)
    assert repr(back) == repr(model)


def test_twin_shares_no_memory_and_keeps_the_mode(torch):
    model = tinynet.Sequential(tinynet.Linear(3, 2), tinynet.ReLU()).eval()
    twin = parity.to_torch(model)
    assert isinstance(twin, torch.nn.Sequential) and not twin.training
    assert not twin[0].training
    before = model[0].weight.data.copy()
    with torch.no_grad():
        twin[0].weight.add_(1.0)
    np.testing.assert_array_equal(model[0].weight.data, before)
    back = parity.from_torch(twin.train())
    assert back.training and back[0].training
    back[0].weight.data += 1.0
    np.testing.assert_array_equal(twin[0].weight.detach().numpy(), before + 1.0)


def test_residual_twin_has_body_and_projection(torch):
    L = tinynet.layers
    model = L.Residual(tinynet.Sequential(L.Linear(4, 3), L.ReLU()), L.Linear(4, 3))
    twin = parity.to_torch(model)
    assert type(twin) is parity.TorchResidual
    assert isinstance(twin.body, torch.nn.Sequential) and isinstance(twin.projection,
                                                                      torch.nn.Linear)
    assert list(twin.state_dict()) == ["body.0.weight", "body.0.bias", "projection.weight",
                                       "projection.bias"]
    x = np.random.default_rng(0).standard_normal((5, 4)).astype(np.float32)
    expected = twin.body(torch.from_numpy(x)) + twin.projection(torch.from_numpy(x))
    np.testing.assert_array_equal(twin(torch.from_numpy(x)).detach().numpy(),
                                  expected.detach().numpy())
    identity = parity.to_torch(L.Residual(L.Linear(4, 4)))
    assert identity.projection is None
    np.testing.assert_array_equal(
        identity(torch.from_numpy(x)).detach().numpy(),
        (identity.body(torch.from_numpy(x)) + torch.from_numpy(x)).detach().numpy())


def test_from_torch_of_a_model_built_in_torch(torch):
    """A torch model (torch's own init) comes over with the same outputs, mode and dtype."""
    torch.manual_seed(0)
    nn = torch.nn
    twin = nn.Sequential(
        nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.BatchNorm2d(4), nn.MaxPool2d(2),
        parity.TorchResidual(nn.Sequential(nn.Conv2d(4, 4, 3, padding=1), nn.Tanh())),
        nn.AvgPool2d(2), nn.Flatten(), nn.Linear(16, 5), nn.ELU(0.3), nn.Dropout(0.1),
        nn.Linear(5, 3)).double().eval()
    model = parity.from_torch(twin)
    assert model.dtype == np.float64 and not model.training
    x = np.random.default_rng(1).standard_normal((2, 1, 8, 8))
    np.testing.assert_allclose(model(x), twin(torch.from_numpy(x)).detach().numpy(),
                               rtol=0, atol=1e-12)


def test_from_torch_leaves_the_global_generator_alone(torch):
    tinynet.manual_seed(5)
    expected = tinynet.random.default_generator().random(3)
    tinynet.manual_seed(5)
    parity.from_torch(torch.nn.Sequential(torch.nn.Linear(30, 20), torch.nn.Linear(20, 2)))
    np.testing.assert_array_equal(tinynet.random.default_generator().random(3), expected)


def test_unsupported_modules_are_named(torch):
    class Custom(tinynet.Module):
        def forward(self, x):
            return x

    with pytest.raises(TinynetError, match="no PyTorch twin for Custom"):
        parity.to_torch(tinynet.Sequential(tinynet.Linear(2, 2), Custom()))
    with pytest.raises(TinynetError, match="no tinynet twin for torch module Conv1d"):
        parity.from_torch(torch.nn.Sequential(torch.nn.Conv1d(2, 2, 3)))
    if "dilation" not in tinynet.layers.Conv2d.__init__.__code__.co_varnames:
        with pytest.raises(TinynetError, match="dilation"):
            parity.from_torch(torch.nn.Conv2d(2, 2, 3, dilation=2))
    with pytest.raises(TinynetError, match="expected a torch.nn.Module"):
        parity.from_torch("not a module")


# ----------------------------------------------------------------------------- parity
def _check(case):
    report = parity.check_case(case)
    assert report.rows, case.name
    assert report.ok, "\n" + report.table(every=True)
    return report


@pytest.mark.parametrize("case", LAYER_CASES, ids=_ids(LAYER_CASES))
def test_layer_matches_torch(torch, case):
    report = _check(case)
    groups = {(dt, mode) for _, dt, mode, _ in report.groups()}
    assert groups == {("float64", "train"), ("float64", "eval"), ("float32", "train"),
                      ("float32", "eval")}
    names = [r.tensor for r in report.rows]
    assert {"output", "loss", "dL/dx"} <= set(names)
    model = _built(case)
    for key, _ in model.named_parameters():
        assert f"grad {key}" in names
    for key, _ in model.named_buffers():
        assert f"buffer {key}" in names


@pytest.mark.parametrize("case", MODEL_CASES, ids=_ids(MODEL_CASES))
def test_study_model_matches_torch(torch, case):
    _check(case)


def test_every_layer_type_is_covered():
    """Each layer class tinynet.layers exports appears in some parity case."""
    covered = set()
    for case in LAYER_CASES:
        covered |= {type(m).__name__ for m in _built(case).modules()}
    exported = {name for name in tinynet.layers.__all__
                if isinstance(getattr(tinynet.layers, name), type)}
    assert exported <= covered, exported - covered
    assert "Sequential" in covered


def test_models_cover_every_study_model():
    from tinynet.models import MODELS
    assert [c.name for c in MODEL_CASES] == list(MODELS)


def test_batchnorm_running_stats_are_compared_after_the_step(torch):
    case = next(c for c in LAYER_CASES if c.name == "BatchNorm1d(5)")
    report = parity.check_case(case, train=True)
    rows = {(r.dtype, r.tensor): r for r in report.rows}
    for dt in ("float64", "float32"):
        for name in ("running_mean", "running_var", "num_batches_tracked"):
            assert rows[(dt, f"buffer {name}")].ok
    # The train-mode step did move the statistics away from their initial values.
    model = _built(case)
    before = model.running_mean.copy()
    x, _ = case.batch()
    model.train()(x.astype(np.float32))
    assert not np.array_equal(model.running_mean, before)


# ----------------------------------------------------------------------------- failures
def test_a_wrong_backward_is_caught(torch, monkeypatch):
    """tanh' = 1 - y^2; a backward with 1 - y fails every dtype and names the tensor."""
    monkeypatch.setattr(activation.Tanh, "backward",
                        lambda self, dy, input_grad=True: dy * (1 - self._cache))
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(4, 3), tinynet.Tanh(), tinynet.Linear(3, 2))
    x = np.random.default_rng(0).standard_normal((5, 4))
    t = np.array([0, 1, 1, 0, 1])
    report = parity.compare(model, x, t)
    assert not report.ok
    failed = {(r.dtype, r.tensor) for r in report.failures()}
    assert ("float64", "dL/dx") in failed and ("float32", "grad 0.weight") in failed
    assert ("float64", "grad 2.weight") not in failed  # after the Tanh: still right
    assert "FAIL" in report.table()


def test_float64_tolerance_sees_a_relative_error_of_1e_9(torch, monkeypatch):
    """A forward off by a factor (1 + 1e-9) fails in float64 and passes in float32."""
    original = activation.Tanh.forward
    monkeypatch.setattr(activation.Tanh, "forward",
                        lambda self, x: original(self, x) * x.dtype.type(1 + 1e-9))
    model = tinynet.Sequential(tinynet.Tanh())
    x = np.random.default_rng(0).standard_normal((4, 6))
    report = parity.compare(model, x, np.zeros((4, 6)), loss="mse")
    by_dtype = {dt: all(r.ok for r in rows) for _, dt, _, rows in report.groups()}
    assert by_dtype == {"float64": False, "float32": True}


def test_dropout_masks_are_shared(torch):
    """The torch twin's Dropout hands its mask to tinynet's: same zeros, same scaling."""
    model = tinynet.Sequential(tinynet.Linear(6, 50), tinynet.Dropout(0.5)).double()
    twin = parity.to_torch(model)
    masks = parity.DropoutMasks(model, twin, seed=3)
    x = np.random.default_rng(0).standard_normal((8, 6))
    try:
        expected = twin(torch.from_numpy(x)).detach().numpy()
    finally:
        masks.remove()
    y = model(x)
    np.testing.assert_array_equal(y == 0, expected == 0)
    np.testing.assert_allclose(y, expected, rtol=1e-12, atol=0)  # the Linear rounds apart
    zeros = np.mean(y == 0)
    assert 0.3 < zeros < 0.7  # a real mask, not all ones
    report = parity.compare(model, x, np.zeros((8, 50)), loss="mse", seed=3)
    assert report.ok, report.table(every=True)


# ----------------------------------------------------------------------------- pieces
def test_difference_definition():
    assert parity.difference(np.array([1.0, 2.0]), np.array([1.0, 2.5])) == (0.5, 0.2)
    assert parity.difference(np.zeros(3), np.zeros(3)) == (0.0, 0.0)
    assert parity.difference(np.array([np.nan, 1.0]), np.array([np.nan, 1.0])) == (0.0, 0.0)
    assert parity.difference(np.array([np.nan]), np.array([1.0]))[1] == np.inf
    abs_err, rel = parity.difference(np.array([1e-300]), np.array([0.0]))
    assert abs_err == 1e-300 and rel > 1e-10
    with pytest.raises(ShapeError):
        parity.difference(np.zeros(2), np.zeros(3))


def test_compare_rejects_bad_arguments(torch):
    model = tinynet.Sequential(tinynet.Linear(2, 3))
    x, t = np.zeros((2, 2)), np.array([0, 1])
    with pytest.raises(TinynetError, match="unknown loss"):
        parity.compare(model, x, t, loss="hinge")
    with pytest.raises(TinynetError, match="float64 or float32"):
        parity.compare(model, x, t, dtype="float16")
    with pytest.raises(TinynetError, match="integer class indices"):
        parity.compare(model, x, np.array([0.0, 1.0]))


def test_compare_accepts_loss_objects_and_keeps_the_model(torch):
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(4, 3))
    before = {k: v.copy() for k, v in model.state_dict().items()}
    x = np.random.default_rng(0).standard_normal((5, 4))
    report = parity.compare(model, x, np.zeros((5, 3)), loss=tinynet.MSELoss(reduction="sum"))
    assert report.ok
    _assert_equal_state(before, model.state_dict())
    assert model[0].weight.grad is None


def test_compare_runs_on_every_backend(torch, xp):
    """The tinynet side runs on the model's own array module (NumPy, stand-in, CuPy)."""
    case = next(c for c in LAYER_CASES if c.name.startswith("Residual conv block,"))
    model = xp.to(_built(case))
    x, target = case.batch()
    report = parity.compare(model, x, target, loss="mse")
    assert report.ok, report.table(every=True)


def test_report_table_marks_failures_and_raised_tolerances():
    rows = [parity.Row("a", "float32", "train", "output", 1e-6, 2e-6, 1e-5),
            parity.Row("a", "float32", "train", "grad w", 1e-4, 3e-4, 5e-4, raised=True),
            parity.Row("b", "float64", "eval", "loss", 1.0, 0.5, 1e-10)]
    report = parity.ParityReport(rows)
    assert not report.ok and report.failures() == [rows[2]]
    table = report.table()
    assert "5.0e-04*" in table and "FAIL" in table and "1 ABOVE TOLERANCE" in table
    assert len(report.table(every=True).splitlines()) > len(table.splitlines()) - 1


def test_raised_tolerance_legend_only_when_a_printed_row_has_the_mark():
    """The '*' footnote explains a mark; a table whose printed (worst) rows carry none
    must not print it, while the every-tensor table that shows the marked row does."""
    rows = [parity.Row("a", "float32", "train", "output", 1e-6, 4e-6, 1e-5),
            parity.Row("a", "float32", "train", "grad w", 1e-6, 1e-6, 5e-4, raised=True)]
    report = parity.ParityReport(rows)
    assert report.shown_rows() == [rows[0]]
    assert "*" not in report.table() and "tolerance raised" not in report.table()
    assert "5.0e-04*" in report.table(every=True)
    assert "tolerance raised" in report.table(every=True)


def test_report_tables_fit_100_columns_by_wrapping_long_checks():
    long_case = "Conv2d(3,5,(3,2),s(2,1),p(1,0),bias=False) + a much longer description"
    rows = [parity.Row(long_case, "float64", "train", "grad body.0.projection.weight", 1e-17,
                       2e-17, 1e-10),
            parity.Row("Linear", "float32", "eval", "output", 1e-8, 2e-8, 1e-5)]
    report = parity.ParityReport(rows)
    for every in (False, True):
        lines = report.table(every=every).splitlines()
        assert all(len(line) <= 100 for line in lines), "\n".join(lines)
        at = next(i for i, line in enumerate(lines) if line.startswith(long_case))
        assert lines[at] == f"{long_case} float64 train"          # the check on its own line
        assert lines[at + 1].startswith(" ") and "2.0e-17" in lines[at + 1]  # then its row
    full = report.table(every=True, full=True)
    assert any(len(line) > 100 and long_case in line for line in full.splitlines())


def test_kernels_argument_is_in_force_while_checking(torch, monkeypatch):
    """``kernels=`` puts that set in force around tinynet's side; None leaves the one in
    force (the global setting or an enclosing ``use_kernels``)."""
    seen = recording_kernels(monkeypatch)
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Linear(4, 3), tinynet.Tanh(), tinynet.Linear(3, 2))
    x = np.random.default_rng(0).standard_normal((5, 4))
    t = np.array([0, 1, 1, 0, 1])
    for kernels in ("reference", "fast"):
        seen.clear()
        assert parity.compare(model, x, t, kernels=kernels).ok
        assert seen and set(seen) == {kernels}
        seen.clear()
        assert parity.trajectory(model, [(x, t)] * 2, "sgd", kernels=kernels,
                                 dtype="float32").ok
        assert seen and set(seen) == {kernels}
    seen.clear()
    with tinynet.use_kernels("reference"):
        parity.compare(model, x, t)
    assert seen and set(seen) == {"reference"}
    assert tinynet.get_kernels() == "fast"


# ----------------------------------------------------------------------------- command
def test_command_layers_pass(torch, capsys, tmp_path):
    out_file = tmp_path / "parity.txt"
    assert parity.main(["--skip", "models", "--skip", "trajectories", "--threads", "1",
                        "--out", str(out_file)]) == 0
    out = capsys.readouterr().out
    assert "Conv2d(3,4,3)" in out and "all within tolerance" in out
    assert out.startswith("tinynet parity: fast kernels;")
    assert "\nlayers: every layer type" in out
    assert all(len(line) <= 100 for line in out.splitlines()
               if not line.startswith("full tables"))
    full = out_file.read_text()
    assert "grad 0.weight" in full and "all within tolerance" in full
    assert f"full tables (every tensor): {out_file}" in out


def test_command_runs_on_the_kernels_asked_for(torch, capsys, monkeypatch, tmp_path):
    seen = recording_kernels(monkeypatch)
    assert parity.main(["--skip", "models", "--skip", "trajectories", "--threads", "1",
                        "--kernels", "reference", "--out", str(tmp_path / "t.txt")]) == 0
    assert capsys.readouterr().out.startswith("tinynet parity: reference kernels;")
    assert seen and set(seen) == {"reference"}
    assert tinynet.get_kernels() == "fast"  # restored afterwards


def test_command_gives_torch_its_thread_count_back(torch, capsys, tmp_path):
    before = torch.get_num_threads()
    asked = 2 if before == 1 else 1
    seen = []
    real = torch.set_num_threads

    def spy(n):
        seen.append(n)
        real(n)

    torch.set_num_threads = spy
    try:
        assert parity.main(["--skip", "models", "--skip", "trajectories", "--threads",
                            str(asked), "--out", str(tmp_path / "t.txt")]) == 0
    finally:
        torch.set_num_threads = real
    assert seen[0] == asked                  # ran at the count asked for
    assert torch.get_num_threads() == before  # and gave the caller's back


def test_command_fails_on_a_difference(torch, capsys, monkeypatch, tmp_path):
    monkeypatch.setattr(activation.Sigmoid, "backward",
                        lambda self, dy, input_grad=True: dy * self._cache)
    assert parity.main(["--skip", "models", "--skip", "trajectories", "--threads", "1",
                        "--out", str(tmp_path / "t.txt")]) == 1
    captured = capsys.readouterr()
    assert "Sigmoid" in captured.out and "FAIL" in captured.out
    assert "FAIL" in captured.err.split("layers: ")[1]  # under its group's heading


def test_command_checks_the_data_set_before_any_check_runs(torch, capsys, monkeypatch,
                                                           tmp_path):
    ran = []
    monkeypatch.setattr(parity.cli, "check_case", lambda *a, **k: ran.append(a))
    with pytest.raises(SystemExit) as e:
        parity.main(["--data", "fashoin-mnist", "--out", str(tmp_path / "t.txt")])
    assert e.value.code == 2
    assert "invalid choice: 'fashoin-mnist' (choose from 'fashion-mnist', 'mnist')" in \
        capsys.readouterr().err
    (tmp_path / "a-file").write_text("")
    with pytest.raises(SystemExit) as e:
        parity.main(["--data-root", str(tmp_path / "a-file"), "--out", str(tmp_path / "t.txt")])
    assert e.value.code == 2 and "not a folder" in capsys.readouterr().err

    def missing(name, split, root=None):
        raise tinynet.DataError(f"{name}: not found in {root}")

    monkeypatch.setattr(tinynet.data, "load", missing)
    with pytest.raises(tinynet.DataError, match="mnist: not found"):   # before any check
        parity.main(["--data", "mnist", "--data-root", str(tmp_path),
                     "--out", str(tmp_path / "t.txt")])
    assert ran == []


def test_command_is_dispatched_by_the_cli(torch, capsys):
    from tinynet import cli
    with pytest.raises(SystemExit) as e:
        cli.main(["parity", "--help"])
    assert e.value.code == 0
    help_text = capsys.readouterr().out
    assert "tinynet parity" in help_text and "--kernels {reference,fast}" in help_text


# ----------------------------------------------------------------------------- losses
@pytest.mark.parametrize("case", __import__("tinynet.parity.losses", fromlist=["x"])
                         .loss_cases(), ids=lambda c: c.name)
def test_every_loss_and_option_matches_torch(torch, case, kernels):
    from tinynet.parity.losses import check_loss
    report = check_loss(case)
    assert report.ok, report.table(every=True)
    assert {r.tensor for r in report.rows} == {"loss", "dL/dinput"}


def test_a_wrong_loss_gradient_is_caught(torch, monkeypatch):
    from tinynet import functional
    from tinynet.parity.losses import LossCase, check_loss
    real = functional.bce_with_logits_backward
    monkeypatch.setattr(functional, "bce_with_logits_backward",   # the reference namespace
                        lambda dloss, cache: real(dloss, cache) * 1.01)
    with tinynet.reference_kernels():
        report = check_loss(LossCase("BCE", "BCEWithLogitsLoss", {}, (4, 3), "values"))
    assert not report.ok and {r.tensor for r in report.failures()} == {"dL/dinput"}


def test_torch_speed_notice_is_hidden_only_inside_the_comparison(torch):
    """torch warns (once per process) that padding='same' with an even kernel copies its
    input; compare hides that one notice while it runs the twin, so it passes in a fresh
    process where every warning is an error, and it leaves the warning filters as they were."""
    import warnings
    code = ("import numpy as np, tinynet\n"
            "from tinynet import parity\n"
            "m = tinynet.Conv2d(2, 3, (2, 4), padding='same')\n"
            "x = np.random.default_rng(0).standard_normal((2, 2, 6, 5))\n"
            "t = np.random.default_rng(1).standard_normal((2, 3, 6, 5))\n"
            "assert parity.compare(m, x, t, loss='mse').ok\n")
    run = subprocess.run([sys.executable, "-W", "error", "-c", code],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    model = tinynet.Conv2d(2, 3, (2, 4), padding="same")
    x = np.random.default_rng(0).standard_normal((2, 2, 6, 5))
    t = np.random.default_rng(1).standard_normal((2, 3, 6, 5))
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        before = list(warnings.filters)
        assert parity.compare(model, x, t, loss="mse").ok
        assert warnings.filters == before
