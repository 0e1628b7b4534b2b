"""``python -m experiments <study|all|report> [--quick] [--record | --out DIR] ...``."""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import common, registry

DEFAULT_OUT = os.path.join("runs", "experiments")
RESULTS = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "results")

DESCRIPTION = """\
Run the studies tinynet replicates (S1-S11): the classic MLP/CNN experiments of five
student reports, each with its settings, the reports' figures and tinynet's results side
by side, and a PyTorch twin (same initial weights, same batches) when torch is
installed. The settings each study follows and the figures the reports printed are in
docs/studies.md; what each study writes and how to run it, in docs/experiments.md.

Outputs go to runs/experiments/<study>/ (git-ignored); the committed results in
results/ change only with --record (or an explicit --out results).

Data: MNIST and Fashion-MNIST are read from $TINYNET_DATA, the user cache or
/usr/share/datasets, and otherwise downloaded from their publishers (the official IDX
files). CIFAR-10 (S6, S7, S9) is the JPEG copy the committed results used when
$TINYNET_DATA/cifar10-jpeg/cifar10-jpeg.tar.gz exists, else the official
cifar-10-python.tar.gz (https://www.cs.toronto.edu/~kriz/cifar.html), downloaded when
missing; --cifar chooses."""

EPILOG = """\
examples:
  python -m experiments --list              the studies
  python -m experiments s1 --quick          a small subset, 2 epochs: checks it runs (QUICK)
  python -m experiments s4 --no-torch       the full S4 without the PyTorch twin
  python -m experiments s9 --device cuda    S9 at the report's size on a GPU (CuPy)
  python -m experiments all --record        every study into results/, then REPORT.md
  python -m experiments report              REPORT.md of what ran into runs/experiments"""


def _inside(path: str, folder: str) -> bool:
    path, folder = os.path.realpath(path), os.path.realpath(folder)
    return path == folder or path.startswith(folder + os.sep)


def main(argv: list | None = None, prog: str = "python -m experiments") -> int:
    from tinynet.cliargs import WHOLE_0, OneLineParser, writable_folder
    from tinynet.errors import TinynetError
    p = OneLineParser(prog=prog, description=DESCRIPTION, epilog=EPILOG,
                      formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("study", nargs="*",
                   help="s1 ... s11, 'all', or 'report' (REPORT.md of the output folder only)")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--quick", action="store_true",
                   help="a small subset and few epochs, to check a study runs; its tables and "
                        "plots say QUICK (default: off, the full study)")
    p.add_argument("--torch", dest="use_torch", action="store_true", default=None,
                   help="also train the PyTorch twin (default: on when torch is installed)")
    p.add_argument("--no-torch", dest="use_torch", action="store_false",
                   help="skip the PyTorch twin")
    p.add_argument("--seed", type=WHOLE_0, default=0,
                   help="seed of the initial weights and the data order (default: 0)")
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"],
                   help="where tinynet trains (default: cpu); S9 runs at the report's size "
                        "on cuda and at a reduced width, said in its output, on cpu")
    p.add_argument("--cifar", default="auto", choices=common.CIFAR_SOURCES,
                   help="CIFAR-10 source: the JPEG copy in $TINYNET_DATA/cifar10-jpeg, the "
                        "official archive, or auto: the copy when present (default: auto)")
    where = p.add_mutually_exclusive_group()
    where.add_argument("--out", default=None,
                       help=f"output folder (default: {DEFAULT_OUT}; results/ only with "
                            "--record)")
    where.add_argument("--record", action="store_true",
                       help="write into the repository's results/ (the committed results) "
                            "and rebuild results/REPORT.md")
    args = p.parse_args(argv)
    out = RESULTS if args.record else (args.out or DEFAULT_OUT)
    if args.quick and _inside(out, RESULTS):
        p.error(f"--quick into {out}: quick runs are not a replication and are not written "
                f"into results/ (the committed results); use another --out, or the default "
                f"{DEFAULT_OUT}")

    if args.list or not args.study:
        for name, module in registry.STUDIES.items():
            mod = registry.load_study(name)
            title = getattr(mod, "TITLE", "") if mod else \
                f"unavailable (experiments/{module}.py does not exist yet)"
            print(f"{name:4} {module:18} {title}")
        if not args.list:
            print(f"\nrun one: python -m experiments s1 [--quick]; outputs go to {DEFAULT_OUT}/ "
                  "(see --help)")
        return 0
    writable_folder(p, out, "--out")
    if args.use_torch is None:
        args.use_torch = common.torch_available()
    elif args.use_torch and not common.torch_available():
        print("--torch: PyTorch is not installed (pip install torch), or use --no-torch",
              file=sys.stderr)
        return 2
    names = []
    for s in args.study:
        if s == "all":
            names += registry.ORDER
        elif s == "report":
            names.append("report")
        else:
            try:
                names.append(registry.resolve(s))
            except ValueError as e:
                print(e, file=sys.stderr)
                return 2
    common.cifar_source = args.cifar
    failed = []
    for name in names:
        if name == "report":
            continue
        mod = registry.load_study(name)
        if mod is None:
            print(f"{name}: unavailable (experiments/{registry.STUDIES[name]}.py does not "
                  f"exist yet); skipped", flush=True)
            continue
        out_dir = os.path.join(out, name)
        print(f"=== {name}: {mod.TITLE} -> {out_dir} (seed {args.seed}, "
              f"{'QUICK' if args.quick else 'full'}, torch twin {'on' if args.use_torch else 'off'}, "
              f"device {args.device}, code {common.code_version()})", flush=True)
        start = time.perf_counter()
        try:
            mod.run(out_dir, quick=args.quick, seed=args.seed, use_torch=args.use_torch,
                    device=args.device)
        except TinynetError as e:  # missing data, no CuPy, ...: one line, not a traceback
            print(f"{prog}: {name}: error: {e}", file=sys.stderr, flush=True)
            failed.append(name)
            continue
        except Exception as e:  # one broken study must not stop `all`
            if len(names) == 1:
                raise
            print(f"{name} FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
            continue
        print(f"=== {name} done in {time.perf_counter() - start:.1f} s", flush=True)
    if "report" in names or args.record or (len(names) > 1 and not args.quick):
        from .report import write_report
        path = write_report(out)
        print(f"wrote {path}")
    return 1 if failed else 0


def study_main(module: str) -> int:
    """``python -m experiments.s01_lr [options]``: the same as ``python -m experiments s1
    [options]`` (each study module's ``__main__`` calls this with its own name)."""
    from tinynet.cliargs import run_command
    short = module.rsplit(".", 1)[-1]
    return run_command(lambda: main([registry.resolve(short), *sys.argv[1:]],
                                     prog=f"python -m {module}"))


if __name__ == "__main__":
    from tinynet.cliargs import run_command
    sys.exit(run_command(main))
