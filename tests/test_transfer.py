"""Export/import: every row a session has, checked input, one consistent moment per session."""

from __future__ import annotations

import asyncio
import io
import json
import threading
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner
from agents.testing import ScriptedModel, assistant_message
from agents.usage import Usage
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connections, models

from openai_django_sessions import DjangoSession
from openai_django_sessions import _transfer as transfer
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from tests.settings import OTHER_VENDOR

TABLES: tuple[type[models.Model], ...] = (AgentSession, AgentMessage, AgentUsage)


def table_rows(using: str) -> dict[str, list[dict[str, Any]]]:
    """Every row of the app's tables on ``using``, in primary key order, with every field
    but the primary key; a relation as what names it in any database (session id, username)."""
    tables: dict[str, list[dict[str, Any]]] = {}
    for model in TABLES:
        rows = []
        for row in model._default_manager.using(using).order_by("pk"):
            values = {}
            for field in model._meta.concrete_fields:
                if field.primary_key:
                    continue
                if field.is_relation:
                    related = getattr(row, field.name)
                    values[field.name] = None if related is None else str(related)
                else:
                    values[field.name] = getattr(row, field.attname)
            rows.append(values)
        tables[model.__name__] = rows
    return tables


def spent(n: int) -> Usage:
    return Usage(requests=1, input_tokens=100 * n, output_tokens=10 * n, total_tokens=110 * n)


def converse(session: DjangoSession, n: int, *prompts: str) -> None:
    """Real ``Runner`` turns on ``session``, each reporting usage ``spent(n)``."""
    model = ScriptedModel(
        [[assistant_message(f"reply to {p}")] for p in prompts], default_usage=spent(n)
    )
    agent = Agent(name="assistant", model=model)
    for prompt in prompts:
        Runner.run_sync(agent, prompt, session=session)


def populate(using: str) -> None:
    """Owned conversations with usage from real runs, forks of them, an ownerless one."""
    users = get_user_model()._default_manager.db_manager(using)
    alice, bob = users.create_user("alice"), users.create_user("bob")
    trip = DjangoSession("trip", owner=alice, metadata={"lang": "fr", "n": [1, 2.5]}, using=using)
    converse(trip, 1, "Plan a trip to Lyon", "And Paris?")
    edited = asyncio.run(trip.afork("trip-edited", keep=1))
    converse(edited, 2, "Plan a trip to Nice instead")
    asyncio.run(trip.afork("trip-empty", keep=0))
    converse(DjangoSession("notes", owner=bob, title="Notes", using=using), 3, "Remember milk")
    asyncio.run(
        DjangoSession("anonymous", using=using).add_items([{"role": "user", "content": "hi"}])
    )


def export(using: str) -> list[str]:
    out = io.StringIO()
    transfer.export_sessions(out, using=using)
    return out.getvalue().splitlines()


@pytest.mark.django_db(transaction=True)
def test_export_then_import_restores_every_row_of_every_table() -> None:
    populate("default")
    before = table_rows("default")
    assert len(before["AgentUsage"]) == 4 and before["AgentUsage"][0]["total_tokens"] == 110
    forks = {
        r["session_id"]: (r["forked_from"], r["forked_from_position"])
        for r in before["AgentSession"]
    }
    assert forks["trip-edited"] == ("trip", 1) and forks["trip-empty"] == ("trip", 0)
    lines = export("default")
    AgentSession.objects.all().delete()  # messages and usage rows with them
    assert not AgentUsage.objects.exists()

    result = transfer.import_sessions(lambda: transfer.read_jsonl(lines), using="default")

    assert result.sessions == 5
    assert table_rows("default") == before


@pytest.mark.server_db
@pytest.mark.django_db(transaction=True, databases=["default", OTHER_VENDOR])
def test_sessions_move_from_sqlite_to_another_vendor_with_every_row() -> None:
    assert connections[OTHER_VENDOR].vendor == "sqlite" != connections["default"].vendor
    populate(OTHER_VENDOR)
    users = get_user_model()._default_manager
    users.create_user("carol")  # so that the users' primary keys differ between the two
    users.create_user("bob")
    users.create_user("alice")

    lines = export(OTHER_VENDOR)
    transfer.import_sessions(lambda: transfer.read_jsonl(lines), using="default")

    assert table_rows("default") == table_rows(OTHER_VENDOR)
    assert table_rows("default")["AgentUsage"]


# -- input checked as DjangoSession checks it, before anything is written -------------

NESTED: dict[str, Any] = {}
_level = NESTED
for _ in range(39):
    _level["k"] = {}
    _level = _level["k"]


@pytest.mark.parametrize(
    ("values", "problem"),
    [
        ({"title": ["a"]}, "title must be a str, not list"),
        ({"title": "\ud800"}, "title contains a lone surrogate"),
        ({"title": "a\x00b"}, "title must not contain the character U\\+0000"),
        ({"metadata": {"k": "a\x00b"}}, "metadata contains the character U\\+0000"),
        ({"metadata": {"k": "\udfff"}}, "metadata contains a lone surrogate"),
        ({"metadata": NESTED}, "metadata is nested more than 30 levels deep"),
        ({"metadata": [1]}, "metadata must be a dict, not list"),
        ({"forked_from": "x" * 256}, 'forked_from must be "" or a session id'),
        ({"forked_from": "\ud800"}, "forked_from must be .* lone surrogate"),
        ({"forked_from": 5}, 'forked_from must be "" or a session id'),
        ({"forked_from_position": 1.5}, "forked_from_position must be a whole number, got 1.5"),
        ({"forked_from_position": "1"}, "forked_from_position must be a whole number"),
        ({"forked_from_position": True}, "forked_from_position must be a whole number"),
        ({"forked_from_position": -1}, "forked_from_position: Ensure this value is greater"),
        ({"owner": "al\x00ice"}, "owner must not contain the character U\\+0000"),
        ({"owner": "\ud800"}, "owner contains a lone surrogate"),
        ({"usage": [{"input_tokens": 1.5}]}, r"usage\[0\].input_tokens must be a whole number"),
        ({"usage": [{"details": {"k": "\x00"}}]}, r"usage\[0\].details contains the character"),
        ({"usage": [{"tokens": 1}]}, r"usage\[0\] must be an object"),
        ({"usage": {}}, "usage must be a list"),
        ({"usage": [{"input_tokens": -1}]}, r"usage\[0\].input_tokens must not be negative"),
        (
            {"usage": [{"requests": 2**63}]},
            r"usage\[0\].requests: Ensure this value is less than or equal to 9223372036854775807",
        ),
        (
            {"usage": [{"total_tokens": 2**62}, {"total_tokens": 2**62}]},
            "the usage rows' total_tokens add up to 9,223,372,036,854,775,808",
        ),
        (
            {"created_at": "2025-01-02T00:00:00+00:00", "updated_at": "2025-01-01T23:59:59+00:00"},
            r"updated_at \(2025-01-01T23:59:59\+00:00\) is earlier than created_at",
        ),
        ({"items": [{"data": {"k": "\ud800"}}]}, r"items\[0\] contains a lone surrogate"),
    ],
)
@pytest.mark.django_db
def test_import_refuses_a_value_the_session_refuses_naming_its_line_and_imports_nothing(
    tmp_path: Path, values: dict[str, Any], problem: str
) -> None:
    good = [{"session_id": f"good-{n}", "items": [{"data": {"role": "user"}}]} for n in range(3)]
    hostile = {"session_id": "hostile", "items": [], **values}
    path = tmp_path / "in.jsonl"
    # json.dumps escapes lone surrogates and U+0000, as an export writes them.
    path.write_text("".join(json.dumps(line) + "\n" for line in [*good, hostile]), "utf-8")

    with pytest.raises(CommandError, match=f"line 4: {problem}"):
        call_command("agent_sessions", "import", str(path), stdout=io.StringIO())
    assert not AgentSession.objects.exists()


# -- one consistent moment per session while its history is replaced --------------


class ReplacingSink(io.StringIO):
    """Writes an export; when its first item arrives, ``change`` runs in another thread
    (its own connection) and commits before the export goes on."""

    def __init__(self, change: Any) -> None:
        super().__init__()
        self.change, self.changed = change, False

    def write(self, text: str, /) -> int:
        if not self.changed and '"items":[' in self.getvalue():
            self.changed = True
            failures: list[BaseException] = []

            def work() -> None:
                try:
                    self.change()
                except BaseException as exc:  # reported in the test's thread
                    failures.append(exc)
                finally:
                    connections.close_all()

            thread = threading.Thread(target=work)
            thread.start()
            thread.join()
            assert not failures, failures
        return super().write(text)


def generation(n: int, count: int) -> list[dict[str, Any]]:
    return [{"role": "user", "content": f"generation {n}, item {i}"} for i in range(count)]


@pytest.mark.parametrize("change", ["replace the whole history", "compact the newest items"])
@pytest.mark.django_db(transaction=True)
def test_a_session_is_exported_as_it_was_at_one_moment_while_its_history_is_replaced(
    change: str,
) -> None:
    session = DjangoSession("live")
    asyncio.run(session.add_items(generation(0, 30)))

    def replace() -> None:
        if change == "replace the whole history":
            asyncio.run(session._atomic_replace_items(generation(1, 45)))
        else:  # what automatic compaction does: swap the newest rows for a summary
            expected, _ = session._tail_rows(20)
            assert asyncio.run(session._replace(expected, generation(1, 2)))

    sink = ReplacingSink(replace)
    transfer.export_sessions(sink, using="default", batch_size=4)

    assert sink.changed
    [line] = sink.getvalue().splitlines()
    assert [item["data"] for item in json.loads(line)["items"]] == generation(0, 30)
    assert len(asyncio.run(session.get_items())) in (45, 12)  # the change did commit


@pytest.mark.django_db(transaction=True)
def test_exports_racing_twenty_replacements_each_write_one_whole_generation() -> None:
    session = DjangoSession("racing")
    asyncio.run(session.add_items(generation(0, 30)))
    done = threading.Event()
    failures: list[BaseException] = []

    def replace_twenty_times() -> None:
        try:
            for n in range(1, 21):
                asyncio.run(session._atomic_replace_items(generation(n, 30 + n)))
        except BaseException as exc:
            failures.append(exc)
        finally:
            done.set()
            connections.close_all()

    writer = threading.Thread(target=replace_twenty_times)
    writer.start()
    lines: list[str] = []
    try:
        while not done.is_set() or not lines:
            lines += export("default")
    finally:
        writer.join()
    assert not failures, failures

    for line in lines:
        items = [item["data"]["content"] for item in json.loads(line)["items"]]
        n = int(items[0].split(",")[0].removeprefix("generation "))
        assert items == [item["content"] for item in generation(n, 30 + n if n else 30)]
