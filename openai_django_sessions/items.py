"""Checking what ``DjangoSession`` and ``import`` are asked to store, before anything is written.

Every check here but the item size is the same on every database, so an item
(or a session id) is accepted everywhere or refused everywhere, with a
``TypeError`` or ``ValueError`` that names it. The limits:

- ``MAX_DEPTH``: objects and arrays nested at most 30 levels deep, counting
  the item itself. MariaDB's ``JSON`` columns refuse 32 levels; Python's own
  JSON encoder fails with ``RecursionError`` near 1,000.
- Item size: at most ``limits.max_item_bytes(alias)`` per item, measured as
  compact UTF-8 JSON, which is how items are sent: it follows the database
  (MariaDB's ``max_allowed_packet``) and a setting, see ``limits``. Metadata
  (one JSON value in the session row) may be at most ``MAX_METADATA_BYTES``
  (7 MiB) on every database, which fits MariaDB's default packet.
- Dict keys must be ``str`` (JSON would turn ``1`` into ``"1"`` and lose a
  value when both exist); strings must be valid Unicode (no lone surrogates);
  NaN and infinity are refused.
"""

from __future__ import annotations

import json
import re
from collections.abc import Sequence
from typing import Any

from django.db import connections

from . import limits

# Public only as the JSON encoder that migrations name by this path.
__all__ = ["ItemEncoder"]

MAX_DEPTH = 30
MAX_METADATA_BYTES = 7 * 2**20
MAX_SESSION_ID_LENGTH = 255

# json.dumps writes U+0000 as \u0000; an even run of backslashes before it
# (possibly none) means the escape is real, not an escaped backslash.
_NUL_ESCAPE = re.compile(r"(?<!\\)(?:\\\\)*\\u0000")


class ItemEncoder(json.JSONEncoder):
    """The encoder of the ``data`` column: compact, non-ASCII text as is.

    ``\\uXXXX`` escapes would triple the size of non-ASCII text on its way to
    the database (and past MariaDB's packet limit).
    """

    def __init__(self, **kwargs: Any) -> None:
        kwargs.update(ensure_ascii=False, separators=(",", ":"))
        super().__init__(**kwargs)


_encode = ItemEncoder(allow_nan=False).encode


def encode(value: object) -> str:
    """``value`` as ``ItemEncoder`` writes it (raises as ``json.dumps`` does)."""
    return _encode(value)


class JSONText(str):
    """JSON text that ``encode`` wrote: a ``data`` value stored as it is, not encoded again."""

    __slots__ = ()


class CheckedItems(list[dict[str, Any]]):
    """Items that passed ``check_items``.

    ``texts`` holds each item's JSON as checked (what is stored), in order.
    """

    texts: list[JSONText]

    def subset(self, indexes: list[int]) -> CheckedItems:
        """The items at ``indexes``."""
        kept = CheckedItems(self[i] for i in indexes)
        kept.texts = [self.texts[i] for i in indexes]
        return kept

    def rows(self) -> list[dict[str, Any]]:
        """One ``insert_messages`` row per item, its ``data`` the JSON already encoded
        and its ``text`` what search indexes (``search.message_text``), read from the
        item here rather than decoded again from the JSON."""
        from .search import message_text

        return [
            {"data": text, "text": message_text(item)}
            for item, text in zip(self, self.texts, strict=True)
        ]


def check_items(items: object, *, using: str) -> CheckedItems:
    """Return ``items`` as a list after checking that every one can be stored exactly
    on the database ``using``.

    Raises ``TypeError`` unless ``items`` is a list (or tuple) of dicts, and
    ``TypeError``/``ValueError`` naming the item when one is not JSON (sets,
    objects, non-string keys, NaN or infinity), is nested deeper than
    ``MAX_DEPTH``, contains a lone surrogate or is larger than
    ``limits.max_item_bytes(using)`` (the message names the limit and how to
    change it). On PostgreSQL, whose ``jsonb`` cannot hold the character
    U+0000, an item containing it raises ``ValueError``.
    """
    if isinstance(items, (str, bytes)) or not isinstance(items, Sequence):
        raise TypeError(f"items must be a list of dicts, not {type(items).__name__}")
    vendor = connections[using].vendor
    max_bytes = limits.max_item_bytes(using)
    where = f" ({limits.describe(using)})"
    checked = CheckedItems()
    checked.texts = []
    for index, item in enumerate(items):
        if not isinstance(item, dict):
            raise TypeError(f"items[{index}] must be a dict, not {type(item).__name__}")
        text = _check_item(f"items[{index}]", item, vendor=vendor, max_bytes=max_bytes, where=where)
        checked.append(item)
        checked.texts.append(text)
    return checked


def json_size(text: str) -> int:
    """The size of ``text`` in UTF-8 bytes (``UnicodeEncodeError`` for a lone surrogate)."""
    return len(text) if text.isascii() else len(text.encode("utf-8"))


def _check_item(
    name: str, item: dict[str, Any], *, vendor: str, max_bytes: int, where: str = ""
) -> JSONText:
    """Check one item (at most ``max_bytes`` as JSON, ``where`` saying whose limit that
    is); return its JSON."""
    _check_structure(name, item, 1)
    try:
        text = encode(item)
    except (TypeError, ValueError) as exc:
        raise type(exc)(f"{name} cannot be stored as JSON: {exc}") from exc
    try:
        size = json_size(text)
    except UnicodeEncodeError as exc:
        raise ValueError(
            f"{name} contains a lone surrogate ({text[exc.start]!r}), which is not "
            "valid Unicode and cannot be stored"
        ) from None
    if size > max_bytes:
        raise limits.too_large(name, size, max_bytes, where)
    if vendor == "postgresql" and "\\u0000" in text and _NUL_ESCAPE.search(text):
        raise ValueError(
            f"{name} contains the character U+0000, which PostgreSQL's jsonb "
            "cannot store; remove it (for example str.replace('\\x00', '')) before adding"
        )
    return JSONText(text)


def check_json_object(name: str, value: dict[str, Any]) -> None:
    """Check ``value`` (metadata, say) by the rules for items, on every database alike.

    The same limits as an item's, and no U+0000 anywhere: a value accepted
    on one database must be accepted by all of them, and PostgreSQL cannot
    store that character; at most ``MAX_METADATA_BYTES`` as JSON.
    """
    _check_item(name, value, vendor="postgresql", max_bytes=MAX_METADATA_BYTES)


def check_text(name: str, value: str) -> None:
    """``ValueError`` unless ``value`` can be stored as text on every database."""
    if "\x00" in value:
        raise ValueError(f"{name} must not contain the character U+0000, got {value!r:.80}")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{name} contains a lone surrogate, which is not valid Unicode: {value!r:.80}"
        ) from None


def _check_structure(name: str, value: Any, depth: int) -> None:
    """Dict keys are ``str`` and containers nest at most ``MAX_DEPTH`` deep, from ``depth``.

    Recursion stops at ``MAX_DEPTH``, so an item nested thousands of levels
    deep gets this error and not a ``RecursionError``; scalars cost no call.
    """
    if depth > MAX_DEPTH:
        raise ValueError(f"{name} is nested more than {MAX_DEPTH} levels deep (objects and arrays)")
    if isinstance(value, dict):
        for key in value:
            if not isinstance(key, str):
                raise TypeError(
                    f"{name} has a dict key that is not a str: {key!r:.40}; JSON keys are strings"
                )
        children: Any = value.values()
    else:
        children = value
    for child in children:
        if isinstance(child, (dict, list, tuple)):
            _check_structure(name, child, depth + 1)


def check_session_id(value: object) -> str:
    """Return ``value`` if it can be a session id, else raise ``ValueError``.

    A non-empty ``str`` of at most 255 characters, valid Unicode (no lone
    surrogates), without the character U+0000 (which PostgreSQL cannot store
    in text).
    """
    if not isinstance(value, str) or not 1 <= len(value) <= MAX_SESSION_ID_LENGTH:
        raise ValueError(
            f"session_id must be a non-empty str of at most {MAX_SESSION_ID_LENGTH} "
            f"characters, got {value!r:.80}"
        )
    check_text("session_id", value)
    return value
