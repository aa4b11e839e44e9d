"""A stored conversation turned into what the page and the terminal show."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any, Literal

from chat import history

EntryKind = Literal["user", "assistant", "tool", "other"]


@dataclass
class Entry:
    """One bubble of the chat.

    ``tool`` entries pair a ``function_call`` with its output (``None`` until
    the output is stored); ``other`` is any item type this example does not
    draw, shown by its type so nothing stored is hidden. A ``user`` entry has
    ``index``, its position in the stored items ("edit and resend" keeps the
    items before it).
    """

    kind: EntryKind
    text: str = ""
    tool_name: str = ""
    arguments: str = ""
    output: str | None = None
    index: int | None = None


def pretty_arguments(arguments: Any) -> str:
    """Tool arguments as compact ``key=value`` text (raw text if not JSON)."""
    try:
        parsed = json.loads(arguments) if isinstance(arguments, str) else arguments
    except json.JSONDecodeError:
        return str(arguments)
    if isinstance(parsed, dict):
        return ", ".join(
            f"{key}={json.dumps(value, ensure_ascii=False)}" for key, value in parsed.items()
        )
    return json.dumps(parsed, ensure_ascii=False)


def build_transcript(items: list[Any]) -> list[Entry]:
    """The entries for ``items`` (oldest first), in order."""
    entries: list[Entry] = []
    calls: dict[str, Entry] = {}
    for index, raw in enumerate(items):
        item = history.as_dict(raw)
        kind = item.get("type", "message")
        if history.is_user_message(item):
            entries.append(Entry("user", history.message_text(item), index=index))
        elif history.is_assistant_message(item):
            entries.append(Entry("assistant", history.message_text(item)))
        elif kind == "function_call":
            entry = Entry(
                "tool",
                tool_name=str(item.get("name", "")),
                arguments=pretty_arguments(item.get("arguments", "")),
            )
            calls[str(item.get("call_id"))] = entry
            entries.append(entry)
        elif kind == "function_call_output":
            output = item.get("output")
            text = output if isinstance(output, str) else json.dumps(output, ensure_ascii=False)
            entry = calls.get(str(item.get("call_id")))
            if entry is not None:
                entry.output = text
            else:
                entries.append(Entry("tool", tool_name="(unknown call)", output=text))
        else:
            entries.append(Entry("other", text=str(kind)))
    return entries


def as_terminal_lines(entries: list[Entry]) -> list[str]:
    """The entries as the ``chat`` command prints them."""
    lines = []
    for entry in entries:
        if entry.kind == "user":
            lines.append(f"you> {entry.text}")
        elif entry.kind == "assistant":
            lines.append(f"assistant> {entry.text}")
        elif entry.kind == "tool":
            lines.append(f"  [tool] {entry.tool_name}({entry.arguments}) -> {entry.output}")
        else:
            lines.append(f"  [{entry.text}]")
    return lines
