"""``python -m benchmarks.variants``: tinynet's own settings timed against each other.

For every training step (base MLP, BN MLP, SimpleCNN, ConvBN at batch 64 and 256) the
same process times, interleaved, with the pause before every block:

* ``torch``: PyTorch at the same thread count;
* ``fast``: tinynet as it runs by default (fast kernels, its default thread count);
* ``fast, 1 thread``: fast kernels with ``tinynet.set_num_threads(1)``;
* ``reference``: the readable reference kernels (``tinynet.set_kernels("reference")``).

and for every layer case of the suite (the study models' shapes) fast against reference.
The table answers two questions: does the default ever make a step slower than one
thread does (``fast / 1 thread`` above 1), and what does each fast kernel buy over its
reference (``reference / fast``). Results go to ``runs/benchmarks/<machine>/variants.*``,
or with ``--record`` to the committed ``benchmarks/results/<machine>/``.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import time

import benchmarks  # noqa: F401 -- CUPY_TF32=0 before tinynet imports cupy
from tinynet.cliargs import WHOLE_1, NamesHelpFormatter, OneLineParser, batch_list

from .timing import add_arguments, finish, start

SIDES = ("torch", "fast", "fast, 1 thread", "reference")


def _with_kernels(fn, kind: str):
    import tinynet

    def run():
        with tinynet.use_kernels(kind):
            return fn()
    return run


def time_case(case, timer, repeats: int, threads: int, step: bool) -> dict:
    """Median seconds per side of one case, and the ratios the table shows."""
    import tinynet
    built = case.build("cpu")
    sides = {"fast": _with_kernels(built.tinynet, "fast"),
             "reference": _with_kernels(built.tinynet, "reference")}
    setups = {"fast": lambda: tinynet.set_num_threads(threads),
              "reference": lambda: tinynet.set_num_threads(threads)}
    if step:
        sides = {"torch": built.torch, **sides,
                 "fast, 1 thread": _with_kernels(built.tinynet, "fast")}
        setups["fast, 1 thread"] = lambda: tinynet.set_num_threads(1)
    times = timer.compare(sides, repeats, setups)
    tinynet.set_num_threads(threads)
    med = {k: statistics.median(v) for k, v in times.items()}
    row = {"name": case.name, "title": case.title, "batch": case.batch, "seconds": med,
           "spread": {k: (max(v) - min(v)) / statistics.median(v) for k, v in times.items()},
           "reference_over_fast": med["reference"] / med["fast"]}
    if step:
        row["fast_over_torch"] = med["fast"] / med["torch"]
        row["one_thread_over_torch"] = med["fast, 1 thread"] / med["torch"]
        row["fast_over_one_thread"] = med["fast"] / med["fast, 1 thread"]
    return row


def markdown(head: dict, steps: list[dict], layers: list[dict]) -> str:
    from .report import header_lines

    def ms(s):
        return f"{s * 1e3:.2f}"
    lines = ["# tinynet's settings against each other (and PyTorch)", "",
             *header_lines(head), ""]
    if steps:
        lines += ["## Training steps", "",
                  ("fast = the default (fast kernels, default threads); 1 thread = "
                   "`tinynet.set_num_threads(1)`; reference = `tinynet.set_kernels"
                   "(\"reference\")`. A `fast / 1 thread` above 1.00 would mean the default "
                   "threads slow the step down."), "",
                  ("| step | batch | torch ms | fast ms | 1 thread ms | reference ms | "
                   "fast / torch | 1 thread / torch | fast / 1 thread | reference / fast |"),
                  "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for r in steps:
            s = r["seconds"]
            lines.append(f"| {r['title']} | {r['batch']} | {ms(s['torch'])} | {ms(s['fast'])} "
                         f"| {ms(s['fast, 1 thread'])} | {ms(s['reference'])} | "
                         f"**{r['fast_over_torch']:.2f}** | {r['one_thread_over_torch']:.2f} | "
                         f"{r['fast_over_one_thread']:.2f} | {r['reference_over_fast']:.2f} |")
        lines.append("")
    if layers:
        lines += ["## Layers: reference kernels against fast ones", "",
                  "reference / fast above 1: the fast kernel is that many times faster.", "",
                  "| layer | fast ms | reference ms | reference / fast |",
                  "|---|---:|---:|---:|"]
        for r in layers:
            s = r["seconds"]
            lines.append(f"| {r['title']} | {ms(s['fast'])} | {ms(s['reference'])} | "
                         f"**{r['reference_over_fast']:.2f}** |")
        lines.append("")
    return "\n".join(lines)


def _model_list(text: str) -> tuple[str, ...]:
    from .cases import MODEL_NAMES
    models = tuple(m for m in text.split(",") if m.strip())
    unknown = [m for m in models if m not in MODEL_NAMES]
    if not models or unknown:
        raise argparse.ArgumentTypeError(
            f"expected study models from {', '.join(MODEL_NAMES)}, comma separated, got "
            f"{text!r}")
    return models


_model_list.__name__ = "models"


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="python -m benchmarks.variants",
        formatter_class=NamesHelpFormatter,
        description="Time tinynet's default against one thread and against the reference "
                    "kernels (and PyTorch), steps and layers, in one process, interleaved.")
    p.add_argument("--models", type=_model_list, default="base,bn,simplecnn,convbn",
                   help="study models whose training step is timed, comma separated "
                        "(default base,bn,simplecnn,convbn)")
    p.add_argument("--batches", type=batch_list, default="64,256",
                   help="step batch sizes, comma separated (default 64,256)")
    p.add_argument("--layers", action=argparse.BooleanOptionalAction, default=True,
                   help="also time every layer case, fast against reference (default: yes)")
    p.add_argument("--repeats", type=WHOLE_1, default=5,
                   help="timed blocks per side and case (default 5)")
    add_arguments(p)
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(argv)
    from . import cases as C
    models, batches = args.models, args.batches
    threads, timer, head = start(p, args, "variants")
    steps, layers, t0 = [], [], time.perf_counter()
    for case in C.step_cases(batches=batches, models=models):
        row = time_case(case, timer, args.repeats, threads.count, step=True)
        steps.append(row)
        print(f"  {case.name:<22} fast/torch {row['fast_over_torch']:.2f}  1 thread/torch "
              f"{row['one_thread_over_torch']:.2f}  fast/1 thread "
              f"{row['fast_over_one_thread']:.2f}  reference/fast "
              f"{row['reference_over_fast']:.2f}", flush=True)
    if args.layers:
        for case in C.layer_cases():
            if not case.name.endswith("/both"):
                continue
            row = time_case(case, timer, args.repeats, threads.count, step=False)
            layers.append(row)
            print(f"  {case.name:<32} reference/fast {row['reference_over_fast']:.2f}",
                  flush=True)
    return finish(head, t0, args, "variants", lambda h: markdown(h, steps, layers),
                  steps + layers)


if __name__ == "__main__":
    sys.exit(main())
