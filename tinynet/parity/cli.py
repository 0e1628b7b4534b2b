"""``tinynet parity``: every check of :mod:`tinynet.parity`, one table per group of checks.

Progress goes to stderr (a line per trajectory, which take minutes; a line per failed
check under its group's heading); the tables, within 100 columns, to stdout; the full
tables (every tensor, every column) to a file, ``runs/parity/table.txt`` by default.
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import numpy

from ..cliargs import WHOLE_0, WHOLE_1, OneLineParser, number_type, writable_file
from ..errors import TinynetError
from ..io import atomic_write
from ..kernels import KINDS, get_kernels, use_kernels
from .cases import (
    check_case,
    layer_cases,
    model_cases,
    seeded_trajectory,
    trajectory_plan,
)
from .report import ParityReport
from .tolerances import FLOAT32_STEP_FACTOR, TOLERANCES, TRAJECTORY_TOLERANCES
from .twins import torch_threads

__all__ = ["main", "parser"]

DEFAULT_OUT = os.path.join("runs", "parity", "table.txt")


def _threads(requested: int | None) -> int:
    """Threads for torch: as asked, else what NumPy's BLAS was told, else every core."""
    if requested is not None:
        return int(requested)
    for var in ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS"):
        value = os.environ.get(var, "")
        if value.isdigit() and int(value) > 0:
            return int(value)
    return os.cpu_count() or 1


# Data sets the trajectories can run on: the study models take (1, 28, 28) images.
TRAJECTORY_DATA = ("fashion-mnist", "mnist")


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="tinynet parity",
        description="Compare tinynet with PyTorch: every layer type in several "
                    "configurations and every study model (output, loss, dLoss/dx, every "
                    "parameter gradient and buffer; float64 and float32; train and eval "
                    "mode), then training trajectories of the base MLP, SimpleCNN, the BN "
                    "MLP and an MLP with Dropout on real Fashion-MNIST batches (float64: "
                    "free runs; float32: each step from PyTorch's state, against float64). "
                    "Prints one table per group within 100 columns and writes the full "
                    "tables to a file; exits 1 if any difference is above its limit.")
    p.add_argument("--steps", type=WHOLE_1, default=50, help="training steps per trajectory "
                   "(default 50)")
    p.add_argument("--batch-size", type=WHOLE_1, default=64,
                   help="Fashion-MNIST batch size of the trajectories (default 64)")
    p.add_argument("--model-batch", type=number_type(int, 2, "a whole number >= 2"), default=16,
                   help="batch size of the single-step model checks (default 16)")
    p.add_argument("--data", default="fashion-mnist", choices=list(TRAJECTORY_DATA),
                   help="data set of the trajectories: 28x28 grey images, as the study "
                        "models take (default fashion-mnist)")
    p.add_argument("--data-root", default=None,
                   help="folder holding the data set's files (default: the usual search)")
    p.add_argument("--skip", action="append", default=[],
                   choices=["layers", "losses", "models", "trajectories"],
                   help="leave out a group of checks (repeatable; default: run them all)")
    p.add_argument("--kernels", default="fast", choices=list(KINDS),
                   help="tinynet's kernels: the readable reference ones or the fast ones "
                        "(default fast)")
    p.add_argument("--threads", type=WHOLE_1, default=None,
                   help="torch threads (default: $OMP_NUM_THREADS, as NumPy's BLAS, else "
                        "every core)")
    p.add_argument("--every", action="store_true",
                   help="one line per compared tensor instead of per check (default: off)")
    p.add_argument("--out", default=DEFAULT_OUT,
                   help=f"file for the full tables (default {DEFAULT_OUT})")
    p.add_argument("--seed", type=WHOLE_0, default=0,
                   help="seed of weights, inputs and masks (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    """``tinynet parity``: run every check, print the tables, 0 if all within tolerance."""
    p = parser()
    args = p.parse_args(argv)
    writable_file(p, args.out, "--out")
    if "trajectories" not in args.skip and args.data_root is not None and \
            os.path.exists(args.data_root) and not os.path.isdir(args.data_root):
        p.error(f"--data-root {args.data_root!r}: not a folder")   # a new one is made
    threads = _threads(args.threads)
    with torch_threads(threads) as torch, use_kernels(args.kernels):
        header = (f"tinynet parity: {get_kernels()} kernels; torch {torch.__version__} "
                  f"({threads} thread(s)), numpy {numpy.__version__}")
        print(header, flush=True)
        start = time.perf_counter()
        sections = _run(args)
    total = ParityReport()
    for _, part in sections:
        total.extend(part)
    tol = ", ".join(f"{k} {v:g}" for k, v in TOLERANCES.items())
    traj = ", ".join(f"{o} {t:g}" for o, t in TRAJECTORY_TOLERANCES["float64"].items())
    notes = [f"limits: one pass, per tensor: {tol}",
             (f"  trajectories: float64 {traj}; float32 {FLOAT32_STEP_FACTOR:g} x PyTorch's "
              "own step error"),
             f"total {time.perf_counter() - start:.1f} s"]
    for title, part in sections:
        print(f"\n{title}")
        print(part.table(every=args.every, summary=False))
    print()
    shown = [r for _, part in sections for r in part.shown_rows(args.every)]
    print("\n".join(total.summary(shown) + notes))
    full = [header]
    for title, part in sections:
        full += ["", title, part.table(every=True, full=True, summary=False)]
    full += [""] + total.summary() + notes
    text = "\n".join(full) + "\n"
    atomic_write(args.out, lambda f: f.write(text.encode()))
    print(f"full tables (every tensor): {args.out}")
    return 0 if total.ok else 1


def _section(title: str, checks: list, progress: bool) -> ParityReport:
    """Run ``checks`` (label, callable) under ``title`` on stderr; failures named there."""
    print(f"{title}: {len(checks)} checks", file=sys.stderr, flush=True)
    report = ParityReport()
    t0 = time.perf_counter()
    for i, (label, run) in enumerate(checks, 1):
        t1 = time.perf_counter()
        part = run()
        report.extend(part)
        if progress or not part.ok:
            line = (f"  [{i:{len(str(len(checks)))}}/{len(checks)}] "
                    f"{'ok' if part.ok else 'FAIL':4} {time.perf_counter() - t1:5.1f} s  {label}")
            print(line if len(line) <= 100 else line[:97] + "...", file=sys.stderr, flush=True)
    print(f"  {len(checks)} checks in {time.perf_counter() - t0:.1f} s", file=sys.stderr,
          flush=True)
    return report


def _trajectory_batches(args) -> list:
    """The trajectories' ``(x, t)`` batches, read before any check runs, so a missing or
    too small data set is reported at once rather than after the other groups."""
    from .. import data
    images, labels = data.load(args.data, "train", root=args.data_root)
    need = args.steps * args.batch_size
    if images.shape[0] < need:
        raise TinynetError(f"tinynet parity: {args.steps} steps of {args.batch_size} need "
                           f"{need} images, {args.data} has {images.shape[0]}")
    return [(data.to_float(images[i:i + args.batch_size], "float64"),
             labels[i:i + args.batch_size]) for i in range(0, need, args.batch_size)]


def _run(args) -> list:
    """``[(title, report)]`` of the groups not skipped."""
    sections = []
    batches = _trajectory_batches(args) if "trajectories" not in args.skip else None
    if "layers" not in args.skip:
        title = "layers: every layer type, float64 and float32, train and eval mode"
        sections.append((title, _section("layers", [
            (c.name, lambda c=c: check_case(c, seed=args.seed)) for c in layer_cases()],
            progress=False)))
    if "losses" not in args.skip:
        from .losses import check_loss, loss_cases
        title = "losses: every loss and option, the value and dL/dinput, float64 and float32"
        sections.append((title, _section("losses", [
            (c.name, lambda c=c: check_loss(c, seed=args.seed)) for c in loss_cases()],
            progress=False)))
    if "models" not in args.skip:
        title = f"models: every study model, batch {args.model_batch}"
        sections.append((title, _section("models", [
            (c.name, lambda c=c: check_case(c, seed=args.seed))
            for c in model_cases(args.model_batch)], progress=False)))
    if batches is not None:
        checks = []
        for name, build, settings in trajectory_plan():
            for optimizer, hyper in settings:
                hp = ", ".join(f"{k}={v}" for k, v in hyper.items())
                for dt in ("float64", "float32"):
                    checks.append((f"{name} {dt} {optimizer}({hp})",
                                   lambda n=name, b=build, o=optimizer, h=hyper, d=dt:
                                   seeded_trajectory(n, b, batches, o, h, d, args.seed)))
        title = (f"trajectories: {args.steps} steps of {args.batch_size} {args.data} images, "
                 f"no shuffling")
        sections.append((title, _section("trajectories", checks, progress=True)))
    return sections
