"""SQL for the two hot paths, run on Django's connection.

- Reading a session's history: the ORM writes the query, once per shape
  (models, database, limit), and it is kept; building and compiling a
  queryset costs more than running the query on an indexed read.
- Removing a session's newest item and getting it back in one round trip
  (``DELETE ... RETURNING``), which the ORM cannot express. Backends without
  it (MySQL; MariaDB has it) are told by ``can_delete_returning`` and the
  caller uses the ORM instead.

Table and column names come from the models' ``_meta``, quoted by the
backend, so custom table names are followed.
"""

from __future__ import annotations

import functools
from typing import Any, Protocol, cast

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import Field, Model, QuerySet, Subquery

# Stands for the session id while the ORM compiles a query; never sent.
_SESSION_ID = "<session id>"


class _Decoder(Protocol):
    """A field that converts the values its column returns (``JSONField`` does)."""

    def from_db_value(
        self, value: Any, expression: Any, connection: BaseDatabaseWrapper
    ) -> Any: ...


def _data_field(message_model: type[Model]) -> _Decoder:
    # The JSONField of AbstractAgentMessage, which every message model derives from.
    return cast(_Decoder, message_model._meta.get_field("data"))


def _column(model: type[Model], name: str) -> str:
    field = model._meta.get_field(name)
    assert isinstance(field, Field) and field.column is not None  # a concrete field
    return field.column


def messages_of(
    session_model: type[Model], message_model: type[Model], alias: str, session_id: str
) -> QuerySet[Any]:
    """The messages of ``session_id``, as a queryset."""
    session_pk = session_model._default_manager.using(alias).filter(session_id=session_id)
    return message_model._default_manager.using(alias).filter(
        # A subquery rather than a join, so the planner walks the (session_id, id)
        # index from either end instead of sorting every row of the session.
        session_id=Subquery(session_pk.values("pk")[:1])
    )


@functools.lru_cache(maxsize=256)
def _history_sql(
    session_model: type[Model], message_model: type[Model], alias: str, limit: int | None
) -> str:
    rows = messages_of(session_model, message_model, alias, _SESSION_ID)
    ordered = rows.order_by("id") if limit is None else rows.order_by("-id")[:limit]
    query = ordered.values_list("data", flat=True).query
    sql, params = query.get_compiler(using=alias).as_sql()
    if tuple(params) != (_SESSION_ID,):
        raise RuntimeError(f"unexpected parameters in the history query: {params!r}")
    return sql


def history(
    alias: str,
    session_model: type[Model],
    message_model: type[Model],
    session_id: str,
    limit: int | None,
) -> list[Any]:
    """The session's items, oldest first; with ``limit``, only the newest ``limit``."""
    connection = connections[alias]
    data_field = _data_field(message_model)
    with connection.cursor() as cursor:
        cursor.execute(_history_sql(session_model, message_model, alias, limit), [session_id])
        rows = cursor.fetchall()
    items = [data_field.from_db_value(value, None, connection) for (value,) in rows]
    if limit is not None:
        items.reverse()
    return items


def can_delete_returning(alias: str) -> bool:
    # The backends that return columns from INSERT (PostgreSQL, SQLite 3.35+,
    # MariaDB 10.5+) return them from DELETE too.
    return bool(connections[alias].features.can_return_columns_from_insert)


def delete_newest(
    alias: str, session_model: type[Model], message_model: type[Model], session_id: str
) -> tuple[bool, Any]:
    """Delete the newest message of ``session_id``; return ``(found, data)``.

    ``data`` is decoded as the ``data`` field decodes it. The caller must hold
    the session row's lock, so that no other pop races for the same row.
    """
    connection = connections[alias]
    quote = connection.ops.quote_name
    messages, message_id = quote(message_model._meta.db_table), quote("id")
    foreign_key = quote(_column(message_model, "session"))
    data_column = quote(_column(message_model, "data"))
    data_field = _data_field(message_model)
    session_pk = (
        f"(SELECT {quote('id')} FROM {quote(session_model._meta.db_table)}"
        f" WHERE {quote('session_id')} = %s)"
    )
    if connection.features.delete_can_self_reference_subquery:
        sql = (
            f"DELETE FROM {messages} WHERE {message_id} = ("
            f"SELECT {message_id} FROM {messages} WHERE {foreign_key} = {session_pk}"
            f" ORDER BY {message_id} DESC LIMIT 1) RETURNING {data_column}"
        )
    else:  # MariaDB: no subquery on the table being deleted from
        sql = (
            f"DELETE FROM {messages} WHERE {foreign_key} = {session_pk}"
            f" ORDER BY {message_id} DESC LIMIT 1 RETURNING {data_column}"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_id])
        row = cursor.fetchone()
    if row is None:
        return False, None
    return True, data_field.from_db_value(row[0], None, connection)
