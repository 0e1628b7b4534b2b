"""``python -m experiments <study|all|report> [--quick] [--no-torch] [--seed N] [--device D]``."""

from __future__ import annotations

import argparse
import os
import sys
import time

from . import common, registry


def main(argv: list | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m experiments",
                                description="Run the studies of shared/studies.md.")
    p.add_argument("study", nargs="*", help="s1 ... s11, 'all', or 'report' (REPORT.md only)")
    p.add_argument("--list", action="store_true", help="list the studies and exit")
    p.add_argument("--quick", action="store_true",
                   help="a small subset and few epochs (for CI); not a replication")
    p.add_argument("--torch", dest="use_torch", action="store_true", default=None,
                   help="also train the PyTorch twin (default when torch is installed)")
    p.add_argument("--no-torch", dest="use_torch", action="store_false")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    p.add_argument("--out", default="results", help="results folder (default: results)")
    args = p.parse_args(argv)

    if args.list or not args.study:
        for name, module in registry.STUDIES.items():
            mod = registry.load_study(name)
            title = getattr(mod, "TITLE", "") if mod else \
                f"unavailable (experiments/{module}.py does not exist yet)"
            print(f"{name:4} {module:18} {title}")
        return 0
    if args.use_torch is None:
        args.use_torch = common.torch_available()
    elif args.use_torch and not common.torch_available():
        print("--torch: PyTorch is not installed", file=sys.stderr)
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
    failed = []
    for name in names:
        if name == "report":
            continue
        mod = registry.load_study(name)
        if mod is None:
            print(f"{name}: unavailable (experiments/{registry.STUDIES[name]}.py does not "
                  f"exist yet); skipped", flush=True)
            continue
        out_dir = os.path.join(args.out, name)
        print(f"=== {name}: {mod.TITLE} -> {out_dir} (seed {args.seed}, "
              f"{'QUICK' if args.quick else 'full'}, torch twin {'on' if args.use_torch else 'off'}, "
              f"device {args.device})", flush=True)
        start = time.perf_counter()
        try:
            mod.run(out_dir, quick=args.quick, seed=args.seed, use_torch=args.use_torch,
                    device=args.device)
        except Exception as e:  # one broken study must not stop `all`
            if len(names) == 1:
                raise
            print(f"{name} FAILED: {type(e).__name__}: {e}", flush=True)
            failed.append(name)
            continue
        print(f"=== {name} done in {time.perf_counter() - start:.1f} s", flush=True)
    if "report" in names or (len(names) > 1 and not args.quick):
        from .report import write_report
        path = write_report(args.out)
        print(f"wrote {path}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
