"""Full-text search over what users and assistants said, in the migrated tables.

Each stored item's plain text (``message_text``) is written beside it, in
``AgentMessage.text``, by every write (``DjangoSession``, import, forks,
compaction, rebalancing); ``manage.py agent_sessions index-text`` fills it for
rows stored before migration ``0009``. Each database indexes it with its own
full-text search: PostgreSQL a GIN index on ``to_tsvector`` (configuration
``SEARCH_CONFIG``), MariaDB/MySQL a ``FULLTEXT`` index, SQLite an FTS5 table.

- ``AgentSession.objects.search(owner, query)``: one owner's conversations
  on one database, best first, each with ``search_snippet`` and
  ``search_rank``; ``search_all`` without owner scoping; ``matching`` as a
  plain filter (the admin's search).
- ``search(owner, query)``: the same over every database sessions live on
  (shards), merged best first.

A conversation matches when one of its user or assistant messages holds every
word of ``query``. Conversations of custom tables (``sessions_table=``) are not
searchable: their tables have no text column.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .models import AgentSession

__all__ = ["MAX_QUERY_LENGTH", "MAX_TEXT_LENGTH", "message_text", "search"]

# What one message contributes to the index, in characters: PostgreSQL refuses
# a tsvector over 1 MB, which 100,000 characters of text cannot reach.
MAX_TEXT_LENGTH = 100_000
# A longer query raises ValueError: no one types it, and each word costs the database.
MAX_QUERY_LENGTH = 1_000

_ROLES = frozenset({"user", "assistant"})
_TEXT_PARTS = frozenset({"input_text", "output_text"})


def content_text(content: object, kinds: frozenset[str], separator: str) -> str:
    """The text of a message's ``content``: the string itself, or the ``text`` of
    its parts whose ``type`` is one of ``kinds`` joined by ``separator``; ``""``
    for anything else. What searching and automatic titles read of a message."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return separator.join(
            part["text"]
            for part in content
            if isinstance(part, dict)
            and part.get("type") in kinds
            and isinstance(part.get("text"), str)
        )
    return ""


def message_text(item: Any) -> str:
    """The searchable plain text of one stored item.

    For a message whose ``role`` is ``"user"`` or ``"assistant"`` (a string
    ``content``, or a list of ``input_text``/``output_text`` parts), its text,
    parts joined with ``"\\n"``, cut to ``MAX_TEXT_LENGTH`` characters; ``""``
    for every other item: system and developer messages, tool calls and their
    outputs, reasoning, and the envelopes of the SDK's ``EncryptedSession``
    (encrypted conversations are not searchable).
    """
    if not isinstance(item, dict) or item.get("role") not in _ROLES:
        return ""
    if item.get("type", "message") != "message":
        return ""
    text = content_text(item.get("content"), _TEXT_PARTS, "\n")
    if "\x00" in text:  # PostgreSQL's text cannot hold it; no word contains it
        text = text.replace("\x00", " ")
    return text[:MAX_TEXT_LENGTH]


def search(owner: Any, query: str, *, limit: int = 20) -> list[AgentSession]:
    """``owner``'s conversations matching ``query`` on every database sessions live
    on (the shards of ``routers.ShardRouter``), best first, at most ``limit``.

    One query per database (``AgentSessionQuerySet.search``), the results merged
    by rank, then newest activity. Raises as that method does.
    """
    from . import _fulltext as fulltext
    from . import _routing as routing
    from .models import AgentSession

    found: list[AgentSession] = []
    for alias in routing.databases(AgentSession):
        found += AgentSession.objects.using(alias).search(owner, query, limit=limit)
    return fulltext.best_first(found)[:limit]
