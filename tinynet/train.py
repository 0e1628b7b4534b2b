"""``fit`` and ``evaluate``: the training loop every experiment and the CLI reuse.

One step is the whole protocol, in order::

    y = model(x); loss = loss_fn(y, t); dy = loss_fn.backward()
    optimizer.zero_grad(); model.backward(dy, input_grad=False); optimizer.step()

``fit`` records per epoch the mean train loss and accuracy, the test loss and accuracy
and the seconds spent, and stops with a message kept in ``history["stopped"]`` when the
loss becomes NaN or inf (a learning rate too large, as S1's lr = 1).
"""

from __future__ import annotations

import json
import math
import time
from typing import Callable

from .backend import device_of, get_array_module
from .data.download import atomic_write
from .data.loader import DataLoader
from .module import Module

History = dict


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


def fit(model: Module, loss_fn, optimizer, train, test=None, epochs: int = 1,
        batch_size: int = 64, shuffle: bool = False, seed: int = 0,
        callback: Callable | None = None, progress: bool = True,
        max_steps: int | None = None, log: Callable[[str], None] | None = print,
        eval_batch_size: int = 1000) -> History:
    """Train ``model`` for ``epochs`` epochs; return the history.

    Args:
        train, test: ``(images, labels)`` arrays (uint8 images are scaled to [0, 1]) or
            DataLoaders; ``test`` may be None.
        shuffle, seed: data order (ignored when ``train`` is already a DataLoader).
        callback: ``callback(step, loss, model)`` after each backward, before the
            optimizer step, so gradients can be inspected (e.g. their norms).
        max_steps: stop after this many steps in all (for quick runs).
        log: where the per-epoch lines go (``print`` by default; None for silence).

    Returns:
        a dict of lists ``epoch, train_loss, train_acc, test_loss, test_acc, seconds``,
        plus ``steps`` (losses of every step), ``stopped`` (None, or why training stopped
        early) and ``total_seconds``.
    """
    from tqdm.auto import tqdm

    device = model_device(model)
    loader = _as_loader(train, batch_size, shuffle, seed, device)
    history: History = {"epoch": [], "train_loss": [], "train_acc": [], "test_loss": [],
                        "test_acc": [], "seconds": [], "steps": [], "stopped": None}
    say = log or (lambda s: None)
    step = 0
    start_all = time.perf_counter()
    model.train()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        total_loss, correct, count = 0.0, None, 0
        bar = tqdm(loader, desc=f"epoch {epoch}/{epochs}", unit="batch", disable=not progress,
                   leave=False, mininterval=0.5)
        for x, t in bar:
            y = model(_cast(x, model))
            loss = loss_fn(y, t)
            if not math.isfinite(loss):
                history["stopped"] = (f"loss became {loss} at epoch {epoch}, step {step + 1}: "
                                      f"training diverged (learning rate too large?)")
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
        bar.close()
        seconds = time.perf_counter() - start
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
    history["total_seconds"] = time.perf_counter() - start_all
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
