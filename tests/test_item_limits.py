"""How large an item may be: the limit follows the database and a setting, and every
insert path (add_items, forks, compaction, import) stays within MariaDB's packet."""

from __future__ import annotations

import base64
import os
from types import SimpleNamespace
from typing import Any

import pytest
from agents import Agent, Runner
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel, assistant_message
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings

from openai_django_sessions import DjangoSession, limits
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.settings import with_driver_cursor

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

MiB = 2**20


def file_input(size: int) -> dict[str, Any]:
    """A user message carrying a PDF of ``size`` random bytes, as the SDK sends files."""
    data = base64.b64encode(os.urandom(size)).decode()
    return {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "Summarise this file."},
            {"type": "input_file", "filename": "report.pdf", "file_data": data},
        ],
    }


def big(n: int, size: int = 6 * MiB) -> dict[str, Any]:
    return {"type": "function_call_output", "call_id": f"c{n}", "output": "x" * size}


@pytest.mark.vendor("sqlite", "postgresql")
async def test_a_20_mb_file_input_goes_through_a_run_and_comes_back_equal():
    question = file_input(15 * 10**6)  # 20 MB once base64-encoded
    model = ScriptedModel([[assistant_message("A report.")]])
    session = DjangoSession("with-a-file")

    result = await Runner.run(Agent(name="reader", model=model), [question], session=session)

    assert result.final_output == "A report."
    stored = await session.get_items()
    assert stored[0] == question
    assert len(stored) == 2
    assert await DjangoSession("with-a-file").get_items(limit=1) == stored[1:]


@pytest.mark.vendor("mysql")
async def test_mariadb_refuses_an_item_over_what_its_packet_allows_naming_the_limit_and_setting():
    session = DjangoSession("too-large")
    await session.add_items([{"kept": True}])
    packet = await _packet()

    with pytest.raises(ValueError) as refused:
        await session.add_items([file_input(6 * MiB)])  # 8 MiB as base64

    message = str(refused.value)
    assert f"more than the {packet // 2 - MiB:,} it may be" in message
    assert "max_allowed_packet" in message and "MAX_ITEM_BYTES" in message
    assert await session.get_items() == [{"kept": True}]


@pytest.mark.vendor("mysql")
def test_on_mariadb_the_limit_is_half_the_packet_less_1_mib_and_the_setting_only_lowers_it():
    allowed = _packet_now() // 2 - MiB

    assert limits.max_item_bytes("default") == allowed
    with override_settings(
        OPENAI_DJANGO_SESSIONS=with_driver_cursor({"MAX_ITEM_BYTES": 10 * allowed})
    ):
        assert limits.max_item_bytes("default") == allowed
    with override_settings(OPENAI_DJANGO_SESSIONS=with_driver_cursor({"MAX_ITEM_BYTES": 1000})):
        assert limits.max_item_bytes("default") == 1000


@pytest.mark.vendor("sqlite", "postgresql")
def test_elsewhere_the_limit_is_64_mib_and_the_setting_raises_or_lowers_it():
    assert limits.max_item_bytes("default") == 64 * MiB
    with override_settings(
        OPENAI_DJANGO_SESSIONS=with_driver_cursor({"MAX_ITEM_BYTES": 200 * MiB})
    ):
        assert limits.max_item_bytes("default") == 200 * MiB


async def test_the_setting_lowers_the_limit_and_its_refusal_names_it():
    session = DjangoSession("lowered")
    with override_settings(OPENAI_DJANGO_SESSIONS=with_driver_cursor({"MAX_ITEM_BYTES": 1000})):
        await session.add_items([{"text": "x" * 900}])
        with pytest.raises(ValueError, match=r"items\[1\].*more than the 1,000.*MAX_ITEM_BYTES"):
            await session.add_items([{"ok": 1}, {"text": "x" * 1000}])
    assert await session.get_items() == [{"text": "x" * 900}]


async def test_a_fork_into_another_database_copies_items_the_library_accepted():
    items = [big(n) for n in range(3)]
    original = DjangoSession("large-source")
    await original.add_items(items)

    fork = await original.afork("large-fork", using="other")

    assert await fork.get_items() == items
    assert await original.get_items() == items


async def test_a_fork_into_a_database_whose_limit_the_items_exceed_is_refused_writing_nothing():
    original = DjangoSession("over-the-target-limit")
    await original.add_items([{"text": "x" * 900}, {"text": "x" * 2000}])

    lowered = override_settings(OPENAI_DJANGO_SESSIONS=with_driver_cursor({"MAX_ITEM_BYTES": 1000}))
    with lowered, pytest.raises(ValueError, match=r"items\[1\].*1,000.*MAX_ITEM_BYTES"):
        await original.afork("refused-fork", using="other")

    assert not await AgentSession.objects.using("other").filter(session_id="refused-fork").aexists()
    assert len(await original.get_items()) == 2


async def test_a_manual_compaction_stores_output_items_the_library_accepts():
    items = [big(n) for n in range(3)]

    class Responses:
        async def compact(self, **kwargs: Any) -> Any:
            return SimpleNamespace(output=items, usage=None)

    inner = DjangoSession("large-compaction")
    await inner.add_items([{"role": "user", "content": "hello"}])
    session = OpenAIResponsesCompactionSession(
        session_id="large-compaction",
        underlying_session=inner,
        client=SimpleNamespace(responses=Responses()),
    )

    await session.run_compaction({"force": True, "compaction_mode": "input"})

    assert await inner.get_items() == items
    row = await AgentSession.objects.aget(session_id="large-compaction")
    assert await AgentMessage.objects.filter(session=row).acount() == 3


def test_rows_are_split_by_json_size_and_count_and_a_larger_row_goes_alone():
    overhead = limits.ROW_OVERHEAD
    runs = limits.batches(
        [100, 100, 100, 5000, 100, 100, 100, 100], max_bytes=300 + 3 * overhead, max_rows=3
    )
    assert [list(run) for run in runs] == [[0, 1, 2], [3], [4, 5, 6], [7]]
    assert list(limits.batches([], max_bytes=10, max_rows=10)) == []


async def _packet() -> int:
    return await sync_to_async(_packet_now)()


def _packet_now() -> int:
    with connections["default"].cursor() as cursor:
        cursor.execute("SELECT @@max_allowed_packet")
        return int(cursor.fetchone()[0])
