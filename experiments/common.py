"""What every study shares: data (with quick subsets), the tinynet run and its PyTorch
twin, tables, JSON histories, plots and the study's metadata.

A study calls :func:`train_pair` for each configuration. It builds the tinynet model
under ``tinynet.manual_seed(seed)``, copies its ``state_dict`` into a
``torch.nn.Sequential`` twin built layer for layer (:func:`to_torch`), and trains both on
the same batches in the same order (both draw them from a tinynet ``DataLoader`` with the
same seed), so the two columns differ only by floating-point rounding.
"""

from __future__ import annotations

import json
import math
import os
import platform
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
def _cifar_from_tar(split: str):
    """Fallback reader of ``$TINYNET_DATA/cifar10-jpeg/cifar10-jpeg.tar.gz`` (JPEG files
    ``<split>/<class>/NNNN.jpg``), used only while ``tinynet.data`` has no cifar10-jpeg.

    Returns uint8 images ``(N, 32, 32, 3)`` and int64 labels ``(N,)`` in sorted-name order.
    """
    import io
    import tarfile

    from PIL import Image

    classes = ["airplane", "automobile", "bird", "cat", "deer", "dog", "frog", "horse",
               "ship", "truck"]
    roots = [os.environ.get("TINYNET_DATA", ""), "/work/shared/data"]
    path = next((os.path.join(r, "cifar10-jpeg", "cifar10-jpeg.tar.gz") for r in roots
                 if r and os.path.isfile(os.path.join(r, "cifar10-jpeg", "cifar10-jpeg.tar.gz"))),
                None)
    if path is None:
        raise tinynet.DataError("cifar10-jpeg not found: set TINYNET_DATA to the folder "
                                "holding cifar10-jpeg/cifar10-jpeg.tar.gz")
    cache = os.path.join(tinynet.data.cache_dir(), "experiments", f"cifar10-jpeg-{split}.npz")
    if os.path.isfile(cache):
        with np.load(cache, allow_pickle=False) as f:
            return f["images"], f["labels"]
    found = []
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            parts = member.name.strip("./").split("/")
            if not member.isfile() or len(parts) < 3 or parts[-3] != split:
                continue
            if parts[-2] not in classes:
                continue
            data = tar.extractfile(member).read()
            img = np.asarray(Image.open(io.BytesIO(data)).convert("RGB"), dtype=np.uint8)
            found.append((parts[-2], parts[-1], img))
    found.sort(key=lambda r: (classes.index(r[0]), r[1]))
    images = np.stack([r[2] for r in found])
    labels = np.array([classes.index(r[0]) for r in found], dtype=np.int64)

    def write(f):
        np.savez(f, images=images, labels=labels)
    atomic_write(cache, write)
    return images, labels


def load(name: str, split: str):
    """``tinynet.data.load`` (no download), falling back to the tar reader for CIFAR.

    The JPEG copy of CIFAR-10 lost the original sample order (its files sort by class),
    so its images are put in one fixed random order (``default_rng(0)``), the same
    whichever reader was used: "the first 40,000" and the quick subsets then hold
    every class.
    """
    if name == "cifar10-jpeg":
        if name in tinynet.data.DATASETS:
            images, labels = tinynet.data.load(name, split, download=False, progress=False)
        else:
            images, labels = _cifar_from_tar(split)
        order = np.lexsort((np.arange(len(labels)), labels))  # by class, then as read
        order = order[np.random.default_rng(0).permutation(len(order))]
        return images[order], labels[order]
    return tinynet.data.load(name, split, download=False, progress=False)


def dataset(name: str, quick: bool, train_slice: slice | None = None,
            test_split: str = "test", test_slice: slice | None = None):
    """``(train, test)`` pairs of ``(images, labels)``; --quick keeps the first
    QUICK_TRAIN / QUICK_TEST of each."""
    tr = load(name, "train")
    te = load(name, test_split) if test_split != "train" else tr
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
              step0: int = 0) -> dict:
    """PyTorch's twin of ``tinynet.fit``: same batches (a tinynet DataLoader with the
    same seed), same history keys. ``loss_kind`` "ce" (labels) or "mse" (the input
    itself, for auto-encoders)."""
    import torch
    torch.manual_seed(seed)
    optimizer = _torch_optimizer(twin, opt) if not hasattr(opt, "step") else opt
    loader = loader or DataLoader(train[0], train[1], batch_size=batch_size,
                                  shuffle=shuffle, seed=seed)
    h = _empty_history()
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
                correct += int((y.argmax(1) == tt).sum())
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


# ----------------------------------------------------------------- one configuration
def train_pair(label: str, build: Callable, opt: tuple, train, test, epochs: int,
               batch_size: int = 64, shuffle: bool = False, seed: int = 0,
               use_torch: bool = True, device: str = "cpu", grad_norm_steps: int = 0,
               max_steps: int | None = None, init: Callable | None = None,
               stop: Callable | None = None, twin_epochs: int | None = None,
               previous: dict | None = None, config: dict | None = None,
               keep_model: bool = False) -> dict:
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
            the runs are written as JSON).
        previous, config: the ``runs`` of an earlier ``histories.json`` of this study
            (:func:`previous_runs`) and what else defines this run; a run recorded there
            with the same settings is reused instead of trained again (runs repeat
            exactly, so this only saves time, e.g. when a study is rerun after a layer
            it needed has landed).

    Returns:
        ``{"label", "params", "tinynet": history, "torch": history or None}``.
    """
    settings = {"opt": list(opt[:2]), "data": fingerprint(train, test), "epochs": epochs, "batch_size": batch_size,
                "shuffle": shuffle, "seed": seed, "n_train": len(train[1]),
                "n_test": len(test[1]) if test is not None else 0,
                "grad_norm_steps": grad_norm_steps, "max_steps": max_steps,
                "twin_epochs": twin_epochs, "device": device, **(config or {})}
    settings = _clean(settings)
    old = (previous or {}).get(label)
    if old and old.get("settings") == settings and (old.get("torch") or not use_torch):
        say(f"[{label}] reused from the earlier histories.json (same settings)")
        if not use_torch:
            old = dict(old, torch=None)
        return old
    tinynet.manual_seed(seed)
    model = build()
    if init is not None:
        init(model)
    params = tinynet.count_parameters(model)
    twin = to_torch(model) if use_torch else None
    if device != "cpu":
        model.to(device)
    optimizer = _tinynet_optimizer(model, opt)
    loss_fn = tinynet.CrossEntropyLoss()
    loader = DataLoader(train[0], train[1], batch_size=batch_size, shuffle=shuffle, seed=seed,
                        device=device)
    norms: list[float] = []

    def norm_cb(step, loss, m):
        if len(norms) < grad_norm_steps:
            norms.append(global_grad_norm(m))

    say(f"[{label}] tinynet: {params:,} parameters, {opt[0]} lr={opt[1]}, batch {batch_size}, "
        f"shuffle={shuffle}, seed {seed}")
    h = _empty_history()
    start = time.perf_counter()
    steps_done = 0
    for epoch in range(1, epochs + 1):
        e = tinynet.fit(model, loss_fn, optimizer, loader, test, epochs=1, progress=False,
                        callback=norm_cb if grad_norm_steps else None,
                        max_steps=None if max_steps is None else max_steps - steps_done,
                        log=None)
        for k in ("train_loss", "train_acc", "test_loss", "test_acc", "seconds", "steps"):
            h[k] += e[k]
        if e["epoch"]:
            h["epoch"].append(epoch)
            say(f"[{label}] tinynet epoch {epoch}: train loss {e['train_loss'][0]:.4f}, "
                f"test loss {e['test_loss'][0]:.4f}, test acc {e['test_acc'][0]:.2f}% "
                f"({e['seconds'][0]:.1f} s)")
        steps_done += len(e["steps"])
        if e["stopped"]:
            h["stopped"] = e["stopped"].replace("epoch 1", f"epoch {epoch}")
            say(f"[{label}] tinynet stopped: {h['stopped']}")
            break
        if (max_steps is not None and steps_done >= max_steps) or (stop and stop(h)):
            break
    h["total_seconds"] = time.perf_counter() - start
    if grad_norm_steps:
        h["grad_norm"] = norms
    out = {"label": label, "params": params, "settings": settings, "tinynet": h,
           "torch": None}
    if twin is not None:
        tnorms: list[float] = []

        def tcb(step, loss, m):
            if len(tnorms) < grad_norm_steps:
                tnorms.append(torch_grad_norm(m))
        n_ep = twin_epochs if twin_epochs is not None else max(len(h["epoch"]), 1)
        th = torch_fit(twin, opt, train, test, n_ep, batch_size, shuffle, seed,
                       callback=tcb if grad_norm_steps else None, max_steps=max_steps)
        if grad_norm_steps:
            th["grad_norm"] = tnorms
        last = th["test_acc"][-1] if th["test_acc"] else float("nan")
        say(f"[{label}] torch twin: {len(th['epoch'])} epochs, test acc {last:.2f}% "
            f"({th['total_seconds']:.1f} s)" + (f"; stopped: {th['stopped']}" if th["stopped"]
                                                else ""))
        out["torch"] = th
    if keep_model:
        out["_model"] = model
    return out


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
    return old.get("runs", {})


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
    return (f"{platform.node()}: {platform.processor() or platform.machine()}, "
            f"{os.cpu_count()} CPUs, OMP_NUM_THREADS={threads}, Python "
            f"{platform.python_version()}, {tinynet.backend.name()}")


def line_plot(path: str, series: list, xlabel: str, ylabel: str, title: str = "",
              logy: bool = False, logx: bool = False, hlines: list | None = None,
              ylim: tuple | None = None) -> str:
    """One axes: ``series`` is a list of ``(x, y, label, style)`` (style may be "");
    ``ylim`` clips the y axis (points outside are off the plot; say so in the title)."""
    import matplotlib
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinynet.plot import save_figure
    fig, ax = plt.subplots(figsize=(7, 4.5))
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
    save_figure(fig, path)
    return path


def finish(out_dir: str, name: str, title: str, table: str, runs: dict, files: list,
           summary: str, quick: bool, seed: int, seconds: float, notes: str = "") -> dict:
    """Write ``table.md`` and ``histories.json``, print the table, return the result dict.

    ``runs`` maps a run's key to whatever ``train_pair`` returned (or any JSON-able dict).
    """
    header = f"# {name.upper()}: {title}\n\n"
    if quick:
        header += ("**QUICK MODE**: a small subset and few epochs, to check that the study "
                   "runs; the numbers are not a replication.\n\n")
    body = header + table + ("\n" + notes.strip() + "\n" if notes else "")
    table_path = write_text(os.path.join(out_dir, "table.md"), body)
    json_path = write_json(os.path.join(out_dir, "histories.json"),
                           {"study": name, "quick": quick, "seed": seed, "runs": runs})
    meta = {"study": name, "title": title, "quick": quick, "seed": seed,
            "seconds": seconds, "train_seconds": compute_seconds(runs), "machine": machine(), "summary": summary,
            "finished": time.strftime("%Y-%m-%d %H:%M:%S UTC", time.gmtime()),
            "files": [os.path.basename(f) for f in files]}
    write_json(os.path.join(out_dir, "meta.json"), meta)
    print(body, flush=True)
    say(summary)
    return {"table": body, "files": [table_path, json_path] + list(files), "summary": summary}
