"""Faults around a training run: a full disk, a read-only folder, a folder in the way,
a second run on the same folder, a lock left by a killed run.

Each must end in one clear :class:`tinynet.errors.CheckpointError` (one line and exit
status 2 from ``tinynet train`` when it is found before training, 1 during), with the
last good checkpoint kept, nothing else changed, and the other run unharmed.
"""

from __future__ import annotations

import errno
import json
import os
import subprocess
import sys
import tempfile
import time

import numpy as np
import pytest

import tinynet
import tinynet.cli
from tinynet import SGD, CrossEntropyLoss, Flatten, Linear, ReLU, Sequential
from tinynet.errors import CheckpointError
from tinynet.rundir import LOCK_NAME, RunLock, lock_owner

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
_IMAGES = np.random.default_rng(0).integers(0, 256, (24, 2, 3), dtype=np.uint8)
_LABELS = np.arange(24) % 3


def _fit(ckdir, resume=False, callback=None, log=None):
    tinynet.manual_seed(0)
    model = Sequential(Flatten(), Linear(6, 5), ReLU(), Linear(5, 3))
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    history = tinynet.fit(model, CrossEntropyLoss(), opt, (_IMAGES, _LABELS), epochs=2,
                          batch_size=8, shuffle=True, progress=False, log=log,
                          callback=callback, checkpoint_dir=ckdir, checkpoint_every=2,
                          resume=resume)
    return model, history


def _failing_savez(monkeypatch, nth: int, error: OSError):
    """numpy.savez fails on its ``nth`` call, after writing part of the file."""
    real, calls = np.savez, [0]

    def savez(f, **arrays):
        calls[0] += 1
        real(f, **arrays)
        if calls[0] == nth:
            f.truncate(f.tell() // 2)
            raise error

    monkeypatch.setattr(np, "savez", savez)


def test_disk_full_during_a_save_keeps_the_last_good_checkpoint(tmp_path, monkeypatch):
    ref, h_ref = _fit(None)
    # 3 batches an epoch; saves after step 2, at the end of epoch 1 (step 3), step 4 ...
    _failing_savez(monkeypatch, 3, OSError(errno.ENOSPC, "No space left on device"))
    with pytest.raises(CheckpointError) as e:
        _fit(tmp_path)
    msg = str(e.value)
    assert "\n" not in msg
    assert msg.startswith(f"{tmp_path / 'checkpoint.npz'}: could not write the checkpoint "
                          f"after step 4 (No space left on device); the last good "
                          f"checkpoint (epoch 2, step 3) is kept"), msg
    assert "resume" in msg
    assert os.listdir(tmp_path) == ["checkpoint.npz"]  # no .part, lock released
    assert tinynet.load(tmp_path / "checkpoint.npz").progress["step"] == 3
    monkeypatch.undo()
    model, history = _fit(tmp_path, resume=True)  # nothing lost: the run completes
    assert history["steps"] == h_ref["steps"]
    for k, v in ref.state_dict().items():
        assert np.array_equal(model.state_dict()[k], v), k


def test_failed_first_save_says_none_was_written(tmp_path, monkeypatch):
    _failing_savez(monkeypatch, 1, OSError(errno.EDQUOT, "Disk quota exceeded"))
    with pytest.raises(CheckpointError, match=r"after step 2 \(Disk quota exceeded\); no "
                                              r"checkpoint had been written yet"):
        _fit(tmp_path)
    assert os.listdir(tmp_path) == []


def _not_writable(monkeypatch, folder):
    """Creating a file in ``folder`` fails as in a read-only folder (works as root too)."""
    real = tempfile.mkstemp

    def mkstemp(*args, dir=None, **kwargs):
        if dir is not None and os.path.abspath(dir) == os.path.abspath(folder):
            raise PermissionError(errno.EACCES, "Permission denied")
        return real(*args, dir=dir, **kwargs)

    monkeypatch.setattr(tempfile, "mkstemp", mkstemp)


@pytest.mark.parametrize("resume", [False, True])
def test_read_only_folder_is_refused_before_training(tmp_path, monkeypatch, resume):
    _fit(tmp_path)  # a finished run's checkpoint, which resume would continue
    before = (tmp_path / "checkpoint.npz").read_bytes()
    _not_writable(monkeypatch, tmp_path)
    steps = []
    with pytest.raises(CheckpointError, match=rf"cannot write in the checkpoint folder "
                                              rf"{tmp_path}: Permission denied"):
        tinynet.fit(*_model_and_opt(), (_IMAGES, _LABELS), epochs=3, progress=False,
                    log=None, checkpoint_dir=tmp_path, resume=resume,
                    callback=lambda *a: steps.append(a))
    assert steps == []  # not one step was trained
    assert (tmp_path / "checkpoint.npz").read_bytes() == before


def _model_and_opt():
    model = Sequential(Flatten(), Linear(6, 3))
    return model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1)


@pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() == 0,
                    reason="root writes into read-only folders; the simulated test covers it")
def test_really_read_only_folder_is_refused_before_training(tmp_path):
    _fit(tmp_path)
    os.chmod(tmp_path, 0o555)
    try:
        with pytest.raises(CheckpointError, match="cannot write in the checkpoint folder"):
            _fit(tmp_path, resume=True)
    finally:
        os.chmod(tmp_path, 0o755)


def test_folder_named_like_the_checkpoint_is_refused_before_training(tmp_path):
    (tmp_path / "checkpoint.npz").mkdir()
    steps = []
    with pytest.raises(CheckpointError, match=r"checkpoint.npz is a folder, not a checkpoint "
                                              r"file; remove it or choose another"):
        _fit(tmp_path, callback=lambda *a: steps.append(a))
    assert steps == []
    file_in_the_way = tmp_path / "plain-file"
    file_in_the_way.write_text("x")
    with pytest.raises(CheckpointError, match="the checkpoint folder is a file, not a folder"):
        _fit(file_in_the_way)


def test_stale_lock_of_a_dead_process_is_taken_over(tmp_path):
    dead = subprocess.run([sys.executable, "-c", "import os; print(os.getpid())"],
                          capture_output=True, text=True, check=True)
    pid = int(dead.stdout)
    (tmp_path / LOCK_NAME).write_text(f"{pid}\n")
    torn = tmp_path / ".checkpoint.npz.abc123.part"
    torn.write_bytes(b"half a checkpoint")
    assert lock_owner(tmp_path) is None  # nobody holds it
    lines = []
    _fit(tmp_path, log=lines.append)
    assert any(f"took over the lock of process {pid}" in line for line in lines), lines
    assert sorted(os.listdir(tmp_path)) == ["checkpoint.npz"]  # torn write and lock gone


def test_lock_is_held_while_training_and_released_after(tmp_path):
    seen = []
    _fit(tmp_path, callback=lambda *a: seen.append(lock_owner(tmp_path)))
    assert seen and set(seen) == {os.getpid()}
    assert lock_owner(tmp_path) is None and not (tmp_path / LOCK_NAME).exists()


def test_second_run_on_a_locked_folder_is_refused_and_deletes_nothing(tmp_path):
    part = tmp_path / ".checkpoint.npz.inflight.part"  # the first run's save in progress
    with RunLock(tmp_path) as lock:
        assert lock.fd is not None
        part.write_bytes(b"being written")
        with pytest.raises(CheckpointError, match=rf"the checkpoint folder {tmp_path} is in "
                                                  rf"use by another run \(process "
                                                  rf"{os.getpid()}, lock file "):
            _fit(tmp_path, resume=True)
        assert part.exists()
    assert not (tmp_path / LOCK_NAME).exists()


# Two real processes: the first trains and, at step 5, waits for the test to run the
# second on the same folder; the second must be refused, the first must end unharmed.
TWO_RUNS_CHILD = r'''
import json, os, sys, time
import numpy as np
import tinynet
from tinynet import Flatten, Linear, ReLU, Sequential

folder, role, flags = sys.argv[1], sys.argv[2], sys.argv[3]
rng = np.random.default_rng(1)
images = rng.integers(0, 256, (160, 4, 4), dtype=np.uint8)
labels = images.reshape(160, -1)[:, :3].argmax(axis=1)
tinynet.manual_seed(3)
model = Sequential(Flatten(), Linear(16, 8), ReLU(), Linear(8, 3))
opt = tinynet.SGD(model.parameters(), lr=0.05, momentum=0.9)

def callback(step, loss, model):
    if role == "first" and step == 5:
        open(os.path.join(flags, "first-waiting"), "w").close()
        deadline = time.time() + 60
        while not os.path.exists(os.path.join(flags, "second-done")):
            if time.time() > deadline:
                sys.exit("the test never let the first run go on")
            time.sleep(0.02)

try:
    tinynet.fit(model, tinynet.CrossEntropyLoss(), opt, (images, labels), epochs=2,
                batch_size=8, shuffle=True, progress=False, log=print, callback=callback,
                checkpoint_dir=None if folder == "none" else folder, checkpoint_every=1,
                resume=role == "second")
except tinynet.TinynetError as e:
    print(json.dumps({"error": type(e).__name__, "message": str(e)}))
    sys.exit(4)
print(json.dumps({"weights": {k: v.tolist() for k, v in model.state_dict().items()}}))
'''


def test_two_processes_on_one_folder(tmp_path):
    script = tmp_path / "child.py"
    script.write_text(TWO_RUNS_CHILD)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1")
    folder, flags = tmp_path / "ck", tmp_path / "flags"
    flags.mkdir()

    def run(role, where):
        return [sys.executable, str(script), str(where), role, str(flags)]

    ref = subprocess.run(run("reference", "none"), capture_output=True, text=True, env=env,
                         timeout=120, check=True)
    first = subprocess.Popen(run("first", folder), stdout=subprocess.PIPE,
                             stderr=subprocess.PIPE, text=True, env=env)
    try:
        deadline = time.time() + 60
        while not (flags / "first-waiting").exists():
            assert first.poll() is None, first.communicate()
            assert time.time() < deadline, "the first run never reached step 5"
            time.sleep(0.02)
        assert lock_owner(folder) == first.pid
        part = folder / ".checkpoint.npz.inflight.part"  # as if it were saving now
        part.write_bytes(b"being written")
        second = subprocess.run(run("second", folder), capture_output=True, text=True,
                                env=env, timeout=120, check=False)
        assert second.returncode == 4, (second.stdout, second.stderr)
        report = json.loads(second.stdout.strip().splitlines()[-1])
        assert report["error"] == "CheckpointError"
        assert f"is in use by another run (process {first.pid}" in report["message"]
        assert part.exists()  # the second run deleted nothing
        part.unlink()
    finally:
        (flags / "second-done").touch()
        out, err = first.communicate(timeout=120)
    assert first.returncode == 0, err
    weights = json.loads(out.strip().splitlines()[-1])["weights"]
    assert weights == json.loads(ref.stdout.strip().splitlines()[-1])["weights"]
    assert sorted(os.listdir(folder)) == ["checkpoint.npz"]


# ----------------------------------------------------------------- the same from the CLI
# (tiny_data: the fixture in conftest.py)
def _cli(tmp_path, *args):
    return tinynet.cli.main(["train", "--data", "tiny", "--data-root", str(tmp_path),
                             "--out", str(tmp_path / "out"), "--no-progress",
                             "--batch-size", "16", *args])


def _one_line_exit_2(capsys, call) -> str:
    with pytest.raises(SystemExit) as e:
        call()
    assert e.value.code == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1 and err.startswith("tinynet train: error: "), err
    return err


def test_cli_refuses_a_folder_in_use_before_loading_anything(tmp_path, tiny_data, capsys):
    ckdir = tmp_path / "out" / "checkpoints"
    with RunLock(ckdir):
        err = _one_line_exit_2(capsys, lambda: _cli(tmp_path, "--resume"))
    assert f"in use by another run (process {os.getpid()}" in err
    assert tiny_data == []


@pytest.mark.parametrize("kind", ["a folder", "a FIFO (named pipe)"])
def test_cli_refuses_a_folder_or_fifo_named_checkpoint_npz(tmp_path, tiny_data, capsys, kind):
    path = tmp_path / "out" / "checkpoints" / "checkpoint.npz"
    path.parent.mkdir(parents=True)
    if kind == "a folder":
        path.mkdir()
    elif hasattr(os, "mkfifo"):
        os.mkfifo(path)
    else:
        pytest.skip("no FIFOs on this system")
    err = _one_line_exit_2(capsys, lambda: _cli(tmp_path, "--resume"))
    assert f"checkpoint.npz is {kind}, not a checkpoint file" in err
    assert tiny_data == []


def test_cli_refuses_a_read_only_checkpoint_folder(tmp_path, tiny_data, capsys, monkeypatch):
    ckdir = tmp_path / "ck"
    ckdir.mkdir()
    _not_writable(monkeypatch, ckdir)
    err = _one_line_exit_2(capsys, lambda: _cli(tmp_path, "--checkpoint-dir", str(ckdir)))
    assert f"cannot write in the checkpoint folder {ckdir}: Permission denied" in err
    assert tiny_data == []


def test_cli_disk_full_is_one_line(tmp_path, tiny_data, capsys, monkeypatch):
    _failing_savez(monkeypatch, 2, OSError(errno.ENOSPC, "No space left on device"))
    assert _cli(tmp_path, "--checkpoint-every", "1") == 1
    _, err = capsys.readouterr()
    assert err.count("\n") == 1 and "Traceback" not in err, err
    assert "could not write the checkpoint after step 2 (No space left on device); the " \
           "last good checkpoint (epoch 1, step 1) is kept" in err
    ck = tmp_path / "out" / "checkpoints" / "checkpoint.npz"
    assert tinynet.load(ck).progress["step"] == 1
