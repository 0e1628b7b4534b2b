"""The main job: ``python -m tinynet train`` trains the base MLP on Fashion-MNIST for one epoch.

Runs the real command in a subprocess (about 10 s on two cores) and checks what a user
sees: exit status 0, a test accuracy of at least 77 % after one epoch (PyTorch's twin
reaches 78-79 % unshuffled), and the two files it promises.
"""

from __future__ import annotations

import json
import math
import os
import subprocess
import sys

import pytest

from tinynet import data

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


def test_unknown_command(tmp_path):
    proc = _tinynet(["frobnicate"], tmp_path)
    assert proc.returncode == 2
    assert "unknown command 'frobnicate'" in proc.stderr
