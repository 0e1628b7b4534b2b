"""``python -m benchmarks`` / ``tinynet bench``: the side-by-side suite.

Examples::

    python -m benchmarks                      # full CPU suite (< 10 minutes on 2 cores)
    python -m benchmarks --quick              # batch 64 steps and a few layers (< 1 minute)
    python -m benchmarks --only step/base     # cases whose name contains the text
    python -m benchmarks --device cuda        # CuPy against torch CUDA
    python -m benchmarks --list               # case names

Writes ``<out>/<name>.md``, ``.json`` and ``.png`` and prints the markdown table.
``<out>`` is ``runs/benchmarks/<machine-tag>`` (ignored by git); ``--record`` writes into
the committed ``benchmarks/results/<machine-tag>`` instead.

The targets are speed goals, not tests: a MISSED target is printed and the command
still exits 0 (it exits non-zero only when it cannot run).
"""

from __future__ import annotations

import argparse
import os
import sys
import time

import benchmarks  # first: sets CUPY_TF32=0 before tinynet imports cupy
from tinynet.cliargs import (
    WHOLE_1,
    NamesHelpFormatter,
    OneLineParser,
    batch_list,
    run_command,
    writable_folder,
)

from .timing import add_arguments


def _parser(prog: str = "tinynet bench") -> argparse.ArgumentParser:
    p = OneLineParser(
        prog=prog, formatter_class=NamesHelpFormatter,
        description="Time tinynet against PyTorch side by side: layers (forward, backward, "
                    "both) and whole training steps, interleaved, after warm-up, with a "
                    "pause before every timed block (also: python -m benchmarks).",
        epilog="Each step has a target, the most tinynet/PyTorch may be on that device. "
               "MISSED means this run was slower than that: a speed goal, not a test, so "
               "the exit status stays 0. Results: runs/benchmarks/<machine>/ unless "
               "--record or --out.")
    p.add_argument("--quick", action="store_true",
                   help="batch-64 steps, five layers and the loss, 3 repeats (under a minute)")
    p.add_argument("--only", action="append", metavar="TEXT",
                   help="run only cases whose name contains TEXT (repeatable), "
                        "e.g. step/base, layer/conv, /both")
    p.add_argument("--device", choices=("cpu", "cuda"), default="cpu",
                   help="cpu (NumPy against torch) or cuda (CuPy against torch CUDA); "
                        "default cpu")
    p.add_argument("--repeats", type=WHOLE_1, default=None,
                   help="timed blocks per side and case (default 5, quick 3)")
    p.add_argument("--batches", type=batch_list, default=None,
                   help="step batch sizes, comma separated (default 64,256,1024)")
    add_arguments(p, min_block=None, min_block_default="0.1, quick 0.03")
    p.add_argument("--name", default=None,
                   help="base name of the output files (default 'suite' or 'quick')")
    p.add_argument("--list", action="store_true", help="list the case names and exit")
    return p


def _cuda_setup(parser: argparse.ArgumentParser) -> None:
    """Torch and CuPy on the GPU with TF32 off; what stands in the way is a usage error
    (one line, exit status 2) like every other bad argument."""
    import torch

    from tinynet.backend import cuda_available
    if not torch.cuda.is_available():
        parser.error("--device cuda: torch sees no CUDA device")
    if not cuda_available():
        parser.error("--device cuda: CuPy is not installed or sees no CUDA device")
    if benchmarks.CUPY_TF32_TOO_LATE:
        parser.error("CUPY_TF32 is set in the environment and CuPy was imported before "
                     "the benchmarks could turn TF32 off: unset CUPY_TF32")
    torch.backends.cuda.matmul.allow_tf32 = False
    torch.backends.cudnn.allow_tf32 = False
    torch.set_float32_matmul_precision("highest")


def run_case(case, timer, repeats: int, device: str) -> dict:
    from .cases import TARGETS
    from .timing import summary
    built = case.build(device)
    sides = {"tinynet": built.tinynet, "torch": built.torch}
    if built.gemm is not None:
        sides["gemm"] = built.gemm
        sides["gemm_torch"] = built.gemm_torch
    times = timer.compare(sides, repeats)
    row = {"name": case.name, "group": case.group, "title": case.title, "batch": case.batch,
           "extra": built.extra}
    for k, v in times.items():
        row[k] = summary(v)
    row["ratio"] = row["tinynet"]["median"] / row["torch"]["median"]
    paired = sorted(a / b for a, b in zip(times["tinynet"], times["torch"]))
    row["ratio_paired_min_max"] = [paired[0], paired[-1]]
    if built.gemm is not None:
        row["flops"] = built.flops
        row["gflops"] = built.flops / row["tinynet"]["median"] / 1e9
        row["gemm_gflops"] = built.flops / row["gemm"]["median"] / 1e9
        row["floor_ratio"] = row["tinynet"]["median"] / row["gemm"]["median"]
        row["torch_floor_ratio"] = row["torch"]["median"] / row["gemm_torch"]["median"]
    if case.model:
        row["target"] = TARGETS[device].get(case.model)
    return row


def main(argv: list[str] | None = None, prog: str = "tinynet bench") -> int:
    parser = _parser(prog)
    args = parser.parse_args(argv)
    from . import cases as C
    from .report import (
        busy_warning,
        load_average,
        machine_header,
        markdown,
        output_folder,
        plural,
        write_json,
        write_markdown,
        write_png,
    )
    from .timing import Timer, set_threads
    cases = C.select(C.all_cases(args.quick, args.batches or C.STEP_BATCHES), args.only)
    if not cases:
        parser.error(f"--only {' '.join(args.only)}: no case name contains that text; "
                     f"see --list")
    if args.list:
        print("\n".join(c.name for c in cases))
        return 0
    writable_folder(parser, args.out, "--out")
    C.require_torch()
    if args.device == "cuda":
        _cuda_setup(parser)
    repeats = args.repeats if args.repeats is not None else (3 if args.quick else 5)
    min_block = args.min_block if args.min_block is not None else (0.03 if args.quick else 0.1)
    threads = set_threads(args.threads)
    timer = Timer(pause=args.pause, min_block=min_block, rewarm=args.rewarm,
                  device=args.device, warmup=0.05 if args.quick else 0.2)
    head = machine_header(args.device, threads, timer, repeats)
    head["quick"] = bool(args.quick)
    head["only"] = args.only
    busy = busy_warning(head)
    if busy:
        print(f"warning: {busy}" + ("" if threads.count == 1 or "SCHED_FIFO" in head["scheduling"]
              else "; try --threads 1, or chrt -f 10 (root) to give the timed blocks the "
                   "cores"), file=sys.stderr, flush=True)
    print(f"# {plural(len(cases), 'case')} on {head['cpu']} ({args.device}), "
          f"{plural(threads.count, 'thread')} both sides, {args.pause:g} s pause before every "
          f"timed block, {plural(repeats, 'interleaved repeat')}", flush=True)
    rows, t0 = [], time.perf_counter()
    for case in cases:
        row = run_case(case, timer, repeats, args.device)
        rows.append(row)
        print(f"  {case.name:<32} tinynet {row['tinynet']['median'] * 1e3:9.3f} ms  torch "
              f"{row['torch']['median'] * 1e3:9.3f} ms  ratio {row['ratio']:.2f}"
              + (f"  step/floor {row['floor_ratio']:.2f}" if "floor_ratio" in row else ""),
              flush=True)
    head["seconds"] = round(time.perf_counter() - t0, 1)
    head["load_average_end"] = load_average()
    text = markdown(head, rows)
    out = output_folder(head, args.out, args.record)
    name = args.name or ("quick" if args.quick else "suite")
    if args.only and not args.name:
        name += "-only"
    paths = [write_markdown(os.path.join(out, name + ".md"), text),
             write_json(os.path.join(out, name + ".json"), head, rows),
             write_png(os.path.join(out, name + ".png"), head, rows)]
    print()
    print(text)
    missed = [r["name"] for r in rows if _missed(r)]
    if missed:
        print(f"\n{len(missed)} target(s) MISSED ({', '.join(missed)}): tinynet was slower "
              f"than the goal in this run. Speed goals are not tests; exit status 0.")
    print("written: " + ", ".join(paths))
    return 0


def _missed(row: dict) -> bool:
    from .report import verdict
    return "MISSED" in verdict(row)


if __name__ == "__main__":
    sys.exit(run_command(lambda: main(prog="python -m benchmarks")))
