"""The ``tinynet`` command: ``tinynet train``, ``tinynet gradcheck``, ``tinynet parity``, ...

Each sub-command lives in its own module and exposes ``main(argv) -> int``; this file
only dispatches, so ``tinynet --help`` stays fast and a missing optional dependency
(torch for ``parity``) only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
import math
import os
import sys

COMMANDS = {
    "train": ("tinynet.cli", "train_main", "train the base MLP on Fashion-MNIST (the main job)"),
    "gradcheck": ("tinynet.gradcheck", "main", "check every layer and model against finite differences"),
    "parity": ("tinynet.parity", "main", "compare every layer and model with its PyTorch twin"),
    "bench": ("benchmarks.__main__", "main", "time tinynet against PyTorch, side by side"),
    "trace": ("tinynet.trace", "main", "trace one forward and backward pass of a study model"),
    "grade": ("tinynet.exercises", "main", "grade a student's layer (exercises/)"),
}


class _NamesHelpFormatter(argparse.HelpFormatter):
    """Wraps help text without breaking names at hyphens (cifar-mlp-best stays whole)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _number_type(kind: type, low, what: str):
    """An argparse type: a finite ``kind`` >= ``low``; the error says what was expected."""
    def parse(text: str):
        try:
            value = kind(text)
        except ValueError:
            value = None
        if value is None or not math.isfinite(value) or value < low:
            raise argparse.ArgumentTypeError(f"expected {what}, got {text!r}")
        return value
    parse.__name__ = what
    return parse


WHOLE_1 = _number_type(int, 1, "a whole number >= 1")
WHOLE_0 = _number_type(int, 0, "a whole number >= 0")
RATE = _number_type(float, 0.0, "a finite number >= 0")


def train_parser() -> argparse.ArgumentParser:
    from tinynet.data import DATASETS
    from tinynet.models import MODELS

    p = OneLineParser(
        prog="tinynet train", formatter_class=_NamesHelpFormatter,
        description="Train a study model (default: the base MLP) on Fashion-MNIST with the "
                    "S1 settings (SGD lr 0.1, batch 64, no shuffling), print the test "
                    "accuracy per epoch and write history.json and curves.png. Checkpoints "
                    "are written as it trains; --resume continues a stopped run exactly.")
    p.add_argument("--model", default="base", metavar="NAME",
                   help=f"the model to train, one of: {', '.join(MODELS)} "
                        f"(default: %(default)s)")
    p.add_argument("--data", default="fashion-mnist", metavar="NAME",
                   help=f"the data set, one of: {', '.join(DATASETS)} (default: %(default)s)")
    p.add_argument("--data-root", default=None, metavar="FOLDER",
                   help="folder holding the data set's files (default: $TINYNET_DATA/<name>, "
                        "the user cache, /usr/share/datasets/<name>, then a download into "
                        "the cache)")
    p.add_argument("--epochs", type=WHOLE_1, default=1,
                   help="passes over the training set (default: %(default)s)")
    p.add_argument("--lr", type=RATE, default=0.1, help="SGD's learning rate (default: "
                   "%(default)s)")
    p.add_argument("--batch-size", type=WHOLE_1, default=64,
                   help="images per step (default: %(default)s)")
    p.add_argument("--momentum", type=RATE, default=0.0,
                   help="SGD's momentum, 0 for plain SGD (default: %(default)s)")
    p.add_argument("--shuffle", action="store_true",
                   help="reshuffle the training set every epoch (default: off, as S1)")
    p.add_argument("--seed", type=WHOLE_0, default=0,
                   help="seed for the weights, dropout and data order (default: %(default)s)")
    p.add_argument("--device", default="cpu", choices=("cpu", "cuda"),
                   help="cpu, or cuda (needs CuPy and a GPU) (default: %(default)s)")
    p.add_argument("--out", default=os.path.join("runs", "train"), metavar="FOLDER",
                   help="output folder for history.json and curves.png, created if needed "
                        "(default: %(default)s)")
    p.add_argument("--check", action="store_true",
                   help="reject NaN/inf inside every layer, naming it (slower; for "
                        "debugging) (default: off)")
    p.add_argument("--no-progress", action="store_true",
                   help="no progress bar (default: a bar per epoch)")
    p.add_argument("--checkpoint-dir", default=None, metavar="FOLDER",
                   help="where checkpoint.npz is kept; it is written every "
                        "--checkpoint-every steps, at each epoch's end and on Ctrl-C or "
                        "SIGTERM, and locked while a run uses it (default: <out>/checkpoints)")
    p.add_argument("--checkpoint-every", type=WHOLE_1, default=500, metavar="STEPS",
                   help="steps between checkpoints (default: %(default)s)")
    p.add_argument("--resume", action="store_true",
                   help="continue the run whose checkpoint is in the checkpoint folder (it "
                        "says which, and from where), or start from scratch if there is "
                        "none; the result is bit-identical to an uninterrupted run "
                        "(default: off)")
    return p


def train_main(argv: list[str] | None = None) -> int:
    parser = train_parser()
    args = parser.parse_args(argv)
    import tinynet
    from tinynet import data, models
    from tinynet.errors import CheckpointError
    from tinynet.plot import plot_history
    from tinynet.rundir import check_checkpoint_dir, check_writable
    from tinynet.train import CHECKPOINT_NAME, save_history

    # Everything a user can get wrong is checked before any data is read or model built.
    if args.model not in models.MODELS:  # a usage error, not a traceback
        parser.error(f"unknown model {args.model!r}: expected one of {list(models.MODELS)}")
    if args.data not in data.DATASETS:
        parser.error(f"unknown data set {args.data!r}: expected one of "
                     f"{list(data.DATASETS)}")
    checkpoint_dir = args.checkpoint_dir or os.path.join(args.out, "checkpoints")
    try:
        check_writable(args.out, "output folder (--out)")
        ckpt_path = check_checkpoint_dir(checkpoint_dir, CHECKPOINT_NAME)
    except CheckpointError as e:
        parser.error(str(e))
    if args.resume and os.path.exists(ckpt_path):  # fit says from where once it is read
        print(f"resuming the run in {os.path.abspath(args.out)}")

    tinynet.manual_seed(args.seed)
    if args.check:
        tinynet.set_checks(True)
    model = models.build(args.model).to(args.device)
    print(f"model {args.model}: {tinynet.count_parameters(model):,} parameters; "
          f"backend {tinynet.backend.name()}; device {args.device}")
    train = data.load(args.data, "train", root=args.data_root)
    test = data.load(args.data, "test", root=args.data_root)
    folders = {data.find(args.data, split, args.data_root) for split in ("train", "test")}
    print(f"data {args.data}: {len(train[1]):,} train, {len(test[1]):,} test images from "
          f"{' and '.join(sorted(os.path.abspath(f) for f in folders if f))}")
    optimizer = tinynet.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    run_info = {"model": args.model, "data": args.data, "lr": args.lr,
                "momentum": args.momentum, "seed": args.seed}
    try:
        history = tinynet.fit(model, tinynet.CrossEntropyLoss(), optimizer, train, test,
                              epochs=args.epochs, batch_size=args.batch_size,
                              shuffle=args.shuffle, seed=args.seed,
                              progress=not args.no_progress, checkpoint_dir=checkpoint_dir,
                              checkpoint_every=args.checkpoint_every, resume=args.resume,
                              run_info=run_info)
    except tinynet.train.Interrupted as e:  # fit printed where the checkpoint is
        return 143 if e.signal == "SIGTERM" else 130
    history["config"] = vars(args)
    save_history(history, os.path.join(args.out, "history.json"))
    png = plot_history(history, os.path.join(args.out, "curves.png"),
                       title=f"{args.model} on {args.data}, SGD lr {args.lr}, "
                             f"batch {args.batch_size}")
    if history["test_acc"]:
        print(f"test accuracy after {len(history['epoch'])} epoch(s): "
              f"{history['test_acc'][-1]:.2f}% (training took {history['total_seconds']:.1f} s)")
    print(f"wrote {os.path.join(os.path.abspath(args.out), 'history.json')} and {png}")
    return 1 if history["stopped"] else 0


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help"):
        print("usage: tinynet COMMAND [options]   (tinynet COMMAND --help for each)\n")
        for name, (_, _, text) in COMMANDS.items():
            print(f"  {name:10s} {text}")
        return 0 if argv else 2
    name, rest = argv[0], argv[1:]
    if name not in COMMANDS:
        print(f"tinynet: unknown command {name!r}; expected one of {', '.join(COMMANDS)}",
              file=sys.stderr)
        return 2
    module, func, _ = COMMANDS[name]
    try:
        entry = getattr(importlib.import_module(module), func)
    except (ImportError, AttributeError) as e:
        print(f"tinynet {name}: not available ({e})", file=sys.stderr)
        return 2
    from tinynet.errors import TinynetError
    try:
        return int(entry(rest) or 0)
    except TinynetError as e:
        print(f"tinynet {name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tinynet {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
