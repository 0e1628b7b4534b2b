"""``python -m benchmarks.mlp_step``: issue 11's check, the base MLP step against PyTorch.

Times one training step of the base MLP (Flatten, Linear(784,512), ReLU,
Linear(512,512), ReLU, Linear(512,10); SGD lr 0.01; cross-entropy) at batch 64 and 256,
tinynet and PyTorch in one process, interleaved, a pause before every timed block (see
:mod:`benchmarks.timing`), and prints each median, the ratio tinynet/torch, and the
step's matrix products alone (the GEMM floor). Options: ``--batches 64,256,1024``,
``--repeats``, ``--threads``, ``--pause``.
"""

from __future__ import annotations

import argparse
import sys

import benchmarks  # noqa: F401 -- CUPY_TF32=0 before tinynet imports cupy


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m benchmarks.mlp_step",
                                description="base MLP training step: tinynet vs PyTorch")
    p.add_argument("--batches", default="64,256")
    p.add_argument("--repeats", type=int, default=9)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--pause", type=float, default=0.25)
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu")
    args = p.parse_args(argv)
    from .__main__ import _cuda_setup, run_case
    from .cases import _step_case
    from .timing import Timer, set_threads
    if args.device == "cuda":
        _cuda_setup()
    threads = set_threads(args.threads)
    timer = Timer(pause=args.pause, min_block=0.15, device=args.device, warmup=0.3)
    print(f"base MLP step, {threads.count} threads on both sides ({threads.how}); "
          f"{args.pause:g} s pause before every timed block, {args.repeats} interleaved "
          f"repeats, medians")
    print(f"{'batch':>5} {'tinynet ms':>11} {'torch ms':>9} {'ratio':>6} "
          f"{'GEMMs ms':>9} {'step/GEMMs':>10}")
    for b in (int(s) for s in args.batches.split(",")):
        row = run_case(_step_case("base", b), timer, args.repeats, args.device)
        print(f"{b:>5} {row['tinynet']['median'] * 1e3:>11.3f} "
              f"{row['torch']['median'] * 1e3:>9.3f} {row['ratio']:>6.2f} "
              f"{row['gemm']['median'] * 1e3:>9.3f} {row['floor_ratio']:>10.2f}", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
