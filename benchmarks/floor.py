"""``python -m benchmarks.floor``: could *any* NumPy training step match PyTorch's here?

The base MLP's speed goal (tinynet's training step no slower than PyTorch's) depends on
more than tinynet: NumPy's BLAS does the matrix products, PyTorch's does its own, and on
some machines NumPy's is much the slower. This command tells the two apart. Side by side
in one process (the fair method of :mod:`benchmarks.timing`: interleaved, a pause before
every block) it times the base MLP's training step, per batch size, five ways:

* ``torch``: PyTorch's step (forward, loss, backward, SGD update);
* ``tinynet``: tinynet's step, as ``python -m benchmarks`` times it;
* ``numpy floor``: the same step as straight-line NumPy with no framework at all: bias
  and ReLU in place, the bias gradients as products with a row of ones, cross-entropy
  picked by index, SGD's update in cache-sized blocks (``tests/test_benchmarks.py``
  checks that it computes what tinynet's step computes);
* ``products + update``: only the step's matrix products and one pass of ``p -= g`` over
  the parameters (no ReLU, no loss, no learning rate): less than any correct step does;
* ``products``: the matrix products alone (the suite's GEMM floor).

How to read it: when ``numpy floor / torch`` is above 1, no NumPy framework reaches the
goal on this machine, and the gap is the BLAS's; ``tinynet / numpy floor`` is what
tinynet's layers, checks and bookkeeping add to the least the step's maths costs.
Results go to ``runs/benchmarks/<machine>/floor.*`` (``--record``: the committed
``benchmarks/results/<machine>/``).
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time
from collections.abc import Callable

import numpy

import benchmarks  # noqa: F401 -- CUPY_TF32=0 before tinynet imports cupy
from tinynet.cliargs import WHOLE_1, NamesHelpFormatter, OneLineParser, batch_list

from .timing import add_arguments, finish, start

SIDES = ("torch", "tinynet", "numpy floor", "products + update", "products")

# Elements per block of the floor's SGD update: 512 KiB of float32, the fastest of 8K,
# 32K, 128K and 256K elements on the 2-core Xeon VM (2026-12-02, the base MLP's 669,706
# parameters: 331, 247, 218 and 282 us; the update as one expression took 343 us).
UPDATE_BLOCK = 1 << 17


def floor_step(params: list, x, target, lr: float):
    """One SGD step of the base MLP (Linear, ReLU, Linear, ReLU, Linear, cross-entropy
    with mean reduction) on ``params`` = [W1, b1, W2, b2, W3, b3], in place, as plain
    NumPy with no framework. Returns a function of no arguments that runs the step on
    ``x (N, 784)`` and the class indices ``target (N,)`` and returns the loss."""
    from tinynet.optim import descend  # plain NumPy, no framework state
    w1, b1, w2, b2, w3, b3 = params
    dtype = w1.dtype
    n = x.shape[0]
    rows = numpy.arange(n)
    ones = numpy.ones(n, dtype=dtype)
    scratch = numpy.empty(UPDATE_BLOCK, dtype=dtype)
    rate, inv_n = dtype.type(lr), dtype.type(1.0 / n)

    def step() -> float:
        h1 = x @ w1.T                                   # (N, 512)
        h1 += b1
        numpy.maximum(h1, 0, out=h1)
        h2 = h1 @ w2.T                                  # (N, 512)
        h2 += b2
        numpy.maximum(h2, 0, out=h2)
        z = h2 @ w3.T                                   # (N, 10)
        z += b3
        z -= z.max(axis=1, keepdims=True)
        e = numpy.exp(z)
        s = e.sum(axis=1)
        loss = float((numpy.log(s) - z[rows, target]).mean())
        e *= (inv_n / s)[:, None]                       # softmax / N
        e[rows, target] -= inv_n                        # dz = (softmax - onehot) / N
        dz = e
        grads = [None] * 6
        grads[4], grads[5] = dz.T @ h2, ones @ dz
        d2 = dz @ w3
        d2 *= h2 > 0
        grads[2], grads[3] = d2.T @ h1, ones @ d2
        d1 = d2 @ w2
        d1 *= h1 > 0
        grads[0], grads[1] = d1.T @ x, ones @ d1
        for p, g in zip(params, grads):
            descend(p, g, rate, scratch)                # p -= lr g, in cache-sized blocks
        return loss
    return step


def products_and_update(params: list, products: Callable[[], object]) -> Callable:
    """The step's products (``products()``) and one ``p -= g`` pass over ``params``."""
    grads = [numpy.full_like(p, 1e-7) for p in params]

    def run() -> None:
        products()
        for p, g in zip(params, grads):
            numpy.subtract(p, g, out=p)
    return run


def time_batch(batch: int, timer, repeats: int) -> dict:
    """Median seconds per side at one batch size, and the ratios the table shows."""
    import tinynet
    from tinynet import models

    from .cases import _step_case
    built = _step_case("base", batch).build("cpu")
    tinynet.manual_seed(1)
    floor_params = [p.data for p in models.build("base").parameters()]
    rng = numpy.random.default_rng(1)
    x = rng.random((batch, 784), dtype=numpy.float32)
    target = rng.integers(0, 10, batch)
    bound_params = [p.copy() for p in floor_params]
    sides = {"torch": built.torch, "tinynet": built.tinynet,
             "numpy floor": floor_step(floor_params, x, target, 0.01),
             "products + update": products_and_update(bound_params, built.gemm),
             "products": built.gemm}
    times = timer.compare(sides, repeats)
    med = {k: statistics.median(v) for k, v in times.items()}
    return {"name": f"floor/base/{batch}", "batch": batch, "seconds": med,
            "spread": {k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()},
            "over_torch": {k: med[k] / med["torch"] for k in SIDES},
            "tinynet_over_floor": med["tinynet"] / med["numpy floor"]}


def verdict(rows: list[dict]) -> str:
    """One sentence: does the NumPy floor beat PyTorch at every batch size measured?"""
    worst = max(r["over_torch"]["numpy floor"] for r in rows)
    if worst > 1.0:
        return (f"The NumPy floor is up to {worst:.2f}x PyTorch's step: on this machine no "
                f"NumPy framework reaches the base MLP's goal (<= 1.0x). That part of the "
                f"gap is NumPy's BLAS and one-core passes; tinynet / numpy floor is "
                f"tinynet's own share.")
    return (f"The NumPy floor is at most {worst:.2f}x PyTorch's step: the goal is reachable "
            f"here, and tinynet / numpy floor is what stands between tinynet and it.")


def markdown(head: dict, rows: list[dict]) -> str:
    from .report import header_lines
    lines = ["# The base MLP step: tinynet, PyTorch and the least NumPy can do", "",
             *header_lines(head), "",
             ("numpy floor = the step as straight-line NumPy, no framework; products + "
              "update = the matrix products and one `p -= g` pass, less than any correct "
              "step; ratios are to PyTorch's step (< 1: faster)."), "",
             ("| batch | torch ms | tinynet ms | numpy floor ms | products + update ms | "
              "products ms | tinynet / torch | numpy floor / torch | products + update / "
              "torch | tinynet / numpy floor |"),
             "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        s, o = r["seconds"], r["over_torch"]
        lines.append(" | ".join([f"| {r['batch']}", *(f"{s[k] * 1e3:.3f}" for k in SIDES),
                                 f"**{o['tinynet']:.2f}**", f"**{o['numpy floor']:.2f}**",
                                 f"{o['products + update']:.2f}",
                                 f"{r['tinynet_over_floor']:.2f} |"]))
    return "\n".join(lines + ["", verdict(rows), ""])


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m benchmarks.floor",
        formatter_class=NamesHelpFormatter,
        description="Time the base MLP's training step in PyTorch, in tinynet and as "
                    "straight-line NumPy with no framework (the least NumPy can do), in one "
                    "process, interleaved: tells whether the goal tinynet <= PyTorch is "
                    "reachable with NumPy on this machine.")
    p.add_argument("--batches", type=batch_list, default="64,256",
                   help="batch sizes, comma separated (default 64,256)")
    p.add_argument("--repeats", type=WHOLE_1, default=9,
                   help="timed blocks per side and batch (default 9)")
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    threads, timer, head = start(p, args, "base MLP floor")
    rows, t0 = [], time.perf_counter()
    for batch in args.batches:
        row = time_batch(batch, timer, args.repeats)
        rows.append(row)
        o = row["over_torch"]
        print(f"  batch {batch:<5} tinynet/torch {o['tinynet']:.2f}  numpy floor/torch "
              f"{o['numpy floor']:.2f}  products+update/torch {o['products + update']:.2f}",
              flush=True)
    return finish(head, t0, args, "floor", lambda h: markdown(h, rows), rows)


if __name__ == "__main__":
    sys.exit(main())
