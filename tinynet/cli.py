"""The ``tinynet`` command: ``tinynet train``, ``tinynet gradcheck``, ``tinynet parity``, ...

Each sub-command lives in its own module and exposes ``main(argv) -> int``; this file
only dispatches, so ``tinynet --help`` stays fast and a missing optional dependency
(torch for ``parity``) only affects the command that needs it.
"""

from __future__ import annotations

import importlib
import os
import shlex
import sys

from .cliargs import (
    RATE,
    WHOLE_0,
    WHOLE_1,
    NamesHelpFormatter,
    OneLineParser,
    run_command,
)

COMMANDS = {
    "train": ("tinynet.cli", "train_main",
              "train a study model (default: the base MLP on Fashion-MNIST, the main job)"),
    "gradcheck": ("tinynet.gradcheck", "main",
                  "check every layer and model against finite differences"),
    "parity": ("tinynet.parity", "main", "compare every layer and model with its PyTorch twin"),
    "bench": ("benchmarks.__main__", "main", "time tinynet against PyTorch, side by side"),
    "trace": ("tinynet.trace", "main", "trace one forward and backward pass of a study model"),
    "grade": ("tinynet.exercises", "main", "grade a student's layer (exercises/)"),
}


def train_parser() -> OneLineParser:
    from tinynet.data import DATASETS
    from tinynet.models import MODELS

    p = OneLineParser(
        prog="tinynet train", formatter_class=NamesHelpFormatter,
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


def _epochs_done(ckpt_path: str) -> tuple[int, bool] | None:
    """(epochs finished, whether the next one has started) by the run whose checkpoint is
    ``ckpt_path``, from its header alone; None when fit has to judge it (unreadable, not
    fit's, or a run that ended early), which it does with its own message."""
    from tinynet.errors import TinynetError
    from tinynet.serialization import read_header
    try:
        progress = read_header(ckpt_path).get("progress") or {}
    except TinynetError:
        return None
    epoch, count = progress.get("epoch"), progress.get("epoch_count")
    if progress.get("finished") or type(epoch) is not int or type(count) is not int \
            or epoch < 1:
        return None
    return epoch - 1, count > 0


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
        done = _epochs_done(ckpt_path)
        if done is not None:
            finished, inside = done
            if finished > args.epochs or (finished == args.epochs and inside):
                parser.error(f"--epochs {args.epochs} but the run in {args.out} has already "
                             f"finished {finished} epoch(s)"
                             + (f" and started epoch {finished + 1}" if inside else "")
                             + f"; give --epochs {finished + 1} or more to train further")
            if finished == args.epochs and os.path.exists(os.path.join(args.out,
                                                                       "history.json")):
                print(f"the run in {args.out} is already complete: it has finished its "
                      f"{finished} epoch(s); give --epochs {finished + 1} or more to train "
                      f"further")
                return 0
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
    given = list(sys.argv[2:] if argv is None else argv)
    again = shlex.join(["tinynet", "train", *given] +
                       ([] if "--resume" in given else ["--resume"]))
    try:
        history = tinynet.fit(model, tinynet.CrossEntropyLoss(), optimizer, train, test,
                              epochs=args.epochs, batch_size=args.batch_size,
                              shuffle=args.shuffle, seed=args.seed,
                              progress=not args.no_progress, checkpoint_dir=checkpoint_dir,
                              checkpoint_every=args.checkpoint_every, resume=args.resume,
                              run_info=run_info, resume_hint=f"to continue this run: {again}")
    except tinynet.train.Interrupted as e:  # fit printed the checkpoint and this command
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
        return run_command(lambda: entry(rest))
    except TinynetError as e:
        print(f"tinynet {name}: error: {e}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print(f"tinynet {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
