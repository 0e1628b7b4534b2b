"""Graded backprop exercises: write a layer's backward, then ``tinynet grade FILE``.

The templates live in ``exercises/`` at the repository root (Linear, ReLU, Sigmoid,
softmax cross-entropy, Conv2d, MaxPool2d, BatchNorm1d): each has its forward written and
a ``backward`` that raises ``NotImplementedError`` until the student writes it.
``grade(layer_or_path)`` checks it against finite differences and PyTorch on a battery
of shapes and prints a report with hints (see ``grader``); reference solutions are in
``tinynet.exercises.solutions``.
"""

from __future__ import annotations

import argparse
import os
import sys

from ..cliargs import WHOLE_0, OneLineParser
from .grader import (
    EXERCISES,
    ExerciseError,
    Grades,
    Report,
    folder_problem,
    grade,
    load_student,
)
from .hints import MISTAKES

__all__ = [
    "EXERCISES",
    "MISTAKES",
    "ExerciseError",
    "Grades",
    "Report",
    "grade",
    "load_student",
    "main",
]

WORKFLOW = """workflow (templates: exercises/*.py, e.g. linear.py, conv2d.py, batchnorm1d.py):
  1. read the template's docstring and forward; derive the gradients on paper
  2. replace `raise NotImplementedError` in backward with your code
  3. run `tinynet grade exercises/linear.py` (finite differences + PyTorch, many shapes)
  4. read each FAIL: which gradient, worst index, by how much, and a HINT; fix, rerun
  5. all PASS? next template; stuck? tinynet/exercises/solutions.py has the answers"""


def parser() -> argparse.ArgumentParser:
    p = OneLineParser(
        prog="tinynet grade", formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Grade the backward of a layer you wrote in an exercises/ template.",
        epilog=WORKFLOW)
    p.add_argument("file", help="your Python file, e.g. exercises/linear.py")
    p.add_argument("--only", default=None, metavar="CLASS",
                   help=f"grade one class only ({', '.join(EXERCISES)}; default: every "
                        f"class the file defines)")
    p.add_argument("--no-torch", action="store_true",
                   help="skip the PyTorch comparison, finite differences only (default: "
                        "compare with PyTorch when it is installed)")
    p.add_argument("--seed", type=WHOLE_0, default=0,
                   help="seed of the random test data (default: 0)")
    return p


def main(argv: list[str] | None = None) -> int:
    p = parser()
    args = p.parse_args(sys.argv[1:] if argv is None else argv)
    if os.path.isdir(args.file):
        p.error(folder_problem(args.file))
    if not os.path.isfile(args.file) or not args.file.endswith(".py"):
        p.error(f"{args.file}: {'not a .py file' if os.path.isfile(args.file) else 'no such file'}"
                f"; expected your Python file, e.g. exercises/linear.py")
    if args.only is not None and args.only not in EXERCISES:
        p.error(f"--only {args.only!r}: expected one of {', '.join(EXERCISES)}")
    grades = grade(args.file, only=args.only, use_torch=not args.no_torch, seed=args.seed)
    return 0 if grades.passed else 1
