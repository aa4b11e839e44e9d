"""Session ids compare exactly, byte for byte, on every database (issue 10, item 2).

A MariaDB/MySQL database created ``CHARACTER SET utf8mb4`` (as the test
settings do, with ``utf8mb4_unicode_ci``) compares strings ignoring case,
accents and trailing spaces; two users' ids must never share a conversation.
"""

from __future__ import annotations

import io

import pytest
from django.core.management import call_command
from django.db import connection
from django.db.migrations.loader import MigrationLoader
from django.test import Client

from openai_django_sessions import DjangoSession
from openai_django_sessions import _transfer as transfer
from openai_django_sessions.models import AgentSession

pytestmark = pytest.mark.django_db(transaction=True)

# Equal under utf8mb4_unicode_ci (and utf8mb4_bin's PAD SPACE), different byte for byte.
LOOKALIKES = [
    ("Alice", "alice"),
    ("user-1", "user-1 "),
    ("résumé", "resume"),
    ("kQ3Xz_9A", "Kq3xZ_9a"),
]


@pytest.mark.parametrize(("stored", "other"), LOOKALIKES)
async def test_a_lookalike_session_id_never_reads_or_pops_another_sessions_items(stored, other):
    await DjangoSession(stored).add_items([{"secret": stored}])
    intruder = DjangoSession(other)
    assert await intruder.get_items() == []
    assert await intruder.pop_item() is None
    await intruder.clear_session()
    await intruder.add_items([{"mine": other}])
    assert await DjangoSession(stored).get_items() == [{"secret": stored}]
    assert await intruder.get_items() == [{"mine": other}]
    assert await AgentSession.objects.acount() == 2


async def test_lookalike_ids_stay_apart_in_tables_created_on_first_use():
    kwargs = dict(sessions_table="exact_ids_s", messages_table="exact_ids_m", create_tables=True)
    try:
        await DjangoSession("Alice", **kwargs).add_items([{"n": 1}])
        assert await DjangoSession("alice", **kwargs).get_items() == []
        await DjangoSession("alice ", **kwargs).add_items([{"n": 2}])
        assert await DjangoSession("Alice", **kwargs).get_items() == [{"n": 1}]
    finally:
        from asgiref.sync import sync_to_async

        from openai_django_sessions import _tables as tables

        def drop() -> None:
            pair = tables.models_for("exact_ids_s", "exact_ids_m")
            with connection.schema_editor() as editor:
                for model in reversed(pair):
                    editor.delete_model(model)
            tables._created.clear()

        await sync_to_async(drop)()


def test_the_migration_makes_existing_installs_compare_exactly():
    call_command("migrate", "openai_django_sessions", "0003", verbosity=0)
    try:
        # The model as 0003 left it: later migrations add columns today's model has.
        state = MigrationLoader(connection).project_state(
            ("openai_django_sessions", "0003_owner_usage_forks")
        )
        state.apps.get_model("openai_django_sessions", "AgentSession").objects.create(
            session_id="Alice"
        )
    finally:
        call_command("migrate", "openai_django_sessions", verbosity=0)
    AgentSession.objects.create(session_id="alice")
    assert sorted(AgentSession.objects.values_list("session_id", flat=True)) == ["Alice", "alice"]
    assert not AgentSession.objects.filter(session_id="ALICE").exists()


def test_export_names_only_the_exact_session():
    AgentSession.objects.create(session_id="Alice")
    assert transfer.count_sessions("default", ["alice"]) == 0
    with pytest.raises(transfer.TransferError, match="No session 'alice'"):
        transfer.export_sessions(io.StringIO(), using="default", session_ids=["alice"])


def test_import_does_not_take_a_lookalike_for_an_existing_session():
    AgentSession.objects.create(session_id="Alice")
    lines = ['{"session_id": "alice", "items": [{"data": {"n": 1}}]}\n']
    transfer.import_sessions(lambda: transfer.read_jsonl(lines), using="default")
    assert sorted(AgentSession.objects.values_list("session_id", flat=True)) == ["Alice", "alice"]


def test_search_ignores_letter_case_only_on_every_database(admin_client: Client):
    for session_id in ("Customer-Résumé", "customer-resume", "other"):
        AgentSession.objects.create(session_id=session_id)
    url = "/admin/openai_django_sessions/agentsession/"

    def found(term: str) -> list[str]:
        response = admin_client.get(url, {"q": term})
        return sorted(s.session_id for s in response.context["cl"].result_list)

    assert found("CUSTOMER-R") == ["Customer-Résumé", "customer-resume"]
    assert found("resume") == ["customer-resume"]
    out = io.StringIO()
    call_command("agent_sessions", "list", "--json", "--search", "resume", stdout=out)
    assert '"customer-resume"' in out.getvalue() and "Résumé" not in out.getvalue()
