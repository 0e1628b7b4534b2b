"""Smoke test of the benchmark suite: a tiny run writes its three outputs.

Timings are never asserted (speed is measured by the benchmark itself, not by tests).
Only the tests that time or call PyTorch take the ``torch`` fixture (a skip without torch);
the argument checks and the no-torch message run everywhere.
"""

from __future__ import annotations

import json
import os

import pytest


@pytest.mark.usefixtures("torch")
def test_tiny_run_writes_markdown_json_png(tmp_path, capsys):
    pytest.importorskip("matplotlib", reason="the benchmarks draw a PNG chart")
    from benchmarks.__main__ import main
    rc = main(["--quick", "--repeats", "1", "--pause", "0", "--min-block", "0.001",
               "--threads", "1", "--batches", "8", "--only", "step/base",
               "--only", "layer/relu/", "--out", str(tmp_path), "--name", "smoke"])
    assert rc == 0
    out = capsys.readouterr().out
    assert "| base MLP step | 8 |" in out
    assert "ReLU 256x512 both" in out
    md = (tmp_path / "smoke.md").read_text()
    assert md.startswith("# tinynet vs PyTorch, cpu")
    assert "threads: 1 on both sides" in md
    assert out.startswith("# 2 cases on ") and ", 1 thread both sides, " in out
    assert "1 interleaved repeat\n" in out and "median over 1 block," in md
    assert ("- **QUICK run** (1 training step at batch 8 and 1 layer case, 1 repeat; --only "
            "step/base --only layer/relu/): a smoke test") in md
    versions = next(line for line in md.splitlines() if line.startswith("- versions:"))
    assert versions.lower().count("numpy") == 1, versions
    data = json.loads((tmp_path / "smoke.json").read_text())
    assert data["header"]["threads"] == 1
    names = [r["name"] for r in data["results"]]
    assert names == ["step/base/8", "layer/relu/both"]
    step = data["results"][0]
    # the products of the base MLP step: 3 forward, 3 dW, 2 dx (none for the first layer)
    assert [w for w, _, _ in step["extra"]["products"]].count("dx") == 2
    assert step["flops"] == 2 * 8 * (784 * 512 * 2 + 512 * 512 * 3 + 512 * 10 * 3)
    for r in data["results"]:
        assert r["tinynet"]["median"] > 0 and r["torch"]["median"] > 0
        assert r["ratio"] == pytest.approx(r["tinynet"]["median"] / r["torch"]["median"])
    png = (tmp_path / "smoke.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    assert not [f for f in os.listdir(tmp_path) if f.endswith(".part")]


def test_report_counts_and_names_numpy_once():
    from benchmarks.report import _cupy, plural, quick_description
    assert [plural(n, "case") for n in (0, 1, 2)] == ["0 cases", "1 case", "2 cases"]
    head = {"numpy": "2.4.6", "backend": "numpy 2.4.6 (cupy: not installed)", "repeats": 3}
    assert _cupy(head) == "CuPy: not installed"
    assert _cupy(dict(head, backend="numpy 2.4.6 (cupy 13.3.0: 1 GPU(s))")) == \
        "CuPy 13.3.0: 1 GPU(s)"
    rows = ([{"group": "step", "batch": 64}] * 4 + [{"group": "layer", "batch": 64}] * 6)
    assert quick_description(head, rows) == ("4 training steps at batch 64 and 6 layer "
                                             "cases, 3 repeats")
    assert quick_description(dict(head, repeats=1, only=["base"]), rows[:1]) == \
        "1 training step at batch 64, 1 repeat; --only base"


def test_unknown_only_is_a_clear_error(tmp_path, capsys):
    from benchmarks.__main__ import main
    with pytest.raises(SystemExit) as e:
        main(["--only", "no-such-case", "--out", str(tmp_path)])
    assert e.value.code == 2
    assert "--only no-such-case: no case name contains that text" in capsys.readouterr().err


@pytest.mark.parametrize("prog", ["tinynet bench", "python -m benchmarks"])
def test_cuda_without_a_gpu_is_a_usage_error(prog, monkeypatch, capsys, torch):
    from benchmarks.__main__ import main
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    with pytest.raises(SystemExit) as e:
        main(["--device", "cuda", "--only", "step/base", "--quick"], prog=prog)
    assert e.value.code == 2
    assert capsys.readouterr().err == (f"{prog}: error: --device cuda: torch sees no CUDA "
                                       f"device (see {prog} --help)\n")



@pytest.mark.parametrize("module", ["benchmarks.__main__", "benchmarks.variants",
                                    "benchmarks.floor"])
@pytest.mark.parametrize("args, expected", [
    (["--repeats", "0"], "--repeats: expected a whole number >= 1, got '0'"),
    (["--threads", "0"], "--threads: expected a whole number >= 1, got '0'"),
    (["--pause", "-1"], "--pause: expected a finite number >= 0, got '-1'"),
    (["--min-block", "nan"], "--min-block: expected a finite number >= 0, got 'nan'"),
    (["--rewarm", "-0.5"], "--rewarm: expected a finite number >= 0, got '-0.5'"),
    (["--batches", "64,x"], "--batches: expected comma-separated batch sizes"),
    (["--batches", "1"], "each a whole number >= 2, got '1'"),
])
def test_bad_numbers_are_usage_errors_before_any_timing(module, args, expected, capsys):
    import importlib
    main = importlib.import_module(module).main
    with pytest.raises(SystemExit) as e:
        main(args)
    assert e.value.code == 2
    err = capsys.readouterr().err
    assert expected in err and err.count("\n") == 1


@pytest.mark.parametrize("module", ["benchmarks.__main__", "benchmarks.variants",
                                    "benchmarks.floor"])
def test_unwritable_out_is_refused_before_any_timing(module, tmp_path, capsys):
    import importlib
    main = importlib.import_module(module).main
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    with pytest.raises(SystemExit) as e:
        main(["--out", str(blocker / "results")])
    assert e.value.code == 2
    assert "--out folder" in capsys.readouterr().err


@pytest.mark.parametrize("module", ["benchmarks.__main__", "benchmarks.variants",
                                    "benchmarks.floor"])
def test_without_torch_one_line_says_how_to_get_it(module, monkeypatch, tmp_path):
    import importlib
    import sys
    main = importlib.import_module(module).main
    monkeypatch.setitem(sys.modules, "torch", None)        # import torch -> ImportError
    with pytest.raises(SystemExit) as e:
        main(["--out", str(tmp_path)])
    assert e.value.code == ("the benchmarks compare with PyTorch, which is not installed: "
                            "pip install torch")


def test_list_names_every_case(capsys):
    from benchmarks.__main__ import main
    assert main(["--list"]) == 0
    names = capsys.readouterr().out.split()
    for model in ("base", "bn", "simplecnn", "convbn"):
        for batch in (64, 256, 1024):
            assert f"step/{model}/{batch}" in names
    for layer in ("linear_784x512", "conv_simplecnn1", "conv_simplecnn2", "conv_convbn3",
                  "conv_vgg", "maxpool", "batchnorm1d", "batchnorm2d", "relu", "tanh",
                  "cross_entropy"):
        for mode in ("fwd", "bwd", "both"):
            assert f"layer/{layer}/{mode}" in names



def test_python_m_benchmarks_into_a_closed_pipe_is_quiet():
    """``python -m benchmarks --list | head -1`` has its own entry point: no traceback."""
    import subprocess
    import sys
    repo = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    read, write = os.pipe()
    os.close(read)
    try:
        proc = subprocess.run([sys.executable, "-m", "benchmarks", "--list"], stdout=write,
                              stderr=subprocess.PIPE, text=True, timeout=120, check=False,
                              cwd=repo, env=dict(os.environ, PYTHONPATH=repo))
    finally:
        os.close(write)
    assert proc.stderr == "" and proc.returncode == 141, (proc.returncode, proc.stderr)


def test_profile_names_every_part_of_the_step():
    from benchmarks.profile import format_profile, profile_step
    result = profile_step("base", 4, steps=1)
    parts = [r["part"] for r in result["rows"]]
    for part in ("1 Linear fwd", "2 ReLU fwd", "5 Linear bwd", "1 Linear bwd", "loss", "sgd"):
        assert part in parts
    assert "0 Flatten bwd" not in parts   # fit's backward stops at the first Linear
    first = next(r for r in result["rows"] if r["part"] == "1 Linear bwd")
    assert first["flops"] == 2 * 4 * 784 * 512          # dW only: no dx for the first layer
    text = format_profile(result)
    assert text.startswith("base step at batch 4:") and "sgd" in text


def test_default_output_is_a_run_folder_not_the_committed_results(tmp_path, monkeypatch):
    """Without --out or --record nothing under benchmarks/results changes."""
    from benchmarks import report
    head = {"device": "cpu", "cpu": "Some CPU", "cores": 2}
    monkeypatch.chdir(tmp_path)
    assert report.output_folder(head, None, False) == \
        os.path.join("runs", "benchmarks", "cpu-some-2c")
    assert report.output_folder(head, None, True) == \
        os.path.join(report.REPO, "benchmarks", "results", "cpu-some-2c")
    assert report.output_folder(head, "elsewhere", True) == "elsewhere"


def test_help_names_the_command_and_explains_missed(capsys):
    from benchmarks.__main__ import main
    with pytest.raises(SystemExit):
        main(["--help"])
    out = capsys.readouterr().out
    assert out.startswith("usage: tinynet bench") and "MISSED" in out and "--record" in out


@pytest.mark.usefixtures("torch")
def test_variants_time_every_setting(tmp_path, capsys):
    from benchmarks.variants import main
    rc = main(["--models", "base", "--batches", "8", "--no-layers", "--repeats", "1",
               "--pause", "0", "--min-block", "0.001", "--threads", "2", "--out",
               str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "variants.json").read_text())
    (row,) = data["results"]
    assert set(row["seconds"]) == {"torch", "fast", "fast, 1 thread", "reference"}
    assert row["fast_over_one_thread"] == pytest.approx(
        row["seconds"]["fast"] / row["seconds"]["fast, 1 thread"])
    assert "| base MLP step | 8 |" in (tmp_path / "variants.md").read_text()


@pytest.mark.parametrize("dtype", ["float64", "float32"])
def test_numpy_floor_computes_tinynets_step(dtype):
    """The floor is a fair floor only if it does the whole step: three SGD steps of it
    leave the base MLP's parameters where tinynet's three steps leave them."""
    import numpy

    import tinynet
    from benchmarks.floor import floor_step
    from tinynet import models

    def base():
        tinynet.manual_seed(3)
        return models.build("base").to(dtype=dtype)
    ours, floor = base(), base()
    rng = numpy.random.default_rng(0)
    x = rng.random((16, 784)).astype(dtype)
    t = rng.integers(0, 10, 16)
    loss_fn, opt = tinynet.CrossEntropyLoss(), tinynet.SGD(ours.parameters(), lr=0.1)
    step = floor_step([p.data for p in floor.parameters()], x, t, 0.1)
    for _ in range(3):
        loss = float(loss_fn(ours(x.reshape(16, 1, 28, 28)), t))
        opt.zero_grad()
        ours.backward(loss_fn.backward(), input_grad=False)
        opt.step()
        # the floor's loss, (log s - z_t).mean(), rounds in another order than tinynet's
        # cross-entropy: measured 1 float32 ulp (1.0e-7 relative), 0 in float64; 2 ulps
        assert step() == pytest.approx(loss, rel=2 * float(numpy.finfo(dtype).eps), abs=0)
    # every parameter stays within |p| < 0.0625 (init bound <= 0.045, three small steps);
    # the floor forms dz and sums the bias gradients differently from tinynet's kernels:
    # measured 1 float64 ulp (6.9e-18), float32 bit-identical; 4 ulps at that magnitude
    atol = 4 * float(numpy.spacing(numpy.array(0.05, dtype)))
    for (name, a), b in zip(ours.named_parameters(), floor.parameters(), strict=True):
        assert not numpy.array_equal(a.data, base().state_dict()[name]), name   # it moved
        assert numpy.abs(a.data).max() < 0.0625, name         # the magnitude atol is for
        numpy.testing.assert_allclose(b.data, a.data, err_msg=name, rtol=0, atol=atol)


@pytest.mark.usefixtures("torch")
def test_floor_times_every_side(tmp_path, capsys):
    from benchmarks.floor import SIDES, main
    rc = main(["--batches", "8", "--repeats", "1", "--pause", "0", "--min-block", "0.001",
               "--rewarm", "0", "--threads", "1", "--out", str(tmp_path)])
    assert rc == 0
    data = json.loads((tmp_path / "floor.json").read_text())
    (row,) = data["results"]
    assert set(row["seconds"]) == set(SIDES)
    assert row["tinynet_over_floor"] == pytest.approx(
        row["seconds"]["tinynet"] / row["seconds"]["numpy floor"])
    md = (tmp_path / "floor.md").read_text()
    assert "\n| 8 | " in md and "NumPy floor is " in md
    assert capsys.readouterr().out.startswith("# base MLP floor on ")
