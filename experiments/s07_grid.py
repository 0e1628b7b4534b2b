"""S7: architecture x activation grid on CIFAR-10 (report 002, Q3).

SGD lr 0.01, batch 64, no shuffling, 20 epochs; train on the first 40,000 training
images, validate on the last 10,000. Hidden widths (784, 256) vs (1024, 512, 64, 64);
ReLU / tanh / sigmoid. Table of validation accuracy (report / tinynet / twin); plot of
validation accuracy per epoch.

Then the evidence on why the replication lands below the report (tinynet only, ReLU,
both architectures, otherwise the same settings): the training and validation images
re-encoded as JPEG at lower qualities (``JPEG_QUALITIES``: how fast accuracy falls with
compression); the 50,000 training images in other fixed orders (``ORDER_SEEDS``: which
40,000 train and in what order); other initial weights (``INIT_SEEDS``: the noise
floor); and Glorot initialisation (report 002's own MLP code was its own, not PyTorch's).
Last, the tanh and sigmoid cells of the grid again with Glorot initialisation.
"""

from __future__ import annotations

import io
import os
import time

import numpy as np

import tinynet
from tinynet import models

from . import common
from .s06_init import glorot_init

NAME = "s7"
TITLE = "Architecture x activation grid, CIFAR-10 (validation on the last 10,000)"
EPOCHS = 20
LR = 0.01
ARCHS = {"784-256": (784, 256), "1024-512-64-64": (1024, 512, 64, 64)}
ACTS = ["relu", "tanh", "sigmoid"]
REPORTED = {("relu", "784-256"): 50.05, ("relu", "1024-512-64-64"): 51.21,
            ("tanh", "784-256"): 48.6, ("tanh", "1024-512-64-64"): 49.31,
            ("sigmoid", "784-256"): 35.16, ("sigmoid", "1024-512-64-64"): 17.39}
JPEG_QUALITIES = (50, 25, 10)
ORDER_SEEDS = (1, 2)
INIT_SEEDS = (1, 2)
IJG_LUMA = [16, 11, 10, 16, 24, 40, 51, 61]   # first row of JPEG's standard luminance table
DISCUSSION = """The ordering of the activations is the report's: ReLU > tanh >> sigmoid
in both architectures, and sigmoid in the four-hidden-layer net fails (ours stuck at
chance, 10.1%; the report's 17.39%). With PyTorch's default initialisation (the grid
above) our accuracies are 2 to 6 points below the report's, and the deeper net does not
overtake the shallow one as it did there (45.30 vs 47.87 with ReLU; report 51.21 vs
50.05). The PyTorch twins, from the same weights and batches, give the same numbers
(identical for tanh and sigmoid, within 0.34 points for ReLU), so the gap is not in
tinynet's arithmetic. The evidence runs (ReLU, both architectures, tinynet, second
table) test three causes. JPEG: re-encoding the copy (itself quality 75) at quality 50,
25 and 10 (PSNR 28.7, 26.5 and 23.4 dB against it) costs 0.4, 1.0 and 2.7 points for
784-256 and 0.5, 0.5 and 2.4 for the deeper net, so the copy's own quality-75
compression, milder than quality 50, plausibly costs well under a point. Order and
initial draw: two other fixed orders of the 50,000 images and two other initial draws
move accuracy by 1.1 points at most (784-256: 48.16 +- 0.34 over orders, 48.15 +- 0.28
over draws; 1024-512-64-64: 45.66 +- 0.31 and 44.70 +- 0.56), and the deeper net stays
2.1 to 4.0 points behind in every one of these variants. Initialisation scheme: with
Glorot (Xavier uniform weights, zero biases), the scheme report 002 found best for its
own MLP in its Q2 (its Q3 does not name the initialisation it used), the same runs reach
50.13 and 50.70, within 0.1 and 0.5 points of the report's 50.05 and 51.21, and the
deeper net is ahead again (+0.57; report +1.16). So the gap and the swapped ranking come
from the initialisation, not from the JPEG copy or the sample order. Glorot gains 2.3
points for 784-256 and 5.4 for the deeper net, as expected from the forward signal:
PyTorch's default, U(+-1/sqrt(fan_in)) (weight variance 1/(3 fan_in)), divides the
variance of a ReLU net's activations by 6 at every layer, Glorot (variance 2/(fan_in +
fan_out)) by at most 2 in these nets, so the five-layer net starts with the weakest
signal. The third table runs the whole grid with Glorot: every cell then lands within
1.5 points of the report (ReLU 50.13 / 50.70, tanh 48.86 / 50.11, sigmoid 36.62 / 17.29
against 50.05 / 51.21, 48.60 / 49.31, 35.16 / 17.39), the deeper net is ahead for ReLU
and tanh as there, and the deep sigmoid net barely learns but leaves chance (train loss
2.31 to 2.23 over 20 epochs, 17.29% against the report's 17.39%), where with PyTorch's
init it never left it. So report 002's grid is replicated once its initialisation is;
the 2 to 6 points were the initialisation, not the data or tinynet."""


def run(out_dir: str, quick: bool = False, seed: int = 0, use_torch: bool = True,
        device: str = "cpu") -> dict:
    t0 = time.perf_counter()
    os.makedirs(out_dir, exist_ok=True)
    epochs = common.QUICK_EPOCHS if quick else EPOCHS
    common.say(f"S7: seed {seed}; {'QUICK MODE (subset, few epochs)' if quick else 'full'}; "
               f"SGD lr {LR}, batch 64, no shuffle, {epochs} epochs; train on the first "
               f"40,000, validate on the last 10,000 training images")
    source = common.cifar_name()
    split = {"train_slice": slice(0, 40_000), "test_split": "train",
             "test_slice": slice(40_000, 50_000)}
    train, val = common.dataset("cifar10", quick, **split)
    previous = common.previous_runs(out_dir, quick, seed)
    runs, rows, series = {}, [], []
    for j, (arch, hidden) in enumerate(ARCHS.items()):
        for i, act in enumerate(ACTS):
            key = f"{act}_{arch}"

            def build(hidden=hidden, act=act):
                return models.mlp(3072, hidden, act=act)
            r = common.train_pair(key, build, ("sgd", LR), train, val, epochs, 64, False,
                                  seed, use_torch, device, previous=previous,
                                  config={"arch": arch, "act": act},
                                  checkpoint_dir=common.checkpoint_dir(out_dir))
            runs[key] = r
            common.save_partial(out_dir, NAME, runs, quick, seed)
            rows.append([act, arch, r["params"], REPORTED[(act, arch)],
                         common.outcome(r["tinynet"]), common.outcome(r["torch"]),
                         common.hms(r["tinynet"]["total_seconds"])])
            h = r["tinynet"]
            series.append((h["epoch"], h["test_acc"], f"{act}, {arch}",
                           f"C{i}{'-' if j == 0 else '--'}o"))
    path = os.path.join(out_dir, "val_accuracy.png")
    common.line_plot(path, series, "epoch", "validation accuracy (%)",
                     "S7: validation accuracy (solid 784-256, dashed 1024-512-64-64)", quick=quick)
    table = f"## {common.data_label(source)}: validation accuracy after {epochs} epochs (%)\n\n"
    table += common.md_table(["activation", "hidden", "parameters", "report", "tinynet",
                              "PyTorch twin", "tinynet train time"], rows)
    ev_table, ev_files = _evidence(out_dir, quick, seed, device, epochs, source, train, val,
                                   split, runs, previous)
    table += ev_table
    table += _glorot_grid(out_dir, quick, seed, device, epochs, train, val, runs, previous)
    summary = "S7 validation accuracy: " + "; ".join(
        f"{k} {common.outcome(r['tinynet'])}" for k, r in runs.items()
        if not k.startswith("evidence "))
    return common.finish(out_dir, NAME, TITLE, table, runs, [path] + ev_files, summary, quick,
                         seed, time.perf_counter() - t0)


def _glorot_grid(out_dir, quick, seed, device, epochs, train, val, runs, previous) -> str:
    """The whole grid again with Glorot init (tinynet only): does the initialisation also
    explain the tanh and sigmoid cells? ReLU reuses the evidence's Glorot runs."""
    rows = []
    for act in ACTS:
        row = [act]
        for arch, hidden in ARCHS.items():
            key = (f"evidence Glorot init {arch}" if act == "relu"
                   else f"glorot {act}_{arch}")
            if key not in runs:
                runs[key] = common.train_pair(
                    key, lambda hidden=hidden, act=act: models.mlp(3072, hidden, act=act),
                    ("sgd", LR), train, val, epochs, 64, False, seed, False, device,
                    previous=previous, init=glorot_init,
                    config={"arch": arch, "act": act, "variant": "Glorot init"},
                    checkpoint_dir=common.checkpoint_dir(out_dir))
                common.save_partial(out_dir, NAME, runs, quick, seed)
            row += [f"{REPORTED[(act, arch)]:.2f}",
                    common.outcome(runs[f"{act}_{arch}"]["tinynet"]),
                    common.outcome(runs[key]["tinynet"])]
        rows.append(row)
    head = ["activation"] + [f"{arch} {col}" for arch in ARCHS
                             for col in ("report", "PyTorch init", "Glorot")]
    return (f"\n## The grid with Glorot init, validation accuracy after {epochs} epochs (%), "
            "tinynet only\n\nPyTorch init: the grid above (PyTorch's default "
            "initialisation). Glorot: Xavier uniform weights, zero biases; otherwise the "
            "same run.\n\n" + common.md_table(head, rows))


def jpeg_quality(path: str) -> tuple:
    """``(quality, chroma subsampling)`` of the first JPEG in the archive ``path``, read
    off its luminance quantisation table (the IJG scaling of JPEG's standard table) and
    its sampling factors; ``(None, None)`` when it matches no IJG quality."""
    import tarfile

    from PIL import Image
    with tarfile.open(path, "r:gz") as tar:
        for member in tar:
            if member.isfile() and member.name.lower().endswith(".jpg"):
                with Image.open(io.BytesIO(tar.extractfile(member).read())) as im:
                    table = list(im.quantization[0])[:8]
                    layers = getattr(im, "layer", None)
                break
        else:
            return None, None
    for q in range(1, 101):
        scale = 5000 // q if q < 50 else 200 - 2 * q
        if [max(1, min(255, (b * scale + 50) // 100)) for b in IJG_LUMA] == table:
            sub = None
            if layers:
                h, v = layers[0][1], layers[0][2]
                sub = {(1, 1): "4:4:4", (2, 1): "4:2:2", (2, 2): "4:2:0"}.get((h, v), f"{h}x{v}")
            return q, sub
    return None, None


def reencode(images: np.ndarray, quality: int) -> np.ndarray:
    """Every image through JPEG at ``quality`` (Pillow's default 4:2:0 subsampling)."""
    from PIL import Image
    out = np.empty_like(images)
    for i, img in enumerate(images):
        buf = io.BytesIO()
        Image.fromarray(img).save(buf, format="JPEG", quality=quality)
        buf.seek(0)
        with Image.open(buf) as im:
            out[i] = np.asarray(im.convert("RGB"))
    return out


def psnr(a: np.ndarray, b: np.ndarray) -> float:
    mse = float(np.mean((a.astype(np.float64) - b.astype(np.float64)) ** 2))
    return float("inf") if mse == 0 else 10 * np.log10(255.0 ** 2 / mse)


def first_generation_psnr(images: np.ndarray, quality: int) -> float:
    """PSNR of one JPEG encoding at ``quality`` of images that are not on JPEG's 8x8 grid
    (the last 28x28 pixels of each, so the blocks straddle the old ones): an estimate of
    what one encoding at that quality costs images that were never compressed."""
    crops = np.ascontiguousarray(images[:, 4:, 4:])
    return psnr(crops, reencode(crops, quality))


def _evidence(out_dir, quick, seed, device, epochs, source, train, val, split, runs, previous):
    """The runs that bound the JPEG, order and initialisation effects (module docstring)."""
    qualities = JPEG_QUALITIES[1:2] if quick else JPEG_QUALITIES
    orders = ORDER_SEEDS[:1] if quick else ORDER_SEEDS
    inits = INIT_SEEDS[:1] if quick else INIT_SEEDS
    ckpt = common.checkpoint_dir(out_dir)
    variants = [(f"JPEG q{q}", {"jpeg": q}) for q in qualities]
    variants += [(f"order {o}", {"order": o}) for o in orders]
    variants += [(f"init seed {s}", {"seed": s}) for s in inits]
    variants.append(("Glorot init", {"glorot": True}))
    common.say(f"S7 evidence: {len(variants)} variants x 2 architectures, ReLU, tinynet only")
    copy_q, copy_sub = (None, None)
    if source == "cifar10-jpeg":
        folder = tinynet.data.find("cifar10-jpeg", "train")
        copy_q, copy_sub = jpeg_quality(os.path.join(folder, "cifar10-jpeg.tar.gz"))
    both = np.concatenate([train[0], val[0]])
    psnrs, datasets = {}, {}
    for name, v in variants:
        if "jpeg" in v:
            t0 = time.perf_counter()
            re = reencode(both, v["jpeg"])
            psnrs[name] = psnr(both, re)
            n = len(train[1])
            datasets[name] = ((re[:n], train[1]), (re[n:], val[1]))
            common.say(f"[{name}] re-encoded {len(both):,} images, PSNR {psnrs[name]:.1f} dB "
                       f"against the data as read ({time.perf_counter() - t0:.0f} s)")
        elif "order" in v:
            datasets[name] = common.dataset("cifar10", quick, order_seed=v["order"], **split)
        else:
            datasets[name] = (train, val)
    est = first_generation_psnr(both[:2000], copy_q) if copy_q else None
    rows, acc = [], {}
    for name, v in variants:
        tr, va = datasets[name]
        row = [name, f"{psnrs[name]:.1f}" if name in psnrs else "-"]
        for arch, hidden in ARCHS.items():
            key = f"evidence {name} {arch}"
            r = common.train_pair(
                key, lambda hidden=hidden: models.mlp(3072, hidden, act="relu"), ("sgd", LR),
                tr, va, epochs, 64, False, v.get("seed", seed), False, device,
                previous=previous, init=glorot_init if v.get("glorot") else None,
                config={"arch": arch, "act": "relu", "variant": name},
                checkpoint_dir=ckpt)
            runs[key] = r
            common.save_partial(out_dir, NAME, runs, quick, seed)
            acc[(name, arch)] = common.final(r["tinynet"])
            row.append(common.outcome(r["tinynet"]))
        a, b = acc[(name, "784-256")], acc[(name, "1024-512-64-64")]
        row.append(f"{b - a:+.2f}" if a is not None and b is not None else "-")
        rows.append(row)
    base = [common.final(runs[f"relu_{arch}"]["tinynet"]) for arch in ARCHS]
    rows.insert(0, ["as in the grid above (order 0, init seed 0)", "-",
                    *[f"{x:.2f}" for x in base], f"{base[1] - base[0]:+.2f}"])
    rows.insert(0, ["report 002", "-", *[f"{REPORTED[('relu', a)]:.2f}" for a in ARCHS],
                    f"{REPORTED[('relu', '1024-512-64-64')] - REPORTED[('relu', '784-256')]:+.2f}"])
    table = (f"\n## Why below the report? ReLU, validation accuracy after {epochs} epochs "
             "(%), tinynet only\n\n")
    if copy_q:
        table += (f"The JPEG copy itself is quality {copy_q} with {copy_sub} chroma subsampling "
                  "(read off its quantisation tables). One encoding at that quality of "
                  f"images that were never compressed costs about {est:.1f} dB of PSNR "
                  "(estimated on the copy's images shifted off the 8x8 grid). PSNR below "
                  "is that of each re-encoding against the copy as read.\n\n")
    table += common.md_table(["variant", "PSNR dB", "784-256", "1024-512-64-64",
                              "deeper - shallower"], rows)
    spreads = []
    for label, names in (("init seeds", [n for n, v in variants if "seed" in v]),
                         ("orders", [n for n, v in variants if "order" in v])):
        for arch in ARCHS:
            vals = [common.final(runs[f"relu_{arch}"]["tinynet"])] + [acc[(n, arch)]
                                                                     for n in names]
            spreads.append([label, arch, common.spread(vals)])
    table += "\nSpread over seeds and orders (the grid's run included):\n\n"
    table += common.md_table(["varied", "hidden", "mean ± sd (range)"], spreads)
    path = os.path.join(out_dir, "jpeg_quality.png")
    qs = [copy_q or 100] + list(qualities)
    series = []
    for j, arch in enumerate(ARCHS):
        ys = [base[j]] + [acc[(f"JPEG q{q}", arch)] for q in qualities]
        series.append((qs, ys, f"ReLU {arch}", f"C{j}o-"))
    where = f"the copy as read is q{copy_q}" if copy_q else "the data as read is plotted at 100"
    common.line_plot(path, series, "JPEG quality of the training and validation images",
                     "validation accuracy (%)", f"S7: accuracy against JPEG quality ({where})",
                     quick=quick)
    return table, [path]


if __name__ == "__main__":   # the same as: python -m experiments s7 ...
    from .__main__ import study_main
    raise SystemExit(study_main(__spec__.name))
