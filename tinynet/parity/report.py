"""Parity results: one :class:`Row` per compared tensor, a :class:`ParityReport` of rows.

``difference(a, b)`` is the measure of every single-pass row and of float64 trajectories::

    max_abs = max |a - b|        max_rel = max |a - b| / max(max |b|, tiny)

(``b`` the torch reference, ``tiny`` the smallest normal float64): the worst element error
in units of the tensor's largest magnitude. An element-wise ratio |a - b| / |b| would be
ruled by elements that are zero up to rounding (a gradient summed over a batch that nearly
cancels), which are not errors.

float32 trajectory rows measure something else (``measure == "step"``): the median over
the steps of the relative error of one step's update against float64, tinynet's beside
PyTorch's own (see :mod:`tinynet.parity.trajectory`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy

from ..backend import to_numpy
from ..errors import ShapeError
from ..textable import format_table
from .tolerances import FLOAT32_FLOOR_FACTOR, FLOAT32_STEP_FACTOR

__all__ = ["ParityReport", "Row", "difference"]


@dataclass
class Row:
    """One compared tensor: where it comes from, its differences and its tolerance.

    ``max_rel`` is the measured error and ``tol`` its limit; ``reference`` is PyTorch's
    own error where one was measured (float32 trajectories: PyTorch float32 against
    float64), NaN otherwise; ``measure`` says what ``max_rel`` is: ``"max rel"`` (see
    :func:`difference`) or ``"step"`` (median relative error of one step's update).
    """
    case: str
    dtype: str
    mode: str
    tensor: str
    max_abs: float
    max_rel: float
    tol: float
    raised: bool = False  # tol raised to FLOAT32_FLOOR_FACTOR x torch's own rounding drift
    reference: float = math.nan
    measure: str = "max rel"

    @property
    def ok(self) -> bool:
        return bool(math.isfinite(self.max_rel) and self.max_rel <= self.tol)

    @property
    def check(self) -> str:
        """``"case dtype mode"``, the label of the row's check in the tables."""
        return f"{self.case} {self.dtype} {self.mode}"


def _fmt(v: float) -> str:
    if isinstance(v, float) and math.isnan(v):
        return "-"
    return f"{v:.1e}" if v else "0"


def _fmt_tol(r: Row) -> str:
    return _fmt(r.tol) + ("*" if r.raised else "")


def _worst(rows: list) -> Row:
    """The row furthest above (or closest to) its tolerance; failures first."""
    return max(rows, key=lambda r: (not r.ok, r.max_rel / r.tol if r.tol > 0 and
                                    math.isfinite(r.max_rel) else math.inf))


@dataclass
class ParityReport:
    """Rows of compared tensors; ``ok`` when every one is within its tolerance.

    ``str(report)`` (or ``report.table()``) prints one line per check (case, dtype and
    mode) with its worst tensor, within ``width`` (100) columns; ``table(every=True)``
    one line per tensor; ``table(full=True)`` every column, however wide.
    """
    rows: list = field(default_factory=list)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows)

    def failures(self) -> list:
        return [r for r in self.rows if not r.ok]

    def extend(self, other: ParityReport) -> ParityReport:
        self.rows.extend(other.rows)
        self.notes.extend(other.notes)
        return self

    def groups(self) -> list:
        """``[(case, dtype, mode, rows)]`` in the order the rows were added."""
        out: dict = {}
        for r in self.rows:
            out.setdefault((r.case, r.dtype, r.mode), []).append(r)
        return [(*k, v) for k, v in out.items()]

    def table(self, every: bool = False, full: bool = False, width: int | None = 100,
              summary: bool = True) -> str:
        """The rows as a table (see the class docstring), then the summary and notes."""
        if full:
            head = ["case", "dtype", "mode", "n" if not every else "",
                    "tensor" if every else "worst tensor", "max abs", "error", "torch's",
                    "limit", ""]
            align, lines, width = "<<<><>>>><", [], None
            for case, dtype, mode, rows in self.groups():
                for r in (rows if every else [_worst(rows)]):
                    ok = r.ok if every else all(x.ok for x in rows)
                    lines.append([case, dtype, mode, "" if every else len(rows), r.tensor,
                                  _fmt(r.max_abs), _fmt(r.max_rel), _fmt(r.reference),
                                  _fmt_tol(r), "ok" if ok else "FAIL"])
        else:
            head = ["check", "" if every else "n", "tensor" if every else "worst tensor",
                    "error", "limit", ""]
            align, lines = "<><>><", []
            for _, _, _, rows in self.groups():
                for r in (rows if every else [_worst(rows)]):
                    ok = r.ok if every else all(x.ok for x in rows)
                    lines.append([r.check, "" if every else len(rows), r.tensor,
                                  _fmt(r.max_rel), _fmt_tol(r), "ok" if ok else "FAIL"])
        out = [format_table(head, lines, align, width=width)]
        if summary:
            out += self.summary()
        return "\n".join(out)

    def summary(self) -> list[str]:
        """The verdict line, the legend of marks used, and the notes."""
        n_bad = len(self.failures())
        out = [f"{len(self.rows)} tensors compared: "
               + ("all within tolerance" if not n_bad else f"{n_bad} ABOVE TOLERANCE")]
        if any(r.measure == "max rel" for r in self.rows):
            out.append("error = max|tinynet - torch| / max|torch| per tensor")
        if any(r.measure == "step" for r in self.rows):
            out.append("float32 trajectories: error = median over the steps of the relative "
                       "error of one step's\n  update against float64 (tinynet's); limit = "
                       f"{FLOAT32_STEP_FACTOR:g} x PyTorch's own, from the same states")
        if any(r.raised for r in self.rows):
            out.append(f"* tolerance raised to {FLOAT32_FLOOR_FACTOR:g} x PyTorch's own "
                       "rounding drift (float32: against PyTorch\n  in float64 from the same "
                       "values; float64 trajectories: against PyTorch started one ulp away)")
        return out + list(self.notes)

    def __str__(self) -> str:
        return self.table()


def difference(a, b) -> tuple[float, float]:
    """``(max |a - b|, max |a - b| / max(max |b|, tiny))`` of two arrays (b: the reference)."""
    a = numpy.asarray(to_numpy(a), dtype=numpy.float64)
    b = numpy.asarray(to_numpy(b), dtype=numpy.float64)
    if a.shape != b.shape:
        raise ShapeError(f"difference: shapes {a.shape} and {b.shape} differ")
    if a.size == 0:
        return 0.0, 0.0
    err = float(numpy.max(numpy.abs(a - b)))
    scale = max(float(numpy.max(numpy.abs(b))), float(numpy.finfo(numpy.float64).tiny))
    if not (numpy.isfinite(a).all() and numpy.isfinite(b).all()):
        same = bool(numpy.array_equal(a, b, equal_nan=True))
        return (0.0, 0.0) if same else (math.inf, math.inf)
    return err, err / scale
