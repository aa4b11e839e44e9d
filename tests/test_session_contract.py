"""The SDK's Session contract, as DjangoSession keeps it."""

from __future__ import annotations

import asyncio
import math
from datetime import timedelta
from functools import partial

import pytest
from agents.memory import Session, SessionSettings
from asgiref.sync import sync_to_async

from openai_django_sessions import DjangoSession
from openai_django_sessions import _storage as storage
from openai_django_sessions import session as session_module
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)


def msg(n: int, role: str = "user") -> dict:
    return {"role": role, "content": f"message {n}"}


async def test_implements_the_sdk_session_protocol():
    session = DjangoSession("proto")
    assert isinstance(session, Session)
    assert session.session_id == "proto"
    assert session.session_settings == SessionSettings()


async def test_empty_session_reads_empty_and_pops_none():
    session = DjangoSession("empty")
    assert await session.get_items() == []
    assert await session.get_items(limit=5) == []
    assert await session.pop_item() is None
    await session.clear_session()
    assert await AgentSession.objects.acount() == 0


async def test_items_come_back_in_insertion_order_across_calls():
    session = DjangoSession("order")
    await session.add_items([msg(1), msg(2)])
    await session.add_items([msg(3)])
    await session.add_items([msg(4), msg(5), msg(6)])
    assert await session.get_items() == [msg(n) for n in range(1, 7)]


async def test_limit_returns_the_newest_items_in_chronological_order():
    session = DjangoSession("limit")
    await session.add_items([msg(n) for n in range(10)])
    assert await session.get_items(limit=3) == [msg(7), msg(8), msg(9)]
    assert await session.get_items(limit=1) == [msg(9)]
    assert await session.get_items(limit=0) == []
    assert await session.get_items(limit=100) == [msg(n) for n in range(10)]


async def test_session_settings_limit_applies_when_limit_is_omitted():
    await DjangoSession("settings").add_items([msg(n) for n in range(5)])
    session = DjangoSession("settings", session_settings={"limit": 2})
    assert session.session_settings == SessionSettings(limit=2)
    assert await session.get_items() == [msg(3), msg(4)]
    assert await session.get_items(limit=4) == [msg(1), msg(2), msg(3), msg(4)]
    typed = DjangoSession("settings", session_settings=SessionSettings(limit=1))
    assert await typed.get_items() == [msg(4)]


async def test_invalid_limit_is_refused():
    session = DjangoSession("bad-limit")
    with pytest.raises(ValueError, match="limit"):
        await session.get_items(limit=-1)
    with pytest.raises(TypeError, match="limit"):
        await session.get_items(limit="3")  # type: ignore[arg-type]


async def test_sessions_are_isolated_from_each_other():
    alice, bob = DjangoSession("alice"), DjangoSession("bob")
    await alice.add_items([msg(1)])
    await bob.add_items([msg(2)])
    assert await alice.get_items() == [msg(1)]
    assert await bob.pop_item() == msg(2)
    assert await alice.get_items() == [msg(1)]
    await bob.clear_session()
    assert await alice.get_items() == [msg(1)]


async def test_add_empty_list_writes_nothing():
    await DjangoSession("nothing").add_items([])
    assert await AgentSession.objects.acount() == 0


async def test_first_write_creates_one_session_row_and_every_write_bumps_updated_at():
    session = DjangoSession("rows")
    await session.add_items([msg(1)])
    row = await AgentSession.objects.aget(session_id="rows")
    await asyncio.sleep(0.01)
    await session.add_items([msg(2)])
    after_add = await AgentSession.objects.aget(session_id="rows")
    assert after_add.pk == row.pk
    assert after_add.created_at == row.created_at
    assert after_add.updated_at > row.updated_at
    await asyncio.sleep(0.01)
    await session.pop_item()
    after_pop = await AgentSession.objects.aget(session_id="rows")
    assert after_pop.updated_at > after_add.updated_at
    assert await AgentSession.objects.acount() == 1


async def test_pop_removes_and_returns_the_newest_item():
    session = DjangoSession("pop")
    await session.add_items([msg(1), msg(2), msg(3)])
    assert await session.pop_item() == msg(3)
    assert await session.pop_item() == msg(2)
    assert await session.get_items() == [msg(1)]
    assert await session.pop_item() == msg(1)
    assert await session.pop_item() is None
    assert await AgentMessage.objects.acount() == 0


async def test_clear_session_removes_messages_and_the_session_row():
    session = DjangoSession("clear")
    await session.add_items([msg(1), msg(2)])
    await session.clear_session()
    assert await session.get_items() == []
    assert await AgentSession.objects.filter(session_id="clear").aexists() is False
    assert await AgentMessage.objects.acount() == 0
    await session.add_items([msg(3)])
    assert await session.get_items() == [msg(3)]


ROUND_TRIP = [
    {"role": "user", "content": "Grüße, Zürich! 你好 — ☃ 😀👩‍👩‍👧"},
    {"type": "message", "role": "assistant", "content": [{"type": "output_text", "text": "é"}]},
    {"nested": {"list": [1, 2.5, -3, True, False, None, "x"], "empty": {}, "none": None}},
    {"numbers": [0, -0.5, 1e-300, 1.5e-7, 123.456, 1e22, 2**53, -(2**63), 2**64]},
    {"quotes": "\"'\\ \n\t\r \u2028 \x01 \x7f", "key with spaces": "ok"},
    {"backslash-u": "\\u0000 is six characters here, not a NUL"},
]


async def test_every_json_item_round_trips_exactly():
    session = DjangoSession("round-trip")
    await session.add_items(ROUND_TRIP)
    assert await session.get_items() == ROUND_TRIP
    assert await session.pop_item() == ROUND_TRIP[-1]


async def test_a_4mb_string_round_trips():
    big = {"type": "function_call_output", "call_id": "c1", "output": "λ" * (2 * 1024 * 1024)}
    session = DjangoSession("big")
    await session.add_items([big, msg(1)])
    assert await session.get_items() == [big, msg(1)]


async def test_nul_character_is_kept_exactly_or_refused_on_postgresql(vendor):
    item = {"type": "function_call_output", "call_id": "c", "output": "a\x00b"}
    session = DjangoSession("nul")
    if vendor == "postgresql":
        with pytest.raises(ValueError, match="U\\+0000"):
            await session.add_items([msg(1), item])
        assert await AgentSession.objects.acount() == 0
        assert await AgentMessage.objects.acount() == 0
    else:
        await session.add_items([msg(1), item])
        assert await session.get_items() == [msg(1), item]


@pytest.mark.parametrize(
    ("items", "error", "words"),
    [
        ([msg(1), {"x": {1, 2}}], TypeError, r"items\[1\] cannot be stored as JSON"),
        ([msg(1), {"x": object()}], TypeError, r"items\[1\]"),
        ([{"x": math.nan}], ValueError, r"items\[0\] cannot be stored as JSON"),
        ([{"x": math.inf}], ValueError, r"items\[0\]"),
        ([msg(1), "not a dict"], TypeError, r"items\[1\] must be a dict"),
        ([msg(1), [1, 2]], TypeError, r"items\[1\] must be a dict"),
        ("a string", TypeError, "items must be a list"),
        ({"role": "user"}, TypeError, "items must be a list"),
        ([{"when": timedelta(1)}], TypeError, r"items\[0\]"),
    ],
)
async def test_bad_items_raise_before_anything_is_written(items, error, words):
    session = DjangoSession("bad-items")
    await session.add_items([msg(0)])
    with pytest.raises(error, match=words):
        await session.add_items(items)
    assert await session.get_items() == [msg(0)]
    assert await AgentMessage.objects.acount() == 1


@pytest.mark.parametrize("session_id", ["", "x" * 256, None, 42, b"bytes"])
def test_invalid_session_id_is_refused_at_construction(session_id):
    with pytest.raises(ValueError, match="session_id"):
        DjangoSession(session_id)


def test_session_id_of_255_characters_is_accepted():
    assert DjangoSession("x" * 255).session_id == "x" * 255


async def test_session_id_of_255_characters_is_stored():
    session = DjangoSession("é" * 255)
    await session.add_items([msg(1)])
    assert await DjangoSession("é" * 255).get_items() == [msg(1)]


def test_construction_does_no_database_work(django_assert_num_queries):
    with django_assert_num_queries(0):
        DjangoSession("cheap", create_tables=True, sessions_table="t_s", messages_table="t_m")


def test_from_settings_is_the_same_as_the_constructor():
    session = DjangoSession.from_settings("alias", session_settings={"limit": 3}, using="default")
    assert isinstance(session, DjangoSession)
    assert (session.session_id, session.session_settings.limit, session.using) == (
        "alias",
        3,
        "default",
    )


@pytest.mark.parametrize("settings", [3, "limit=3", [("limit", 3)]])
def test_session_settings_of_the_wrong_type_are_refused(settings):
    with pytest.raises(TypeError, match="session_settings"):
        DjangoSession("s", session_settings=settings)


def test_session_settings_with_an_unknown_field_are_refused_in_the_sdks_words():
    with pytest.raises(TypeError, match=r"^Unknown session settings: limt, size$"):
        DjangoSession("s", session_settings={"size": 1, "limt": 3})
    with pytest.raises(ValueError, match="limit"):
        DjangoSession("s", session_settings={"limit": "many"})
    with pytest.raises(TypeError, match="session_settings limit must be an int or None, not bool"):
        DjangoSession("s", session_settings={"limit": True})


def test_session_settings_are_checked_the_same_way_by_sdks_without_their_check(monkeypatch):
    # openai-agents 0.8 has no coerce_session_settings: the same wording without it.
    monkeypatch.setattr(session_module, "_sdk_coerce", None)
    with pytest.raises(TypeError, match=r"^Unknown session settings: limt, size$"):
        DjangoSession("s", session_settings={"size": 1, "limt": 3})
    with pytest.raises(TypeError, match="session_settings limit must be an int or None, not bool"):
        DjangoSession("s", session_settings={"limit": True})
    assert DjangoSession("s", session_settings={"limit": 3}).session_settings.limit == 3


def test_unknown_database_alias_is_refused():
    with pytest.raises(ValueError, match="nope"):
        DjangoSession("s", using="nope")


@pytest.mark.parametrize("name", ["agent sessions", "x;DROP TABLE y", "1abc", "", "a" * 51, "t-1"])
def test_table_names_must_be_plain_identifiers(name):
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        DjangoSession("s", sessions_table=name)
    with pytest.raises(ValueError, match="not a plain SQL identifier"):
        DjangoSession("s", messages_table=name)


async def test_backends_without_returning_keep_the_contract(monkeypatch):
    # MySQL has no RETURNING: the statements built for it must behave the same.
    without_returning = partial(storage.Storage, returning=False)
    monkeypatch.setattr(storage, "storage_for", without_returning)
    session = DjangoSession("pop-orm")
    await session.add_items([msg(1), msg(2)])
    assert await session.pop_item() == msg(2)
    assert await session.pop_item() == msg(1)
    assert await session.pop_item() is None
    assert await AgentMessage.objects.acount() == 0


async def test_pop_with_custom_table_names_uses_those_tables():
    from openai_django_sessions import _tables as tables

    names = {"sessions_table": "pop_sessions", "messages_table": "pop_messages"}
    session = DjangoSession("pop-custom", create_tables=True, **names)
    try:
        await session.add_items([msg(1), msg(2)])
        assert await session.pop_item() == msg(2)
        assert await session.get_items() == [msg(1)]
    finally:
        await sync_to_async(_drop_tables)(tables.models_for(**names))
        tables._created.clear()


def _drop_tables(pair) -> None:
    from django.db import connection

    with connection.schema_editor() as editor:
        editor.delete_model(pair[1])
        editor.delete_model(pair[0])


async def test_add_items_is_all_or_nothing_when_the_database_fails_midway(monkeypatch):
    from django.db import IntegrityError

    real_insert = storage.Storage.insert_messages

    def write_one_then_fail(self, *, session_pk, rows, **kwargs):
        real_insert(self, session_pk=session_pk, rows=rows[:1], **kwargs)  # half of it lands
        raise IntegrityError("the server refused the rest")

    monkeypatch.setattr(storage.Storage, "insert_messages", write_one_then_fail)
    session = DjangoSession("atomic")
    with pytest.raises(IntegrityError, match="refused the rest"):
        await session.add_items([msg(1), msg(2), msg(3)])
    monkeypatch.undo()

    assert await AgentMessage.objects.acount() == 0
    assert await AgentSession.objects.acount() == 0  # the session row went with it
    await session.add_items([msg(4)])
    assert await session.get_items() == [msg(4)]
