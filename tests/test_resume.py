"""Exact resume: a training run killed at any point and resumed ends bit-identical.

Each test runs small training jobs in subprocesses (an MLP with dropout on synthetic
8x8 images, shuffled every epoch, SGD with momentum or Adam, 200 steps, a checkpoint
every few steps), kills one with SIGKILL or SIGTERM at a random step or a random
moment, resumes it, and compares the final weights, the optimizer state and the
history (per-step losses included) with an uninterrupted run: equal bit for bit.
"""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys

import numpy as np
import pytest

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

# The child: trains, optionally kills itself (inside the step, after the backward
# and before the optimizer step, the worst place), and writes its final state.
CHILD = r'''
import json, os, signal, sys, threading, time
import numpy as np
import tinynet
from tinynet import Dropout, Flatten, Linear, ReLU, Sequential

out, ckdir, opt_name, kill_sig, kill_step, kill_after = sys.argv[1:7]
kill_step, kill_after = int(kill_step), float(kill_after)
tinynet.manual_seed(3)
rng = np.random.default_rng(1)
images = rng.integers(0, 256, (400, 8, 8), dtype=np.uint8)
labels = images.reshape(400, -1)[:, :5].argmax(axis=1)
model = Sequential(Flatten(), Linear(64, 32), ReLU(), Dropout(0.3), Linear(32, 5))
if opt_name == "sgd":
    opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9)
else:
    opt = tinynet.Adam(model.parameters(), lr=0.01)
if kill_sig == "SIGKILL_IN_SAVE":  # die with the kill_step-th checkpoint half written
    import tinynet.serialization as ser
    real_savez, saves = np.savez, [0]
    def savez(f, **arrays):
        saves[0] += 1
        real_savez(f, **arrays)
        if saves[0] == kill_step:
            f.truncate(f.tell() // 2)
            f.flush()
            os.kill(os.getpid(), signal.SIGKILL)
    ser.numpy.savez = savez
    kill_sig = "none"
sig = getattr(signal, kill_sig) if kill_sig != "none" else None

def callback(step, loss, model):
    if sig is not None and step == kill_step:
        os.kill(os.getpid(), sig)

if sig is not None and kill_after > 0:  # kill at a random moment, maybe mid-save
    threading.Timer(kill_after, os.kill, (os.getpid(), sig)).start()
    callback = None

try:
    history = tinynet.fit(model, tinynet.CrossEntropyLoss(), opt, (images, labels),
                          (images[:100], labels[:100]), epochs=4, batch_size=8,
                          shuffle=True, seed=5, progress=False, log=print,
                          callback=callback,
                          checkpoint_dir=None if ckdir == "none" else ckdir,
                          checkpoint_every=7, resume=ckdir != "none")
except tinynet.train.Interrupted as e:
    print(json.dumps({"interrupted": e.signal, "step": e.step, "checkpoint": e.checkpoint}))
    sys.exit(3)
arrays = {"model/" + k: v for k, v in model.state_dict().items()}
for i, st in opt.state.items():
    for name, v in st.items():
        arrays[f"opt/{i}/{name}"] = np.asarray(v)
np.savez(os.path.join(out, "final.npz"), **arrays)
keep = {k: history[k] for k in ("epoch", "train_loss", "train_acc", "test_loss",
                                "test_acc", "steps", "stopped")}
with open(os.path.join(out, "history.json"), "w") as f:
    json.dump(keep, f)
'''


def _run(tmp_path, name: str, ckdir, opt: str = "sgd", sig: str = "none",
         kill_step: int = -1, kill_after: float = 0.0) -> subprocess.CompletedProcess:
    out = tmp_path / name
    out.mkdir(exist_ok=True)
    script = tmp_path / "child.py"
    script.write_text(CHILD)
    env = dict(os.environ, PYTHONPATH=REPO + os.pathsep + os.environ.get("PYTHONPATH", ""),
               OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1", MKL_NUM_THREADS="1")
    return subprocess.run(
        [sys.executable, str(script), str(out), str(ckdir), opt, sig, str(kill_step),
         str(kill_after)], capture_output=True, text=True, env=env, timeout=120,
        check=False)


def _final(tmp_path, name: str) -> tuple[dict, dict]:
    with np.load(tmp_path / name / "final.npz", allow_pickle=False) as z:
        arrays = {k: z[k] for k in z.files}
    history = json.loads((tmp_path / name / "history.json").read_text())
    return arrays, history


def _assert_identical(a: tuple, b: tuple, context: str) -> None:
    (wa, ha), (wb, hb) = a, b
    assert sorted(wa) == sorted(wb), context
    for k in wa:
        assert wa[k].dtype == wb[k].dtype and wa[k].shape == wb[k].shape, f"{context}: {k}"
        assert np.array_equal(wa[k], wb[k]), (
            f"{context}: {k} differs in {int((wa[k] != wb[k]).sum())} of {wa[k].size} "
            f"entries")
    assert ha == hb, f"{context}: histories differ"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs, without any checkpointing, one per optimizer."""
    tmp = tmp_path_factory.mktemp("reference")
    out = {}
    for opt in ("sgd", "adam"):
        r = _run(tmp, opt, "none", opt)
        assert r.returncode == 0, r.stderr
        out[opt] = _final(tmp, opt)
        assert len(out[opt][1]["steps"]) == 200  # 4 epochs of 50 batches
    return out


@pytest.mark.parametrize("opt", ["sgd", "adam"])
def test_sigkill_at_random_step_then_resume_is_bit_identical(tmp_path, reference, opt):
    kill_step = random.randrange(1, 199)
    ck = tmp_path / "ck"
    r = _run(tmp_path, "run", ck, opt, "SIGKILL", kill_step)
    assert r.returncode == -signal.SIGKILL, (kill_step, r.stdout, r.stderr)
    assert not (tmp_path / "run" / "final.npz").exists()
    r = _run(tmp_path, "run", ck, opt)
    assert r.returncode == 0, (kill_step, r.stderr)
    if kill_step >= 7:  # a checkpoint existed before the kill
        assert "resumed from" in r.stdout, r.stdout
    _assert_identical(_final(tmp_path, "run"), reference[opt],
                      f"{opt}, SIGKILL inside step {kill_step + 1}")


def test_sigkill_twice_then_resume_is_bit_identical(tmp_path, reference):
    first = random.randrange(10, 100)
    second = random.randrange(first + 1, 199)
    ck = tmp_path / "ck"
    for k in (first, second):
        r = _run(tmp_path, "run", ck, "sgd", "SIGKILL", k)
        assert r.returncode == -signal.SIGKILL, (k, r.stderr)
    r = _run(tmp_path, "run", ck, "sgd")
    assert r.returncode == 0, r.stderr
    _assert_identical(_final(tmp_path, "run"), reference["sgd"],
                      f"SIGKILL at steps {first + 1} and {second + 1}")


def test_sigkill_at_random_moment_then_resume_is_bit_identical(tmp_path, reference):
    """The kill lands wherever the timer fires: in a step, in evaluation, mid-save."""
    ck = tmp_path / "ck"
    delays = []
    for _ in range(3):  # start-up takes ~0.6 s, training with checkpoints ~0.8 s more
        delay = random.uniform(0.5, 1.5)
        delays.append(delay)
        r = _run(tmp_path, "run", ck, "sgd", "SIGKILL", -1, delay)
        if r.returncode == 0:  # finished before the timer fired (a fast machine)
            break
        assert r.returncode == -signal.SIGKILL, (delays, r.stderr)
    r = _run(tmp_path, "run", ck, "sgd")
    assert r.returncode == 0, (delays, r.stderr)
    _assert_identical(_final(tmp_path, "run"), reference["sgd"], f"kills after {delays} s")


def test_sigterm_writes_checkpoint_then_resume_is_bit_identical(tmp_path, reference):
    kill_step = random.randrange(1, 199)
    ck = tmp_path / "ck"
    r = _run(tmp_path, "run", ck, "sgd", "SIGTERM", kill_step)
    assert r.returncode == 3, (kill_step, r.stdout, r.stderr)
    report = json.loads(r.stdout.strip().splitlines()[-1])
    # The step in progress when the signal came is completed, then saved.
    assert report == {"interrupted": "SIGTERM", "step": kill_step + 1,
                      "checkpoint": str(ck / "checkpoint.npz")}
    assert f"checkpoint written to {ck / 'checkpoint.npz'}" in r.stdout
    import tinynet
    assert tinynet.load(ck / "checkpoint.npz").progress["step"] == kill_step + 1
    r = _run(tmp_path, "run", ck, "sgd")
    assert r.returncode == 0, r.stderr
    assert f"{kill_step + 1} steps done" in r.stdout
    _assert_identical(_final(tmp_path, "run"), reference["sgd"],
                      f"SIGTERM inside step {kill_step + 1}")


def test_sigint_writes_checkpoint_and_resumes(tmp_path, reference):
    kill_step = random.randrange(1, 199)
    ck = tmp_path / "ck"
    r = _run(tmp_path, "run", ck, "adam", "SIGINT", kill_step)
    assert r.returncode == 3, (kill_step, r.stdout, r.stderr)
    assert json.loads(r.stdout.strip().splitlines()[-1])["interrupted"] == "SIGINT"
    r = _run(tmp_path, "run", ck, "adam")
    assert r.returncode == 0, r.stderr
    _assert_identical(_final(tmp_path, "run"), reference["adam"],
                      f"SIGINT inside step {kill_step + 1}")


def test_resume_of_a_finished_run_changes_nothing(tmp_path, reference):
    ck = tmp_path / "ck"
    assert _run(tmp_path, "a", ck).returncode == 0
    before = (ck / "checkpoint.npz").read_bytes()
    r = _run(tmp_path, "b", ck)
    assert r.returncode == 0, r.stderr
    assert "resumed from" in r.stdout
    assert (ck / "checkpoint.npz").read_bytes() == before
    _assert_identical(_final(tmp_path, "b"), reference["sgd"], "resumed after the end")


def test_sigkill_while_writing_a_checkpoint_keeps_the_previous_one(tmp_path, reference):
    nth_save = random.randrange(2, 25)
    ck = tmp_path / "ck"
    r = _run(tmp_path, "run", ck, "sgd", "SIGKILL_IN_SAVE", nth_save)
    assert r.returncode == -signal.SIGKILL, (nth_save, r.stderr)
    leftovers = sorted(p.name for p in ck.iterdir() if p.name != "checkpoint.npz")
    # the torn write, and the lock file of the killed run (its pid inside)
    assert len(leftovers) == 2 and leftovers[0].endswith(".part"), leftovers
    assert leftovers[1] == "checkpoint.lock"
    dead_pid = int((ck / "checkpoint.lock").read_text())
    import tinynet
    ckpt = tinynet.load(ck / "checkpoint.npz")  # the previous checkpoint, whole
    assert 0 < ckpt.progress["step"] < 200
    r = _run(tmp_path, "run", ck, "sgd")
    assert r.returncode == 0, r.stderr
    assert f"took over the lock of process {dead_pid}" in r.stdout, r.stdout
    # the torn file is gone, and the lock is released at the end
    assert [p.name for p in ck.iterdir()] == ["checkpoint.npz"]
    _assert_identical(_final(tmp_path, "run"), reference["sgd"],
                      f"SIGKILL inside checkpoint write {nth_save}")


# ------------------------------------------------------- resuming a checkpoint of another run
def _tiny_fit(folder, batch_size=4, run_info=None, resume=False):
    import tinynet
    tinynet.manual_seed(0)
    model = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(6, 3))
    rng = np.random.default_rng(0)
    data = (rng.integers(0, 256, (12, 2, 3), dtype=np.uint8), rng.integers(0, 3, 12))
    return tinynet.fit(model, tinynet.CrossEntropyLoss(), tinynet.SGD(model.parameters(),
                       lr=0.1), data, epochs=1, batch_size=batch_size, progress=False,
                       checkpoint_dir=str(folder), resume=resume, run_info=run_info)


def test_resume_names_only_the_settings_that_differ(tmp_path):
    from tinynet.errors import DataError
    _tiny_fit(tmp_path, run_info={"model": "base", "lr": 0.1})
    with pytest.raises(DataError, match=r"written by another run \(model 'base', batch_size "
                                        r"4\), but this run has model 'bn', batch_size 8; use "
                                        r"the same settings or another checkpoint folder$"):
        _tiny_fit(tmp_path, batch_size=8, run_info={"model": "bn", "lr": 0.1}, resume=True)
    with pytest.raises(DataError, match=r"\(batch_size 4\), but this run has batch_size 6;"):
        _tiny_fit(tmp_path, batch_size=6, resume=True)


def test_resume_from_a_checkpoint_tinynet_save_wrote_says_so(tmp_path):
    import tinynet
    from tinynet.errors import DataError
    model = tinynet.Sequential(tinynet.Flatten(), tinynet.Linear(6, 3))
    tinynet.save(str(tmp_path / "checkpoint.npz"), model)
    with pytest.raises(DataError, match=r"not a training run's checkpoint .*saved by "
                                        r"tinynet.save\?.*another checkpoint folder"):
        _tiny_fit(tmp_path, resume=True)
