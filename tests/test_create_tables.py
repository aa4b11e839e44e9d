"""create_tables=True: the development convenience of the seed's quick start."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.db import DatabaseError, connection
from django.db.migrations.recorder import MigrationRecorder

from openai_django_sessions import DjangoSession
from openai_django_sessions import _tables as tables
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.conftest import in_requests

pytestmark = pytest.mark.django_db(transaction=True)


def table_names() -> set[str]:
    return set(connection.introspection.table_names())


@pytest.fixture
def custom_names() -> Iterator[tuple[str, str]]:
    """Fresh table names, dropped (with the per-process cache entry) afterwards."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"my_sessions_{suffix}", f"my_messages_{suffix}")
    yield names
    session_model, message_model = tables.models_for(*names)
    existing = table_names()
    with connection.schema_editor() as editor:
        for model in (message_model, session_model):
            if model._meta.db_table in existing:
                editor.delete_model(model)
    tables._created.clear()


async def test_custom_tables_are_created_on_first_use_and_used(custom_names):
    sessions_table, messages_table = custom_names
    session = DjangoSession(
        "dev", sessions_table=sessions_table, messages_table=messages_table, create_tables=True
    )
    assert sessions_table not in await sync_to_async(table_names)()
    await session.add_items([{"role": "user", "content": "hi"}])
    assert {sessions_table, messages_table} <= await sync_to_async(table_names)()
    assert await session.get_items() == [{"role": "user", "content": "hi"}]
    assert await AgentMessage.objects.acount() == 0  # the migrated tables are untouched
    assert await session.pop_item() == {"role": "user", "content": "hi"}
    await session.clear_session()


async def test_custom_tables_get_the_session_id_index(custom_names):
    session = DjangoSession("dev", sessions_table=custom_names[0], messages_table=custom_names[1])
    session.create_tables = True
    await session.get_items()

    def index_columns() -> list[list[str]]:
        with connection.cursor() as cursor:
            found = connection.introspection.get_constraints(cursor, custom_names[1])
        return [c["columns"] for c in found.values() if c["index"]]

    assert ["session_id", "id"] in await sync_to_async(index_columns)()


async def test_create_tables_is_idempotent(custom_names):
    kwargs = dict(sessions_table=custom_names[0], messages_table=custom_names[1])
    await DjangoSession("a", create_tables=True, **kwargs).add_items([{"n": 1}])
    tables._created.clear()  # as a new process would see it
    await DjangoSession("a", create_tables=True, **kwargs).add_items([{"n": 2}])
    assert await DjangoSession("a", **kwargs).get_items() == [{"n": 1}, {"n": 2}]


async def test_concurrent_first_use_creates_the_tables_once(custom_names):
    kwargs = dict(sessions_table=custom_names[0], messages_table=custom_names[1])

    async def first_use(n: int) -> None:
        await DjangoSession(f"s{n % 3}", create_tables=True, **kwargs).add_items([{"n": n}])

    await in_requests(*(lambda n=n: first_use(n) for n in range(8)))
    stored = [await DjangoSession(f"s{k}", **kwargs).get_items() for k in range(3)]
    assert sorted(item["n"] for items in stored for item in items) == list(range(8))


def test_a_table_created_meanwhile_by_another_process_is_accepted(custom_names, monkeypatch):
    session_model, message_model = tables.models_for(*custom_names)
    with connection.schema_editor() as editor:  # "another process" got there first
        editor.create_model(session_model)
    real = connection.introspection.table_names
    calls = {"n": 0}

    def stale_then_real(*args, **kwargs):
        calls["n"] += 1
        return [] if calls["n"] == 1 else real(*args, **kwargs)

    monkeypatch.setattr(connection.introspection, "table_names", stale_then_real)
    tables.ensure_tables("default", (session_model, message_model))
    assert {custom_names[0], custom_names[1]} <= set(real())


def test_unrelated_errors_are_not_swallowed(custom_names, monkeypatch):
    pair = tables.models_for(*custom_names)

    def broken(self, model):
        raise DatabaseError("disk I/O error")

    monkeypatch.setattr(type(connection.schema_editor()), "create_model", broken)
    with pytest.raises(DatabaseError, match="disk I/O error"):
        tables.ensure_tables("default", pair)
    assert ("default", *custom_names) not in tables._created


async def test_default_tables_with_migrations_applied_are_left_alone():
    before = await sync_to_async(table_names)()
    applied = await MigrationRecorder.Migration.objects.acount()
    session = DjangoSession("default-names", create_tables=True)
    await session.add_items([{"n": 1}])
    assert await sync_to_async(table_names)() == before
    assert await MigrationRecorder.Migration.objects.acount() == applied
    assert await AgentSession.objects.filter(session_id="default-names").aexists()


def test_default_tables_are_created_by_applying_the_migrations():
    from django.core.management import call_command

    call_command("migrate", "openai_django_sessions", "zero", verbosity=0)
    assert AgentSession._meta.db_table not in table_names()
    tables._created.clear()
    try:
        tables.ensure_tables("default", (AgentSession, AgentMessage))
        assert {AgentSession._meta.db_table, AgentMessage._meta.db_table} <= table_names()
        recorded = MigrationRecorder(connection).applied_migrations()
        assert ("openai_django_sessions", "0002_agentmessage_session_id_index") in recorded
    finally:
        call_command("migrate", "openai_django_sessions", verbosity=0)
        tables._created.clear()


def describe(model) -> tuple[list[tuple], list[tuple]]:
    """Every concrete field (name, column, type, options) and index of ``model``, from _meta."""
    fields = []
    for field in model._meta.concrete_fields:
        name, path, _, kwargs = field.deconstruct()
        kwargs.pop("to", None)  # the copy points at its own session table
        fields.append((name, field.column, path, sorted(kwargs.items(), key=str)))
    indexes = [(index.fields, index.condition) for index in model._meta.indexes]
    return fields, indexes


def test_custom_tables_have_the_conversation_fields_and_indexes_of_the_migrated_models(
    custom_names,
):
    session_model, message_model = tables.models_for(*custom_names)
    extra = {"owner", "title", "metadata", "forked_from", "forked_from_position", "expires_after"}

    # Custom tables keep the 0.1/0.2 session columns: ownership and fork details
    # belong to the migrated table only.
    fields, indexes = describe(AgentSession)
    assert describe(session_model) == (
        [field for field in fields if field[0] not in extra],
        [index for index in indexes if not extra & {name.lstrip("-") for name in index[0]}],
    )
    # Nor the search text (full-text search covers the migrated tables only).
    fields, indexes = describe(AgentMessage)
    assert describe(message_model) == ([f for f in fields if f[0] != "text"], indexes)
    assert message_model._meta.get_field("session").related_model is session_model
