"""Reading the items of a conversation as the SDK stores them.

Items are Responses-API input items (plain dicts once stored): user messages
``{"role": "user", "content": ...}``, assistant messages with ``output_text``
parts, ``function_call`` and ``function_call_output`` items, and others this
example only passes along.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from typing import Any


def as_dict(item: Any) -> dict[str, Any]:
    """The item as a dict (the SDK may hand over pydantic models as well)."""
    if isinstance(item, Mapping):
        return dict(item)
    dump = getattr(item, "model_dump", None)
    if callable(dump):
        return dict(dump(exclude_unset=True))
    return {}


def normalize_input(input: str | Iterable[Any]) -> list[dict[str, Any]]:
    """The model input as a list of dicts; a bare string is one user message."""
    if isinstance(input, str):
        return [{"role": "user", "content": input}]
    return [as_dict(item) for item in input]


def is_user_message(item: Mapping[str, Any]) -> bool:
    return item.get("role") == "user" and item.get("type", "message") == "message"


def is_assistant_message(item: Mapping[str, Any]) -> bool:
    return item.get("role") == "assistant" and item.get("type", "message") == "message"


def message_text(item: Mapping[str, Any]) -> str:
    """The text of a message item: its string content, or its text parts joined."""
    content = item.get("content")
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        parts = [
            str(part.get("text") or part.get("refusal") or "")
            for part in (as_dict(part) for part in content)
        ]
        return "\n".join(part for part in parts if part)
    return ""


def user_texts(items: Iterable[Mapping[str, Any]]) -> list[str]:
    """What the user said, oldest first."""
    return [message_text(item) for item in items if is_user_message(item)]


def last_user_index(items: list[dict[str, Any]]) -> int | None:
    """Index of the most recent user message, ``None`` when there is none."""
    for index in range(len(items) - 1, -1, -1):
        if is_user_message(items[index]):
            return index
    return None
