"""A conversation's details: its title and metadata, checked, and read back as one value.

``DjangoSession(title=..., metadata=...)`` and ``aupdate_details`` check their
arguments here, before anything is written; ``auto_title`` names a
conversation after its first user message when no title was given.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from .items import check_json_object, check_text
from .search import content_text

__all__ = ["SessionDetails"]

TITLE_MAX_LENGTH = 255  # AgentSession.title's max_length
AUTO_TITLE_LENGTH = 80  # a readable line in a conversation list
_TITLE_PARTS = frozenset({"input_text", "text"})


@dataclass(frozen=True)
class SessionDetails:
    """A stored conversation's row: what ``DjangoSession.aget_details()`` returns."""

    session_id: str
    owner_id: Any
    title: str
    metadata: dict[str, Any]
    created_at: datetime
    updated_at: datetime
    # The conversation's own retention; None: the EXPIRE_AFTER setting applies.
    expires_after: timedelta | None = None


def check_title(title: object) -> str:
    """``title`` if it is a str of at most 255 characters; else ``TypeError``/``ValueError``."""
    if not isinstance(title, str):
        raise TypeError(f"title must be a str, not {type(title).__name__}")
    if len(title) > TITLE_MAX_LENGTH:
        raise ValueError(f"title must be at most {TITLE_MAX_LENGTH} characters, got {len(title)}")
    check_text("title", title)
    return title


def check_metadata(metadata: object) -> dict[str, Any]:
    """``metadata`` if it is a dict within the limits of an item (see ``items``), with
    no U+0000; else ``TypeError``/``ValueError``, the same on every database."""
    if not isinstance(metadata, dict):
        raise TypeError(f"metadata must be a dict, not {type(metadata).__name__}")
    check_json_object("metadata", metadata)
    return metadata


def auto_title(items: list[Any]) -> str:
    """The title for a conversation these items start: its first user message's text.

    The first line of that text, spaces collapsed, cut at a word to at most
    ``AUTO_TITLE_LENGTH`` characters (ending in "…" when cut). ``""`` when no
    item is a user message with text (images only, tool output...).
    """
    for item in items:
        if not isinstance(item, dict) or item.get("role") != "user":
            continue
        line = next((ln for ln in _text(item.get("content")).splitlines() if ln.strip()), "")
        line = " ".join(line.split())
        if line:
            return _shorten(line)
    return ""


def _text(content: object) -> str:
    return content_text(content, _TITLE_PARTS, " ")  # input_text parts, among images and files


def _shorten(line: str) -> str:
    if len(line) <= AUTO_TITLE_LENGTH:
        return line
    cut = line[: AUTO_TITLE_LENGTH - 1]
    if " " in cut:
        cut = cut[: cut.rindex(" ")]
    return cut.rstrip() + "…"
