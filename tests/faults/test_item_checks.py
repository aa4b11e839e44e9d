"""What add_items, get_items and the constructor refuse, identically on every database,
before anything is written (issue 10, items 9 and 10)."""

from __future__ import annotations

import pytest
from agents.memory.session_settings import SessionSettings
from asgiref.sync import sync_to_async

from openai_django_sessions import DjangoSession
from openai_django_sessions.items import MAX_DEPTH
from openai_django_sessions.limits import max_item_bytes
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)


def nested(levels: int) -> dict:
    """An item whose objects and arrays nest ``levels`` deep, counting the item."""
    inner: object = "leaf"
    for _ in range(levels - 1):
        inner = [inner]
    return {"role": "user", "content": inner}


async def assert_refused(items: list, error: type[Exception], match: str) -> None:
    session = DjangoSession("refused")
    await session.add_items([{"kept": True}])
    with pytest.raises(error, match=match):
        await session.add_items(items)
    assert await session.get_items() == [{"kept": True}]
    assert await AgentMessage.objects.acount() == 1


async def test_a_non_string_dict_key_is_refused_rather_than_converted():
    await assert_refused([{"ok": 1}, {1: "a", "1": "b"}], TypeError, r"items\[1\].*not a str")


async def test_a_non_string_key_deep_inside_an_item_is_refused():
    await assert_refused([{"a": [{"b": {None: 1}}]}], TypeError, r"items\[0\].*not a str")


@pytest.mark.parametrize("item", [{"text": "\ud800"}, {"\udfff": "key"}, {"a": ["x\udc00y"]}])
async def test_a_lone_surrogate_is_refused(item):
    await assert_refused([item], ValueError, r"items\[0\].*lone surrogate")


async def test_items_nested_up_to_the_limit_come_back_equal():
    item = nested(MAX_DEPTH)
    session = DjangoSession("deep")
    await session.add_items([item])
    assert await session.get_items() == [item]


@pytest.mark.parametrize("levels", [MAX_DEPTH + 1, 2_000, 10_000])
async def test_items_nested_beyond_the_limit_are_refused(levels):
    await assert_refused([nested(levels)], ValueError, rf"items\[0\].*more than {MAX_DEPTH}")


async def test_large_non_ascii_items_are_stored_together_and_come_back_equal():
    # Escaped as \uXXXX these would be ~3x larger: past MariaDB's 16 MiB packet.
    limit = await sync_to_async(max_item_bytes)("default")
    text = "é" * (min(limit, 7 * 2**20) // 2 - 100)
    items = [{"role": "tool", "n": n, "output": text} for n in range(4)]
    session = DjangoSession("large")
    await session.add_items(items)
    assert await session.get_items() == items


async def test_an_item_larger_than_the_limit_is_refused():
    too_large = [{"output": "x" * await sync_to_async(max_item_bytes)("default")}]
    await assert_refused(too_large, ValueError, r"items\[0\].*bytes")


@pytest.mark.parametrize("bad", ["user\x00", "user\ud800"])
def test_a_session_id_with_nul_or_a_lone_surrogate_is_refused_at_construction(bad):
    with pytest.raises(ValueError, match="session_id"):
        DjangoSession(bad)


@pytest.mark.parametrize("limit", [2**63 - 1, 2**63, 2**64 + 5])
async def test_a_limit_beyond_64_bits_returns_every_item(limit):
    session = DjangoSession("limits")
    await session.add_items([{"n": n} for n in range(3)])
    assert await session.get_items(limit=limit) == [{"n": n} for n in range(3)]
    session.session_settings = SessionSettings(limit=limit)
    assert await session.get_items() == [{"n": n} for n in range(3)]


@pytest.mark.parametrize("settings", [{"limit": True}, {"limit": False}, {"limit": -1}])
def test_a_session_settings_limit_that_is_not_a_count_is_refused(settings):
    # SessionSettings(limit=True) itself is the SDK's: pydantic makes it 1 there.
    with pytest.raises((TypeError, ValueError), match="limit"):
        DjangoSession("s", session_settings=settings)


async def test_nothing_refused_creates_the_session_row():
    with pytest.raises(TypeError):
        await DjangoSession("never-written").add_items([{1: "a"}])
    assert not await AgentSession.objects.filter(session_id="never-written").aexists()
