"""The ``tinynet`` command: ``tinynet train``, ``tinynet gradcheck``, ``tinynet parity``, ...

Each sub-command lives in its own module and exposes ``main(argv) -> int``; this file
only dispatches, so ``tinynet --help`` stays fast and a missing optional dependency
(torch for ``parity``) only affects the command that needs it.
"""

from __future__ import annotations

import argparse
import importlib
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


def train_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="tinynet train",
        description="Train a study model (default: the base MLP) on Fashion-MNIST with the "
                    "S1 settings (SGD lr 0.1, batch 64, no shuffling), print the test "
                    "accuracy per epoch and write history.json and curves.png.")
    p.add_argument("--model", default="base", help="model name from tinynet.models.MODELS "
                   "(base, bn, simplecnn, convbn, ...; default base)")
    p.add_argument("--data", default="fashion-mnist", help="data set (default fashion-mnist)")
    p.add_argument("--data-root", default=None,
                   help="folder holding the data set's files (default: $TINYNET_DATA/<name>, "
                        "the user cache, /usr/share/datasets/<name>, then download)")
    p.add_argument("--epochs", type=int, default=1)
    p.add_argument("--lr", type=float, default=0.1)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--momentum", type=float, default=0.0)
    p.add_argument("--shuffle", action="store_true", help="reshuffle every epoch (S1: off)")
    p.add_argument("--seed", type=int, default=0, help="seed for weights and data order")
    p.add_argument("--device", default="cpu", help="cpu or cuda (needs CuPy)")
    p.add_argument("--out", default=os.path.join("runs", "train"),
                   help="output folder for history.json and curves.png (default runs/train)")
    p.add_argument("--check", action="store_true",
                   help="reject NaN/inf inside every layer (slower; for debugging)")
    p.add_argument("--no-progress", action="store_true", help="no progress bar")
    p.add_argument("--checkpoint-dir", default=None,
                   help="where checkpoint.npz is kept (default <out>/checkpoints); it is "
                        "written every --checkpoint-every steps, at each epoch's end and "
                        "on Ctrl-C or SIGTERM")
    p.add_argument("--checkpoint-every", type=int, default=500, metavar="STEPS",
                   help="steps between checkpoints (default 500)")
    p.add_argument("--resume", action="store_true",
                   help="continue from the checkpoint in --checkpoint-dir, if there is one; "
                        "the result is bit-identical to an uninterrupted run")
    return p


def train_main(argv: list[str] | None = None) -> int:
    parser = train_parser()
    args = parser.parse_args(argv)
    import tinynet
    from tinynet import data, models
    from tinynet.plot import plot_history
    from tinynet.train import save_history

    if args.model not in models.MODELS:  # a usage error, not a traceback
        parser.error(f"unknown model {args.model!r}: expected one of {sorted(models.MODELS)}")

    tinynet.manual_seed(args.seed)
    if args.check:
        tinynet.set_checks(True)
    model = models.build(args.model).to(args.device)
    print(f"model {args.model}: {tinynet.count_parameters(model):,} parameters; "
          f"backend {tinynet.backend.name()}; device {args.device}")
    train = data.load(args.data, "train", root=args.data_root)
    test = data.load(args.data, "test", root=args.data_root)
    print(f"data {args.data}: {len(train[1]):,} train, {len(test[1]):,} test images")
    optimizer = tinynet.SGD(model.parameters(), lr=args.lr, momentum=args.momentum)
    checkpoint_dir = args.checkpoint_dir or os.path.join(args.out, "checkpoints")
    try:
        history = tinynet.fit(model, tinynet.CrossEntropyLoss(), optimizer, train, test,
                              epochs=args.epochs, batch_size=args.batch_size,
                              shuffle=args.shuffle, seed=args.seed,
                              progress=not args.no_progress, checkpoint_dir=checkpoint_dir,
                              checkpoint_every=args.checkpoint_every, resume=args.resume)
    except tinynet.train.Interrupted as e:  # fit printed where the checkpoint is
        return 143 if e.signal == "SIGTERM" else 130
    history["config"] = vars(args)
    os.makedirs(args.out, exist_ok=True)
    save_history(history, os.path.join(args.out, "history.json"))
    png = plot_history(history, os.path.join(args.out, "curves.png"),
                       title=f"{args.model} on {args.data}, SGD lr {args.lr}, batch {args.batch_size}")
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
