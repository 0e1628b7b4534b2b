"""Plain-text tables for the checking commands (``tinynet gradcheck``, ``tinynet parity``).

``format_table(header, rows)`` lines the columns up; with ``width`` it keeps every line
within that many characters by wrapping one column (the first by default): a cell too
long for its share goes on a line of its own, and the rest of its row follows on the
next line with that cell left blank::

    check                              n  worst tensor   error
    Linear(6,4) float64 train          5  grad 0.weight  1.1e-16
    Conv2d(3,5,(3,2),s(2,1),p(1,0),bias=False) float64 train
                                       4  dL/dx          2.2e-16
"""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["format_table"]


def format_table(header: Sequence[str], rows: Sequence[Sequence[object]],
                 align: str | None = None, width: int | None = None,
                 wrap: int = 0) -> str:
    """The table as one string: header, a rule, one line per row (more when wrapped).

    Args:
        header: the column titles.
        rows: the cells, converted with ``str``.
        align: one character per column, ``"<"`` (left, the default) or ``">"`` (right).
        width: the longest line allowed (``None``: no limit). Only column ``wrap`` is
            shortened; if the other columns alone are wider, lines exceed ``width``.
        wrap: the index of the column whose long cells go on a line of their own.
    """
    cells = [[str(c) for c in row] for row in rows]
    titles = [str(h) for h in header]
    align = align or "<" * len(titles)
    widths = [max([len(t)] + [len(r[i]) for r in cells]) for i, t in enumerate(titles)]
    if width is not None and sum(widths) + 2 * (len(widths) - 1) > width:
        others = sum(w for i, w in enumerate(widths) if i != wrap) + 2 * (len(widths) - 1)
        widths[wrap] = max(len(titles[wrap]), width - others)

    def line(values: list[str]) -> str:
        parts = [f"{v:{align[i]}{widths[i]}}" for i, v in enumerate(values)]
        return "  ".join(parts).rstrip()

    out = [line(titles), "-" * (sum(widths) + 2 * (len(widths) - 1))]
    for row in cells:
        if len(row[wrap]) > widths[wrap]:
            out.append(" " * sum(w + 2 for w in widths[:wrap]) + row[wrap])
            row = row[:wrap] + [""] + row[wrap + 1:]
        out.append(line(row))
    return "\n".join(out)
