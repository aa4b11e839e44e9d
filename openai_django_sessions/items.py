"""Checking conversation items before they are written."""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

# json.dumps writes U+0000 as \u0000; an even run of backslashes before it
# (possibly none) means the escape is real, not an escaped backslash.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


def check_items(items: object, *, vendor: str) -> list[dict[str, Any]]:
    """Return ``items`` as a list after checking that every one can be stored exactly.

    Raises ``TypeError`` unless ``items`` is a list (or tuple) of dicts, and
    ``TypeError``/``ValueError`` naming the item when one is not JSON (sets,
    objects, NaN or infinity). On PostgreSQL, whose ``jsonb`` cannot hold the
    character U+0000, an item containing it raises ``ValueError``.
    """
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a list of dicts, not {type(items).__name__}")
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise TypeError(f"items[{index}] must be a dict, not {type(item).__name__}")
        try:
            text = json.dumps(item, allow_nan=False)
        except (TypeError, ValueError) as exc:
            raise type(exc)(f"items[{index}] cannot be stored as JSON: {exc}") from exc
        if vendor == "postgresql" and "\\u0000" in text and _NUL_ESCAPE.search(text):
            raise ValueError(
                f"items[{index}] contains the character U+0000, which PostgreSQL's jsonb "
                "cannot store; remove it (for example str.replace('\\x00', '')) before adding"
            )
    return list(items)
