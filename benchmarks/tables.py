"""The tables the benchmarks print: aligned text for a terminal, or Markdown for docs.

``rows[0]`` is the header; the first column is left-aligned, the others (figures)
right-aligned.
"""

from __future__ import annotations


def render_text(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = [
        "  ".join(
            cell.ljust(w) if i == 0 else cell.rjust(w)
            for i, (cell, w) in enumerate(zip(row, widths, strict=True))
        )
        for row in rows
    ]
    lines.insert(1, "-" * len(lines[0]))
    return "\n".join(lines)


def render_markdown(rows: list[list[str]]) -> str:
    lines = ["| " + " | ".join(row) + " |" for row in rows]
    lines.insert(1, "| " + " | ".join(["---", *["---:"] * (len(rows[0]) - 1)]) + " |")
    return "\n".join(lines)
