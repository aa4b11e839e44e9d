"""The one statement the ORM cannot express: removing a session's newest item
and getting it back in the same round trip (``DELETE ... RETURNING``).

SQL is built from the models' ``_meta`` and the backend's quoting, so it
follows custom table names. Backends without ``RETURNING`` on ``DELETE``
(MySQL; MariaDB has it) get ``None`` from ``can_delete_returning`` and callers
use the ORM instead.
"""

from __future__ import annotations

from typing import Any

from django.db import connections
from django.db.models import Model


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
    foreign_key = quote(message_model._meta.get_field("session").column)
    data_field = message_model._meta.get_field("data")
    session_pk = (
        f"(SELECT {quote('id')} FROM {quote(session_model._meta.db_table)}"
        f" WHERE {quote('session_id')} = %s)"
    )
    if connection.features.delete_can_self_reference_subquery:
        sql = (
            f"DELETE FROM {messages} WHERE {message_id} = ("
            f"SELECT {message_id} FROM {messages} WHERE {foreign_key} = {session_pk}"
            f" ORDER BY {message_id} DESC LIMIT 1) RETURNING {quote(data_field.column)}"
        )
    else:  # MariaDB: no subquery on the table being deleted from
        sql = (
            f"DELETE FROM {messages} WHERE {foreign_key} = {session_pk}"
            f" ORDER BY {message_id} DESC LIMIT 1 RETURNING {quote(data_field.column)}"
        )
    with connection.cursor() as cursor:
        cursor.execute(sql, [session_id])
        row = cursor.fetchone()
    if row is None:
        return False, None
    return True, data_field.from_db_value(row[0], None, connection)
