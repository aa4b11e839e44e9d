"""System checks for the ``OPENAI_DJANGO_SESSIONS`` setting and the sessions' database.

=================================  =========================================================
``openai_django_sessions.E001``    the setting is not a dict
``openai_django_sessions.E002``    the setting has a key this app does not know
``openai_django_sessions.E003``    a key has a value of the wrong type
``openai_django_sessions.E004``    a table name is not a plain SQL identifier
``openai_django_sessions.E005``    ``DATABASE`` is not an alias in ``DATABASES``
``openai_django_sessions.E006``    two of the table names are the same
``openai_django_sessions.E007``    ``SHARDS`` or ``PREVIOUS_SHARDS`` names an alias not in
                                   ``DATABASES``, or none
``openai_django_sessions.E008``    ``MAX_ITEM_BYTES`` is not a positive number of bytes
``openai_django_sessions.E009``    sessions on a database without the users keep the
                                   owner's database constraint (migration ``0007``)
``openai_django_sessions.E010``    ``EXPIRE_AFTER`` is not a positive duration of at
                                   most 100 years
``openai_django_sessions.E011``    ``SEARCH_CONFIG`` is not a plain SQL identifier
``openai_django_sessions.W001``    the sessions' SQLite database is not in WAL mode
``openai_django_sessions.W002``    a sessions table on MySQL/MariaDB compares ids loosely
=================================  =========================================================

E009, W001 and W002 need a connection, so they are database checks: ``manage.py
check --database ALIAS`` and ``migrate`` run them. W002 is a warning, not an
error, so that ``migrate`` (which converts the migrated table) still runs.
"""

from __future__ import annotations

import difflib
from collections.abc import Callable, Iterable
from datetime import timedelta
from typing import TYPE_CHECKING, Any, cast

from django.core.checks import CheckMessage, Error, Tags, Warning, register
from django.db import DatabaseError, connections
from django.db.backends.base.base import BaseDatabaseWrapper

from . import _conf as conf
from . import _routing as routing
from . import _tables as tables
from . import deletion

if TYPE_CHECKING:
    from django.db.backends.sqlite3.base import DatabaseWrapper as SQLiteDatabaseWrapper

ID = "openai_django_sessions"
TABLE_KEYS = ("SESSIONS_TABLE", "MESSAGES_TABLE", "USAGE_TABLE", "LEASES_TABLE")
TYPES: dict[str, tuple[type, ...]] = {
    "SESSIONS_TABLE": (str,),
    "MESSAGES_TABLE": (str,),
    "USAGE_TABLE": (str,),
    "LEASES_TABLE": (str,),
    "DATABASE": (str, type(None)),
    "SHARDS": (list, tuple, type(None)),
    "MAX_ITEM_BYTES": (int, type(None)),
    "PREVIOUS_SHARDS": (list, tuple, type(None)),
    "EXPIRE_AFTER": (timedelta, int, float, type(None)),
    "SEARCH_CONFIG": (str,),
    "DRIVER_CURSOR": (bool,),
}


@register()
def check_settings(app_configs: Iterable[Any] | None = None, **kwargs: Any) -> list[CheckMessage]:
    """E001 to E008, E010 and E011: the setting's shape, types, table names, aliases,
    item limit, expiry and search configuration."""
    value = conf.user_settings()
    name = conf.SETTING_NAME
    if not isinstance(value, dict):
        return [
            Error(
                f"{name} must be a dict, not {type(value).__name__}.",
                hint=f"For example {name} = {{'DATABASE': 'default'}}.",
                id=f"{ID}.E001",
            )
        ]
    errors: list[CheckMessage] = []
    for key in value:
        if key not in conf.DEFAULTS:
            close = difflib.get_close_matches(str(key), conf.DEFAULTS, n=1)
            errors.append(
                Error(
                    f"{name} has an unknown key {key!r}.",
                    hint=(f"Did you mean {close[0]!r}? " if close else "")
                    + f"Valid keys: {', '.join(conf.DEFAULTS)}.",
                    id=f"{ID}.E002",
                )
            )
    for key, types in TYPES.items():
        if key in value and not isinstance(value[key], types):
            expected = " or ".join("None" if t is type(None) else t.__name__ for t in types)
            errors.append(
                Error(
                    f"{name}[{key!r}] must be {expected}, not {type(value[key]).__name__}.",
                    id=f"{ID}.E003",
                )
            )
    tables = {key: value.get(key, conf.DEFAULTS[key]) for key in TABLE_KEYS}
    for key, table in tables.items():
        if isinstance(table, str) and not conf.IDENTIFIER.fullmatch(table):
            errors.append(
                Error(
                    f"{name}[{key!r}] = {table!r} is not a valid table name.",
                    hint="Use letters, digits and underscores, not starting with a digit, "
                    "at most 50 characters: the name is written into SQL as it is.",
                    id=f"{ID}.E004",
                )
            )
    for i, first in enumerate(TABLE_KEYS):
        for second in TABLE_KEYS[i + 1 :]:
            if tables[first] == tables[second]:
                errors.append(
                    Error(
                        f"{name}[{first!r}] and [{second!r}] are both {tables[first]!r}.",
                        hint="Sessions, messages and usage need a table each; "
                        "give them different names.",
                        id=f"{ID}.E006",
                    )
                )
    alias = value.get("DATABASE")
    if isinstance(alias, str) and alias not in connections:
        errors.append(
            Error(
                f"{name}['DATABASE'] is {alias!r}, which is not an alias in DATABASES.",
                hint=f"Use one of {', '.join(map(repr, connections))}, or None to let "
                "the database routers decide.",
                id=f"{ID}.E005",
            )
        )
    errors += _shard_errors(value.get("SHARDS"))
    errors += _shard_errors(value.get("PREVIOUS_SHARDS"), "PREVIOUS_SHARDS")
    errors += _item_limit_errors(value.get("MAX_ITEM_BYTES"))
    errors += _expiry_errors(value.get("EXPIRE_AFTER"))
    errors += _search_config_errors(value.get("SEARCH_CONFIG", conf.DEFAULTS["SEARCH_CONFIG"]))
    return errors


def _search_config_errors(config: object) -> list[CheckMessage]:
    # Another type is E003.
    if not isinstance(config, str) or conf.IDENTIFIER.fullmatch(config):
        return []
    return [
        Error(
            f"{conf.SETTING_NAME}['SEARCH_CONFIG'] = {config!r} is not the name of a text "
            "search configuration.",
            hint="Use a PostgreSQL text search configuration's plain name, such as "
            "'simple' or 'english' (letters, digits and underscores): it is written into "
            "SQL as it is.",
            id=f"{ID}.E011",
        )
    ]


def _item_limit_errors(limit: object) -> list[CheckMessage]:
    # Other types are E003; True is an int to isinstance, not a size.
    if not isinstance(limit, int) or (limit > 0 and not isinstance(limit, bool)):
        return []
    return [
        Error(
            f"{conf.SETTING_NAME}['MAX_ITEM_BYTES'] is {limit!r}; it must be a positive "
            "number of bytes, or None.",
            hint="For example 32 * 2**20 for 32 MiB. None follows the database: 64 MiB, "
            "or what max_allowed_packet allows on MySQL/MariaDB.",
            id=f"{ID}.E008",
        )
    ]


def _expiry_errors(expire_after: object) -> list[CheckMessage]:
    if not isinstance(expire_after, (timedelta, int, float)):
        return []  # None is "never"; another type is E003
    from . import _retention as retention

    try:
        retention.check_expires_after(expire_after, "EXPIRE_AFTER")
    except (TypeError, ValueError) as exc:
        return [
            Error(
                f"{conf.SETTING_NAME}['EXPIRE_AFTER'] is {expire_after!r}, "
                f"not a positive duration of at most 100 years: {exc}.",
                hint="Use a timedelta (timedelta(days=30)) or a number of seconds, "
                "or None to keep conversations until they are deleted.",
                id=f"{ID}.E010",
            )
        ]
    return []


def _shard_errors(shards: object, key: str = "SHARDS") -> list[CheckMessage]:
    if not isinstance(shards, (list, tuple)):
        return []
    unknown = [alias for alias in shards if not isinstance(alias, str) or alias not in connections]
    if shards and not unknown and len(set(shards)) == len(shards):
        return []
    return [
        Error(
            f"{conf.SETTING_NAME}[{key!r}] must list distinct aliases from DATABASES"
            + (f"; {', '.join(map(repr, unknown))} is not one." if unknown else "."),
            hint=f"Use some of {', '.join(map(repr, connections))}.",
            id=f"{ID}.E007",
        )
    ]


@register(Tags.database)
def check_sqlite_wal(
    app_configs: Iterable[Any] | None = None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """W001, for each alias the sessions are stored on that is among ``databases``."""
    return _per_alias(databases, lambda alias: sqlite_wal_warnings(connections[alias]))


@register(Tags.database)
def check_owner_constraints(
    app_configs: Iterable[Any] | None = None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """E009, for each alias the sessions are stored on that is among ``databases``."""
    return _per_alias(
        databases,
        lambda alias: (
            []
            if deletion.keeps_owner_constraint(alias)
            else owner_constraint_errors(connections[alias])
        ),
    )


def owner_constraint_errors(connection: BaseDatabaseWrapper) -> list[CheckMessage]:
    """E009 if the sessions table on ``connection`` has a foreign key constraint on its owner.

    Such a database does not hold the users (``deletion.keeps_owner_constraint``):
    the constraint points at a user table that is empty or not the one users are
    written to, and refuses every conversation with an owner.
    """
    from .models import AgentSession

    table = AgentSession._meta.db_table
    column = AgentSession._meta.get_field("owner").column
    try:
        with connection.cursor() as cursor:
            if table not in connection.introspection.table_names(cursor):
                return []  # not migrated yet: migrate creates it right
            constraints = connection.introspection.get_constraints(cursor, table)
    except DatabaseError:
        return []  # an unreachable database is reported by Django's own checks
    if not any(c["foreign_key"] and c["columns"] == [column] for c in constraints.values()):
        return []
    return [
        Error(
            f"The sessions table {table!r} on {connection.alias!r} has a foreign key "
            f"constraint on {column!r}, but the users are not on {connection.alias!r}: "
            "every conversation with an owner would be refused.",
            hint="Migration 0007 drops it on databases without the users; it ran with "
            "other settings here. Run it again with these settings: manage.py migrate "
            f"openai_django_sessions 0006 --database {connection.alias}, then manage.py "
            f"migrate --database {connection.alias}.",
            id=f"{ID}.E009",
        )
    ]


def sqlite_wal_warnings(connection: BaseDatabaseWrapper) -> list[CheckMessage]:
    """W001 if ``connection`` is a SQLite file database whose journal mode is not WAL."""
    if connection.vendor != "sqlite":
        return []
    if cast("SQLiteDatabaseWrapper", connection).is_in_memory_db():
        return []
    try:
        with connection.cursor() as cursor:
            cursor.execute("PRAGMA journal_mode")
            mode = str(cursor.fetchone()[0]).lower()
    except DatabaseError:
        return []  # an unreachable database is reported by Django's own checks
    if mode == "wal":
        return []
    return [
        Warning(
            f"The SQLite database {connection.alias!r}, which stores agent sessions, "
            f"uses journal_mode={mode}, not WAL.",
            hint="Without WAL a writer blocks every reader and a reader blocks the writer: "
            "sessions wait for the lock and retry, so concurrent agent runs queue behind "
            "each other, and the project's other writes can fail with 'database is "
            "locked'. Add "
            '"init_command": "PRAGMA journal_mode=WAL;" (and "transaction_mode": '
            '"IMMEDIATE") to this database\'s OPTIONS.',
            id=f"{ID}.W001",
        )
    ]


@register(Tags.database)
def check_exact_ids(
    app_configs: Iterable[Any] | None = None,
    databases: Iterable[str] | None = None,
    **kwargs: Any,
) -> list[CheckMessage]:
    """W002, for each MySQL/MariaDB alias the sessions are stored on among ``databases``."""
    return _per_alias(databases, loose_id_warnings)


def loose_id_warnings(alias: str) -> list[CheckMessage]:
    """W002 for each table on ``alias`` shaped like a sessions table (``session_id``
    and ``updated_at`` columns, as 0.1/0.2 created them) whose ids compare loosely."""
    try:
        found = tables.loose_id_tables(alias)
    except DatabaseError:
        return []  # an unreachable database is reported by Django's own checks
    return [
        Warning(
            f"The table {table!r} on database {alias!r} compares session ids ignoring "
            f"case, accents and trailing spaces (session_id is {collation}).",
            hint="'alice' would read the conversation of 'Alice', so DjangoSession refuses "
            f"this table. Convert it: {tables.conversion_command(alias, table)}",
            id=f"{ID}.W002",
        )
        for table, collation in found
    ]


def _per_alias(
    databases: Iterable[str] | None, check: Callable[[str], list[CheckMessage]]
) -> list[CheckMessage]:
    """``check`` of each alias the sessions are stored on that is among ``databases``."""
    return [
        message
        for alias in _sessions_aliases()
        if alias in (databases or ())
        for message in check(alias)
    ]


def _sessions_aliases() -> list[str]:
    # E001/E003/E005 report a setting that names no usable alias; nothing to check here.
    configured = conf.get("DATABASE") if isinstance(conf.user_settings(), dict) else None
    if configured is not None and not (isinstance(configured, str) and configured in connections):
        return []
    from .models import AgentSession  # models are ready by the time checks run

    return [alias for alias in routing.databases(AgentSession) if alias in connections]
