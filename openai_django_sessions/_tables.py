"""Which models serve a pair of table names, and creating their tables on demand.

The default names are served by the migrated models of ``models.py``. Other
names (``DjangoSession(sessions_table=..., messages_table=...)``) get models
built from the same abstract bases, registered in a private registry so that
``makemigrations`` never sees them.
"""

from __future__ import annotations

import contextlib
import hashlib
import threading
from collections.abc import Iterator, Sequence
from typing import Any, cast

try:
    import fcntl
except ImportError:  # Windows: processes are not serialized on SQLite
    fcntl = None  # type: ignore[assignment]

from django.apps.registry import Apps
from django.db import DatabaseError, connections, models
from django.db.migrations.executor import MigrationExecutor

from . import _conf as conf
from . import _transactions as transactions
from .exceptions import LooseSessionIds
from .models import AbstractAgentMessage, AbstractAgentSession, AgentMessage, AgentSession

ModelPair = tuple[type[AbstractAgentSession], type[AbstractAgentMessage]]

_private_apps = Apps()
_custom: dict[tuple[str, str], ModelPair] = {}
_created: set[tuple[str, str, str]] = set()
_lock = threading.Lock()


def models_for(sessions_table: str | None, messages_table: str | None) -> ModelPair:
    """The (session, message) models whose tables carry these names.

    ``None`` means the name from settings. Raises ``ValueError`` for a name
    that is not a plain SQL identifier.
    """
    sessions = (
        conf.sessions_table()
        if sessions_table is None
        else conf.validate_table_name(sessions_table, "sessions_table")
    )
    messages = (
        conf.messages_table()
        if messages_table is None
        else conf.validate_table_name(messages_table, "messages_table")
    )
    if (sessions, messages) == (AgentSession._meta.db_table, AgentMessage._meta.db_table):
        return AgentSession, AgentMessage
    with _lock:
        if (sessions, messages) not in _custom:
            _custom[(sessions, messages)] = _build_models(sessions, messages)
        return _custom[(sessions, messages)]


def _build_models(sessions_table: str, messages_table: str) -> ModelPair:
    digest = hashlib.sha1(f"{sessions_table}.{messages_table}".encode()).hexdigest()[:10]
    session_model = _copy_model(AgentSession, sessions_table, digest, "agent_ses", {})
    message_model = _copy_model(
        AgentMessage, messages_table, digest, "agent_msg", {AgentSession: session_model}
    )
    return cast(type[AbstractAgentSession], session_model), cast(
        type[AbstractAgentMessage], message_model
    )


def _copy_model(
    model: type[models.Model],
    table: str,
    digest: str,
    prefix: str,
    retarget: dict[type[models.Model], type[models.Model]],
) -> type[models.Model]:
    """``model`` under another table name, read from its ``_meta``: same bases, fields, indexes.

    The foreign key the concrete model declares beyond its abstract base (the
    message's) is copied, pointing at ``retarget``'s model instead; index
    and constraint names get ``prefix`` and ``digest`` so that they stay unique
    per database.
    """
    base = cast(type[models.Model], model.__bases__[0])
    inherited = {field.name for field in base._meta.fields}
    attrs: dict[str, Any] = {"__module__": __name__}
    for field in model._meta.local_fields:
        # Only the foreign key between the pair: the migrated session's other
        # fields (owner, title...) are columns that 0.1/0.2 custom tables lack.
        if field.name in inherited or field.auto_created or field.related_model not in retarget:
            continue
        name, _, args, kwargs = field.deconstruct()
        if field.related_model is not None:
            kwargs["to"] = retarget[cast(type[models.Model], field.related_model)]
        attrs[name] = type(field)(*args, **kwargs)
    meta: dict[str, Any] = {
        "app_label": model._meta.app_label,
        "apps": _private_apps,
        "db_table": table,
        "indexes": _renamed(
            [i for i in model._meta.indexes if _covers(i.fields, inherited | set(attrs))],
            f"{prefix}_{digest}_idx",
        ),
        "constraints": _renamed(model._meta.constraints, f"{prefix}_{digest}_con"),
    }
    attrs["Meta"] = type("Meta", (), meta)
    return type(f"{model.__name__}_{digest}", (base,), attrs)


def _covers(fields: Sequence[str], names: set[str]) -> bool:
    return all(field.lstrip("-") in names | {"id"} for field in fields)


def _renamed(items: Sequence[Any], name: str) -> list[Any]:
    copies = []
    for number, item in enumerate(items):
        copy = item.clone()
        copy.name = name if number == 0 else f"{name}{number}"
        copies.append(copy)
    return copies


def ensure_tables(alias: str, pair: ModelPair) -> None:
    """Create the tables of ``pair`` on ``alias`` unless they exist; once per process.

    The migrated models get this app's migrations applied (recorded, so a later
    ``migrate`` has nothing to do; tables that already exist are adopted as
    ``--fake-initial`` would). Other table names are created from their models.
    Safe under concurrent first use: threads of a process queue on a lock,
    processes on a lock of the database (``schema_lock``), and each looks
    again at what is missing once it holds them. A creation that fails because
    something else created the table meanwhile is accepted once the work is
    seen done; any other error is raised.
    """
    key = (alias, pair[0]._meta.db_table, pair[1]._meta.db_table)
    if key in _created:
        return
    with _lock, schema_lock(alias):
        if key in _created:
            return
        if pair == (AgentSession, AgentMessage):
            _apply_migrations(alias)
        else:
            for model in pair:
                _create_table(alias, model)
        _created.add(key)


# PostgreSQL advisory locks are per database: one key serves every project.
_PG_LOCK_KEY = int.from_bytes(
    hashlib.sha1(b"openai_django_sessions.create_tables").digest()[:8], "big", signed=True
)
_LOCK_WAIT_SECONDS = 300


@contextlib.contextmanager
def schema_lock(alias: str) -> Iterator[None]:
    """Hold a lock that every process creating tables on ``alias``'s database takes.

    PostgreSQL: an advisory lock; MySQL/MariaDB: ``GET_LOCK`` named after the
    database; SQLite: ``flock`` on a file beside the database (none for an
    in-memory one). Without it, processes starting at once on an empty
    database each run the migrations and all but one fail midway.
    """
    connection = connections[alias]
    if connection.vendor == "postgresql":
        acquire, release = "SELECT pg_advisory_lock(%s)", "SELECT pg_advisory_unlock(%s)"
        params: list[int | str] = [_PG_LOCK_KEY]
    elif connection.vendor == "mysql":
        name = f"ods_create_tables.{connection.settings_dict['NAME']}"[:64]
        acquire, release = "SELECT GET_LOCK(%s, %s)", "SELECT RELEASE_LOCK(%s)"
        params = [name, _LOCK_WAIT_SECONDS]
    else:
        with _file_lock(str(connection.settings_dict["NAME"])):
            yield
        return
    with connection.cursor() as cursor:
        cursor.execute(acquire, params)
        # pg_advisory_lock waits as long as it takes; GET_LOCK gives 0 on timeout.
        if connection.vendor == "mysql" and cursor.fetchone()[0] != 1:
            raise DatabaseError(f"Timed out waiting for the table creation lock on {alias!r}")
    try:
        yield
    finally:
        with contextlib.suppress(DatabaseError), connection.cursor() as cursor:
            cursor.execute(release, params[:1])


@contextlib.contextmanager
def _file_lock(database: str) -> Iterator[None]:
    if fcntl is None or not database or ":memory:" in database or "mode=memory" in database:
        yield
        return
    with open(f"{database}.create-tables.lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _apply_migrations(alias: str) -> None:
    def pending() -> tuple[MigrationExecutor, list[tuple[str, str]], list]:
        executor = MigrationExecutor(connections[alias])
        targets = [
            node
            for node in executor.loader.graph.leaf_nodes()
            if node[0] == AgentSession._meta.app_label
        ]
        return executor, targets, executor.migration_plan(targets)

    executor, targets, plan = pending()
    if not plan:
        return
    try:
        executor.migrate(targets, plan=plan, fake_initial=True)
    except DatabaseError:
        if pending()[2]:
            raise


def _create_table(alias: str, model: type[models.Model]) -> None:
    connection = connections[alias]
    table = model._meta.db_table
    if table in connection.introspection.table_names():
        return
    try:
        with connection.schema_editor() as editor:
            editor.create_model(model)
    except DatabaseError:
        if table not in connection.introspection.table_names():
            raise


# -- session ids that compare loosely (tables of 0.1/0.2 on MySQL/MariaDB) -----------


_exact: set[tuple[str, str]] = set()


def id_collation(alias: str, table: str) -> str | None:
    """The collation of ``table``'s ``session_id`` column on MySQL/MariaDB, else ``None``.

    ``None`` too on SQLite and PostgreSQL (which compare exactly), and when the
    table or the column does not exist.
    """
    connection = connections[alias]
    if connection.vendor != "mysql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT COLLATION_NAME FROM information_schema.COLUMNS WHERE TABLE_SCHEMA = "
            "DATABASE() AND TABLE_NAME = %s AND COLUMN_NAME = 'session_id'",
            [table],
        )
        row = cursor.fetchone()
    return None if row is None or row[0] is None else str(row[0])


def compares_exactly(collation: str | None) -> bool:
    """Whether a column of ``collation`` compares text byte for byte, trailing spaces too.

    Binary NO PAD collations do (``utf8mb4_nopad_bin``, MySQL 8's
    ``utf8mb4_0900_bin``); ``utf8mb4_bin`` ignores trailing spaces, ``*_ci``
    letter case and accents.
    """
    return collation is None or collation.endswith(("_nopad_bin", "_0900_bin"))


def loose_id_tables(alias: str) -> list[tuple[str, str]]:
    """``(table, collation)`` of the tables on ``alias`` shaped like a sessions table
    (``session_id`` and ``updated_at`` columns) whose ids compare loosely; MySQL only."""
    connection = connections[alias]
    if connection.vendor != "mysql":
        return []
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT c.TABLE_NAME, c.COLLATION_NAME FROM information_schema.COLUMNS c"
            " WHERE c.TABLE_SCHEMA = DATABASE() AND c.COLUMN_NAME = 'session_id'"
            " AND c.COLLATION_NAME IS NOT NULL AND EXISTS (SELECT 1 FROM"
            " information_schema.COLUMNS u WHERE u.TABLE_SCHEMA = c.TABLE_SCHEMA"
            " AND u.TABLE_NAME = c.TABLE_NAME AND u.COLUMN_NAME = 'updated_at')"
            " ORDER BY c.TABLE_NAME"
        )
        found = [(str(table), str(collation)) for table, collation in cursor.fetchall()]
    return [(table, collation) for table, collation in found if not compares_exactly(collation)]


def conversion_command(alias: str, table: str) -> str:
    """The command that makes ``table``'s ids compare exactly."""
    return f"manage.py agent_sessions convert-ids --sessions-table {table} --database {alias}"


def require_exact_ids(alias: str, session_model: type[models.Model]) -> None:
    """``LooseSessionIds`` if ``session_model``'s table on ``alias`` compares ids loosely.

    A table created by 0.1/0.2 on MySQL/MariaDB keeps the database's collation
    (``utf8mb4_unicode_ci``, say), where ``"alice"`` reads ``"Alice"``'s items:
    it is refused, naming the command that converts it, rather than used.
    Looked at once per table and alias in a process; nothing is cached for a
    table that does not exist yet.
    """
    table = session_model._meta.db_table
    if (alias, table) in _exact or connections[alias].vendor != "mysql":
        return
    # Through the retry/reconnect policy, as every query of an operation.
    collation = transactions.run(alias, lambda: id_collation(alias, table), atomic=False)
    if not compares_exactly(collation):
        raise LooseSessionIds(
            f"The table {table!r} on database {alias!r} compares session ids ignoring "
            f"case, accents and trailing spaces (its session_id column is {collation}), so "
            "'alice' would read the conversation of 'Alice'. Convert it first: "
            + conversion_command(alias, table)
        )
    if collation is not None:
        _exact.add((alias, table))


def convert_ids(alias: str, table: str) -> str | None:
    """Make ``table``'s ``session_id`` compare exactly; return the collation it had.

    ``None`` when there was nothing to do (SQLite, PostgreSQL, or already
    exact). ``LookupError`` when ``table`` has no ``session_id`` column. Ids
    that were distinct under the loose rule (its unique index saw to that) stay
    distinct byte for byte, so the conversion cannot fail on existing rows.
    Messages and usage rows refer to sessions by their integer key: they are
    unaffected.
    """
    connection = connections[alias]
    if connection.vendor != "mysql":
        if table not in connection.introspection.table_names():
            raise LookupError(f"No table {table!r} in database {alias!r}.")
        return None
    collation = id_collation(alias, table)
    if collation is None:
        raise LookupError(f"No table {table!r} with a session_id column in database {alias!r}.")
    if compares_exactly(collation):
        return None
    field = AgentSession._meta.get_field("session_id")
    exact = field.db_parameters(connection)["collation"]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {quote(table)} MODIFY {quote('session_id')} varchar(255) "
            f"CHARACTER SET utf8mb4 COLLATE {exact} NOT NULL"
        )
    _exact.discard((alias, table))
    return collation
