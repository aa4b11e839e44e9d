"""Tables of 0.1/0.2 on MySQL/MariaDB whose ``session_id`` compares ids loosely: found by
a system check, refused at first use, converted by ``agent_sessions convert-ids``."""

from __future__ import annotations

import io
import uuid
from collections.abc import Iterator

import pytest
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from openai_django_sessions import DjangoSession
from openai_django_sessions import _checks as checks
from openai_django_sessions import _tables as tables
from openai_django_sessions.exceptions import LooseSessionIds

pytestmark = pytest.mark.django_db(transaction=True)

# Equal under utf8mb4_unicode_ci, different byte for byte.
LOOKALIKES = [("Alice", "alice"), ("bob", "bob "), ("résumé", "resume")]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_sessions", *args, stdout=out, stderr=io.StringIO())
    return out.getvalue()


@pytest.fixture
def legacy() -> Iterator[tuple[str, str]]:
    """A sessions/messages pair as 0.1 created it on MariaDB: session_id in the
    database's collation, utf8mb4_unicode_ci; one conversation per stored id."""
    suffix = uuid.uuid4().hex[:8]
    names = (f"legacy_s_{suffix}", f"legacy_m_{suffix}")
    session_model, message_model = tables.models_for(*names)
    with connection.schema_editor() as editor:
        editor.create_model(session_model)
        editor.create_model(message_model)
    with connection.cursor() as cursor:
        cursor.execute(
            f"ALTER TABLE {names[0]} MODIFY session_id varchar(255) "
            "CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci NOT NULL"
        )
    for stored, _ in LOOKALIKES:
        row = session_model._default_manager.create(session_id=stored)
        message_model._default_manager.create(session=row, data={"secret": stored})
    yield names
    with connection.schema_editor() as editor:
        editor.delete_model(message_model)
        editor.delete_model(session_model)
    tables._exact.clear()


def legacy_session(session_id: str, names: tuple[str, str]) -> DjangoSession:
    return DjangoSession(session_id, sessions_table=names[0], messages_table=names[1])


@pytest.mark.vendor("mysql")
async def test_a_table_comparing_ids_loosely_is_refused_at_first_use_naming_the_command(legacy):
    for _, other in LOOKALIKES:
        intruder = legacy_session(other, legacy)
        with pytest.raises(LooseSessionIds, match=r"ignoring case, accents") as refused:
            await intruder.get_items()
        assert f"convert-ids --sessions-table {legacy[0]} --database default" in str(refused.value)
        with pytest.raises(LooseSessionIds):
            await intruder.add_items([{"mine": other}])

    session_model, _ = tables.models_for(*legacy)
    assert await session_model._default_manager.acount() == len(LOOKALIKES)


@pytest.mark.vendor("mysql")
def test_the_system_check_finds_such_a_table_and_says_how_to_convert_it(legacy):
    warnings = checks.check_exact_ids(databases=["default"])

    [warning] = [w for w in warnings if legacy[0] in w.msg]
    assert warning.id == "openai_django_sessions.W002"
    assert "utf8mb4_unicode_ci" in warning.msg
    assert f"convert-ids --sessions-table {legacy[0]} --database default" in warning.hint
    assert not [w for w in warnings if "'agent_sessions'" in w.msg]  # the migrated table


@pytest.mark.vendor("mysql")
async def test_convert_ids_makes_lookalikes_distinct_and_keeps_every_conversation(legacy):
    output = await sync_to_async(run)("convert-ids", "--sessions-table", legacy[0])

    assert f"Converted '{legacy[0]}' on database 'default'" in output
    assert "utf8mb4_unicode_ci" in output
    for stored, other in LOOKALIKES:
        assert await legacy_session(stored, legacy).get_items() == [{"secret": stored}]
        assert await legacy_session(other, legacy).get_items() == []
        await legacy_session(other, legacy).add_items([{"mine": other}])
        assert await legacy_session(stored, legacy).get_items() == [{"secret": stored}]
    warnings = await sync_to_async(checks.check_exact_ids)(databases=["default"])
    assert not [w for w in warnings if legacy[0] in w.msg]
    again = await sync_to_async(run)("convert-ids", "--sessions-table", legacy[0])
    assert "already compares session ids exactly" in again


def test_convert_ids_where_ids_already_compare_exactly_changes_nothing() -> None:
    assert run("convert-ids") == (
        "'agent_sessions' on database 'default' already compares session ids exactly.\n"
    )


@pytest.mark.parametrize(
    ("table", "message"),
    [("no_such_table", "No table 'no_such_table'"), ("bad-name", "not a plain SQL identifier")],
)
def test_convert_ids_of_a_missing_or_invalid_table_is_a_command_error(
    table: str, message: str
) -> None:
    with pytest.raises(CommandError, match=message):
        run("convert-ids", "--sessions-table", table)
