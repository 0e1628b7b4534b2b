"""What every ``tinynet`` command's argument parser shares: one-line usage errors (exit
status 2), number types that say what they expected, and a help formatter that keeps
names such as ``cifar-mlp-best`` whole.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
from collections.abc import Callable

__all__ = ["CLOSED_PIPE", "RATE", "WHOLE_0", "WHOLE_1", "NamesHelpFormatter",
           "OneLineParser", "batch_list", "number_type", "run_command", "writable_file",
           "writable_folder"]

# The exit status of a command whose reader went away (``tinynet trace | head -1``):
# 128 + SIGPIPE, what a shell reports for a program the signal ended.
CLOSED_PIPE = 141


class NamesHelpFormatter(argparse.HelpFormatter):
    """Wraps help text without breaking names at hyphens (cifar-mlp-best stays whole)."""

    def _split_lines(self, text: str, width: int) -> list[str]:
        import textwrap
        return textwrap.wrap(" ".join(text.split()), width, break_on_hyphens=False)


class OneLineParser(argparse.ArgumentParser):
    """An ArgumentParser whose usage errors are one line on stderr and exit status 2.

    Parsing also checks the environment variables every command reads (today
    ``TINYNET_NUM_THREADS``), so a bad value is such a usage error before any work
    rather than a traceback once the kernels first ask for their threads.
    """

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")

    def parse_known_args(self, args=None, namespace=None):  # type: ignore[override]
        parsed = super().parse_known_args(args, namespace)
        from .errors import ArgumentError
        from .functional.fast.threads import threads_from_env
        try:
            threads_from_env()
        except ArgumentError as e:
            self.error(str(e))
        return parsed


def number_type(kind: type, low, what: str):
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


WHOLE_1 = number_type(int, 1, "a whole number >= 1")
WHOLE_0 = number_type(int, 0, "a whole number >= 0")
RATE = number_type(float, 0.0, "a finite number >= 0")


def batch_list(text: str) -> tuple[int, ...]:
    """An argparse type: comma-separated batch sizes, each a whole number >= 2."""
    try:
        values = tuple(int(b) for b in text.split(",") if b.strip())
    except ValueError:
        values = ()
    if not values or any(b < 2 for b in values):
        raise argparse.ArgumentTypeError(
            f"expected comma-separated batch sizes, each a whole number >= 2, got {text!r}")
    return values


batch_list.__name__ = "batch sizes"


def writable_folder(parser: argparse.ArgumentParser, folder: str | None, option: str) -> None:
    """Before any work: ``folder`` can be created and written, else a usage error naming
    ``option`` (so a bad path does not lose a long run at its end)."""
    if not folder:
        return
    from .errors import CheckpointError
    from .rundir import check_writable
    try:
        check_writable(os.path.abspath(folder), f"{option} folder")
    except CheckpointError as e:
        parser.error(str(e))


def writable_file(parser: argparse.ArgumentParser, path: str | None, option: str) -> None:
    """Before any work: the folder the file ``path`` will be written into can be created
    and written, else a usage error naming ``option``."""
    if path:
        writable_folder(parser, os.path.dirname(os.path.abspath(path)), f"{option} file's")


def run_command(call: Callable[[], int | None]) -> int:
    """``call()``'s exit status, quiet when stdout's reader has gone (``| head``).

    Python ignores SIGPIPE, so a write to a closed pipe raises BrokenPipeError, and the
    flush at exit would raise it again. As the Python docs recommend (signal module,
    "Note on SIGPIPE"): flush inside, and on BrokenPipeError point stdout at /dev/null
    and return :data:`CLOSED_PIPE` without a word.
    """
    try:
        code = int(call() or 0)
        sys.stdout.flush()   # buffered output meets the closed pipe here, not at exit
        return code
    except BrokenPipeError:
        devnull = os.open(os.devnull, os.O_WRONLY)
        try:
            os.dup2(devnull, sys.stdout.fileno())
        except (AttributeError, OSError, ValueError):  # stdout is not a file (tests)
            pass
        finally:
            os.close(devnull)
        return CLOSED_PIPE
