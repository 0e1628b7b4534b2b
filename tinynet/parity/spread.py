"""How far float32 rounding alone carries a training run: ``python -m tinynet.parity.spread``.

The same training (model, optimizer settings, batches, Dropout masks) runs R times in
float32, in PyTorch and in tinynet side by side, each time from the same weights moved
by one ulp in random directions (run 0: not moved). Each run's final weights are
compared with PyTorch's float64 run from the unmoved weights (``difference``: max_rel,
per tensor); the spread of PyTorch's own float32 runs is how far any correct float32
implementation may land from float64::

    python -m tinynet.parity.spread --model simplecnn --setting 4 --runs 12

This is why ``tinynet parity`` does not compare free float32 runs (docs/parity.md).
"""

from __future__ import annotations

import argparse
import copy
import sys

import numpy

from ..errors import TinynetError
from ..module import Module
from .cases import TRAJECTORY_OPTIMIZERS, trajectory_plan
from .compare import (
    DropoutMasks,
    array_module,
    cast_model,
    kernels_in_force,
    loss_pair,
    targets,
)
from .report import difference
from .trajectory import optimizer_pair, torch_step
from .twins import to_torch, torch_module, torch_threads

__all__ = ["main", "spread"]


def _moved(state: dict, run: int) -> dict:
    """``state`` with every floating value moved one ulp up or down (seeded by ``run``)."""
    if run == 0:
        return state
    rng = numpy.random.default_rng(run)
    out = {}
    for key, value in state.items():
        value = numpy.asarray(value)
        if value.dtype.kind == "f":
            way = numpy.where(rng.random(value.shape) < 0.5, -numpy.inf, numpy.inf)
            value = numpy.nextafter(value, way.astype(value.dtype))
        out[key] = value.copy()
    return out


def spread(model: Module, batches: list, optimizer: str, hyper: dict, runs: int = 8,
           seed: int = 0, loss="cross_entropy", kernels: str | None = None) -> list:
    """``[(torch's distances, tinynet's distances)]``, one pair per run.

    Each is ``{state_dict key: max_rel}`` of that float32 run's final values from
    PyTorch's float64 run (from the unmoved float32 weights, same batches and masks).
    """
    torch = torch_module()
    m0 = cast_model(model, "float32").train()
    loss_fn, torch_loss, kind = loss_pair(loss)
    data = [(numpy.asarray(x).astype("float32"), targets(t, kind, "float32"))
            for x, t in batches]
    if not data:
        raise TinynetError("spread: no batches given")
    exact = to_torch(m0).double()
    _, eopt = optimizer_pair(optimizer, m0, exact, hyper)
    masks = DropoutMasks(m0, exact, seed)
    try:
        for x, t in data:
            torch_step(torch, exact, eopt, torch_loss, x, t, to=torch.float64)
    finally:
        masks.remove()
    reference = exact.state_dict()
    start = {k: numpy.array(v) for k, v in m0.state_dict().items()}
    out = []
    with kernels_in_force(kernels):
        for run in range(runs):
            m = copy.deepcopy(m0)
            m.load_state_dict(_moved(start, run))
            twin = to_torch(m)
            opt, topt = optimizer_pair(optimizer, m, twin, hyper)
            masks = DropoutMasks(m, twin, seed)
            xp = array_module(m)
            try:
                for x, t in data:
                    torch_step(torch, twin, topt, torch_loss, x, t)
                    opt.zero_grad()
                    loss_fn(m(xp.asarray(x)), xp.asarray(t))
                    m.backward(loss_fn.backward(), input_grad=False)
                    opt.step()
            finally:
                masks.remove()
            theirs = twin.state_dict()
            ours = m.state_dict()
            out.append(({k: difference(theirs[k], reference[k])[1] for k in reference},
                        {k: difference(ours[k], reference[k])[1] for k in reference}))
    return out


def parser() -> argparse.ArgumentParser:
    plan = {name: build for name, build, _ in trajectory_plan()}
    p = argparse.ArgumentParser(
        prog="python -m tinynet.parity.spread",
        description="Train one model R times in float32, in PyTorch and in tinynet, from "
                    "weights one ulp apart, and print how far each run ends from PyTorch's "
                    "float64 run: the spread float32 rounding alone causes.")
    p.add_argument("--model", default="simplecnn", choices=list(plan),
                   help="model of the trajectory checks (default simplecnn)")
    p.add_argument("--setting", type=int, default=4,
                   help="optimizer setting, an index into: " + "; ".join(
                       f"{i}: {o} {h}" for i, (o, h) in enumerate(TRAJECTORY_OPTIMIZERS))
                   + " (default 4)")
    p.add_argument("--runs", type=int, default=12, help="runs (default 12)")
    p.add_argument("--steps", type=int, default=50, help="steps per run (default 50)")
    p.add_argument("--batch-size", type=int, default=64, help="batch size (default 64)")
    p.add_argument("--data-root", default=None, help="folder holding Fashion-MNIST")
    p.add_argument("--threads", type=int, default=1, help="torch threads (default 1)")
    p.add_argument("--seed", type=int, default=0, help="seed of weights and masks (default 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    if not 0 <= args.setting < len(TRAJECTORY_OPTIMIZERS) or args.runs < 1 or args.steps < 1:
        print(f"spread: --setting must be 0..{len(TRAJECTORY_OPTIMIZERS) - 1}, --runs and "
              "--steps positive", file=sys.stderr)
        return 2
    with torch_threads(args.threads):
        return _main(args)


def _main(args) -> int:
    from .. import data
    from .cases import seeded_model
    images, labels = data.load("fashion-mnist", "train", root=args.data_root)
    n = args.steps * args.batch_size
    batches = [(data.to_float(images[i:i + args.batch_size], "float32"),
                labels[i:i + args.batch_size]) for i in range(0, n, args.batch_size)]
    build = {name: b for name, b, _ in trajectory_plan()}[args.model]
    optimizer, hyper = TRAJECTORY_OPTIMIZERS[args.setting]
    print(f"{args.model} {optimizer} {hyper}, {args.steps} steps of {args.batch_size}: "
          f"{args.runs} float32 runs from weights one ulp apart (run 0: not moved)")
    print("distance of the final weights from PyTorch's float64 run, max rel of the worst "
          "tensor")
    results = spread(seeded_model(build, args.seed), batches, optimizer, hyper, args.runs,
                     args.seed)
    worst = {"torch": [], "tinynet": []}
    print(f"{'run':>3}  {'PyTorch float32':<26}  tinynet float32")
    for run, pair in enumerate(results):
        cells = []
        for who, dist in zip(worst, pair):
            key = max(dist, key=dist.get)
            worst[who].append(dist[key])
            cells.append(f"{dist[key]:.1e} ({key})")
        print(f"{run:>3}  {cells[0]:<26}  {cells[1]}")
    for who, values in worst.items():
        v = numpy.array(values)
        print(f"{who:>7}: min {v.min():.1e}, median {numpy.median(v):.1e}, max {v.max():.1e}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
