"""The main job: ``python -m tinynet train`` trains the base MLP on Fashion-MNIST for one epoch.

Runs the real command in a subprocess (about 10 s on two cores) and checks what a user
sees: exit status 0, a test accuracy of at least 77 % after one epoch (PyTorch's twin
reaches 78-79 % unshuffled), and the two files it promises.
"""

from __future__ import annotations

import json
import math
import os
import re
import subprocess
import sys

import numpy as np
import pytest

import tinynet
from tinynet import data
from tinynet.data import DataLoader
from tinynet.train import global_grad_norm

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _env() -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = REPO + os.pathsep + env.get("PYTHONPATH", "")
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        env.setdefault(var, "1")  # CI shares two cores among the tests
    return env


def _tinynet(args: list, cwd, timeout: float = 120) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tinynet", *args], cwd=cwd, env=_env(),
                          capture_output=True, text=True, timeout=timeout, check=False)


def test_train_main_job(tmp_path):
    if data.find("fashion-mnist", "train") is None or data.find("fashion-mnist", "test") is None:
        pytest.skip("Fashion-MNIST is not available locally (make data installs it)")
    out = tmp_path / "run"
    proc = _tinynet(["train", "--no-progress", "--out", str(out)], tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "669,706 parameters" in proc.stdout
    history = json.loads((out / "history.json").read_text())
    assert history["epoch"] == [1]
    assert history["stopped"] is None
    assert history["test_acc"][-1] >= 77.0, history["test_acc"]
    assert 0 < history["test_loss"][-1] < 1.0
    assert len(history["steps"]) == math.ceil(60000 / 64)
    assert all(math.isfinite(v) for v in history["steps"])
    assert f"{history['test_acc'][-1]:.2f}%" in proc.stdout
    png = (out / "curves.png").read_bytes()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and len(png) > 1000


def test_train_rejects_bad_arguments(tmp_path):
    proc = _tinynet(["train", "--model", "nope", "--out", str(tmp_path / "x")], tmp_path)
    assert proc.returncode == 2
    assert "unknown model 'nope'" in proc.stderr and "'base'" in proc.stderr
    assert "Traceback" not in proc.stderr


BAD_ARGUMENTS = [
    (["--lr", "-1"], "argument --lr: expected a finite number >= 0, got '-1'"),
    (["--lr", "nan"], "argument --lr: expected a finite number >= 0, got 'nan'"),
    (["--lr", "x"], "argument --lr: expected a finite number >= 0, got 'x'"),
    (["--momentum", "-1"], "argument --momentum: expected a finite number >= 0, got '-1'"),
    (["--batch-size", "0"], "argument --batch-size: expected a whole number >= 1, got '0'"),
    (["--batch-size", "-5"], "argument --batch-size: expected a whole number >= 1, got '-5'"),
    (["--checkpoint-every", "0"], "argument --checkpoint-every: expected a whole number >= 1"),
    (["--seed", "-1"], "argument --seed: expected a whole number >= 0, got '-1'"),
    (["--epochs", "0"], "argument --epochs: expected a whole number >= 1, got '0'"),
    (["--epochs", "-1"], "argument --epochs: expected a whole number >= 1, got '-1'"),
    (["--model", "nope"], "unknown model 'nope': expected one of ['base', "),
    (["--data", "nope"], "unknown data set 'nope': expected one of ["),
    (["--device", "tpu"], "argument --device: invalid choice: 'tpu'"),
]


@pytest.mark.parametrize("args, message", BAD_ARGUMENTS, ids=lambda v: " ".join(v)
                         if isinstance(v, list) else "")
def test_train_bad_arguments_one_line_exit_2_nothing_loaded(tmp_path, monkeypatch, capsys,
                                                            args, message):
    import tinynet.cli

    def never(*a, **k):
        raise AssertionError("loaded something before checking the arguments")

    monkeypatch.setattr(tinynet.models, "build", never)
    monkeypatch.setattr(tinynet.data, "load", never)
    with pytest.raises(SystemExit) as e:
        tinynet.cli.main(["train", "--out", str(tmp_path / "out"), *args])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == ""
    assert err.count("\n") == 1 and err.startswith("tinynet train: error: "), err
    assert message in err, err
    assert "see tinynet train --help" in err


def test_train_out_folder_that_cannot_be_created(tmp_path):
    (tmp_path / "file").write_text("x")
    proc = _tinynet(["train", "--out", str(tmp_path / "file" / "run")], tmp_path)
    assert proc.returncode == 2, proc.stderr
    assert proc.stdout == ""  # no model line: nothing built, no data read
    assert proc.stderr.count("\n") == 1, proc.stderr
    assert f"cannot create the output folder (--out) {tmp_path / 'file' / 'run'}" in proc.stderr



def test_train_bad_thread_count_is_one_line_and_creates_nothing(tmp_path, monkeypatch, capsys):
    import tinynet.cli

    def never(*a, **k):
        raise AssertionError("loaded something before checking the environment")

    monkeypatch.setattr(tinynet.models, "build", never)
    monkeypatch.setattr(tinynet.data, "load", never)
    monkeypatch.setenv("TINYNET_NUM_THREADS", "abc")
    with pytest.raises(SystemExit) as e:
        tinynet.cli.main(["train", "--out", str(tmp_path / "thr")])
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("tinynet train: error: environment variable "
                          "TINYNET_NUM_THREADS='abc': expected a whole number >= 1"), err
    assert not (tmp_path / "thr").exists()   # not even the checkpoint folder


def test_train_help_describes_every_option_with_its_default():
    from tinynet.cli import train_parser
    parser = train_parser()
    for action in parser._actions:
        if action.dest == "help":
            continue
        assert action.help and len(action.help) > 15, action.dest
        assert "(default: " in action.help, action.dest
    text = parser.format_help()
    for name in tinynet.models.MODELS:  # the names themselves, not a Python path
        assert re.search(rf"(?<![\w-]){re.escape(name)}(?![\w-])", text), name
    assert "MODELS" not in text


def test_train_data_line_says_where_the_data_came_from(tmp_path, monkeypatch, capsys):
    import tinynet.cli
    from tinynet.data import datasets

    def reader(folder, split):
        rng = np.random.default_rng(0)
        return rng.integers(0, 256, (16, 28, 28), np.uint8), np.arange(16) % 10

    root = tmp_path / "my-data"
    root.mkdir()
    monkeypatch.setitem(datasets.DATASETS, "tiny", datasets.DatasetInfo(
        name="tiny", files={"train": [], "test": []}, md5={}, mirrors=[], reader=reader))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    assert tinynet.cli.main(["train", "--data", "tiny", "--data-root", str(root), "--out",
                             str(tmp_path / "out"), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert f"data tiny: 16 train, 16 test images from {root}\n" in out, out


def test_unknown_command(tmp_path):
    proc = _tinynet(["frobnicate"], tmp_path)
    assert proc.returncode == 2
    assert "unknown command 'frobnicate'" in proc.stderr


# ------------------------------------------------------------------ fit and evaluate
def _blobs(n=240, seed=0):
    """Three separable classes of 4x4 "images" (uint8), the class in the brightness."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, size=n)
    images = rng.integers(0, 40, size=(n, 4, 4)) + 100 * labels[:, None, None]
    return images.astype(np.uint8), labels


def _model():
    tinynet.manual_seed(0)
    return tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(16, 8), tinynet.ReLU(),
                              tinynet.Linear(8, 3))


def test_fit_history_and_callback():
    train, test = _blobs(240, 0), _blobs(90, 1)
    model = _model()
    seen = []

    def callback(step, loss, m):
        seen.append((step, loss, m[1].weight.grad is not None))

    history = tinynet.fit(model, tinynet.CrossEntropyLoss(), tinynet.SGD(model.parameters(),
                          lr=0.5), train, test, epochs=3, batch_size=16, callback=callback,
                          progress=False, log=None)
    steps_per_epoch = math.ceil(240 / 16)
    assert history["epoch"] == [1, 2, 3]
    assert len(history["steps"]) == 3 * steps_per_epoch
    assert [s for s, _, _ in seen] == list(range(3 * steps_per_epoch))
    assert all(has_grad for _, _, has_grad in seen)  # grads are there before the step
    assert [loss for _, loss, _ in seen] == history["steps"]
    assert history["stopped"] is None
    assert history["train_loss"][-1] < history["train_loss"][0]
    assert history["test_acc"][-1] > 90.0  # separable blobs
    # the recorded test figures are what evaluate() gives for the final model
    loss, acc = tinynet.evaluate(model, tinynet.CrossEntropyLoss(), test)
    assert loss == pytest.approx(history["test_loss"][-1], rel=1e-6)
    assert acc == history["test_acc"][-1]


def test_evaluate_counts_hits_and_restores_mode():
    images, labels = _blobs(50, 2)
    model = _model().train()
    model[1].weight.data[...] = 0.0
    model[3].weight.data[...] = 0.0
    model[3].bias.data[...] = np.float32([0.0, 1.0, 0.0])  # always predicts class 1
    loss, acc = tinynet.evaluate(model, tinynet.CrossEntropyLoss(), (images, labels),
                                 batch_size=7)
    assert acc == pytest.approx(100.0 * np.mean(labels == 1))
    p1 = np.exp(1.0) / (np.exp(1.0) + 2.0)
    expected = np.mean(np.where(labels == 1, -np.log(p1), -np.log((1 - p1) / 2)))
    assert loss == pytest.approx(expected, rel=1e-5)
    assert model.training


def test_fit_stops_on_divergence_with_a_message():
    model = _model()
    with np.errstate(over="ignore", invalid="ignore"):  # the overflow is the point
        history = tinynet.fit(model, tinynet.CrossEntropyLoss(),
                              tinynet.SGD(model.parameters(), lr=1e30), _blobs(), None,
                              epochs=3, batch_size=16, progress=False, log=None)
    assert history["stopped"] is not None
    assert "diverged" in history["stopped"] and "epoch 1" in history["stopped"]
    assert len(history["steps"]) < math.ceil(240 / 16)
    assert all(math.isfinite(v) for v in history["steps"])  # the bad loss ends training


def test_fit_max_steps():
    model = _model()
    history = tinynet.fit(model, tinynet.CrossEntropyLoss(), tinynet.SGD(model.parameters(),
                          lr=0.1), _blobs(), None, epochs=5, batch_size=16, max_steps=20,
                          progress=False, log=None)
    assert len(history["steps"]) == 20 and history["epoch"] == [1, 2]


class _DeviceLoader(DataLoader):
    """Batches delivered on the ``xp`` backend under test (the stand-in has no device name)."""

    def __init__(self, backend, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.backend = backend

    def __iter__(self):
        for x, y in super().__iter__():
            yield self.backend.asarray(x), self.backend.asarray(y)


def test_fit_and_evaluate_on_every_backend(xp):
    """The training loop itself holds no host call: same history on every backend."""
    histories = []
    for backend in (None, xp):
        model = _model()
        if backend is not None:
            model = backend.to(model)
            train = _DeviceLoader(backend, *_blobs(240, 0), batch_size=16)
            test = _DeviceLoader(backend, *_blobs(90, 1), batch_size=30)
        else:
            train, test = _blobs(240, 0), _blobs(90, 1)
        histories.append(tinynet.fit(
            model, tinynet.CrossEntropyLoss(), tinynet.SGD(model.parameters(), lr=0.5,
                                                           momentum=0.5),
            train, test, epochs=2, batch_size=16, progress=False, log=None,
            callback=lambda step, loss, m: global_grad_norm(m)))
    host, dev = histories
    assert len(host["steps"]) == 2 * 240 // 16 and len(host["test_acc"]) == 2
    if xp.name != "cupy":
        # numpy and the strict stand-in run the very same NumPy kernels on the CPU:
        # measured bit-identical, so nothing less than equality is right
        np.testing.assert_array_equal(dev["steps"], host["steps"])
        np.testing.assert_array_equal(dev["test_acc"], host["test_acc"])
        return
    # CuPy's GPU kernels round differently from NumPy's (float32 reductions, cuBLAS)
    np.testing.assert_allclose(dev["steps"], host["steps"], rtol=1e-4)
    # at most one of the 90 test samples may land on the other side of a decision boundary
    np.testing.assert_allclose(dev["test_acc"], host["test_acc"], atol=100 / 90 + 1e-9)
