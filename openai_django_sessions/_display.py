"""Reading a stored item at a glance: what it is, what it says, which tool it calls.

Used by the admin's conversation view and by ``agent_sessions show``. Items are
the SDK's Responses API input items; anything unrecognised still gets a kind
(its ``role`` or ``type``) and whatever text it carries. ``printable`` makes
stored text safe to print on a terminal.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass

from django.utils.translation import gettext

# Characters a terminal acts on rather than shows: C0 and C1 controls (escape
# sequences that retitle the window, clear the screen, move the cursor), DEL, and
# the bidirectional overrides and isolates that reorder what follows them, and
# the Unicode line and paragraph separators.
_UNPRINTABLE = re.compile(
    "[\x00-\x1f\x7f-\x9f\u061c\u200e\u200f\u202a-\u202e\u2028\u2029\u2066-\u2069]"
)


def printable(text: str, *, keep_newlines: bool = False) -> str:
    """``text`` with every control character written as its Python escape (``\\x1b``).

    Stored text comes from end users (a title defaults to the first message), so
    a command prints it through this and a line it prints is one line, showing
    what is stored. ``keep_newlines`` keeps ``\\n`` for a body printed line by line.
    """

    def escape(match: re.Match[str]) -> str:
        char = match.group()
        if keep_newlines and char == "\n":
            return char
        return char.encode("unicode_escape").decode("ascii")

    return _UNPRINTABLE.sub(escape, text)


@dataclass(frozen=True)
class ItemView:
    """One item, flattened for display. Fields that do not apply are ``""``."""

    kind: str
    text: str = ""
    tool: str = ""
    arguments: str = ""
    output: str = ""
    call_id: str = ""


def describe(item: object) -> ItemView:
    """Flatten ``item`` into an ``ItemView``; never raises, whatever its shape."""
    if not isinstance(item, dict):
        return ItemView(kind="item", text=_to_text(item))
    item_type = item.get("type")
    role = item.get("role")
    if role and item_type in (None, "message"):
        return ItemView(kind=str(role), text=_content_text(item.get("content")))
    kind = str(item_type or role or "item")
    tool = item.get("name") or item.get("server_label") or ""
    if not tool and kind.endswith("_call"):
        tool = kind.removesuffix("_call")
    arguments = next(
        (item[key] for key in ("arguments", "input", "action", "queries") if key in item), ""
    )
    text = _content_text(item.get("content")) or _summary_text(item.get("summary"))
    return ItemView(
        kind=kind,
        text=text,
        tool=str(tool),
        arguments=_to_text(arguments),
        output=_content_text(item.get("output")),
        call_id=str(item.get("call_id") or ""),
    )


def pretty_json(item: object) -> str:
    """``item`` as indented JSON, non-ASCII characters kept readable."""
    return json.dumps(item, indent=2, ensure_ascii=False, default=repr)


def _to_text(value: object) -> str:
    if isinstance(value, str):
        return value
    if value is None:
        return ""
    return json.dumps(value, ensure_ascii=False, default=repr)


def _content_text(content: object) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if not isinstance(content, list):
        return _to_text(content)
    return "\n".join(text for text in (_part_text(part) for part in content) if text)


def _part_text(part: object) -> str:
    if not isinstance(part, dict):
        return _to_text(part)
    part_type = str(part.get("type") or "")
    if "text" in part:
        return _to_text(part["text"])
    if "refusal" in part:
        return f"[refusal] {_to_text(part['refusal'])}"
    if part_type.endswith("image"):
        return "[image]"
    if part_type.endswith("file"):
        return f"[file: {part.get('filename') or part.get('file_id') or 'attached'}]"
    if part_type.endswith("audio"):
        return "[audio]"
    return _to_text(part)


def _summary_text(summary: object) -> str:
    return _content_text(summary) if isinstance(summary, list) else ""


def usage_line(totals: dict[str, int]) -> str:
    """Usage totals in one line: ``1,234 tokens (1,000 in, 200 cached; 234 out, ...)``.

    In the active language (the admin's); management commands run with
    translations deactivated, as Django's do, so ``show`` prints it in English.
    """
    figures = {name: f"{value:,}" for name, value in totals.items()}
    return (
        gettext(
            "%(total_tokens)s tokens (%(input_tokens)s in, %(cached_tokens)s cached;"
            " %(output_tokens)s out, %(reasoning_tokens)s reasoning) in %(requests)s requests"
        )
        % figures
    )
