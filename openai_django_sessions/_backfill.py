"""Filling the search text of messages stored before migration ``0009``
(``manage.py agent_sessions index-text``).

Messages written since ``0009`` have their ``text``; older rows have NULL
until this fills them, in batches by id, each batch its own transaction: an
interrupted run loses at most its current batch, and the next run continues
with the rows still NULL. Writers need not stop: new rows come with their
text, and a row deleted meanwhile is simply not updated.

On PostgreSQL it then rebuilds the ``search_vector`` column and its GIN
index when the text search configuration the column is generated with is not
``SEARCH_CONFIG`` (the setting changed): every search uses the setting's
configuration. Dropping and adding the generated column rewrites the messages
table, under an ACCESS EXCLUSIVE lock (reads and writes wait). On SQLite it
rebuilds the FTS5 table and its triggers when one is missing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

from django.db import connections

from . import _conf as conf
from . import _fulltext as fulltext
from . import _transactions as transactions
from .models import AgentMessage
from .search import message_text


@dataclass(frozen=True)
class Progress:
    """Where filling is on ``alias``: messages filled so far, of ``total`` to fill."""

    alias: str
    filled: int
    total: int


def fill_text(
    alias: str,
    *,
    batch_size: int = 500,
    report: Callable[[Progress], object] | None = None,
) -> int:
    """Fill ``text`` of every message on ``alias`` that has none; return how many.

    ``report`` is called after each batch is committed.
    """
    messages = AgentMessage.objects.using(alias)
    missing = messages.filter(text__isnull=True)
    total = missing.count()
    filled, last = 0, 0
    while True:
        batch = list(
            missing.filter(pk__gt=last).order_by("pk").values_list("pk", "data")[:batch_size]
        )
        if not batch:
            return filled
        rows = [AgentMessage(pk=pk, text=message_text(data)) for pk, data in batch]
        transactions.run(alias, partial(messages.bulk_update, rows, ["text"]))
        filled, last = filled + len(batch), batch[-1][0]
        if report is not None:
            report(Progress(alias, filled, max(total, filled)))


def rebuild_index(alias: str) -> str | None:
    """Rebuild the search index on ``alias`` if it is out of step; return what it was
    (``None``: nothing done).

    PostgreSQL: when built with another configuration than ``SEARCH_CONFIG``
    (returns that configuration). SQLite: when the FTS5 table or one of its
    triggers is missing, as after a migration rebuilt the messages table
    (returns ``"incomplete"``).
    """
    connection = connections[alias]
    table = str(AgentMessage._meta.db_table)
    built_with: str | None
    if connection.vendor == "sqlite":
        if fulltext.sqlite_index_complete(connection, table):
            return None
        built_with = "incomplete"
    else:
        built_with = fulltext.index_config(connection, table)
        if built_with is None or built_with == conf.search_config():
            return None

    def rebuild() -> None:
        fulltext.drop_index(connection, table)
        fulltext.create_index(connection, table)

    transactions.run(alias, rebuild)
    return built_with
