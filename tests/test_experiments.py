"""The studies in ``experiments/``: every study's ``--quick`` run produces its table, JSON and
plots, all marked QUICK; the runner lists and resolves studies and writes nothing tracked
unless asked; runs repeat exactly, resume after an interruption and are reused only when
their settings match; the PyTorch twin agrees with tinynet; the studies' helpers
(parameter formulas, JPEG quality, seed spreads, head tuning, the report's times)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tarfile

import numpy as np
import pytest

from experiments import common, registry
from experiments.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLOW = {"s4", "s7", "s9"}   # about 15-25 s each in quick mode on one core


def _has_torch() -> bool:
    return common.torch_available()


@pytest.fixture(scope="session")
def _session_cache(tmp_path_factory):
    """One tmp cache for the session: CIFAR-10 JPEGs are decoded once, never into ~/.cache."""
    return str(tmp_path_factory.mktemp("tinynet-cache"))


@pytest.fixture
def data_env(shared_data, monkeypatch, _session_cache):
    monkeypatch.setenv("TINYNET_DATA", shared_data)
    monkeypatch.setenv("TINYNET_CACHE", _session_cache)
    return shared_data


def _study_params():
    out = []
    for name in registry.STUDIES:
        marks = [pytest.mark.slow] if name in SLOW else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _study_params())
def test_quick_run_writes_table_json_and_plots(name, data_env, tmp_path, capsys, monkeypatch):
    mod = registry.load_study(name)
    assert mod is not None, f"experiments/{registry.STUDIES[name]}.py does not exist"
    assert mod.NAME == name and isinstance(mod.TITLE, str) and mod.TITLE
    saved, real_save = {}, common.save_plot

    def spy(fig, path, quick=False):
        saved[os.path.abspath(path)] = quick
        return real_save(fig, path, quick)
    monkeypatch.setattr(common, "save_plot", spy)
    out_dir = tmp_path / name
    result = mod.run(str(out_dir), quick=True, seed=0, use_torch=_has_torch())
    assert set(result) >= {"table", "files", "summary"}
    assert "QUICK" in capsys.readouterr().out.upper()
    table = (out_dir / "table.md").read_text()
    assert "|---" in table, "table.md holds no markdown table"
    assert table == result["table"]
    headings = [line for line in table.splitlines() if line.startswith("#")]
    assert headings and all("QUICK" in line for line in headings), headings
    pngs = [f for f in result["files"] if f.endswith(".png")]
    assert pngs, f"{name} wrote no plot"
    for f in pngs:   # every plot went through save_plot and was stamped QUICK
        assert saved.get(os.path.abspath(f)) is True, f"{f} not marked QUICK"
    for f in result["files"]:
        assert os.path.isfile(f), f"{name} lists {f} but did not write it"
    for f in pngs:
        with open(f, "rb") as fh:
            head = fh.read(8)
        assert head == PNG_MAGIC and os.path.getsize(f) > 2000, f"{f} is not a real PNG"
    jsons = [f for f in os.listdir(out_dir) if f.endswith(".json")]
    assert jsons, f"{name} wrote no JSON"
    if name != "s8":   # S8 is written by the gradcheck engineer with its own JSON layout
        hist = json.loads((out_dir / "histories.json").read_text())
        assert hist["quick"] is True and hist["seed"] == 0 and hist["runs"]
        meta = json.loads((out_dir / "meta.json").read_text())
        assert meta["quick"] is True and meta["seconds"] > 0 and meta["machine"]
        assert meta["code"] and meta["finished"]
    if name == "s1" and _has_torch():
        _check_twin_agrees(hist["runs"])


def _check_twin_agrees(runs):
    """Same init, same batches: the twin's curve equals tinynet's up to rounding."""
    for key in ("base_lr0.1", "base_lr0.01"):
        ours, twin = runs[key]["tinynet"], runs[key]["torch"]
        n = len(twin["test_acc"])
        assert n >= 1
        # float32 on both sides, summed in other orders: at most one of the QUICK_TEST
        # images may flip at a decision boundary (measured: identical accuracies)
        np.testing.assert_allclose(ours["test_acc"][:n], twin["test_acc"],
                                   atol=100 / common.QUICK_TEST + 1e-9, rtol=0)
        # epoch-mean losses: measured 2e-8 relative; 1e-6 is ~8 float32 ulps
        np.testing.assert_allclose(ours["train_loss"][:n], twin["train_loss"], rtol=1e-6)


def _tiny_data(n=192, seed=3):
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, size=(n, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, size=n).astype(np.int64)
    return (images[:128], labels[:128]), (images[128:], labels[128:])


def test_runs_repeat_exactly_and_reuse_needs_same_settings(capsys):
    from tinynet import models
    train, test = _tiny_data()
    a = common.train_pair("a", lambda: models.mlp(784, (16,)), ("sgd", 0.1), train, test, 2,
                          use_torch=False)
    b = common.train_pair("a", lambda: models.mlp(784, (16,)), ("sgd", 0.1), train, test, 2,
                          use_torch=False)
    assert a["tinynet"]["steps"] == b["tinynet"]["steps"]
    assert a["tinynet"]["test_acc"] == b["tinynet"]["test_acc"]
    previous = {"a": common._clean(a)}
    capsys.readouterr()
    c = common.train_pair("a", lambda: models.mlp(784, (16,)), ("sgd", 0.1), train, test, 2,
                          use_torch=False, previous=previous)
    assert "reused" in capsys.readouterr().out
    assert c["tinynet"]["steps"] == previous["a"]["tinynet"]["steps"]
    d = common.train_pair("a", lambda: models.mlp(784, (16,)), ("sgd", 0.05), train, test, 2,
                          use_torch=False, previous=previous)
    assert "reused" not in capsys.readouterr().out
    assert d["tinynet"]["steps"] != a["tinynet"]["steps"]


def test_to_torch_twin_has_same_outputs():
    torch = pytest.importorskip("torch", reason="the twin needs torch")
    import tinynet
    from tinynet import models
    tinynet.manual_seed(1)
    model = models.mlp(784, (32, 16), act="tanh")
    twin = common.to_torch(model)
    x = np.random.default_rng(0).random((5, 1, 28, 28), dtype=np.float32)
    with torch.no_grad():
        ref = twin(torch.from_numpy(x)).numpy()
    np.testing.assert_allclose(model(x), ref, rtol=1e-5, atol=1e-6)


def test_outcome_marks_divergence_and_stuck_runs():
    assert common.outcome({"stopped": "loss became nan", "test_acc": [10.0]}) == "diverged"
    assert common.outcome({"stopped": None, "test_acc": [10.0] * 5,
                           "epoch": [1, 2, 3, 4, 5]}).endswith("(stuck)")
    assert common.outcome({"stopped": None, "test_acc": [87.25], "epoch": [1]}) == "87.25"
    assert common.outcome(None) == "-"


def test_md_table_formats_numbers():
    t = common.md_table(["a", "b", "c"], [[1234567, 0.5, None], ["x", float("nan"), "y"]])
    lines = t.strip().splitlines()
    assert lines[0] == "| a | b | c |" and lines[1] == "|---|---|---|"
    assert lines[2] == "| 1,234,567 | 0.50 | - |" and lines[3] == "| x | nan | y |"


def test_registry_resolves_names_and_rejects_unknown():
    assert registry.resolve("S1") == "s1"
    assert registry.resolve("s01") == "s1"
    assert registry.resolve("11") == "s11"
    assert registry.resolve("s07_grid") == "s7"
    with pytest.raises(ValueError, match="unknown study"):
        registry.resolve("s12")


def test_list_shows_every_study_and_missing_ones_as_unavailable(capsys, monkeypatch):
    real = registry.load_study
    monkeypatch.setattr(registry, "load_study",
                        lambda s: None if registry.resolve(s) == "s8" else real(s))
    assert main(["--list"]) == 0
    out = capsys.readouterr().out
    for name in registry.STUDIES:
        assert f"{name} " in out
    assert "s08_fd" in out and "unavailable" in out
    assert main(["s8", "--quick", "--out", "unused-folder"]) == 0
    assert "unavailable" in capsys.readouterr().out
    assert main(["s99"]) == 2


def test_report_gathers_tables_and_plots(data_env, tmp_path):
    from experiments import report, s11_perceptron
    s11_perceptron.run(str(tmp_path / "s11"), quick=True, use_torch=False)
    path = report.write_report(str(tmp_path))
    with open(path) as f:
        text = f.read()
    assert s11_perceptron.TITLE in text and "![" in text and "s11/decision.png" in text
    assert "Not run yet" in text        # the other studies have no outputs here
    assert "QUICK" in text


def test_simplecnn_seeds_helpers_parse_seeds_and_rank_test():
    from experiments import simplecnn_seeds as ss
    assert ss.parse_seeds("0-3,7") == [0, 1, 2, 3, 7]
    assert ss.parse_seeds("5") == [5]
    # Complete separation of three against three: U = 0, z = -4.5 / sqrt(5.25).
    u, p = ss.mann_whitney([1.0, 2.0, 3.0], [4.0, 5.0, 6.0])
    assert u == 0 and p == pytest.approx(0.0495, abs=5e-4)
    u, p = ss.mann_whitney([1.0, 2.0], [1.0, 2.0])     # ties count one half
    assert u == 2 and p == pytest.approx(1.0)


def test_simplecnn_seeds_summary_tabulates_both_frameworks(tmp_path):
    from experiments import simplecnn_seeds as ss
    for name, accs in (("tinynet", [81.0, 83.0, 84.0]), ("torch", [82.5, 85.0, 79.0])):
        runs = [{"seed": i, "test_acc": a, "train_loss": 0.5, "train_seconds": 30.0 + i}
                for i, a in enumerate(accs)]
        common.write_json(str(tmp_path / f"{name}.json"),
                          {"framework": name, "machine": "m", "threads": 1, "date": "d",
                           "runs": runs})
    with open(ss.summarize(str(tmp_path))) as f:
        text = f.read()
    assert "| tinynet | 3 | 83.00 | 82.67 |" in text
    assert "| torch | 3 | 82.50 | 82.17 |" in text
    assert "2/3" in text and "Mann-Whitney U (tinynet vs PyTorch) = 5.0" in text
    assert "| 2 | 84.00 | 79.00 |" in text


def test_interrupted_run_resumes_from_its_epoch_checkpoint(tmp_path, monkeypatch, capsys):
    """A run stopped in its third epoch resumes after its second and ends exactly as an
    uninterrupted run: same weights, optimizer state, data order and histories."""
    import tinynet
    from tinynet import models
    train, test = _tiny_data()
    kw = {"batch_size": 32, "shuffle": True, "seed": 5, "use_torch": False,
          "grad_norm_steps": 6, "step_acc": True}
    build = lambda: models.mlp(784, (16,), batchnorm=True)  # a 0-d buffer too
    ref = common.train_pair("r", build, ("adam", 0.01), train, test, 4, **kw)
    ckpt = tmp_path / "cache"
    real_fit, calls = tinynet.fit, []

    def failing_fit(*args, **kwargs):
        calls.append(1)
        if len(calls) == 3:
            raise KeyboardInterrupt
        return real_fit(*args, **kwargs)
    monkeypatch.setattr(tinynet, "fit", failing_fit)
    with pytest.raises(KeyboardInterrupt):
        common.train_pair("r", build, ("adam", 0.01), train, test, 4, checkpoint_dir=str(ckpt),
                          **kw)
    assert os.listdir(ckpt) == ["r.npz"]
    monkeypatch.setattr(tinynet, "fit", real_fit)
    capsys.readouterr()
    again = common.train_pair("r", build, ("adam", 0.01), train, test, 4,
                              checkpoint_dir=str(ckpt), **kw)
    assert "resumed" in capsys.readouterr().out
    for key in ("epoch", "steps", "step_acc", "grad_norm", "train_loss", "test_acc"):
        assert again["tinynet"][key] == ref["tinynet"][key], key
    assert len(ref["tinynet"]["step_acc"]) == len(ref["tinynet"]["steps"]) == 4 * 4
    assert os.listdir(ckpt) == []          # removed once the run is finished
    # a checkpoint of other settings is not resumed
    with pytest.raises(KeyboardInterrupt):
        monkeypatch.setattr(tinynet, "fit", failing_fit)
        calls.clear()
        common.train_pair("r", build, ("adam", 0.01), train, test, 4,
                          checkpoint_dir=str(ckpt), **kw)
    monkeypatch.setattr(tinynet, "fit", real_fit)
    capsys.readouterr()
    other = common.train_pair("r", build, ("adam", 0.02), train, test, 4,
                              checkpoint_dir=str(ckpt), **kw)
    out = capsys.readouterr().out
    assert "resumed" not in out and "other settings" in out
    assert other["tinynet"]["steps"] != ref["tinynet"]["steps"]


def test_missing_twin_alone_is_trained_from_the_same_start(capsys):
    torch = pytest.importorskip("torch", reason="the twin needs torch")  # noqa: F841
    from tinynet import models
    train, test = _tiny_data()
    build = lambda: models.mlp(784, (16,))
    alone = common.train_pair("a", build, ("sgd", 0.1), train, test, 2, use_torch=False)
    previous = {"a": common._clean(dict(alone, provenance={"tinynet": "earlier"}))}
    capsys.readouterr()
    both = common.train_pair("a", build, ("sgd", 0.1), train, test, 2, use_torch=True,
                             previous=previous)
    assert "training its PyTorch twin" in capsys.readouterr().out
    assert both["tinynet"]["steps"] == previous["a"]["tinynet"]["steps"]   # not retrained
    assert both["provenance"]["tinynet"] == "earlier" and both["provenance"]["torch"]
    assert both["twin_start"]["relative_difference"] < 1e-5
    # float32 step losses of the twin vs tinynet: measured 1.05e-7 relative (1 ulp);
    # 1e-6 is ~8 float32 ulps
    np.testing.assert_allclose(both["torch"]["steps"], alone["tinynet"]["steps"], rtol=1e-6)


REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _git_status() -> str | None:
    try:
        r = subprocess.run(["git", "-C", REPO, "status", "--porcelain", "--untracked-files=all"],
                           capture_output=True, text=True, timeout=60, check=False)
    except OSError:
        return None
    return r.stdout if r.returncode == 0 else None


def test_a_run_without_record_leaves_the_checkout_as_it_was(data_env, tmp_path):
    """The command line's default output is runs/experiments (git-ignored): a quick study
    run from the repository's root changes no tracked file and adds no untracked one."""
    before = _git_status()
    if before is None:
        pytest.skip("not a git checkout")
    env = dict(os.environ, TINYNET_DATA=data_env, TINYNET_NUM_THREADS="1")
    r = subprocess.run([sys.executable, "-m", "experiments", "s11", "--quick", "--no-torch"],
                       cwd=REPO, env=env, capture_output=True, text=True, timeout=300,
                       check=False)
    assert r.returncode == 0, r.stderr
    assert "runs/experiments/s11" in r.stdout
    assert os.path.isfile(os.path.join(REPO, "runs", "experiments", "s11", "table.md"))
    assert _git_status() == before


def test_record_writes_results_and_refuses_quick(capsys, monkeypatch, tmp_path):
    import experiments.__main__ as cli
    assert cli.DEFAULT_OUT == os.path.join("runs", "experiments")
    assert cli.RESULTS == os.path.join(REPO, "results")
    for where in (["--record"], ["--out", cli.RESULTS],
                  ["--out", os.path.join(cli.RESULTS, "s8")]):
        with pytest.raises(SystemExit) as e:    # a QUICK run never lands in results/
            main(["s11", "--quick", *where])
        assert e.value.code == 2
        assert "quick runs are not a replication and are not written into results/" in \
            capsys.readouterr().err


def test_bad_arguments_and_failing_studies_are_one_line(capsys, tmp_path, monkeypatch):
    (tmp_path / "a-file").write_text("")
    for args, text in ((["s1", "--seed", "-1"], "--seed: expected a whole number >= 0"),
                       (["s1", "--out", str(tmp_path / "a-file")], "is a file, not a folder")):
        with pytest.raises(SystemExit) as e:
            main(args)
        assert e.value.code == 2 and text in capsys.readouterr().err
    import experiments.s11_perceptron as s11
    from tinynet.errors import DataError

    def missing(*a, **k):
        raise DataError("fashion-mnist: not found")

    monkeypatch.setattr(s11, "run", missing)
    assert main(["s11", "--quick", "--out", str(tmp_path / "o")]) == 1
    assert capsys.readouterr().err == \
        "python -m experiments: s11: error: fashion-mnist: not found\n"


def test_each_study_module_runs_as_python_m(tmp_path):
    """``python -m experiments.s01_lr --help`` is ``python -m experiments s1 --help``."""
    import subprocess
    import sys
    for module in ("s01_lr", "s08_fd", "s11_perceptron"):
        proc = subprocess.run([sys.executable, "-m", f"experiments.{module}", "--bogus"],
                              capture_output=True, text=True, cwd=tmp_path, timeout=120,
                              env=dict(os.environ, PYTHONPATH=REPO))
        assert proc.returncode == 2
        assert proc.stderr.startswith(f"python -m experiments.{module}: error: "
                                      f"unrecognized arguments: --bogus"), proc.stderr
    with pytest.raises(SystemExit) as e:   # --record and --out are exclusive
        main(["s11", "--record", "--out", str(tmp_path)])
    assert e.value.code == 2


def test_save_plot_stamps_quick_in_the_corner(monkeypatch, tmp_path):
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    import tinynet.plot
    seen = []
    monkeypatch.setattr(tinynet.plot, "save_figure",
                        lambda fig, path: seen.append([t.get_text() for t in fig.texts]))
    for quick in (True, False):
        fig, _ = plt.subplots()
        common.save_plot(fig, str(tmp_path / "a.png"), quick)
        plt.close(fig)
    assert any("QUICK" in t for t in seen[0]) and not any("QUICK" in t for t in seen[1])


def test_quick_headings_marks_every_heading():
    text = "## A\n\n| x |\n|---|\n\n### B\nplain # not a heading\n"
    assert common.quick_headings(text) == ("## QUICK: A\n\n| x |\n|---|\n\n### QUICK: B\n"
                                           "plain # not a heading\n")


def test_report_headline_is_the_training_time_of_all_runs(tmp_path):
    from experiments import report
    folder = tmp_path / "s6"
    folder.mkdir()
    (folder / "table.md").write_text("## t\n\n| a |\n|---|\n| 1 |\n")
    common.write_json(str(folder / "meta.json"),
                      {"study": "s6", "title": "T", "quick": False, "seed": 0, "seconds": 3.2,
                       "train_seconds": 1062.0, "code": "abc123", "machine": "m",
                       "summary": "s", "finished": "2026", "files": []})
    with open(report.write_report(str(tmp_path))) as f:
        text = f.read()
    row = next(line for line in text.splitlines() if line.startswith("| s6 |"))
    assert "**17 min 42 s**" in row and "| 3 s |" in row and "abc123" in row
    assert report.study_time({"seconds": 13.0, "train_seconds": 7.0}) == 13.0
    assert common.hms(3725) == "1 h 02 min" and common.hms(59.6) == "1 min 00 s"


def test_seed_spread_counts_diverged_runs_apart():
    h = [{"test_acc": [80.0, 87.0]}, {"test_acc": [81.0, 87.5]},
         {"test_acc": [10.0], "stopped": "nan"}]
    assert common.seed_spread(h) == "87.25 ± 0.35 (87.00-87.50, n=2); diverged 1/3"
    assert common.seed_spread(h, epoch=1) == "80.50 ± 0.71 (80.00-81.00, n=2); diverged 1/3"
    assert common.spread([1.0]) == "1.00 (n=1)" and common.spread([]) == "-"


def test_s2_formulas_and_budget_shapes():
    import tinynet
    from experiments import s02_width_depth as s2
    from tinynet import models
    for m, k in ((512, 2), (100, 5), (7, 1)):
        built = tinynet.count_parameters(models.mlp(784, (m,) * k))
        assert s2.uniform_mlp_params(784, m, k) == built
        assert s2.report_004_params(784, m, k) == built - m     # the missing biases
    for ratios in s2.SHAPES.values():
        widths = s2.widths_for_budget(ratios, s2.BUDGET)
        assert [w // widths[ratios.index(1)] for w in widths] == list(ratios)
        n = tinynet.count_parameters(s2.budget_mlp(widths, 0.2))
        assert n == s2.mlp_params(widths) and abs(n - s2.BUDGET) < 0.01 * s2.BUDGET
        bigger = tuple(w + r for w, r in zip(widths, ratios))    # the next scale is farther
        assert abs(s2.mlp_params(bigger) - s2.BUDGET) >= abs(n - s2.BUDGET)


def test_s7_reads_the_jpeg_quality_and_reencodes(tmp_path):
    from PIL import Image

    from experiments import s07_grid as s7
    rng = np.random.default_rng(0)
    img = rng.integers(0, 256, (32, 32, 3), dtype=np.uint8)
    for q in (75, 30):
        jpg = tmp_path / "x.jpg"
        Image.fromarray(img).save(jpg, quality=q)
        with tarfile.open(tmp_path / f"c{q}.tar.gz", "w:gz") as tar:
            tar.add(jpg, arcname="train/cat/0001.jpg")
        assert s7.jpeg_quality(str(tmp_path / f"c{q}.tar.gz")) == (q, "4:2:0")
    smooth = np.repeat(np.linspace(0, 255, 32, dtype=np.uint8)[None, :, None], 32, 0)
    images = np.stack([np.broadcast_to(smooth, (32, 32, 3))] * 2)
    hi, lo = s7.reencode(images, 90), s7.reencode(images, 10)
    assert hi.shape == images.shape and hi.dtype == np.uint8
    assert s7.psnr(images, hi) > s7.psnr(images, lo) and s7.psnr(images, images) == float("inf")


def test_s10_head_tuning_chooses_on_validation_only():
    from experiments import s10_autoencoder as s10
    from tinynet import Linear, Sequential
    rng = np.random.default_rng(0)
    x = rng.normal(size=(600, 4)).astype(np.float32)
    y = (x[:, 0] > 0).astype(np.int64)
    tuned = s10.tune_head("t", lambda: Sequential(Linear(4, 2)), (x[:400], y[:400]),
                          (x[400:500], y[400:500]), (x[500:], y[500:]), (0.5, 1e-6), 3, 0)
    best = tuned["best"]
    assert best["lr"] == 0.5 and best["val_acc"] > 90
    g = tuned["grid"]["0.5"]
    j = g["epoch"].index(best["epoch"])
    assert best["val_acc"] == max(g["val_acc"]) == g["val_acc"][j]
    assert best["test_acc"] == g["test_acc"][j]


def test_cifar_source_falls_back_to_the_official_archive(tmp_path, monkeypatch):
    monkeypatch.setenv("TINYNET_DATA", str(tmp_path))
    monkeypatch.setenv("TINYNET_CACHE", str(tmp_path / "cache"))
    import tinynet.data.datasets as ds
    monkeypatch.setattr(ds, "SYSTEM_DIR", str(tmp_path / "none"))
    monkeypatch.setattr(common, "cifar_source", "auto")
    assert common.cifar_name() == "cifar10"
    (tmp_path / "cifar10-jpeg").mkdir()
    (tmp_path / "cifar10-jpeg" / "cifar10-jpeg.tar.gz").write_bytes(b"")
    assert common.cifar_name() == "cifar10-jpeg"
    monkeypatch.setattr(common, "cifar_source", "official")
    assert common.cifar_name() == "cifar10"
    assert common.data_label("cifar10") == "CIFAR-10 (official)"
