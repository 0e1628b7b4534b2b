"""``tinynet gradcheck``: every layer under several configurations and every study model.

Each configuration is a small function returning ``(module, x, target, loss_fn)``;
``run_suite`` checks each with :func:`tinynet.gradcheck.check` and prints one table,
one row per configuration (the worst tensor of the configuration, the smallest Taylor
slope, elements and directions checked, probes skipped at kinks). The exit status is
non-zero when anything fails. ``--verbose`` adds every configuration's per-tensor
table; ``--only NAME`` keeps the configurations whose name, layer type or model name
contains NAME (case-insensitive), e.g. ``--only conv``, ``--only convbn``.
"""

from __future__ import annotations

import argparse
import os
import sys
import textwrap
import time
from collections.abc import Callable

import numpy

from .. import losses, models
from .. import random as _random
from ..io import atomic_write
from ..kernels import KINDS, get_kernels
from ..layers import (
    ELU,
    GELU,
    AdaptiveAvgPool2d,
    AvgPool2d,
    BatchNorm1d,
    BatchNorm2d,
    Conv2d,
    Dropout,
    Dropout2d,
    Flatten,
    Identity,
    LayerNorm,
    LeakyReLU,
    Linear,
    LogSoftmax,
    MaxPool2d,
    ReLU,
    Residual,
    Sigmoid,
    SiLU,
    Softmax,
    Tanh,
    residual_block,
)
from ..module import Sequential
from ..textable import format_table
from .check import DEFAULTS, check, kernels_in_force

Config = Callable[[numpy.random.Generator], tuple]

# batch of the study models: BatchNorm's statistics need a few samples to be
# well conditioned (with N = 2 every normalised value is +-1)
MODEL_BATCH = {"bn": 8, "wider-bn": 8, "deeper-bn": 8, "convbn": 4}
# a study model has up to 31 tensors of up to 3.1M elements: 4 sampled elements (all
# of a tensor of at most 10), 2 directions and the Taylor test per tensor validate
# every one in seconds; the layer configurations above are checked exhaustively
MODEL_OPTIONS = {"samples": 4, "max_elements": 10}


def _normal(rng, *shape):
    return rng.standard_normal(shape)


def _labels(rng, n, c):
    return rng.integers(0, c, n)


def _layer(module, x):
    return lambda rng: (module(), x(rng), None, None)


def _bn_eval(cls, c, shape):
    def build(rng):
        bn = cls(c)
        bn.running_mean = rng.standard_normal(c).astype("float32")
        bn.running_var = rng.uniform(0.5, 2.0, c).astype("float32")
        bn.weight.data[...] = rng.uniform(0.5, 1.5, c)
        bn.bias.data[...] = rng.standard_normal(c)
        return bn.eval(), rng.standard_normal(shape), None, None
    return build


def _bn_train(cls, c, shape):
    def build(rng):
        bn = cls(c)
        bn.weight.data[...] = rng.uniform(0.5, 1.5, c)
        bn.bias.data[...] = rng.standard_normal(c)
        return bn, rng.standard_normal(shape), None, None
    return build


def _dropout(train: bool):
    def build(rng):
        m = Sequential(Linear(6, 5), Dropout(0.4), Linear(5, 3))
        return m.train(train), rng.standard_normal((4, 6)), None, None
    return build


def _relu_at_zero(rng):
    x = rng.standard_normal((4, 6))
    x[:, ::2] = 0.0          # exact kinks: these elements must be skipped, not failed
    return ReLU(), x, None, None


def _maxpool_ties(rng):
    x = rng.integers(0, 3, (2, 2, 6, 6)).astype("float64")   # many tied maxima
    return MaxPool2d(2, 2), x, None, None


def _loss(loss, kind):
    def build(rng):
        m = Sequential(Linear(5, 4), Tanh(), Linear(4, 3))
        x = rng.standard_normal((6, 5))
        if kind == "ce":
            return m, x, _labels(rng, 6, 3), loss
        if kind == "mse-prob":                      # targets in [0, 1] for BCE
            return m, x, rng.random((6, 3)), loss
        return m, x, rng.standard_normal((6, 3)), loss
    return build


def _class_loss(loss, target: str, shape=(6, 3), log_softmax: bool = False):
    """A small net feeding a class loss: targets are indices (some equal to the loss's
    ignore_index) or probabilities; ``shape`` (N, C) or (N, C, L) for K-dim outputs."""
    def build(rng):
        n, c = shape[0], shape[1]
        layers = [Linear(5, 4), Tanh(), Linear(4, c * (shape[2] if len(shape) > 2 else 1))]
        if len(shape) > 2:
            layers.append(_Reshape(shape))
        if log_softmax:
            layers.append(LogSoftmax(1))
        m = Sequential(*layers)
        x = rng.standard_normal((n, 5))
        if target == "probabilities":
            p = rng.random(shape)
            return m, x, p / p.sum(axis=1, keepdims=True), loss
        t = rng.integers(0, c, (n,) + tuple(shape[2:]))
        if target == "with ignored":
            t.reshape(-1)[::3] = loss.ignore_index
        return m, x, t, loss
    return build


class _Reshape(Flatten):
    """(N, C*L) -> (N, C, L): the inverse of a Flatten, for K-dimensional class outputs."""

    def __init__(self, shape) -> None:
        super().__init__()
        self._target = tuple(shape[1:])

    def forward(self, x):
        self._shape = tuple(x.shape)
        self._out_shape = (x.shape[0],) + self._target
        return x.reshape(self._out_shape)


def _residual(rng):
    body = Sequential(Conv2d(3, 3, 3, 1, 1), BatchNorm2d(3), ReLU(), Conv2d(3, 3, 3, 1, 1))
    return Residual(body), rng.standard_normal((2, 3, 5, 5)), None, None


def _model(name: str):
    def build(rng):
        m = models.build(name)
        n = MODEL_BATCH.get(name, 2)
        x = rng.random((n,) + models.INPUT_SHAPES[name])
        return m, x, _labels(rng, n, 10), losses.CrossEntropyLoss()
    return build


def configurations() -> dict[str, tuple[str, Config]]:
    """name -> (what it exercises, builder). Layer configurations first, then models."""
    c: dict[str, tuple[str, Config]] = {}

    def add(name, what, build):
        c[name] = (what, build)

    add("Linear(5,4)", "Linear", _layer(lambda: Linear(5, 4), lambda r: _normal(r, 3, 5)))
    add("Linear(5,4,bias=False)", "Linear",
        _layer(lambda: Linear(5, 4, bias=False), lambda r: _normal(r, 3, 5)))
    for act in (ReLU, Tanh, Sigmoid, LeakyReLU, ELU):
        add(f"{act.__name__}", act.__name__, _layer(act, lambda r: 2 * _normal(r, 4, 6)))
    add("LeakyReLU(0.2)", "LeakyReLU", _layer(lambda: LeakyReLU(0.2), lambda r: _normal(r, 4, 6)))
    add("ELU(0.5)", "ELU", _layer(lambda: ELU(0.5), lambda r: _normal(r, 4, 6)))
    add("ReLU at exact zeros", "ReLU", _relu_at_zero)
    add("Flatten", "Flatten", _layer(Flatten, lambda r: _normal(r, 2, 3, 2, 2)))
    add("Dropout(0.4) train", "Dropout", _dropout(True))
    add("Dropout(0.4) eval", "Dropout", _dropout(False))
    for args in [(2, 3, 3, 1, 0), (2, 3, 3, 1, 1), (2, 3, 3, 2, 1), (3, 2, (2, 3), (2, 1), (1, 0)),
                 (1, 2, 5, 1, 2), (2, 4, 1, 1, 0)]:
        add(f"Conv2d{args}", "Conv2d",
            _layer(lambda a=args: Conv2d(*a), lambda r, a=args: _normal(r, 2, a[0], 6, 5)))
    add("Conv2d(2,3,3,bias=False)", "Conv2d",
        _layer(lambda: Conv2d(2, 3, 3, bias=False), lambda r: _normal(r, 2, 2, 5, 5)))
    for label, make in [
            ("dilation 2", lambda: Conv2d(4, 6, 3, 1, 2, 2)),
            ("groups 2, dilation (2,1), stride 2", lambda: Conv2d(4, 6, 3, 2, 1, (2, 1), 2)),
            ("depthwise", lambda: Conv2d(4, 4, 3, 1, 1, groups=4)),
            ("padding='same', kernel (2,4)", lambda: Conv2d(4, 3, (2, 4), padding="same")),
            ("padding='valid'", lambda: Conv2d(4, 3, 3, padding="valid")),
            ("reflect", lambda: Conv2d(4, 3, 3, 1, 2, padding_mode="reflect")),
            ("replicate, stride 2", lambda: Conv2d(4, 3, 3, 2, (1, 2), padding_mode="replicate")),
            ("circular", lambda: Conv2d(4, 3, 3, 1, (2, 1), padding_mode="circular"))]:
        add(f"Conv2d {label}", "Conv2d", _layer(make, lambda r: _normal(r, 2, 4, 6, 7)))
    add("Conv2d unbatched (C, H, W)", "Conv2d",
        _layer(lambda: Conv2d(2, 3, 3, 1, 1), lambda r: _normal(r, 2, 5, 5)))
    for args in [(2, 2, 0), (3, 2, 1), (2, 1, 0), ((2, 3), (1, 2), (1, 1))]:
        add(f"MaxPool2d{args}", "MaxPool2d",
            _layer(lambda a=args: MaxPool2d(*a), lambda r: _normal(r, 2, 2, 6, 7)))
        add(f"AvgPool2d{args}", "AvgPool2d",
            _layer(lambda a=args: AvgPool2d(*a), lambda r: _normal(r, 2, 2, 6, 7)))
    add("MaxPool2d ties", "MaxPool2d", _maxpool_ties)
    for label, make in [("MaxPool2d(3,2,1,dilation=2)", lambda: MaxPool2d(3, 2, 1, 2)),
                        ("MaxPool2d(2,ceil_mode)", lambda: MaxPool2d(2, ceil_mode=True)),
                        ("MaxPool2d(3,2,1,ceil_mode)", lambda: MaxPool2d(3, 2, 1, ceil_mode=True)),
                        ("AvgPool2d(3,2,1,ceil_mode)", lambda: AvgPool2d(3, 2, 1, True)),
                        ("AvgPool2d(3,2,1,ceil_mode,count_include_pad=False)",
                         lambda: AvgPool2d(3, 2, 1, True, False)),
                        ("AvgPool2d(2,divisor_override=3)", lambda: AvgPool2d(2, divisor_override=3)),
                        ("AdaptiveAvgPool2d(3)", lambda: AdaptiveAvgPool2d(3)),
                        ("AdaptiveAvgPool2d((2,None))", lambda: AdaptiveAvgPool2d((2, None)))]:
        add(label, label.split("(")[0], _layer(make, lambda r: _normal(r, 2, 2, 7, 8)))
    for label, make in [("GELU", GELU), ("GELU('tanh')", lambda: GELU("tanh")), ("SiLU", SiLU),
                        ("Softmax(1)", lambda: Softmax(1)), ("LogSoftmax(1)", lambda: LogSoftmax(1)),
                        ("Identity", Identity)]:
        add(label, label.split("(")[0], _layer(make, lambda r: 2 * _normal(r, 4, 6)))
    add("Softmax(-1) on (2,3,5)", "Softmax", _layer(lambda: Softmax(-1), lambda r: _normal(r, 2, 3, 5)))
    add("Linear on (2,3,5)", "Linear", _layer(lambda: Linear(5, 4), lambda r: _normal(r, 2, 3, 5)))
    add("Dropout2d(0.4) train", "Dropout2d",
        _layer(lambda: Dropout2d(0.4), lambda r: _normal(r, 3, 4, 3, 3)))
    add("BatchNorm1d train", "BatchNorm1d", _bn_train(BatchNorm1d, 4, (6, 4)))
    add("BatchNorm1d eval", "BatchNorm1d", _bn_eval(BatchNorm1d, 4, (6, 4)))
    add("BatchNorm2d train", "BatchNorm2d", _bn_train(BatchNorm2d, 3, (3, 3, 4, 4)))
    add("BatchNorm2d eval", "BatchNorm2d", _bn_eval(BatchNorm2d, 3, (3, 3, 4, 4)))
    for label, make in [("LayerNorm(6)", lambda: LayerNorm(6)),
                        ("LayerNorm((3,4)) no bias", lambda: LayerNorm((3, 4), bias=False)),
                        ("LayerNorm(6,elementwise_affine=False)",
                         lambda: LayerNorm(6, elementwise_affine=False))]:
        shape = (2, 5, 3, 4) if "(3,4)" in label else (4, 6)
        add(label, "LayerNorm", _layer(make, lambda r, s=shape: 2 * _normal(r, *s) + 1))
    add("BatchNorm1d (N,C,L) train", "BatchNorm1d", _bn_train(BatchNorm1d, 4, (3, 4, 5)))
    add("Residual(conv-bn-relu-conv)", "Residual", _residual)
    add("residual_block(3,4,stride 2)", "Residual",
        _layer(lambda: residual_block(3, 4, 2), lambda r: _normal(r, 2, 3, 6, 6)))
    add("CrossEntropyLoss mean", "CrossEntropyLoss", _loss(losses.CrossEntropyLoss(), "ce"))
    add("CrossEntropyLoss sum", "CrossEntropyLoss",
        _loss(losses.CrossEntropyLoss(reduction="sum"), "ce"))
    add("MSELoss mean", "MSELoss", _loss(losses.MSELoss(), "mse"))
    add("MSELoss sum", "MSELoss", _loss(losses.MSELoss(reduction="sum"), "mse"))
    ce = losses.CrossEntropyLoss
    w3 = numpy.array([0.5, 2.0, 1.0])
    for label, loss, target, shape in [
            ("label_smoothing 0.2", ce(label_smoothing=0.2), "indices", (6, 3)),
            ("ignore_index 1", ce(ignore_index=1), "with ignored", (6, 3)),
            ("weight, label_smoothing, ignore_index",
             ce(w3, ignore_index=2, label_smoothing=0.1), "with ignored", (6, 3)),
            ("K-dim (N, C, L)", ce(), "indices", (3, 3, 4)),
            ("probabilities, smoothing", ce(label_smoothing=0.1), "probabilities", (6, 3)),
            ("sum, weight", ce(w3, reduction="sum"), "indices", (6, 3))]:
        add(f"CrossEntropyLoss {label}", "CrossEntropyLoss", _class_loss(loss, target, shape))
    add("NLLLoss after LogSoftmax, weight, ignore_index", "NLLLoss",
        _class_loss(losses.NLLLoss(w3, ignore_index=0), "with ignored", log_softmax=True))
    add("L1Loss mean", "L1Loss", _loss(losses.L1Loss(), "mse"))
    add("BCEWithLogitsLoss", "BCEWithLogitsLoss", _loss(losses.BCEWithLogitsLoss(), "mse-prob"))
    add("BCEWithLogitsLoss weight, pos_weight", "BCEWithLogitsLoss",
        _loss(losses.BCEWithLogitsLoss(numpy.array([1.0, 2.0, 0.5]),
                                       pos_weight=numpy.array([3.0, 1.0, 0.5])), "mse-prob"))
    for name in models.MODELS:
        add(f"model {name}", name, _model(name))
    return c


def select(configs: dict, only: str | None) -> dict:
    if not only:
        return configs
    key = only.lower()
    return {n: v for n, v in configs.items() if key in n.lower() or key == v[0].lower()}


def run_suite(dtype: str = "float64", only: str | None = None, seed: int = 0,
              verbose: bool = False, out=print, kernels: str | None = None,
              table_file: str | None = None) -> tuple[bool, list]:
    """Check every selected configuration; print one table; return (all ok, reports).

    The table printed fits 100 columns; with ``table_file`` the full one (every column,
    and each configuration's per-tensor table) is written there. ``kernels``:
    ``"reference"`` or ``"fast"``; None: whatever is in force.
    """
    configs = select(configurations(), only)
    if not configs:
        raise ValueError(f"--only {only!r} matches no configuration; expected part of one "
                         f"of: {', '.join(configurations())}")
    rows, reports, failures = [], [], []
    start = time.perf_counter()
    with kernels_in_force(kernels):
        ran = get_kernels()
        for i, (name, (_, build)) in enumerate(configs.items()):
            _random.manual_seed(seed + i)
            rng = numpy.random.default_rng(seed + i)
            module, x, target, loss_fn = build(rng)
            t0 = time.perf_counter()
            options = MODEL_OPTIONS if name.startswith("model ") else {}
            report = check(module, x, target, loss_fn, dtype=dtype, seed=seed + i, **options)
            reports.append((name, report))
            rows.append(_row(name, report, time.perf_counter() - t0))
            if not report.ok:
                failures += [f"[{name}] {f}" for f in report.failures]
            if verbose:
                out(f"\n[{name}]\n{report.table()}")
    d = DEFAULTS[dtype]
    title = (f"tinynet gradcheck: {len(configs)} configurations, {ran} kernels, seed {seed}\n"
             f"{dtype}: eps {d['eps']:g}, rtol {d['rtol']:g}, atol {d['atol']:g}")
    out("\n" + title)
    compact = [[r[0], r[1], f"{r[2]}+{r[3]}", r[4], r[5], r[7], r[8], r[11]] for r in rows]
    out(format_table(COMPACT, compact, "<>>>><<<", width=100))
    total = time.perf_counter() - start
    if failures:
        verdict = [f"FAILED: {len(failures)} problem(s) in {total:.1f} s:"] + [
            textwrap.fill(f, 100, initial_indent="  ", subsequent_indent="    ")
            for f in failures]
    else:
        verdict = [f"all {len(configs)} configurations pass ({total:.1f} s)"]
    out("\n" + "\n".join(verdict))
    if table_file:
        text = "\n".join([title, format_table(HEADER, rows, "<>>>>>><<<><")]
                         + [f"\n[{name}]\n{r.table(full=True)}" for name, r in reports]
                         + [""] + verdict) + "\n"
        atomic_write(table_file, lambda f: f.write(text.encode()))
        out(f"full tables (every column, every tensor): {table_file}")
    return not failures, reports


HEADER = ["configuration", "tensors", "elements", "dirs", "skipped", "max rel", "max abs",
          "worst tensor", "min taylor slope", "contract", "seconds", "status"]
# within 100 columns: elements + directions checked, probes skipped at kinks
COMPACT = ["configuration", "tensors", "checked", "skip", "max rel", "worst tensor",
           "min taylor slope", "status"]


def _row(name: str, report, seconds: float) -> list[str]:
    """The cells of ``HEADER`` for one configuration's report."""
    worst = max(report.rows, key=lambda r: r.max_rel_err, default=None)
    slopes = [r.taylor_slope for r in report.rows if r.taylor_slope is not None]
    kinds = sorted({r.taylor for r in report.rows if r.taylor_slope is None and r.taylor != "-"})
    taylor = (f"{min(slopes):.2f}" if slopes else "-") + (f" ({'/'.join(kinds)})" if kinds
                                                          else "")
    return [name, str(len(report.rows)), str(sum(r.checked for r in report.rows)),
            str(sum(r.directions for r in report.rows)),
            str(sum(r.skipped for r in report.rows)),
            "-" if worst is None else f"{worst.max_rel_err:.1e}",
            "-" if worst is None else f"{worst.max_abs_err:.1e}",
            "-" if worst is None else worst.name,
            taylor, "ok" if all(ok for _, ok, _ in report.contract) else "FAIL",
            f"{seconds:.2f}", "pass" if report.ok else "FAIL"]


DEFAULT_OUT = os.path.join("runs", "gradcheck", "table.txt")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinynet gradcheck",
        description="Check every layer (several configurations each) and every study model "
                    "against central finite differences, element-wise, along random "
                    "directions and by the Taylor test; print one table within 100 columns "
                    "and write the full tables to a file; exit 1 on any failure.")
    p.add_argument("--dtype", default="float64", choices=["float64", "float32"],
                   help="precision of the check (default float64)")
    p.add_argument("--only", default=None, metavar="NAME",
                   help="only configurations whose name, layer type or model contains NAME "
                        "(e.g. conv, BatchNorm2d, base, convbn)")
    p.add_argument("--kernels", default="fast", choices=list(KINDS),
                   help="tinynet's kernels: the readable reference ones or the fast ones "
                        "(default fast)")
    p.add_argument("--seed", type=int, default=0,
                   help="seed of inputs, weights and probes (default 0)")
    p.add_argument("--verbose", "-v", action="store_true",
                   help="also print each configuration's per-tensor table")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"file for the full tables (default {DEFAULT_OUT})")
    p.add_argument("--list", action="store_true", help="list the configurations and exit")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if args.list:
        for name, (what, _) in select(configurations(), args.only).items():
            print(f"{name:34s} {what}")
        return 0
    try:
        ok, _ = run_suite(args.dtype, args.only, args.seed, args.verbose,
                          kernels=args.kernels, table_file=args.out)
    except ValueError as e:
        print(f"tinynet gradcheck: {e}", file=sys.stderr)
        return 2
    return 0 if ok else 1
