"""What every study shares: data (with quick subsets), the tinynet run and its PyTorch
twin, tables, JSON histories, plots and the study's metadata.

A study calls :func:`train_pair` for each configuration. It builds the tinynet model
under ``tinynet.manual_seed(seed)``, copies its ``state_dict`` into a
``torch.nn.Sequential`` twin built layer for layer (:func:`to_torch`), and trains both on
the same batches in the same order (both draw them from a tinynet ``DataLoader`` with the
same seed), so the two columns differ only by floating-point rounding.

Nothing is lost to an interruption: a finished run is written to the study's
``histories.json`` at once (and reused when the study is run again with the same
settings, the twin alone trained when only the twin is missing), and a run in progress
writes a checkpoint after every epoch into ``<out>/cache/`` (git-ignored) and resumes
from it.
"""

from __future__ import annotations

import functools
import json
import math
import os
import platform
import re
import subprocess
import time
from collections.abc import Callable

import numpy as np

import tinynet
from tinynet.data import DataLoader
from tinynet.io import atomic_write
from tinynet.train import global_grad_norm

# ----------------------------------------------------------------- quick mode sizes
QUICK_TRAIN = 1024   # training images per data set in --quick
QUICK_TEST = 512     # test images per data set in --quick
QUICK_EPOCHS = 2


def say(msg: str) -> None:
    print(msg, flush=True)


# ----------------------------------------------------------------- data
# Where CIFAR-10 comes from: "auto" (the JPEG copy when it is found, else the official
# archive), "jpeg" or "official". Set by the command line's --cifar.
CIFAR_SOURCES = ("auto", "jpeg", "official")
cifar_source = "auto"


def cifar_name() -> str:
    """The tinynet data set S6, S7 and S9 read: ``"cifar10-jpeg"`` or ``"cifar10"``."""
    if cifar_source == "jpeg":
        return "cifar10-jpeg"
    if cifar_source == "official":
        return "cifar10"
    if cifar_source != "auto":
        raise ValueError(f"cifar_source {cifar_source!r}: expected one of {CIFAR_SOURCES}")
    return "cifar10-jpeg" if tinynet.data.find("cifar10-jpeg", "train") else "cifar10"


def data_label(name: str) -> str:
    """How a table names a data set, e.g. ``CIFAR-10 (JPEG copy)``."""
    return {"cifar10-jpeg": "CIFAR-10 (JPEG copy)", "cifar10": "CIFAR-10 (official)",
            "mnist": "MNIST", "fashion-mnist": "Fashion-MNIST"}.get(name, name)


def shuffle_cifar_jpeg(images, labels, order_seed: int = 0):
    """The JPEG copy in one fixed random order (``default_rng(order_seed)``).

    The copy lost CIFAR-10's original sample order (its files sort by class), so "the
    first 40,000" and the quick subsets would otherwise hold only some classes. The
    order depends only on the labels and ``order_seed``, not on how the files were read.
    """
    order = np.lexsort((np.arange(len(labels)), labels))  # by class, then as read
    order = order[np.random.default_rng(order_seed).permutation(len(order))]
    return images[order], labels[order]


def load(name: str, split: str, order_seed: int = 0):
    """``tinynet.data.load``: from ``$TINYNET_DATA``, the user cache or the system folder,
    downloading the official files into the user cache when none holds them (MNIST,
    Fashion-MNIST, CIFAR-10; the JPEG copy has no download).

    ``"cifar10"`` here means the source :func:`cifar_name` picks. The official CIFAR-10
    is kept in its published order (data_batch_1 ... 5, as the reports read it); the
    JPEG copy is put in one fixed random order (:func:`shuffle_cifar_jpeg`).
    ``order_seed`` > 0 gives another fixed order (``default_rng(order_seed)``), to
    measure how much the order matters.
    """
    if name == "cifar10":
        name = cifar_name()
    images, labels = tinynet.data.load(name, split, download=name != "cifar10-jpeg",
                                       progress=False)
    if name == "cifar10-jpeg":
        return shuffle_cifar_jpeg(images, labels, order_seed)
    if order_seed:
        order = np.random.default_rng(order_seed).permutation(len(labels))
        return images[order], labels[order]
    return images, labels


def dataset(name: str, quick: bool, train_slice: slice | None = None,
            test_split: str = "test", test_slice: slice | None = None, order_seed: int = 0):
    """``(train, test)`` pairs of ``(images, labels)``; --quick keeps the first
    QUICK_TRAIN / QUICK_TEST of each."""
    tr = load(name, "train", order_seed)
    te = load(name, test_split, order_seed) if test_split != "train" else tr
    if train_slice is not None:
        tr = (tr[0][train_slice], tr[1][train_slice])
    if test_slice is not None:
        te = (te[0][test_slice], te[1][test_slice])
    if quick:
        tr = (tr[0][:QUICK_TRAIN], tr[1][:QUICK_TRAIN])
        te = (te[0][:QUICK_TEST], te[1][:QUICK_TEST])
    return tr, te


# ----------------------------------------------------------------- availability
def missing_layers(builder: Callable) -> str | None:
    """None when ``builder()`` works, else the reason (e.g. a layer not in tinynet yet)."""
    try:
        builder()
    except (ImportError, AttributeError, NotImplementedError) as e:
        return f"{type(e).__name__}: {e}"
    return None


def torch_available() -> bool:
    try:
        import torch  # noqa: F401
    except ImportError:
        return False
    return True


# ----------------------------------------------------------------- the PyTorch twin
def to_torch(model):
    """A ``torch.nn.Sequential`` with the same layers and the same weights as ``model``."""
    import torch
    from torch import nn

    def convert(m):
        kind = type(m).__name__
        if kind == "Sequential":
            return nn.Sequential(*[convert(c) for c in m])
        if kind == "Linear":
            return nn.Linear(m.in_features, m.out_features, bias=m.bias is not None)
        if kind == "Flatten":
            return nn.Flatten(getattr(m, "start_dim", 1), getattr(m, "end_dim", -1))
        if kind in ("ReLU", "Tanh", "Sigmoid"):
            return getattr(nn, kind)()
        if kind == "LeakyReLU":
            return nn.LeakyReLU(m.negative_slope)
        if kind == "ELU":
            return nn.ELU(m.alpha)
        if kind == "Dropout":
            return nn.Dropout(m.p)
        if kind in ("BatchNorm1d", "BatchNorm2d"):
            return getattr(nn, kind)(m.num_features, eps=getattr(m, "eps", 1e-5),
                                     momentum=getattr(m, "momentum", 0.1))
        if kind == "Conv2d":
            return nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride,
                             m.padding, bias=getattr(m, "bias", None) is not None)
        if kind == "MaxPool2d":
            return nn.MaxPool2d(m.kernel_size, getattr(m, "stride", None))
        raise NotImplementedError(f"no PyTorch twin for {m.describe()}")

    twin = convert(model)
    state = {k: torch.from_numpy(np.array(tinynet.backend.to_numpy(v)))
             for k, v in model.state_dict().items()}
    twin.load_state_dict(state, strict=True)
    return twin


def _torch_optimizer(twin, opt: tuple):
    import torch
    kind, lr = opt[0], opt[1]
    kw = dict(opt[2]) if len(opt) > 2 else {}
    if kind == "sgd":
        return torch.optim.SGD(twin.parameters(), lr=lr, **kw)
    if kind == "adam":
        return torch.optim.Adam(twin.parameters(), lr=lr, **kw)
    raise ValueError(f"unknown optimizer {kind!r}: expected 'sgd' or 'adam'")


def _tinynet_optimizer(model, opt: tuple):
    kind, lr = opt[0], opt[1]
    kw = dict(opt[2]) if len(opt) > 2 else {}
    if kind == "sgd":
        return tinynet.SGD(model.parameters(), lr=lr, **kw)
    if kind == "adam":
        return tinynet.Adam(model.parameters(), lr=lr, **kw)
    raise ValueError(f"unknown optimizer {kind!r}: expected 'sgd' or 'adam'")


def torch_grad_norm(twin) -> float:
    total = 0.0
    for p in twin.parameters():
        if p.grad is not None:
            total += float((p.grad.double() ** 2).sum())
    return math.sqrt(total)


def _empty_history() -> dict:
    return {"epoch": [], "train_loss": [], "train_acc": [], "test_loss": [], "test_acc": [],
            "seconds": [], "steps": [], "stopped": None}


def _torch_evaluate(twin, loss_kind: str, data, batch_size: int = 1000):
    import torch
    was = twin.training
    twin.eval()
    loader = DataLoader(data[0], data[1], batch_size=batch_size, shuffle=False)
    total, correct, count = 0.0, 0, 0
    with torch.no_grad():
        for x, t in loader:
            xt = torch.from_numpy(x)
            y = twin(xt)
            n = t.shape[0]
            if loss_kind == "mse":
                total += float(torch.nn.functional.mse_loss(y, xt.reshape(y.shape))) * n
            else:
                tt = torch.from_numpy(t)
                total += float(torch.nn.functional.cross_entropy(y, tt)) * n
                correct += int((y.argmax(1) == tt).sum())
            count += n
    twin.train(was)
    acc = 100.0 * correct / count if loss_kind != "mse" else float("nan")
    return total / count, acc


def torch_fit(twin, opt: tuple, train, test, epochs: int, batch_size: int, shuffle: bool,
              seed: int, loss_kind: str = "ce", callback: Callable | None = None,
              max_steps: int | None = None, loader: DataLoader | None = None,
              step0: int = 0, step_acc: bool = False) -> dict:
    """PyTorch's twin of ``tinynet.fit``: same batches (a tinynet DataLoader with the
    same seed), same history keys. ``loss_kind`` "ce" (labels) or "mse" (the input
    itself, for auto-encoders); ``step_acc`` also records every step's batch accuracy
    (``history["step_acc"]``, percent, before the step's update)."""
    import torch
    torch.manual_seed(seed)
    optimizer = _torch_optimizer(twin, opt) if not hasattr(opt, "step") else opt
    loader = loader or DataLoader(train[0], train[1], batch_size=batch_size,
                                  shuffle=shuffle, seed=seed)
    h = _empty_history()
    if step_acc:
        h["step_acc"] = []
    step = step0
    twin.train()
    start_all = time.perf_counter()
    for epoch in range(1, epochs + 1):
        start = time.perf_counter()
        total, correct, count = 0.0, 0, 0
        for x, t in loader:
            xt = torch.from_numpy(x)
            y = twin(xt)
            if loss_kind == "mse":
                loss = torch.nn.functional.mse_loss(y, xt.reshape(y.shape))
            else:
                tt = torch.from_numpy(t)
                loss = torch.nn.functional.cross_entropy(y, tt)
            lv = loss.item()
            if not math.isfinite(lv):
                h["stopped"] = f"loss became {lv} at epoch {epoch}, step {step + 1}: diverged"
                break
            optimizer.zero_grad()
            loss.backward()
            if callback is not None:
                callback(step, lv, twin)
            optimizer.step()
            n = t.shape[0]
            if loss_kind != "mse":
                hits = int((y.argmax(1) == tt).sum())
                correct += hits
                if step_acc:
                    h["step_acc"].append(100.0 * hits / n)
            total += lv * n
            count += n
            step += 1
            h["steps"].append(lv)
            if max_steps is not None and step >= max_steps:
                break
        if count:
            h["epoch"].append(epoch)
            h["train_loss"].append(total / count)
            h["train_acc"].append(100.0 * correct / count if loss_kind != "mse" else float("nan"))
            h["seconds"].append(time.perf_counter() - start)
            tl, ta = _torch_evaluate(twin, loss_kind, test) if test is not None else (
                float("nan"), float("nan"))
            h["test_loss"].append(tl)
            h["test_acc"].append(ta)
        if h["stopped"] or (max_steps is not None and step >= max_steps):
            break
    h["total_seconds"] = time.perf_counter() - start_all
    return h


class StepAccuracy:
    """A loss that also records each training step's batch accuracy (percent).

    ``tinynet.fit`` records every step's loss but not its accuracy; wrapping the loss
    it calls gives both without another forward pass. Only calls made while ``model``
    is in training mode count (``fit``'s evaluation runs in eval mode).
    """

    def __init__(self, loss_fn, model) -> None:
        self.loss_fn, self.model, self.acc = loss_fn, model, []

    def __call__(self, y, t):
        loss = self.loss_fn(y, t)
        if self.model.training:
            self.acc.append(100.0 * float((y.argmax(axis=1) == t).sum()) / int(t.shape[0]))
        return loss

    def backward(self, *args, **kwargs):
        return self.loss_fn.backward(*args, **kwargs)


# ----------------------------------------------------------------- provenance
def _repo_root() -> str:
    return os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


@functools.lru_cache(maxsize=1)
def code_version() -> str:
    """The git commit of the code that runs (``+dirty`` when tinynet/ or experiments/
    have uncommitted changes), or ``unknown`` outside a git checkout. Read once per
    process (the runner reads it at start), so a long run names the code it started with."""
    root = _repo_root()
    try:
        head = subprocess.run(["git", "-C", root, "rev-parse", "--short=12", "HEAD"],
                              capture_output=True, text=True, timeout=20, check=False)
        if head.returncode != 0:
            return "unknown"
        dirty = subprocess.run(["git", "-C", root, "status", "--porcelain", "--",
                                "tinynet", "experiments"], capture_output=True, text=True,
                               timeout=20, check=False)
        return head.stdout.strip() + ("+dirty" if dirty.stdout.strip() else "")
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def provenance() -> dict:
    """Which code ran, where and when: stored with every run."""
    return {"code": code_version(), "machine": machine(),
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime())}


# ----------------------------------------------------------------- checkpoints
def _checkpoint_path(checkpoint_dir: str, label: str, suffix: str = "") -> str:
    safe = re.sub(r"[^A-Za-z0-9_.-]+", "_", label).strip("_") or "run"
    return os.path.join(checkpoint_dir, f"{safe}{suffix}.npz")


def _scalars_back(ckpt, model):
    """Give 0-d buffers (BatchNorm's ``num_batches_tracked``) their shape back.

    ``tinynet.serialization.save`` before commit 30a0ecb stored a 0-d array as shape (1,)
    (``numpy.ascontiguousarray`` returns at least one dimension), which ``restore``
    refuses; the library now keeps 0-d arrays as they are, and this lets a study resume
    from a checkpoint written before that fix.
    """
    want = {k: v.shape for k, v in model.state_dict().items() if v is not None}
    for k, v in list(ckpt.model_state.items()):
        if want.get(k) == () and getattr(v, "shape", None) == (1,):
            ckpt.model_state[k] = v.reshape(())
    return ckpt


def _resume(path: str, settings: dict, model, optimizer, loader):
    """``(history, epochs_done, steps_done, seconds_before)`` from the run's checkpoint
    when it exists and was written with the same settings, else None."""
    from tinynet import serialization
    if not path or not os.path.isfile(path):
        return None
    try:
        ckpt = serialization.load(path)
    except tinynet.TinynetError as e:
        say(f"ignoring the checkpoint {path}: {e}")
        return None
    if ckpt.meta.get("settings") != settings:
        say(f"ignoring the checkpoint {path}: written with other settings")
        return None
    serialization.restore(_scalars_back(ckpt, model), model, optimizer, loader)
    p = ckpt.progress
    return ckpt.history, int(p["epoch"]), int(p["steps_done"]), float(p["seconds"])


# ----------------------------------------------------------------- one configuration
def train_pair(label: str, build: Callable, opt: tuple, train, test, epochs: int,
               batch_size: int = 64, shuffle: bool = False, seed: int = 0,
               use_torch: bool = True, device: str = "cpu", grad_norm_steps: int = 0,
               max_steps: int | None = None, init: Callable | None = None,
               stop: Callable | None = None, twin_epochs: int | None = None,
               previous: dict | None = None, config: dict | None = None,
               keep_model: bool = False, step_acc: bool = False,
               checkpoint_dir: str | None = None) -> dict:
    """Train ``build()`` (and its PyTorch twin) with ``opt`` = ``("sgd"|"adam", lr[, kw])``.

    Args:
        grad_norm_steps: record the global gradient L2 norm of the first this many steps
            (``history["grad_norm"]``).
        init: ``init(model)`` run after building (e.g. a different initialiser), before
            the twin copies the weights.
        stop: ``stop(history) -> bool`` checked after every epoch (early stopping, as
            S1's epochs-to-85%); training then ends before ``epochs``.
        twin_epochs: train the twin for this many epochs only (default: as tinynet ran).
        keep_model: put the trained tinynet model under ``"_model"`` (pop it before
            the runs are written as JSON). With ``checkpoint_dir`` its final weights are
            kept there too, so a reused run still has its model.
        step_acc: record every step's batch accuracy (``history["step_acc"]``).
        previous, config: the ``runs`` of an earlier ``histories.json`` of this study
            (:func:`previous_runs`) and what else defines this run; a run recorded there
            with the same settings is reused instead of trained again (runs repeat
            exactly, so this only saves time). When only its twin is missing, the twin
            alone is trained, from the same initial weights.
        checkpoint_dir: where the tinynet run writes a checkpoint after every epoch
            (removed when the run ends); an interrupted run resumes from it.

    Returns:
        ``{"label", "params", "settings", "tinynet": history, "torch": history or None,
        "provenance": {"tinynet": ..., "torch": ...}, "twin_start": ...}``.
    """
    settings = {"opt": list(opt[:2]), "data": fingerprint(train, test), "epochs": epochs,
                "batch_size": batch_size, "shuffle": shuffle, "seed": seed,
                "n_train": len(train[1]), "n_test": len(test[1]) if test is not None else 0,
                "grad_norm_steps": grad_norm_steps, "max_steps": max_steps,
                "twin_epochs": twin_epochs, "device": device, **(config or {})}
    if len(opt) > 2 and opt[2]:
        settings["opt_kw"] = dict(opt[2])
    if step_acc:
        settings["step_acc"] = True
    settings = _clean(settings)
    old = (previous or {}).get(label)
    same = bool(old) and old.get("settings") == settings
    final_path = _checkpoint_path(checkpoint_dir, label, ".final") if checkpoint_dir else None
    if same and (old.get("torch") or not use_torch):
        say(f"[{label}] reused from the earlier histories.json (same settings)")
        out = dict(old, torch=old.get("torch") if use_torch else None)
        if keep_model:
            out["_model"] = _load_final(final_path, build, init, seed)
        return out

    tinynet.manual_seed(seed)
    model = build()
    if init is not None:
        init(model)
    params = tinynet.count_parameters(model)
    twin = to_torch(model) if use_torch else None
    prov = dict((old or {}).get("provenance") or {}) if same else {}
    if same:
        say(f"[{label}] tinynet run reused from the earlier histories.json (same settings); "
            f"training its PyTorch twin")
        h = old["tinynet"]
        prov.setdefault("tinynet", "reused from an earlier histories.json")
        if keep_model:
            model = _load_final(final_path, build, init, seed)
    else:
        h = _train_tinynet(label, model, opt, train, test, epochs, batch_size, shuffle, seed,
                           device, grad_norm_steps, max_steps, stop, step_acc, settings,
                           checkpoint_dir)
        prov["tinynet"] = provenance()
        if keep_model and final_path:
            from tinynet import serialization
            serialization.save(final_path, model, rng_state=None, settings=settings)
    out = {"label": label, "params": params, "settings": settings, "tinynet": h,
           "torch": None, "provenance": prov}
    if twin is not None:
        tnorms: list[float] = []

        def tcb(step, loss, m):
            if len(tnorms) < grad_norm_steps:
                tnorms.append(torch_grad_norm(m))
        n_ep = twin_epochs if twin_epochs is not None else max(len(h["epoch"]), 1)
        th = torch_fit(twin, opt, train, test, n_ep, batch_size, shuffle, seed,
                       callback=tcb if grad_norm_steps else None, max_steps=max_steps,
                       step_acc=step_acc)
        if grad_norm_steps:
            th["grad_norm"] = tnorms
        last = th["test_acc"][-1] if th["test_acc"] else float("nan")
        say(f"[{label}] torch twin: {len(th['epoch'])} epochs"
            + (f", test acc {last:.2f}%" if math.isfinite(last) else "")
            + f" ({th['total_seconds']:.1f} s)" + (f"; stopped: {th['stopped']}"
                                                  if th["stopped"] else ""))
        out["torch"] = th
        prov["torch"] = provenance()
        out["twin_start"] = twin_start(h, th)
        if out["twin_start"]["relative_difference"] > 1e-4:
            say(f"[{label}] WARNING: the twin's first loss differs from tinynet's by "
                f"{out['twin_start']['relative_difference']:.1e} (relative): not the same "
                "initial weights or batches")
    if keep_model:
        out["_model"] = model
    return out


def twin_start(h: dict, th: dict) -> dict:
    """The first step's loss of both runs: equal (to float32 rounding) when the twin
    started from tinynet's initial weights on the same first batch."""
    a = h["steps"][0] if h.get("steps") else float("nan")
    b = th["steps"][0] if th.get("steps") else float("nan")
    diff = abs(a - b) / max(abs(a), 1e-12)
    return {"tinynet_first_loss": a, "torch_first_loss": b,
            "relative_difference": diff if math.isfinite(diff) else float("inf")}


def _load_final(path: str | None, build: Callable, init: Callable | None, seed: int):
    """The final weights a run kept in its checkpoint folder, or None."""
    if not path or not os.path.isfile(path):
        return None
    from tinynet import serialization
    tinynet.manual_seed(seed)
    model = build()
    if init is not None:
        init(model)
    serialization.restore(_scalars_back(serialization.load(path), model), model, rng=False)
    return model


def _train_tinynet(label, model, opt, train, test, epochs, batch_size, shuffle, seed, device,
                   grad_norm_steps, max_steps, stop, step_acc, settings, checkpoint_dir):
    """The tinynet half of :func:`train_pair`, one ``fit`` epoch at a time, with a
    checkpoint after every epoch when ``checkpoint_dir`` is given."""
    from tinynet import serialization
    if device != "cpu":
        model.to(device)
    optimizer = _tinynet_optimizer(model, opt)
    loss_fn = tinynet.CrossEntropyLoss()
    if step_acc:
        loss_fn = StepAccuracy(loss_fn, model)
    loader = DataLoader(train[0], train[1], batch_size=batch_size, shuffle=shuffle, seed=seed,
                        device=device)
    params = tinynet.count_parameters(model)
    say(f"[{label}] tinynet: {params:,} parameters, {opt[0]} lr={opt[1]}, batch {batch_size}, "
        f"shuffle={shuffle}, seed {seed}")
    path = _checkpoint_path(checkpoint_dir, label) if checkpoint_dir else None
    h = _empty_history()
    if step_acc:
        h["step_acc"] = []
    if grad_norm_steps:
        h["grad_norm"] = []
    done, steps_done, before = 0, 0, 0.0
    resumed = _resume(path, settings, model, optimizer, loader)
    if resumed:
        h, done, steps_done, before = resumed
        say(f"[{label}] resumed from {path} after epoch {done} ({steps_done} steps)")
    norms = h.get("grad_norm", [])

    def norm_cb(step, loss, m):
        if len(norms) < grad_norm_steps:
            norms.append(global_grad_norm(m))

    start = time.perf_counter()
    for epoch in range(done + 1, epochs + 1):
        if (max_steps is not None and steps_done >= max_steps) or h["stopped"] \
                or (stop and h["epoch"] and stop(h)):
            break
        e = tinynet.fit(model, loss_fn, optimizer, loader, test, epochs=1, progress=False,
                        callback=norm_cb if grad_norm_steps else None,
                        max_steps=None if max_steps is None else max_steps - steps_done,
                        log=None)
        for k in ("train_loss", "train_acc", "test_loss", "test_acc", "seconds", "steps"):
            h[k] += e[k]
        if step_acc:
            h["step_acc"] += loss_fn.acc[:len(e["steps"])]
            loss_fn.acc.clear()
        if e["epoch"]:
            h["epoch"].append(epoch)
            tested = test is not None and math.isfinite(e["test_acc"][0])
            say(f"[{label}] tinynet epoch {epoch}: train loss {e['train_loss'][0]:.4f}"
                + (f", test loss {e['test_loss'][0]:.4f}, test acc {e['test_acc'][0]:.2f}%"
                   if tested else " (no test set)") + f" ({e['seconds'][0]:.1f} s)")
        steps_done += len(e["steps"])
        if e["stopped"]:
            h["stopped"] = e["stopped"].replace("epoch 1", f"epoch {epoch}")
            say(f"[{label}] tinynet stopped: {h['stopped']}")
        if grad_norm_steps:
            h["grad_norm"] = norms
        if path:
            seconds = before + time.perf_counter() - start
            serialization.save(path, model, optimizer, loader_state=loader.state_dict(),
                               progress={"epoch": epoch, "steps_done": steps_done,
                                         "seconds": seconds},
                               history=_clean(h), settings=settings)
    h["total_seconds"] = before + time.perf_counter() - start
    if grad_norm_steps:
        h["grad_norm"] = norms
    if path and os.path.isfile(path):
        os.remove(path)
    return h


def fingerprint(*pairs) -> str:
    """A cheap checksum of ``(images, labels)`` pairs (labels, and every 97th image)."""
    import zlib
    crc = 0
    for pair in pairs:
        if pair is None:
            continue
        crc = zlib.crc32(np.ascontiguousarray(pair[1]).tobytes(), crc)
        crc = zlib.crc32(np.ascontiguousarray(pair[0][::97]).tobytes(), crc)
    return f"{crc:08x}"


def checkpoint_dir(out_dir: str) -> str:
    """``<out_dir>/cache``: the per-epoch checkpoints of runs in progress (git-ignored)."""
    return os.path.join(out_dir, "cache")


def previous_runs(out_dir: str, quick: bool, seed: int) -> dict:
    """The ``runs`` of ``out_dir/histories.json`` when it holds a run of the same mode
    and seed, else ``{}``."""
    path = os.path.join(out_dir, "histories.json")
    if not os.path.isfile(path):
        return {}
    try:
        with open(path) as f:
            old = json.load(f)
    except (OSError, ValueError):
        return {}
    if old.get("quick") != quick or old.get("seed") != seed:
        return {}
    runs = old.get("runs", {})
    committed = None
    for r in runs.values():
        if isinstance(r, dict) and r.get("tinynet") and not r.get("provenance"):
            if committed is None:
                committed = _committed_in(path)
            r["provenance"] = {"tinynet": committed}
            if r.get("torch"):
                r["provenance"]["torch"] = committed
    return runs


def _committed_in(path: str) -> str:
    """``committed in <commit> (<date>)`` for a tracked file (runs recorded before runs
    carried their provenance), else ``an earlier run``."""
    try:
        r = subprocess.run(["git", "-C", os.path.dirname(os.path.abspath(path)), "log", "-1",
                            "--format=%h %cI", "--", os.path.basename(path)],
                           capture_output=True, text=True, timeout=20, check=False)
    except (OSError, subprocess.SubprocessError):
        return "an earlier run"
    out = r.stdout.strip()
    return f"committed in {out.split()[0]} ({out.split()[1]})" if r.returncode == 0 and out \
        else "an earlier run"


def save_partial(out_dir: str, name: str, runs: dict, quick: bool, seed: int) -> None:
    """Write the runs finished so far to ``histories.json`` (``"partial": true``), so a
    study that is stopped can be rerun without training them again."""
    os.makedirs(out_dir, exist_ok=True)
    write_json(os.path.join(out_dir, "histories.json"),
               {"study": name, "quick": quick, "seed": seed, "partial": True,
                "runs": {k: v for k, v in runs.items() if not k.startswith("_")}})


def compute_seconds(runs: dict) -> float:
    """Seconds of training recorded in the histories of ``runs`` (tinynet and twin)."""
    total = 0.0
    for r in runs.values():
        for k in ("tinynet", "torch"):
            h = r.get(k) if isinstance(r, dict) else None
            if isinstance(h, dict):
                total += h.get("total_seconds") or 0.0
    return total


def seed_spread(histories: list, epoch: int | None = None) -> str:
    """:func:`spread` of the test accuracy after ``epoch`` (default: the last) over runs
    from several seeds; diverged runs are counted apart (``diverged 1/3``)."""
    accs, diverged = [], 0
    for h in histories:
        if h.get("stopped"):
            diverged += 1
            continue
        acc = h["test_acc"][:epoch] if epoch else h["test_acc"]
        accs.append(acc[-1] if acc else None)
    parts = [spread(accs)] if accs else []
    if diverged:
        parts.append(f"diverged {diverged}/{len(histories)}")
    return "; ".join(parts)


def spread(values: list) -> str:
    """``mean ± sd (min-max, n)`` of accuracies; sd is the sample standard deviation."""
    v = [float(x) for x in values if x is not None and math.isfinite(float(x))]
    if not v:
        return "-"
    if len(v) == 1:
        return f"{v[0]:.2f} (n=1)"
    a = np.asarray(v)
    return f"{a.mean():.2f} ± {a.std(ddof=1):.2f} ({a.min():.2f}-{a.max():.2f}, n={len(v)})"


# ----------------------------------------------------------------- formatting
def fmt(v, digits: int = 2) -> str:
    """A number for a table: ``-`` for None, ``nan`` kept visible, else fixed digits."""
    if v is None:
        return "-"
    if isinstance(v, str):
        return v
    if isinstance(v, float) and not math.isfinite(v):
        return "nan"
    if isinstance(v, (int, np.integer)) and not isinstance(v, bool):
        return f"{int(v):,}"
    return f"{v:.{digits}f}"


def hms(seconds: float) -> str:
    """``1 h 02 min``, ``17 min 42 s`` or ``8 s``."""
    s = round(seconds or 0)
    if s >= 3600:
        return f"{s // 3600} h {s % 3600 // 60:02d} min"
    if s >= 60:
        return f"{s // 60} min {s % 60:02d} s"
    return f"{s} s"


def md_table(headers: list, rows: list) -> str:
    lines = ["| " + " | ".join(str(h) for h in headers) + " |",
             "|" + "|".join("---" for _ in headers) + "|"]
    for r in rows:
        lines.append("| " + " | ".join(fmt(v) for v in r) + " |")
    return "\n".join(lines) + "\n"


def final(h: dict | None, key: str = "test_acc"):
    """Last value of ``h[key]``, or None when there is no history or no epoch."""
    if not h or not h.get(key):
        return None
    return h[key][-1]


def outcome(h: dict | None) -> str:
    """``"diverged"`` (NaN loss), ``"stuck"`` (chance accuracy) or the final accuracy."""
    if h is None:
        return "-"
    if h.get("stopped"):
        return "diverged"
    acc = final(h)
    if acc is None:
        return "-"
    if acc <= 11.0 and len(h.get("epoch", [])) >= 5:
        return f"{acc:.2f} (stuck)"
    return f"{acc:.2f}"


# ----------------------------------------------------------------- files
def _clean(v):
    if isinstance(v, float) and not math.isfinite(v):
        return None
    if isinstance(v, (np.floating,)):
        return _clean(float(v))
    if isinstance(v, (np.integer,)):
        return int(v)
    if isinstance(v, (list, tuple)):
        return [_clean(u) for u in v]
    if isinstance(v, dict):
        return {str(k): _clean(u) for k, u in v.items()}
    return v


def write_json(path: str, obj) -> str:
    text = json.dumps(_clean(obj), indent=1)
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def write_text(path: str, text: str) -> str:
    atomic_write(path, lambda f: f.write(text.encode()))
    return path


def machine() -> str:
    threads = os.environ.get("OMP_NUM_THREADS", "unset")
    own = getattr(tinynet, "get_num_threads", None)
    own = f", tinynet threads {own()}" if own else ""
    return (f"{platform.node()}: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}{own}, Python "
            f"{platform.python_version()}, {tinynet.backend.name()}")


QUICK_STAMP = "QUICK: a subset, few epochs; not a replication"


def save_plot(fig, path: str, quick: bool = False) -> str:
    """Write ``fig`` as PNG (atomically); a quick run's plot says QUICK in its corner."""
    from tinynet.plot import save_figure
    if quick:
        fig.text(0.995, 0.005, QUICK_STAMP, ha="right", va="bottom", fontsize=9,
                 color="red", fontweight="bold")
    return save_figure(fig, path)


def line_plot(path: str, series: list, xlabel: str, ylabel: str, title: str = "",
              logy: bool = False, logx: bool = False, hlines: list | None = None,
              ylim: tuple | None = None, quick: bool = False) -> str:
    """One axes: ``series`` is a list of ``(x, y, label, style)`` (style may be "");
    ``ylim`` clips the y axis (points outside are off the plot; say so in the title);
    ``quick`` stamps the plot QUICK."""
    from tinynet.plot import figure

    fig, ax = figure(figsize=(7, 4.5))
    for x, y, label, style in series:
        y = [np.nan if v is None else v for v in y]
        ax.plot(x, y, style or "-", label=label, lw=1.2, ms=3)
    for value, label in hlines or []:
        ax.axhline(value, color="grey", ls=":", lw=1, label=label)
    if logy:
        ax.set_yscale("log")
    if logx:
        ax.set_xscale("log")
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if title:
        ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    save_plot(fig, path, quick)
    return path


def panels_plot(path: str, panels: list, xlabel: str, ylabel: str, title: str,
                logy: bool = False, quick: bool = False, sharey: bool = True) -> str:
    """Side-by-side axes: ``panels`` is a list of ``(panel title, series)`` or
    ``(panel title, series, ylabel, logy)``, each series as in :func:`line_plot`."""
    from tinynet.plot import figure

    fig, axes = figure(1, len(panels), figsize=(4.2 * len(panels), 4.2),
                             sharey=sharey, squeeze=False)
    for j, (ax, panel) in enumerate(zip(axes[0], panels)):
        name, series = panel[0], panel[1]
        label_y = panel[2] if len(panel) > 2 else (ylabel if j == 0 or not sharey else None)
        for x, y, label, style in series:
            ax.plot(x, [np.nan if v is None else v for v in y], style or "-", label=label,
                    lw=1.2, ms=3)
        if (panel[3] if len(panel) > 3 else logy):
            ax.set_yscale("log")
        ax.set_title(name, fontsize=10)
        ax.set_xlabel(xlabel)
        if label_y:
            ax.set_ylabel(label_y)
        ax.grid(alpha=0.3)
    axes[0][0].legend(fontsize=7)
    fig.suptitle(title, fontsize=10)
    return save_plot(fig, path, quick)


def quick_headings(table: str) -> str:
    """Every markdown heading of a quick run's table starts with ``QUICK:``."""
    return "\n".join(re.sub(r"^(#+ )", r"\1QUICK: ", line) if line.startswith("#") else line
                     for line in table.splitlines()) + ("\n" if table.endswith("\n") else "")


def finish(out_dir: str, name: str, title: str, table: str, runs: dict, files: list,
           summary: str, quick: bool, seed: int, seconds: float, notes: str = "") -> dict:
    """Write ``table.md``, ``histories.json`` and ``meta.json``, print the table, return
    the result dict.

    ``runs`` maps a run's key to whatever ``train_pair`` returned (or any JSON-able dict).
    ``meta.json`` records the code's git commit, the machine, when the study finished,
    the wall seconds of this invocation and the training seconds of all its runs
    (whenever they ran: runs reused from an earlier invocation keep their own time).
    """
    header = f"# {name.upper()}{' (QUICK)' if quick else ''}: {title}\n\n"
    if quick:
        header += ("**QUICK MODE**: a small subset and few epochs, to check that the study "
                   "runs; the numbers are not a replication.\n\n")
        table = quick_headings(table)
    body = header + table + ("\n" + notes.strip() + "\n" if notes else "")
    table_path = write_text(os.path.join(out_dir, "table.md"), body)
    json_path = write_json(os.path.join(out_dir, "histories.json"),
                           {"study": name, "quick": quick, "seed": seed, "runs": runs})
    meta = {"study": name, "title": title, "quick": quick, "seed": seed,
            "seconds": seconds, "train_seconds": compute_seconds(runs),
            "code": code_version(), "machine": machine(), "summary": summary,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "files": [os.path.basename(f) for f in files]}
    write_json(os.path.join(out_dir, "meta.json"), meta)
    cache = checkpoint_dir(out_dir)
    if os.path.isdir(cache) and not os.listdir(cache):
        os.rmdir(cache)
    print(body, flush=True)
    say(summary)
    return {"table": body, "files": [table_path, json_path] + list(files), "summary": summary}
