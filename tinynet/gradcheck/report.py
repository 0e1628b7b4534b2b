"""A gradient check's verdicts: :class:`TensorCheck` per tensor, :class:`GradcheckReport`."""

from __future__ import annotations

import textwrap
from dataclasses import dataclass, field
from typing import Any, ClassVar

from ..errors import TinynetError
from ..textable import format_table

__all__ = ["GradcheckError", "GradcheckReport", "TensorCheck", "fmt_slope"]


class GradcheckError(TinynetError, AssertionError):
    """A gradient check failed (``report.raise_if_failed()``); the message names the
    layer, the tensor, the worst index and both values."""




@dataclass
class TensorCheck:
    """The verdict on one tensor (the input or one parameter)."""
    name: str                      # "input" or the state_dict key, e.g. "1.weight"
    layer: str                     # module.describe() of its owner, e.g. "Linear '1'"
    shape: tuple
    checked: int = 0               # elements compared
    skipped: int = 0               # element probes that crossed a kink
    directions: int = 0            # directional checks done
    skipped_directions: int = 0    # directional probes that crossed a kink (redrawn)
    max_abs_err: float = 0.0
    max_rel_err: float = 0.0
    worst_index: Any = None        # tuple index, or "dir k" for a directional probe
    analytic: float = float("nan")  # values at the worst probe
    numeric: float = float("nan")
    taylor_slope: float | None = None
    taylor: str = "-"              # "ok", "linear", "FAIL", "n/a" or "-" (not run)
    status: str = "pass"           # "pass", "FAIL" or "skip" (nothing could be checked)
    notes: list = field(default_factory=list)

    @property
    def ok(self) -> bool:
        return self.status != "FAIL"

    def message(self) -> str:
        """One line naming the layer, the tensor, the worst index and both values."""
        where = f"{self.layer}, tensor '{self.name}' {self.shape}"
        text = (f"{self.status} {where}: worst at {self.worst_index}: analytic "
                f"{self.analytic:.6g} vs numeric {self.numeric:.6g} (abs err "
                f"{self.max_abs_err:.3g}, rel err {self.max_rel_err:.3g}); "
                f"{self.checked} elements and {self.directions} directions checked, "
                f"{self.skipped} elements and {self.skipped_directions} directions "
                f"skipped at kinks; Taylor slope "
                f"{fmt_slope(self.taylor_slope)} ({self.taylor})")
        if self.notes:
            text += "; " + "; ".join(self.notes)
        return text


def fmt_slope(s) -> str:
    return "-" if s is None else f"{s:.2f}"


@dataclass
class GradcheckReport:
    """Rows of :class:`TensorCheck`, contract results and the settings used."""
    module: str
    dtype: str
    eps: float
    rtol: float
    atol: float
    rows: list = field(default_factory=list)
    contract: list = field(default_factory=list)   # (what, ok, detail)
    culprits: list = field(default_factory=list)   # children that fail when checked alone
    hint: str = ""

    @property
    def ok(self) -> bool:
        return all(r.ok for r in self.rows) and all(ok for _, ok, _ in self.contract)

    @property
    def failures(self) -> list[str]:
        out = [r.message() for r in self.rows if not r.ok]
        out += [f"FAIL {self.module}: {what}: {detail}" for what, ok, detail in self.contract
                if not ok]
        if out and self.hint:
            out.append(self.hint)
        return out

    def raise_if_failed(self) -> GradcheckReport:
        if not self.ok:
            raise GradcheckError(f"gradient check of {self.module} ({self.dtype}) failed:\n"
                                 + "\n".join(self.failures))
        return self

    HEADER: ClassVar[list[str]] = [
        "layer", "tensor", "shape", "checked", "skipped", "dirs", "max abs", "max rel",
        "worst index", "analytic", "numeric", "taylor slope", "status"]
    # the columns of the table within 100 columns (``table(full=False)``)
    COMPACT: ClassVar[list[str]] = [
        "tensor", "shape", "checked", "skipped", "dirs", "max rel", "worst index",
        "taylor slope", "status"]

    def table_rows(self) -> list[list[str]]:
        """One row per tensor, the cells of ``HEADER``."""
        rows = []
        for r in self.rows:
            idx = r.worst_index
            idx = "-" if idx is None else (str(tuple(int(i) for i in idx))
                                           if isinstance(idx, tuple) else str(idx))
            rows.append([r.layer, r.name, "x".join(str(s) for s in r.shape) or "()",
                         str(r.checked), str(r.skipped),
                         str(r.directions) + (f" ({r.skipped_directions} skipped)"
                                              if r.skipped_directions else ""),
                         f"{r.max_abs_err:.1e}", f"{r.max_rel_err:.1e}", idx,
                         f"{r.analytic:.4g}", f"{r.numeric:.4g}",
                         f"{fmt_slope(r.taylor_slope)} {r.taylor}", r.status])
        return rows

    def table(self, full: bool = False, width: int = 100) -> str:
        """A plain-text table, one row per tensor, then the contract results and verdict.

        Within ``width`` columns (the layer, max abs, analytic and numeric values are in
        the failure messages); ``full=True``: every column of ``HEADER``, however wide.
        """
        lines = [(f"gradcheck {self.module}: {self.dtype}, eps {self.eps:g}, rtol "
                  f"{self.rtol:g}, atol {self.atol:g}")]
        rows = self.table_rows()
        if full:
            lines.append(format_table(self.HEADER, rows))
        else:
            keep = [self.HEADER.index(c) for c in self.COMPACT]
            lines.append(format_table(self.COMPACT, [[row[i] for i in keep] for row in rows],
                                      "<<>>><<<<", width=width))
        for what, ok, detail in self.contract:
            lines.append(f"  contract: {what}: {'ok' if ok else 'FAIL'}"
                         + (f" ({detail})" if detail else ""))
        if self.ok:
            lines.append("OK")
        else:
            lines.append("FAILED:")
            lines += [textwrap.fill(f, width, initial_indent="  ", subsequent_indent="    ")
                      for f in self.failures]
        return "\n".join(lines)

    def __str__(self) -> str:
        return self.table()
