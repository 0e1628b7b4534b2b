"""The studies in ``experiments/``: every study's ``--quick`` run produces its table, JSON and
plots; the runner lists and resolves studies; runs repeat exactly; the PyTorch twin
agrees with tinynet; finished runs are reused only when their settings match."""

from __future__ import annotations

import json
import os

import numpy as np
import pytest

from experiments import common, registry
from experiments.__main__ import main

PNG_MAGIC = b"\x89PNG\r\n\x1a\n"
SLOW = {"s4", "s7", "s9"}   # about 15-25 s each in quick mode on one core


def _has_torch() -> bool:
    return common.torch_available()


@pytest.fixture
def data_env(shared_data, monkeypatch):
    monkeypatch.setenv("TINYNET_DATA", shared_data)
    return shared_data


def _study_params():
    out = []
    for name in registry.STUDIES:
        marks = [pytest.mark.slow] if name in SLOW else []
        out.append(pytest.param(name, marks=marks, id=name))
    return out


@pytest.mark.parametrize("name", _study_params())
def test_quick_run_writes_table_json_and_plots(name, data_env, tmp_path, capsys):
    mod = registry.load_study(name)
    if mod is None:
        pytest.skip(f"experiments/{registry.STUDIES[name]}.py does not exist yet")
    assert mod.NAME == name and isinstance(mod.TITLE, str) and mod.TITLE
    out_dir = tmp_path / name
    result = mod.run(str(out_dir), quick=True, seed=0, use_torch=_has_torch())
    assert set(result) >= {"table", "files", "summary"}
    assert "QUICK" in capsys.readouterr().out.upper()
    table = (out_dir / "table.md").read_text()
    assert "|---" in table, "table.md holds no markdown table"
    assert table == result["table"]
    pngs = [f for f in result["files"] if f.endswith(".png")]
    assert pngs, f"{name} wrote no plot"
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
    if name == "s1" and _has_torch():
        _check_twin_agrees(hist["runs"])


def _check_twin_agrees(runs):
    """Same init, same batches: the twin's curve equals tinynet's up to rounding."""
    for key in ("base_lr0.1", "base_lr0.01"):
        ours, twin = runs[key]["tinynet"], runs[key]["torch"]
        n = len(twin["test_acc"])
        assert n >= 1
        np.testing.assert_allclose(ours["test_acc"][:n], twin["test_acc"], atol=0.5)
        np.testing.assert_allclose(ours["train_loss"][:n], twin["train_loss"], rtol=1e-3)


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
    text = open(ss.summarize(str(tmp_path))).read()
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
    np.testing.assert_allclose(both["torch"]["steps"], alone["tinynet"]["steps"], rtol=1e-4)
