"""tinynet.save / load / restore: round trips, architecture mismatches, atomic writes,
the DataLoader's resume state and the ``tinynet train --resume`` command."""

from __future__ import annotations

import contextlib
import json
import os
import re
import signal
import subprocess
import sys
import zipfile

import numpy as np
import pytest

import tinynet
from tinynet import (
    SGD,
    Adam,
    CrossEntropyLoss,
    DataError,
    Dropout,
    Flatten,
    Linear,
    ReLU,
    Sequential,
    StateDictError,
)
from tinynet.data.loader import DataLoader
from tinynet.serialization import HEADER_KEY, Checkpoint, restore

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _mlp(hidden: int = 6) -> Sequential:
    return Sequential(Flatten(), Linear(12, hidden), ReLU(), Dropout(0.2), Linear(hidden, 3))


def _train_steps(model, opt, steps: int = 3, seed: int = 0, to=lambda a: a) -> None:
    rng = np.random.default_rng(seed)
    loss_fn = CrossEntropyLoss()
    for _ in range(steps):
        x = to(rng.standard_normal((5, 3, 4)).astype(model.dtype))
        t = to(rng.integers(0, 3, 5))
        y = model(x)
        loss_fn(y, t)
        opt.zero_grad()
        model.backward(loss_fn.backward(), input_grad=False)
        opt.step()


def _host(a) -> np.ndarray:
    return tinynet.backend.to_numpy(a)


def _snapshot(model, opt=None) -> dict:
    snap = {f"m/{k}": _host(v).copy() for k, v in model.state_dict().items()}
    if opt is not None:
        for i, st in opt.state.items():
            for name, v in st.items():
                snap[f"o/{i}/{name}"] = _host(v).copy() if hasattr(v, "shape") else v
    return snap


def _assert_same(a: dict, b: dict) -> None:
    assert sorted(a) == sorted(b)
    for k, v in a.items():
        if isinstance(v, np.ndarray):
            assert v.dtype == b[k].dtype and np.array_equal(v, b[k]), k
        else:
            assert v == b[k], k


@pytest.mark.parametrize("make_opt", [
    lambda p: SGD(p, lr=0.1, momentum=0.9, nesterov=True, weight_decay=1e-3),
    lambda p: Adam(p, lr=0.01, betas=(0.8, 0.99), eps=1e-6),
], ids=["sgd-nesterov", "adam"])
def test_round_trip_restores_model_optimizer_and_rng(tmp_path, xp, make_opt):
    tinynet.manual_seed(1)
    model = xp.to(_mlp())
    opt = make_opt(list(model.parameters()))
    _train_steps(model, opt, to=xp.asarray)
    path = tmp_path / "ck.npz"
    tinynet.save(path, model, opt, note="first", config={"lr": 0.1})
    rng_after_save = tinynet.random.default_generator().random(4)
    saved = _snapshot(model, opt)

    ckpt = tinynet.load(path)
    assert isinstance(ckpt, Checkpoint) and ckpt.version == 1
    assert ckpt.meta == {"note": "first", "config": {"lr": 0.1}}
    assert list(ckpt.model_state) == list(model.state_dict())
    assert all(isinstance(v, np.ndarray) for v in ckpt.model_state.values())

    tinynet.manual_seed(99)  # a different model, optimizer and generator
    other = xp.to(_mlp())
    other_opt = make_opt(list(other.parameters()))
    _train_steps(other, other_opt, steps=1, seed=7, to=xp.asarray)
    restore(path, other, other_opt)
    _assert_same(_snapshot(other, other_opt), saved)
    assert other_opt.param_groups[0].keys() == opt.param_groups[0].keys()
    for k, v in opt.param_groups[0].items():
        if k != "params":
            assert other_opt.param_groups[0][k] == v, k
    # The global generator continues exactly where it stood when saved.
    assert np.array_equal(tinynet.random.default_generator().random(4), rng_after_save)
    # And training on from both (dropout masks from the same generator state) gives
    # the same weights.
    state = tinynet.random.get_rng_state()
    _train_steps(model, opt, seed=3, to=xp.asarray)
    tinynet.random.set_rng_state(state)
    _train_steps(other, other_opt, seed=3, to=xp.asarray)
    assert np.array_equal(_host(model[1].weight.data), _host(other[1].weight.data))


def test_load_state_dict_from_checkpoint_by_hand(tmp_path):
    model = _mlp()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.5)
    _train_steps(model, opt)
    tinynet.save(tmp_path / "ck.npz", model, opt)
    ckpt = tinynet.load(tmp_path / "ck.npz")
    fresh = _mlp()
    fresh_opt = SGD(fresh.parameters(), lr=0.3)
    fresh.load_state_dict(ckpt["model_state"])
    fresh_opt.load_state_dict(ckpt.optimizer_state)
    _assert_same(_snapshot(fresh, fresh_opt), _snapshot(model, opt))
    assert fresh_opt.param_groups[0]["momentum"] == 0.5


def test_model_only_checkpoint_has_no_optimizer(tmp_path):
    model = _mlp()
    tinynet.save(tmp_path / "m.npz", model, rng_state=None)
    ckpt = tinynet.load(tmp_path / "m.npz")
    assert ckpt.optimizer_state is None and ckpt.rng_state is None
    with pytest.raises(StateDictError, match="no optimizer state"):
        restore(ckpt, _mlp(), SGD(_mlp().parameters(), lr=0.1))


def test_other_architecture_lists_keys_and_shapes_and_changes_nothing(tmp_path):
    model = _mlp(hidden=6)
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train_steps(model, opt)
    path = tmp_path / "ck.npz"
    tinynet.save(path, model, opt)

    wider = _mlp(hidden=8)
    wider_opt = SGD(wider.parameters(), lr=0.1, momentum=0.9)
    _train_steps(wider, wider_opt)
    before = _snapshot(wider, wider_opt)
    rng_before = tinynet.random.get_rng_state()
    with pytest.raises(StateDictError) as e:
        restore(path, wider, wider_opt)
    msg = str(e.value)
    assert str(path) in msg
    assert "1.weight: got (6, 12), expected (8, 12)" in msg
    assert "4.weight: got (3, 6), expected (3, 8)" in msg
    _assert_same(_snapshot(wider, wider_opt), before)
    assert tinynet.random.get_rng_state() == rng_before

    deeper = Sequential(Flatten(), Linear(12, 6), ReLU(), Dropout(0.2), Linear(6, 3),
                        ReLU(), Linear(3, 3))
    with pytest.raises(StateDictError, match=r"missing keys: 6\.weight, 6\.bias"):
        restore(path, deeper)


def test_optimizer_mismatch_leaves_the_model_unchanged(tmp_path):
    model = _mlp()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train_steps(model, opt)
    path = tmp_path / "ck.npz"
    tinynet.save(path, model, opt)
    target = _mlp()
    params = list(target.parameters())
    target_opt = SGD(params[:2], lr=0.1)  # only the first layer: other group size
    before = _snapshot(target, target_opt)
    with pytest.raises(StateDictError, match="groups of sizes"):
        restore(path, target, target_opt)
    _assert_same(_snapshot(target, target_opt), before)


def test_save_is_atomic_when_the_write_fails_midway(tmp_path, monkeypatch):
    model = _mlp()
    path = tmp_path / "ck.npz"
    tinynet.save(path, model, epoch=1)
    good = path.read_bytes()

    real_savez = np.savez

    def crash_midway(f, **arrays):
        real_savez(f, **arrays)           # the data reach the temporary file ...
        f.truncate(f.tell() // 2)         # ... half of it, then the process "dies"
        raise OSError("disk full (simulated)")

    monkeypatch.setattr(np, "savez", crash_midway)
    _train_steps(model, SGD(model.parameters(), lr=0.1))
    with pytest.raises(OSError, match="simulated"):
        tinynet.save(path, model, epoch=2)
    assert path.read_bytes() == good
    assert tinynet.load(path).meta == {"epoch": 1}
    assert os.listdir(tmp_path) == ["ck.npz"]  # no temporary file left behind


def test_save_rejects_what_would_need_pickle(tmp_path):
    model = _mlp()
    with pytest.raises(TypeError, match="cannot store set"):
        tinynet.save(tmp_path / "a.npz", model, tags={1, 2})
    model.register_buffer("names", np.array(["a", "b"], dtype=object))
    with pytest.raises(TypeError, match="dtype object"):
        tinynet.save(tmp_path / "b.npz", model)
    assert not os.listdir(tmp_path)


def test_caller_mistakes_are_named_before_any_file_is_touched(tmp_path):
    """Wrong arguments are the caller's error, named as such, never 'a corrupt checkpoint',
    and save writes nothing when it refuses."""
    model = _mlp()
    with pytest.raises(TypeError, match="save: model must be a tinynet Module, got list"):
        tinynet.save(tmp_path / "a.npz", [1, 2])
    with pytest.raises(TypeError, match="save: optimizer must be .* got int"):
        tinynet.save(tmp_path / "a.npz", model, 3)
    folder = tmp_path / "runs"
    folder.mkdir()
    with pytest.raises(tinynet.CheckpointError, match=r"is a folder; expected the path of a "
                                                      r"file.*checkpoint\.npz"):
        tinynet.save(folder, model)
    assert sorted(os.listdir(tmp_path)) == ["runs"] and not os.listdir(folder)
    path = tinynet.save(tmp_path / "c.npz", model)
    with pytest.raises(tinynet.ArgumentError, match=r"max_bytes .* got a Sequential \(pass "
                                                     r"a model as model=\.\.\.\)"):
        tinynet.load(path, model)
    for bad in ("10", -1, 0, 2.5, True):
        with pytest.raises(tinynet.ArgumentError, match=re.escape(f"got {bad!r}")):
            tinynet.load(path, max_bytes=bad)
    with pytest.raises(TypeError, match="load: model must be a tinynet Module or None, "
                                        "got list"):
        tinynet.load(path, model=[1])
    with pytest.raises(TypeError, match="load: optimizer must be"):
        tinynet.load(path, model=model, optimizer="sgd")
    for good in (10**6, np.int64(10**6), 1e6):         # whole numbers of any type
        assert tinynet.load(path, max_bytes=good, model=model).path == str(path)
    from tinynet import checkpoint_format, serialization
    assert serialization.MAX_JSON_STRINGS == checkpoint_format.MAX_JSON_STRINGS  # read alias


def test_missing_file_and_plain_npy_are_data_errors(tmp_path):
    with pytest.raises(DataError, match="not found"):
        tinynet.load(tmp_path / "nothing.npz")
    np.save(tmp_path / "w.npy", np.zeros(3))
    with pytest.raises(DataError, match=r"w\.npy.*single \.npy array"):
        tinynet.load(tmp_path / "w.npy")
    np.savez(tmp_path / "plain.npz", w=np.zeros(3))
    with pytest.raises(DataError, match=f"plain.npz.*no '{HEADER_KEY}' member"):
        tinynet.load(tmp_path / "plain.npz")


def test_checkpoint_is_a_plain_npz_without_pickle(tmp_path):
    model = _mlp()
    opt = Adam(model.parameters())
    _train_steps(model, opt)
    path = tmp_path / "ck.npz"
    tinynet.save(path, model, opt)
    with np.load(path, allow_pickle=False) as z:  # numpy itself reads it without pickle
        assert "model/1.weight" in z.files and "optimizer/0/exp_avg" in z.files
        header = json.loads(z[HEADER_KEY].tobytes())
    assert header["format"] == "tinynet-checkpoint"
    assert header["optimizer"]["state"]["0"]["step"] == {"value": 3}
    with zipfile.ZipFile(path) as zf:
        assert all(n.endswith(".npy") for n in zf.namelist())


def test_newer_format_version_is_refused(tmp_path):
    model = _mlp()
    path = tmp_path / "ck.npz"
    tinynet.save(path, model)
    with np.load(path) as z:
        arrays = {k: z[k] for k in z.files}
    header = json.loads(arrays[HEADER_KEY].tobytes())
    header["version"] = 99
    arrays[HEADER_KEY] = np.frombuffer(json.dumps(header).encode(), np.uint8)
    np.savez(path, **arrays)
    with pytest.raises(DataError, match="format version 99.*newer tinynet"):
        tinynet.load(path)


# ----------------------------------------------------------------- DataLoader state
def _batches(loader, count=None):
    out = []
    for i, (x, y) in enumerate(loader):
        if count is not None and i >= count:
            break
        out.append((x.copy(), y.copy()))
    return out


@pytest.mark.parametrize("stop_after", [0, 1, 4, 5])
def test_loader_state_dict_resumes_the_same_order(stop_after):
    images = np.arange(23 * 2 * 2, dtype=np.uint8).reshape(23, 2, 2)
    labels = np.arange(23)
    ref = DataLoader(images, labels, batch_size=5, shuffle=True, seed=4)
    epochs_ref = [_batches(ref) for _ in range(3)]

    run = DataLoader(images, labels, batch_size=5, shuffle=True, seed=4)
    _batches(run)                       # epoch 1
    it = iter(run)
    for _ in range(stop_after):         # part of epoch 2
        next(it)
    state = json.loads(json.dumps(run.state_dict()))  # survives JSON, as in a checkpoint

    resumed = DataLoader(images, labels, batch_size=5, shuffle=True, seed=123)
    resumed.load_state_dict(state)
    assert resumed.state_dict()["position"] == state["position"]
    rest = _batches(resumed)
    assert len(rest) == 5 - stop_after
    for (xa, ya), (xb, yb) in zip(rest, epochs_ref[1][stop_after:]):
        assert np.array_equal(ya, yb) and np.array_equal(xa, xb)
    third = _batches(resumed)
    assert all(np.array_equal(a[1], b[1]) for a, b in zip(third, epochs_ref[2]))


# ----------------------------------------------------------------- fit and the CLI
def test_fit_resume_in_process_matches_uninterrupted(tmp_path):
    rng = np.random.default_rng(0)
    images = rng.integers(0, 256, (60, 3, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, 60)

    def run(ckdir=None, max_steps=None, resume=False):
        tinynet.manual_seed(2)
        model = _mlp()
        opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
        h = tinynet.fit(model, CrossEntropyLoss(), opt, (images, labels), epochs=3,
                        batch_size=8, shuffle=True, seed=1, progress=False, log=None,
                        max_steps=max_steps, checkpoint_dir=ckdir, checkpoint_every=3,
                        resume=resume)
        return model, h

    ref, h_ref = run()
    ck = tmp_path / "ck"
    _, h_part = run(ck, max_steps=11)
    assert len(h_part["steps"]) == 11
    assert tinynet.load(ck / "checkpoint.npz").progress["finished"] == "max_steps"
    # A finished checkpoint is not continued: write a mid-run one by stopping at 10
    # through a periodic save (steps 3, 6, 9) and resuming from it.
    (ck / "checkpoint.npz").unlink()
    run(ck, max_steps=10)
    ckpt = tinynet.load(ck / "checkpoint.npz")
    assert ckpt.progress["step"] == 10
    ckpt_state = ckpt.model_state
    (ck / "checkpoint.npz").unlink()
    model, h = run(ck)  # full run, checkpoints on the way
    assert h["steps"] == h_ref["steps"]
    assert np.array_equal(model[1].weight.data, ref[1].weight.data)
    assert not np.array_equal(ckpt_state["1.weight"], ref[1].weight.data)


def test_fit_resume_refuses_other_settings(tmp_path):
    images = np.zeros((20, 3, 4), np.uint8)
    labels = np.zeros(20, np.int64)
    model = _mlp()
    opt = SGD(model.parameters(), lr=0.1)
    kw = {"epochs": 1, "progress": False, "log": None, "checkpoint_dir": tmp_path,
          "resume": True}
    tinynet.fit(model, CrossEntropyLoss(), opt, (images, labels), batch_size=8, **kw)
    with pytest.raises(DataError, match=r"written by another run \(batch_size 8\), but this "
                                        r"run has batch_size 4;"):
        tinynet.fit(model, CrossEntropyLoss(), opt, (images, labels), batch_size=4, **kw)
    with pytest.raises(ValueError, match="needs checkpoint_dir"):
        tinynet.fit(model, CrossEntropyLoss(), opt, (images, labels), resume=True)


CLI_CHILD = r'''
import os, signal, sys
import numpy as np
import tinynet
import tinynet.cli
from tinynet.data import datasets

def reader(folder, split):
    rng = np.random.default_rng(0 if split == "train" else 1)
    n = 192 if split == "train" else 64
    images = rng.integers(0, 256, (n, 28, 28), dtype=np.uint8)
    return images, (images[:, 14, :10].argmax(axis=1)).astype(np.int64)

datasets.register(datasets.DatasetInfo(name="tiny", files={"train": [], "test": []},
                                       md5={}, mirrors=[], reader=reader))
kill_at = int(os.environ.get("KILL_AT", "-1"))
calls = [0]
real_step = tinynet.SGD.step
def step(self):
    real_step(self)
    calls[0] += 1
    if calls[0] == kill_at:
        os.kill(os.getpid(), signal.SIGTERM)
tinynet.SGD.step = step
sys.exit(tinynet.cli.main(["train", "--data", "tiny", "--data-root", sys.argv[1]] + sys.argv[2:]))
'''


@pytest.mark.parametrize("model", ["base", "bn"])
def test_cli_train_resume_after_sigterm(tmp_path, model):
    """Also for a BatchNorm model, whose 0-d num_batches_tracked once broke every resume."""
    script = tmp_path / "cli_child.py"
    script.write_text(CLI_CHILD)
    env = dict(os.environ, PYTHONPATH=REPO, OMP_NUM_THREADS="1", OPENBLAS_NUM_THREADS="1",
               MKL_NUM_THREADS="1", MPLBACKEND="Agg")
    common = ["--model", model, "--epochs", "2", "--momentum", "0.9", "--shuffle",
              "--batch-size", "32", "--checkpoint-every", "4", "--no-progress"]

    def cli(out, *extra, kill_at=-1):
        return subprocess.run(
            [sys.executable, str(script), str(tmp_path), "--out", str(tmp_path / out),
             *common, *extra], capture_output=True, text=True, timeout=300, check=False,
            env=dict(env, KILL_AT=str(kill_at)))

    r = cli("ref", "--resume")  # --resume on a first run: says so, starts from scratch
    assert r.returncode == 0, r.stderr
    assert (f"resume: no checkpoint in {tmp_path / 'ref' / 'checkpoints'} yet; starting "
            f"from scratch") in r.stdout
    r = cli("run", kill_at=7)
    assert r.returncode == 143, (r.stdout, r.stderr)
    ck = tmp_path / "run" / "checkpoints" / "checkpoint.npz"
    assert f"checkpoint written to {ck}" in r.stdout
    assert not (tmp_path / "run" / "history.json").exists()
    r = cli("run", "--resume")
    assert r.returncode == 0, r.stderr
    assert f"resuming the run in {tmp_path / 'run'}" in r.stdout
    assert re.search(rf"resumed from {re.escape(str(ck))} \(written [0-9-]+ [0-9:]+\): 7 "
                     rf"steps done, 1 of 2 epoch\(s\) complete, inside epoch 2; the run: "
                     rf"model '{model}', data 'tiny', lr 0.1, momentum 0.9, seed 0", r.stdout)
    a = tinynet.load(tmp_path / "ref" / "checkpoints" / "checkpoint.npz")
    b = tinynet.load(ck)
    assert list(a.model_state) == list(b.model_state)
    for k in a.model_state:
        assert a.model_state[k].shape == b.model_state[k].shape, k
        assert np.array_equal(a.model_state[k], b.model_state[k]), k
    if model == "bn":
        assert b.model_state["3.num_batches_tracked"].shape == ()
        assert int(b.model_state["3.num_batches_tracked"]) == 12  # 2 epochs of 6 steps
    ha = json.loads((tmp_path / "ref" / "history.json").read_text())
    hb = json.loads((tmp_path / "run" / "history.json").read_text())
    for k in ("steps", "train_loss", "train_acc", "test_loss", "test_acc"):
        assert ha[k] == hb[k], k


def _ctrl_c_after(monkeypatch, steps: int) -> None:
    """Ctrl-C after optimizer step ``steps``, without a real signal: call the SIGINT
    handler fit installed, as the interpreter would."""
    real_step = SGD.step
    calls = [0]

    def step(self):
        real_step(self)
        calls[0] += 1
        if calls[0] == steps:
            signal.getsignal(signal.SIGINT)(signal.SIGINT, None)

    monkeypatch.setattr(SGD, "step", step)


def test_cli_train_ctrl_c_prints_one_line_with_the_command_to_continue(tmp_path, monkeypatch,
                                                                        capsys, tiny_data):
    import shlex

    import tinynet.cli
    _ctrl_c_after(monkeypatch, 3)
    args = ["--data", "tiny", "--data-root", str(tmp_path), "--out", str(tmp_path / "run"),
            "--batch-size", "8", "--no-progress"]
    assert tinynet.cli.main(["train", *args]) == 130
    out = capsys.readouterr().out
    ck = tmp_path / "run" / "checkpoints" / "checkpoint.npz"
    again = shlex.join(["tinynet", "train", *args, "--resume"])
    assert (f"SIGINT: stopped after step 3 (epoch 1); checkpoint written to {ck}; to "
            f"continue this run: {again}\n") in out, out
    assert out.count("to continue") == 1 and "resume=True" not in out, out


def test_fit_ctrl_c_tells_python_users_how_to_continue(tmp_path, monkeypatch):
    _ctrl_c_after(monkeypatch, 2)
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, (40, 3, 4), dtype=np.uint8), rng.integers(0, 3, 40)
    said = []
    model = _mlp()
    with pytest.raises(tinynet.train.Interrupted) as e:
        tinynet.fit(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), data,
                    batch_size=8, progress=False, log=said.append, checkpoint_dir=tmp_path)
    expected = (f"SIGINT: stopped after step 2 (epoch 1); checkpoint written to "
                f"{tmp_path / 'checkpoint.npz'}; to continue, run fit again with the same "
                f"arguments, checkpoint_dir and resume=True")
    assert str(e.value) == expected and said[-1] == expected
    assert e.value.signal == "SIGINT" and e.value.step == 2


def _files_of(folder) -> dict:
    return {os.path.relpath(os.path.join(d, f), folder):
            (os.stat(os.path.join(d, f)).st_mtime_ns, open(os.path.join(d, f), "rb").read())
            for d, _, files in os.walk(folder) for f in files}


def test_cli_train_resume_with_fewer_or_as_many_epochs_changes_nothing(tmp_path, monkeypatch,
                                                                       capsys, tiny_data):
    """--epochs below the epochs done is a usage error; equal says the run is complete."""
    import tinynet.cli
    out = tmp_path / "run"
    common = ["train", "--data", "tiny", "--data-root", str(tmp_path), "--out", str(out),
              "--batch-size", "8", "--no-progress"]
    assert tinynet.cli.main([*common, "--epochs", "2"]) == 0
    capsys.readouterr()
    before = _files_of(out)
    with pytest.raises(SystemExit) as e:
        tinynet.cli.main([*common, "--resume", "--epochs", "1"])
    assert e.value.code == 2
    printed, err = capsys.readouterr()
    assert printed == ""
    assert err == (f"tinynet train: error: --epochs 1 but the run in {out} has already "
                   f"finished 2 epoch(s); give --epochs 3 or more to train further (see "
                   f"tinynet train --help)\n")
    assert tinynet.cli.main([*common, "--resume", "--epochs", "2"]) == 0
    printed, err = capsys.readouterr()
    assert printed == (f"the run in {out} is already complete: it has finished its 2 "
                       f"epoch(s); give --epochs 3 or more to train further\n") and err == ""
    assert _files_of(out) == before


def test_fit_resume_with_fewer_epochs_says_how_many_are_done(tmp_path):
    rng = np.random.default_rng(4)
    data = rng.integers(0, 256, (40, 3, 4), dtype=np.uint8), rng.integers(0, 3, 40)
    said = []
    for epochs in (2, 1):
        model = _mlp()
        tinynet.fit(model, CrossEntropyLoss(), SGD(model.parameters(), lr=0.1), data,
                    epochs=epochs, batch_size=8, progress=False, log=said.append,
                    checkpoint_dir=tmp_path, resume=True)
    assert "10 steps done, 2 (more than the 1 asked for) epoch(s) complete" in said[-2]
    assert said[-1] == ("the run has gone past the 1 epoch(s) asked for; nothing to train "
                        "(ask for 3 or more epochs to continue)")


def test_resume_with_more_epochs_continues_a_finished_run(tmp_path):
    rng = np.random.default_rng(4)
    images = rng.integers(0, 256, (40, 3, 4), dtype=np.uint8)
    labels = rng.integers(0, 3, 40)

    def run(epochs, ckdir=None):
        tinynet.manual_seed(6)
        model = _mlp()
        opt = Adam(model.parameters(), lr=0.01)
        h = tinynet.fit(model, CrossEntropyLoss(), opt, (images, labels), epochs=epochs,
                        batch_size=16, shuffle=True, seed=2, progress=False, log=None,
                        checkpoint_dir=ckdir, resume=ckdir is not None)
        return model, h

    ref, h_ref = run(3)
    run(1, tmp_path)
    assert tinynet.load(tmp_path / "checkpoint.npz").progress["epoch"] == 2
    model, h = run(3, tmp_path)
    assert h["epoch"] == [1, 2, 3] and h["steps"] == h_ref["steps"]
    assert h["train_loss"] == h_ref["train_loss"]
    for k, v in ref.state_dict().items():
        assert np.array_equal(model.state_dict()[k], v), k


# ----------------------------------------------------------------- every model, exactly
def _off_init(model, seed: int):
    """Random weights, buffers moved off their initial values (in place)."""
    rng = np.random.default_rng(seed)
    for _, p in model.named_parameters():
        p.data[...] = rng.standard_normal(p.shape).astype(p.dtype)
    for name, b in model.named_buffers():
        if b is None:
            continue
        if b.dtype.kind == "i":
            b[...] = rng.integers(1, 1000, b.shape)
        else:
            b[...] = rng.random(b.shape).astype(b.dtype) + 0.1
    return model


@pytest.mark.parametrize("make_opt", [
    lambda p: SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-4),
    lambda p: Adam(p, lr=0.002, betas=(0.85, 0.99)),
], ids=["sgd-momentum", "adam"])
@pytest.mark.parametrize("name", list(tinynet.models.MODELS))
def test_every_model_round_trips_exactly(tmp_path, name, make_opt):
    model = _off_init(tinynet.models.build(name), seed=1)
    opt = make_opt(list(model.parameters()))
    rng = np.random.default_rng(2)
    for _ in range(2):  # optimizer state: momentum buffers, Adam's moments and step
        for p in model.parameters():
            p.grad = rng.standard_normal(p.shape).astype(p.dtype)
        opt.step()
    path = tmp_path / "ck.npz"
    tinynet.save(path, model, opt)
    saved = _snapshot(model, opt)
    assert any(k.endswith("num_batches_tracked") for k in saved) == ("bn" in name)

    other = _off_init(tinynet.models.build(name), seed=3)
    other_opt = make_opt(list(other.parameters()))
    other_opt.param_groups[0]["lr"] = 0.5
    restore(path, other, other_opt)
    restored = _snapshot(other, other_opt)
    assert sorted(restored) == sorted(saved)
    for k, v in saved.items():
        got = restored[k]
        if isinstance(v, np.ndarray):
            assert (got.dtype, got.shape) == (v.dtype, v.shape), k
            assert np.array_equal(got, v), k
        else:
            assert type(got) is type(v) and got == v, k
    for mine, theirs in zip(other_opt.param_groups, opt.param_groups):
        assert {k: v for k, v in mine.items() if k != "params"} == \
               {k: v for k, v in theirs.items() if k != "params"}


# ----------------------------------------------------------------- special files
@contextlib.contextmanager
def _within(seconds: int):
    """Fail (instead of hanging the suite) if the block blocks, as reading a FIFO would."""
    def expire(signum, frame):
        raise AssertionError(f"still blocked after {seconds} s")
    old = signal.signal(signal.SIGALRM, expire)
    signal.alarm(seconds)
    try:
        yield
    finally:
        signal.alarm(0)
        signal.signal(signal.SIGALRM, old)


@pytest.mark.skipif(not hasattr(os, "mkfifo"), reason="no FIFOs on this system")
def test_fifo_as_checkpoint_is_refused_without_blocking(tmp_path):
    fifo = tmp_path / "checkpoint.npz"
    os.mkfifo(fifo)
    model = _mlp()
    opt = SGD(model.parameters(), lr=0.1)
    with _within(20):
        with pytest.raises(DataError, match=r"checkpoint is a FIFO \(named pipe\), not a "
                                            r"regular file"):
            tinynet.load(fifo)
        with pytest.raises(DataError, match="FIFO"):
            restore(fifo, model, opt)
        with pytest.raises(DataError, match="FIFO"):
            tinynet.serialization.read_header(fifo)
        with pytest.raises(tinynet.errors.CheckpointError,
                           match=r"checkpoint.npz is a FIFO \(named pipe\), not a checkpoint"):
            tinynet.fit(model, CrossEntropyLoss(), opt,
                        (np.zeros((8, 3, 4), np.uint8), np.zeros(8, np.int64)),
                        progress=False, log=None, checkpoint_dir=tmp_path, resume=True)


@pytest.mark.skipif(not os.path.exists("/dev/zero"), reason="no /dev/zero")
def test_device_and_folder_as_checkpoint_are_refused(tmp_path):
    link = tmp_path / "zero.npz"
    link.symlink_to("/dev/zero")
    with _within(20), pytest.raises(DataError, match="is a character device, not a regular"):
        tinynet.load(link)
    (tmp_path / "dir.npz").mkdir()
    with pytest.raises(DataError, match="is a folder, not a regular file"):
        tinynet.load(tmp_path / "dir.npz")


def test_restore_refuses_a_loader_position_past_the_epoch(tmp_path):
    model = _mlp()
    opt = SGD(model.parameters(), lr=0.1)
    images, labels = np.zeros((20, 3, 4), np.uint8), np.zeros(20, np.int64)
    loader = DataLoader(images, labels, batch_size=5)
    batches = iter(loader)
    for _ in range(3):
        next(batches)
    tinynet.save(tmp_path / "ck.npz", model, opt, loader_state=loader.state_dict())
    before = _snapshot(model, opt)
    rng_before = tinynet.random.get_rng_state()
    small = DataLoader(images[:4], labels[:4], batch_size=5)  # one batch per epoch
    with pytest.raises(StateDictError, match="stood at batch 3, but an epoch of this one "
                                             "has 1"):
        restore(tmp_path / "ck.npz", model, opt, small)
    assert small.state_dict()["position"] == 0
    assert tinynet.random.get_rng_state() == rng_before
    same = DataLoader(images, labels, batch_size=5)
    restore(tmp_path / "ck.npz", model, opt, same)
    assert same.state_dict()["position"] == 3
    _assert_same(_snapshot(model, opt), before)


def test_restore_refuses_another_optimizer_and_changes_nothing(tmp_path):
    model = _mlp()
    opt = SGD(model.parameters(), lr=0.1, momentum=0.9)
    _train_steps(model, opt)
    tinynet.save(tmp_path / "ck.npz", model, opt)
    target = _mlp()
    adam = Adam(target.parameters())
    _train_steps(target, adam)
    before = _snapshot(target, adam)
    with pytest.raises(StateDictError, match="holds the state of SGD, not of Adam"):
        restore(tmp_path / "ck.npz", target, adam)
    with pytest.raises(StateDictError, match="holds the state of SGD, not of Adam"):
        restore(tinynet.load(tmp_path / "ck.npz"), target, adam)
    _assert_same(_snapshot(target, adam), before)


def test_header_limits_are_set_where_docs_say(tmp_path, monkeypatch):
    """docs/long-runs.md: the header's container and string limits are
    tinynet.checkpoint_format.MAX_JSON_CONTAINERS / MAX_JSON_STRINGS."""
    from tinynet import checkpoint_format
    path = tinynet.save(tmp_path / "c.npz", _mlp())
    monkeypatch.setattr(checkpoint_format, "MAX_JSON_CONTAINERS", 0)
    with pytest.raises(DataError, match="lists and dicts, more than the 0 accepted"):
        tinynet.load(path)
    monkeypatch.setattr(checkpoint_format, "MAX_JSON_CONTAINERS", 100_000)
    monkeypatch.setattr(checkpoint_format, "MAX_JSON_STRINGS", 1)
    with pytest.raises(DataError, match="more than 1 strings"):
        tinynet.load(path)
