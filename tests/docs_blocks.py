"""The code blocks of README.md and docs/, and how each one is run.

Every fenced block states what it is. A ``python`` block is executed; the blocks of
one page share a namespace, in order, as a reader who pastes them one after the other
would run them. Other info strings (``bash``, ``console``, ``json``, ``text``) say that
the block is not Python and is not executed. A ``python`` block that cannot run as
shown is marked on the line before its fence with an HTML comment (invisible on the
rendered page)::

    <!-- docs-test: settings -->      a fragment of settings.py: executed on its own,
                                      it must define UPPER_CASE names only
    <!-- docs-test: not-run REASON -->  not executed; the reason is required

A fence without an info string, an unknown info string or an unknown mark is an
error: nothing is left out silently.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

PYTHON = "python"
# Info strings that say "this is not Python": shown, never executed.
NOT_PYTHON = frozenset({"bash", "console", "json", "text", "toml"})
MARKS = frozenset({"settings", "not-run"})

_FENCE = re.compile(r"^(?P<indent> *)(?P<fence>`{3,}|~{3,})(?P<info>[^`]*)$")
_MARK = re.compile(r"^\s*<!--\s*docs-test:\s*(?P<mark>[\w-]+)(?P<reason>[^>]*?)\s*-->\s*$")


class DocsBlockError(Exception):
    """A block that is neither runnable nor marked, or a mark that is not understood."""


@dataclass(frozen=True)
class Block:
    """One fenced block: where it starts, its language, its mark and its code."""

    path: Path
    line: int  # 1-based line of the opening fence
    language: str
    mark: str | None
    reason: str
    code: str

    @property
    def where(self) -> str:
        try:
            name = self.path.relative_to(ROOT)
        except ValueError:
            name = self.path
        return f"{name}:{self.line}"

    @property
    def runs(self) -> bool:
        """Executed as a sample (``settings`` fragments are executed on their own)."""
        return self.language == PYTHON and self.mark is None


def pages() -> list[Path]:
    """README.md and every Markdown page of the docs site."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path, text: str | None = None) -> list[Block]:
    """The fenced blocks of ``path``, each checked for a language and a known mark."""
    lines = (path.read_text(encoding="utf-8") if text is None else text).splitlines()
    found: list[Block] = []
    i = 0
    while i < len(lines):
        opening = _FENCE.match(lines[i])
        if not opening:
            i += 1
            continue
        indent, fence = len(opening["indent"]), opening["fence"]
        info = opening["info"].strip().split()
        body: list[str] = []
        j = i + 1
        while j < len(lines) and not lines[j].strip().startswith(fence):
            body.append(lines[j][indent:] if lines[j][:indent].isspace() else lines[j])
            j += 1
        if j == len(lines):
            raise DocsBlockError(f"{path}:{i + 1}: the block is never closed")
        found.append(_block(path, i + 1, info, _mark_before(lines, i), "\n".join(body)))
        i = j + 1
    return found


def _mark_before(lines: list[str], fence: int) -> re.Match[str] | None:
    k = fence - 1
    while k >= 0 and not lines[k].strip():
        k -= 1
    return _MARK.match(lines[k]) if k >= 0 else None


def _block(path: Path, line: int, info: list[str], mark: re.Match[str] | None, code: str) -> Block:
    where = f"{path}:{line}"
    if not info:
        raise DocsBlockError(
            f"{where}: a block without a language; write ```python (executed) or one of "
            f"{', '.join(sorted(NOT_PYTHON))}"
        )
    language = info[0]
    if language != PYTHON and language not in NOT_PYTHON:
        raise DocsBlockError(f"{where}: unknown language {language!r}")
    if mark is None:
        return Block(path, line, language, None, "", code)
    if language != PYTHON:
        raise DocsBlockError(f"{where}: a docs-test mark on a {language} block, which never runs")
    name, reason = mark["mark"], mark["reason"].strip()
    if name not in MARKS:
        raise DocsBlockError(f"{where}: unknown mark {name!r} (known: {', '.join(sorted(MARKS))})")
    if name == "not-run" and not reason:
        raise DocsBlockError(f"{where}: 'not-run' needs a reason")
    return Block(path, line, language, name, reason, code)
