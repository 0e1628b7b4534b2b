"""``fit`` and ``evaluate``: the training loop every experiment and the CLI reuse.

One step is the whole protocol, in order::

    y = model(x); loss = loss_fn(y, t); dy = loss_fn.backward()
    optimizer.zero_grad(); model.backward(dy, input_grad=False); optimizer.step()

``fit`` records per epoch the mean train loss and accuracy, the test loss and accuracy
and the seconds spent, and stops with a message kept in ``history["stopped"]`` when the
loss becomes NaN or inf (a learning rate too large, as S1's lr = 1).
"""

from __future__ import annotations

import contextlib
import json
import math
import numbers
import os
import signal
import threading
import time
from collections.abc import Callable

from .backend import device_of, get_array_module
from .data.loader import DataLoader
from .errors import ArgumentError, CheckpointError, DataError
from .io import atomic_write
from .module import Module
from .rundir import RunLock, check_checkpoint_dir, remove_torn_writes

History = dict
CHECKPOINT_NAME = "checkpoint.npz"


def _as_loader(data, batch_size: int, shuffle: bool, seed: int, device: str) -> DataLoader:
    if isinstance(data, DataLoader):
        return data
    images, labels = data
    return DataLoader(images, labels, batch_size=batch_size, shuffle=shuffle, seed=seed,
                      device=device)


def model_device(model: Module) -> str:
    for p in model.parameters():
        return device_of(p.data)
    return "cpu"


def _cast(x, model: Module):
    dtype = model.dtype
    return x if x.dtype == dtype else x.astype(dtype)


def evaluate(model: Module, loss_fn, data, batch_size: int = 1000) -> tuple[float, float]:
    """Mean loss and accuracy (percent) of ``model`` in eval mode over ``data``.

    ``data`` is a DataLoader or an ``(images, labels)`` pair. The model's train/eval
    mode is restored afterwards.
    """
    loader = _as_loader(data, batch_size, False, 0, model_device(model))
    was_training = model.training
    model.eval()
    total_loss, correct, count = 0.0, 0, 0
    try:
        for x, t in loader:
            y = model(_cast(x, model))
            n = t.shape[0]
            total_loss += loss_fn(y, t) * n
            correct += int((y.argmax(axis=1) == t).sum())
            count += n
    finally:
        model.train(was_training)
    if count == 0:
        return float("nan"), float("nan")
    return total_loss / count, 100.0 * correct / count


# What fit's Ctrl-C/SIGTERM message tells a Python user to do; a command passes its own.
RESUME_HINT = ("to continue, run fit again with the same arguments, checkpoint_dir and "
               "resume=True")


class Interrupted(KeyboardInterrupt):
    """``fit`` was stopped by Ctrl-C (SIGINT) or SIGTERM after writing a checkpoint.

    A KeyboardInterrupt, so code that does not know about checkpoints still stops.
    Attributes: ``signal`` (its name), ``checkpoint`` (the file written), ``epoch`` and
    ``step`` (the number of optimizer steps taken, all saved).
    """

    def __init__(self, signame: str, checkpoint: str, epoch: int, step: int,
                 resume_hint: str | None = None) -> None:
        super().__init__(f"{signame}: stopped after step {step} (epoch {epoch}); checkpoint "
                         f"written to {checkpoint}; {resume_hint or RESUME_HINT}")
        self.signal, self.checkpoint, self.epoch, self.step = signame, checkpoint, epoch, step


class _SignalFlag:
    """Catches SIGINT and SIGTERM while ``fit`` runs: the first one only sets a flag,
    which the loop reads between steps (so the checkpoint holds a whole step); a
    second one raises KeyboardInterrupt at once."""

    def __init__(self) -> None:
        self.signame: str | None = None
        self._old: dict = {}

    def _handle(self, signum, frame) -> None:
        if self.signame is not None:
            raise KeyboardInterrupt
        self.signame = signal.Signals(signum).name

    def __enter__(self) -> _SignalFlag:  # noqa: PYI034 -- a private helper
        if threading.current_thread() is threading.main_thread():
            for sig in (signal.SIGINT, signal.SIGTERM):
                self._old[sig] = signal.signal(sig, self._handle)
        return self

    def __exit__(self, *exc) -> None:
        for sig, old in self._old.items():
            signal.signal(sig, old)


def _describe_checkpoint(path: str, progress: dict, epochs: int) -> str:
    """"<path> (written <time>): N steps done, ..." for the resume message."""
    step, epoch = int(progress["step"]), int(progress["epoch"])
    try:
        written = time.strftime("%Y-%m-%d %H:%M", time.localtime(os.path.getmtime(path)))
    except OSError:
        written = "?"
    where = (f"at the start of epoch {epoch}" if not progress.get("epoch_count")
             else f"inside epoch {epoch}")
    done = (f"{epoch - 1} of {epochs}" if epoch - 1 <= epochs else
            f"{epoch - 1} (more than the {epochs} asked for)")
    return f"{path} (written {written}): {step} steps done, {done} epoch(s) complete, {where}"


def _whole(v) -> bool:
    return isinstance(v, numbers.Integral) and not isinstance(v, bool)


class _Saver:
    """Writes the run's checkpoint; a failed write becomes one CheckpointError line."""

    def __init__(self, path: str, save: Callable, last: tuple | None) -> None:
        self.path, self._save, self.last = path, save, last

    def __call__(self, step: int, epoch: int, **kwargs) -> str:
        try:
            written = self._save(self.path, **kwargs)
        except OSError as e:
            kept = (f"the last good checkpoint (epoch {self.last[0]}, step {self.last[1]}) "
                    f"is kept" if self.last else "no checkpoint had been written yet")
            reason = e.strerror if isinstance(e.strerror, str) else str(e)
            raise CheckpointError(
                f"{self.path}: could not write the checkpoint after step {step} "
                f"({reason}); {kept}. Fix the cause (free disk space, permissions) and run "
                f"again with resume to continue from it") from e
        self.last = (epoch, step)
        return written


def fit(model: Module, loss_fn, optimizer, train, test=None, epochs: int = 1,
        batch_size: int = 64, shuffle: bool = False, seed: int = 0,
        callback: Callable | None = None, progress: bool = True,
        max_steps: int | None = None, log: Callable[[str], None] | None = print,
        eval_batch_size: int = 1000, checkpoint_dir: str | None = None,
        checkpoint_every: int | None = None, resume: bool = False,
        run_info: dict | None = None, resume_hint: str | None = None) -> History:
    """Train ``model`` for ``epochs`` epochs; return the history.

    Args:
        train, test: ``(images, labels)`` arrays (uint8 images are scaled to [0, 1]) or
            DataLoaders; ``test`` may be None.
        shuffle, seed: data order (ignored when ``train`` is already a DataLoader).
        callback: ``callback(step, loss, model)`` after each backward, before the
            optimizer step, so gradients can be inspected (e.g. their norms).
        max_steps: stop after this many steps in all (for quick runs).
        log: where the per-epoch lines go (``print`` by default; None for silence).
        checkpoint_dir: folder for ``checkpoint.npz`` (see :mod:`tinynet.serialization`),
            written after every ``checkpoint_every`` steps, at the end of every epoch,
            at the end of training and when SIGINT (Ctrl-C) or SIGTERM arrives; the
            signal then raises :class:`Interrupted` once the checkpoint is written.
            Before training starts the folder is checked (created if needed, writable,
            ``checkpoint.npz`` a regular file) and locked for this run (see
            :mod:`tinynet.rundir`): a folder another run is using raises
            :class:`~tinynet.errors.CheckpointError`.
        resume: continue from ``checkpoint_dir``'s checkpoint when there is one (and
            say so, or that none was found and training starts from scratch).
        run_info: a JSON-able description of the run (e.g. the model's name and the
            learning rate), kept in every checkpoint; resuming a checkpoint written with
            a different ``run_info`` is refused.
        resume_hint: how to continue after Ctrl-C or SIGTERM, the end of the line ``fit``
            logs and of the :class:`Interrupted` message (default :data:`RESUME_HINT`, for
            Python callers; ``tinynet train`` passes the command line to run).

    Resuming replays exactly: a checkpoint is taken between two steps and holds the
    weights, the optimizer state (momentum buffers, Adam's step), the global generator
    (dropout masks), the DataLoader's position and generator (data order), the
    history (per-step losses included) and the current epoch's running sums, so a
    resumed run ends with weights bit-identical to an uninterrupted one.

    A checkpoint that cannot be written (a full disk, a folder made read-only) stops
    training with a CheckpointError saying that the last good checkpoint is kept.

    Returns:
        a dict of lists ``epoch, train_loss, train_acc, test_loss, test_acc, seconds``,
        plus ``steps`` (losses of every step), ``stopped`` (None, or why training stopped
        early) and ``total_seconds``.
    """
    if not _whole(epochs) or epochs < 1:
        raise ArgumentError(f"fit: epochs must be a whole number >= 1, got {epochs!r}")
    if checkpoint_every is not None and (not _whole(checkpoint_every) or checkpoint_every <= 0):
        raise ArgumentError(f"fit: checkpoint_every must be a positive number of steps, "
                            f"got {checkpoint_every!r}")
    if max_steps is not None and (not _whole(max_steps) or max_steps < 0):
        raise ArgumentError(f"fit: max_steps must be a whole number >= 0, got {max_steps!r}")
    if resume and checkpoint_dir is None:
        raise ArgumentError("fit: resume=True needs checkpoint_dir")
    if checkpoint_dir is None:
        return _fit(model, loss_fn, optimizer, train, test, epochs, batch_size, shuffle,
                    seed, callback, progress, max_steps, log, eval_batch_size, None,
                    checkpoint_every, resume, run_info, resume_hint)
    ckpt_path = check_checkpoint_dir(checkpoint_dir, CHECKPOINT_NAME)
    with RunLock(os.path.dirname(ckpt_path)) as lock:
        if lock.note and log:
            log(lock.note)
        remove_torn_writes(ckpt_path)  # ours alone: the folder is locked
        return _fit(model, loss_fn, optimizer, train, test, epochs, batch_size, shuffle,
                    seed, callback, progress, max_steps, log, eval_batch_size, ckpt_path,
                    checkpoint_every, resume, run_info, resume_hint)


def _fit(model, loss_fn, optimizer, train, test, epochs, batch_size, shuffle, seed,
         callback, progress, max_steps, log, eval_batch_size, ckpt_path, checkpoint_every,
         resume, run_info, resume_hint) -> History:
    from tqdm.auto import tqdm

    from .serialization import check_training_state, load, read_header, restore, save

    device = model_device(model)
    loader = _as_loader(train, batch_size, shuffle, seed, device)
    if len(loader) == 0:
        raise ArgumentError("fit: the training data holds no samples; expected at least one "
                            "(images, labels) pair")
    history: History = {"epoch": [], "train_loss": [], "train_acc": [], "test_loss": [],
                        "test_acc": [], "seconds": [], "steps": [], "stopped": None}
    say = log or (lambda s: None)
    step = 0
    first_epoch, resumed, elapsed_before, last_saved = 1, None, 0.0, None
    setup = {"batch_size": loader.batch_size, "shuffle": loader.shuffle,
             "drop_last": loader.drop_last, "samples": int(loader.images.shape[0])}
    if resume and not os.path.exists(ckpt_path):
        say(f"resume: no checkpoint in {os.path.dirname(ckpt_path)} yet; starting from "
            f"scratch")
    elif resume:
        # The run's settings first (from the header alone): a checkpoint of another run
        # is named as such, not as a list of mismatched arrays.
        saved_meta = read_header(ckpt_path).get("meta") or {}
        saved = saved_meta.get("fit_setup")
        if not isinstance(saved, dict):
            raise DataError(f"{ckpt_path}: not a training run's checkpoint (it holds no data "
                            f"loader settings to resume from: saved by tinynet.save?); move "
                            f"it away or choose another checkpoint folder")
        saved_run = saved_meta.get("run")
        if saved_run is not None and not isinstance(saved_run, dict):
            raise DataError(f"{ckpt_path}: meta['run'] is {type(saved_run).__name__}, "
                            f"expected a dict")
        theirs, ours = dict(saved), dict(setup)
        if run_info is not None and saved_run is not None:   # the command's settings first
            theirs, ours = dict(saved_run, **theirs), dict(run_info, **ours)
        diff = [k for k in dict.fromkeys(list(theirs) + list(ours))
                if theirs.get(k) != ours.get(k)]
        if diff:
            raise DataError(
                f"{ckpt_path}: written by another run ("
                + ", ".join(f"{k} {theirs.get(k)!r}" for k in diff) + "), but this run has "
                + ", ".join(f"{k} {ours.get(k)!r}" for k in diff)
                + "; use the same settings or another checkpoint folder")
        ckpt = load(ckpt_path, model=model, optimizer=optimizer)
        check_training_state(ckpt)
        finished = ckpt.progress.get("finished")
        if finished == "diverged":  # its weights may hold NaN: nothing to restore
            say(f"resume: the run in {ckpt_path} had diverged "
                f"({(ckpt.history or {}).get('stopped') or 'non-finite loss'}); nothing to "
                f"do: start again (with a smaller learning rate?) without resume")
            return ckpt.history
        restore(ckpt, model, optimizer, loader)
        history, resumed = ckpt.history, ckpt.progress
        step, first_epoch = int(resumed["step"]), int(resumed["epoch"])
        elapsed_before = float(resumed.get("elapsed", 0.0))
        last_saved = (first_epoch, step)
        say("resumed from " + _describe_checkpoint(ckpt_path, resumed, epochs)
            + ("" if saved_run is None else "; the run: " + ", ".join(
                f"{k} {v!r}" for k, v in saved_run.items())))
        if finished:
            say(f"that run had finished ({finished}); nothing to do")
            return history
        if first_epoch > epochs:
            if first_epoch - 1 > epochs or resumed.get("epoch_count"):
                say(f"the run has gone past the {epochs} epoch(s) asked for; nothing to "
                    f"train (ask for {first_epoch} or more epochs to continue)")
            else:
                say(f"all {epochs} epoch(s) are done; nothing to train (ask for more "
                    f"epochs to continue)")
    start_all = time.perf_counter()
    saver = None if ckpt_path is None else _Saver(ckpt_path, save, last_saved)
    meta = {"fit_setup": setup} if run_info is None else {"fit_setup": setup, "run": run_info}

    def checkpoint(epoch: int, sums: tuple, finished: str | None = None) -> str:
        total_loss, correct, count, seconds = sums
        state = {"epoch": epoch, "step": step, "epoch_loss": total_loss,
                 "epoch_correct": 0 if correct is None else int(correct),
                 "epoch_count": count, "epoch_seconds": seconds, "finished": finished,
                 "elapsed": elapsed_before + time.perf_counter() - start_all}
        return saver(step, epoch, model=model, optimizer=optimizer,
                     loader_state=loader.state_dict(), progress=state, history=history,
                     **meta)

    model.train()
    with _SignalFlag() if ckpt_path else contextlib.nullcontext() as flag:
        def interrupted(epoch: int, sums: tuple, written: str | None = None) -> None:
            if flag is None or flag.signame is None:
                return
            path = written or checkpoint(epoch, sums)
            err = Interrupted(flag.signame, path, epoch, step, resume_hint)
            say(str(err))
            raise err

        epoch = first_epoch
        for epoch in range(first_epoch, epochs + 1):
            if max_steps is not None and step >= max_steps:
                break
            start = time.perf_counter()
            total_loss, correct, count, seconds_before = 0.0, None, 0, 0.0
            if resumed is not None and epoch == first_epoch:
                total_loss = float(resumed["epoch_loss"])
                count = int(resumed["epoch_count"])
                correct = int(resumed["epoch_correct"]) if count else None
                seconds_before = float(resumed["epoch_seconds"])
            bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch",
                       disable=not progress, leave=False, mininterval=0.5)
            for x, t in bar:
                y = model(_cast(x, model))
                loss = loss_fn(y, t)
                if not math.isfinite(loss):
                    history["stopped"] = (f"loss became {loss} at epoch {epoch}, step "
                                          f"{step + 1}: training diverged (learning rate "
                                          f"too large?)")
                    break
                optimizer.zero_grad()
                model.backward(loss_fn.backward(), input_grad=False)
                if callback is not None:
                    callback(step, loss, model)
                optimizer.step()
                n = t.shape[0]
                hits = (y.argmax(axis=1) == t).sum()
                correct = hits if correct is None else correct + hits
                total_loss += loss * n
                count += n
                step += 1
                history["steps"].append(loss)
                if progress and step % 50 == 0:
                    bar.set_postfix(loss=f"{loss:.4f}", refresh=False)
                if max_steps is not None and step >= max_steps:
                    break
                sums = (total_loss, correct, count,
                        seconds_before + time.perf_counter() - start)
                if ckpt_path and checkpoint_every and step % checkpoint_every == 0:
                    interrupted(epoch, sums, checkpoint(epoch, sums))
                interrupted(epoch, sums)
            bar.close()
            seconds = seconds_before + time.perf_counter() - start
            if count:
                history["epoch"].append(epoch)
                history["train_loss"].append(total_loss / count)
                history["train_acc"].append(100.0 * int(correct) / count)
                history["seconds"].append(seconds)
                if test is not None:
                    tl, ta = evaluate(model, loss_fn, test, eval_batch_size)
                else:
                    tl, ta = float("nan"), float("nan")
                history["test_loss"].append(tl)
                history["test_acc"].append(ta)
                say(f"epoch {epoch}: train loss {total_loss / count:.4f}, train acc "
                    f"{100.0 * int(correct) / count:.2f}%, test loss {tl:.4f}, test acc "
                    f"{ta:.2f}% ({seconds:.1f} s)")
            if history["stopped"]:
                say("stopped: " + history["stopped"])
                break
            if max_steps is not None and step >= max_steps:
                break
            if ckpt_path:  # the epoch is complete: the next one starts from zero
                empty = (0.0, None, 0, 0.0)
                interrupted(epoch + 1, empty, checkpoint(epoch + 1, empty))
        history["total_seconds"] = elapsed_before + time.perf_counter() - start_all
        if ckpt_path:
            finished = "diverged" if history["stopped"] else \
                "max_steps" if max_steps is not None and step >= max_steps else None
            if finished:
                checkpoint(epoch, (0.0, None, 0, 0.0), finished)
    return history


def save_history(history: History, path: str) -> None:
    """Write the history as JSON, atomically (NaN and inf become null)."""
    def clean(v):
        if isinstance(v, float) and not math.isfinite(v):
            return None
        if isinstance(v, list):
            return [clean(u) for u in v]
        if isinstance(v, dict):
            return {k: clean(u) for k, u in v.items()}
        return v
    text = json.dumps(clean(history), indent=1)
    atomic_write(path, lambda f: f.write(text.encode()))


def global_grad_norm(model: Module) -> float:
    """L2 norm of all parameter gradients together (0 for parameters without a grad)."""
    total = 0.0
    for p in model.parameters():
        if p.grad is not None:
            xp = get_array_module(p.grad)
            total += float(xp.vdot(p.grad.ravel(), p.grad.ravel()))
    return math.sqrt(total)
