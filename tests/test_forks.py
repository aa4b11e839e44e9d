"""Forks: a new conversation holding a copy of another's history, in one transaction."""

from __future__ import annotations

import pytest
from asgiref.sync import sync_to_async
from django.db import connections
from django.test import override_settings
from django.test.utils import CaptureQueriesContext

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.conftest import in_requests

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])

ITEMS = [{"role": "user", "content": f"message {n}"} for n in range(6)]


async def stored_ids(session_id: str, using: str = "default") -> list[int]:
    rows = AgentMessage.objects.using(using).filter(session__session_id=session_id)
    return [pk async for pk in rows.order_by("id").values_list("pk", flat=True)]


async def source(session_id: str = "original") -> DjangoSession:
    session = DjangoSession(session_id)
    await session.add_items(ITEMS)
    return session


async def test_a_fork_holds_the_whole_history_and_the_original_is_unchanged():
    original = await source()
    before = await AgentSession.objects.aget(session_id="original")
    ids_before = await stored_ids("original")

    fork = await original.afork("copy")

    assert isinstance(fork, DjangoSession) and fork.session_id == "copy"
    assert await fork.get_items() == ITEMS
    assert await original.get_items() == ITEMS
    assert await stored_ids("original") == ids_before
    row = await AgentSession.objects.aget(session_id="copy")
    assert (row.forked_from, row.forked_from_position) == ("original", len(ITEMS))
    after = await AgentSession.objects.aget(session_id="original")
    assert (after.pk, after.forked_from, after.forked_from_position) == (before.pk, "", None)


async def test_a_fork_leaves_the_last_activity_of_its_source_as_it_was():
    original = await source()
    before = await AgentSession.objects.aget(session_id="original")

    await original.afork("copy")
    await original.afork("start", keep=1)

    after = await AgentSession.objects.aget(session_id="original")
    assert (after.created_at, after.updated_at) == (before.created_at, before.updated_at)


@pytest.mark.parametrize("keep", [0, 1, 4, 6, 50])
async def test_keep_copies_the_first_items(keep):
    original = await source()

    fork = await original.afork("kept", keep=keep)

    assert await fork.get_items() == ITEMS[:keep]
    row = await AgentSession.objects.aget(session_id="kept")
    assert row.forked_from_position == min(keep, len(ITEMS))


@pytest.mark.parametrize("keep", [2**63 - 1, 2**63, 2**64, 10**30])
async def test_keep_beyond_the_largest_limit_copies_every_item_as_get_items_reads_them(keep):
    original = await source()
    assert await original.get_items(keep) == ITEMS

    fork = await original.afork("all", keep=keep)

    assert await fork.get_items() == ITEMS
    assert await original.get_items() == ITEMS


async def test_the_fork_grows_on_its_own():
    original = await source()
    fork = await original.afork("branch", keep=2)
    edited = {"role": "user", "content": "message 2, edited"}
    await fork.add_items([edited])
    assert await fork.get_items() == [*ITEMS[:2], edited]
    assert await original.get_items() == ITEMS


async def test_a_fork_copies_owner_title_metadata_and_keeps_message_timestamps(django_user_model):
    ada = await django_user_model.objects.acreate(username="ada")
    original = await source()
    await AgentSession.objects.filter(session_id="original").aupdate(
        owner=ada, title="Trip", metadata={"agent": "planner"}
    )

    await original.afork("trip-2")

    row = await AgentSession.objects.aget(session_id="trip-2")
    assert (row.owner_id, row.title, row.metadata) == (ada.pk, "Trip", {"agent": "planner"})
    times = AgentMessage.objects.order_by("id").values_list("created_at", flat=True)
    copied = [t async for t in times.filter(session__session_id="trip-2")]
    originals = [t async for t in times.filter(session__session_id="original")]
    assert copied == originals


async def test_the_messages_are_copied_by_one_statement_whatever_their_number():
    original = DjangoSession("long")
    await original.add_items([{"n": n} for n in range(300)])

    def count() -> int:  # in the thread the session's queries run in
        with CaptureQueriesContext(connections["default"]) as queries:
            original._fork(DjangoSession("long-copy"), None)
        return sum("INSERT" in q["sql"].upper() for q in queries.captured_queries)

    inserts = await sync_to_async(count)()
    assert inserts == 2  # the session row, then every message at once
    assert len(await DjangoSession("long-copy").get_items()) == 300


async def test_an_existing_target_is_refused_and_nothing_is_written():
    original = await source()
    existing = DjangoSession("taken")
    await existing.add_items([{"role": "user", "content": "mine"}])

    with pytest.raises(ValueError, match="'taken': that session exists"):
        await original.afork("taken")
    assert await existing.get_items() == [{"role": "user", "content": "mine"}]
    assert await AgentMessage.objects.acount() == len(ITEMS) + 1


async def test_bad_arguments_and_a_missing_source_are_refused():
    original = await source()
    with pytest.raises(ValueError, match="does not exist"):
        await DjangoSession("nobody").afork("copy")
    with pytest.raises(ValueError, match="keep must not be negative"):
        await original.afork("copy", keep=-1)
    with pytest.raises(TypeError, match="keep must be an int"):
        await original.afork("copy", keep="2")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="session_id"):
        await original.afork("")
    assert not await AgentSession.objects.filter(session_id="copy").aexists()


async def test_concurrent_forks_to_one_id_create_it_once():
    original = await source()

    async def fork() -> str:
        try:
            await DjangoSession("original").afork("contested")
        except ValueError:
            return "refused"
        return "forked"

    outcomes = await in_requests(*(fork for _ in range(6)))
    assert sorted(outcomes) == ["forked"] + ["refused"] * 5
    assert await DjangoSession("contested").get_items() == ITEMS
    assert await original.get_items() == ITEMS


async def test_a_fork_into_another_database_copies_there():
    original = await source()

    fork = await original.afork("elsewhere", keep=3, using="other")

    assert fork.using == "other"
    assert await fork.get_items() == ITEMS[:3]
    assert not await AgentSession.objects.filter(session_id="elsewhere").aexists()
    row = await AgentSession.objects.using("other").aget(session_id="elsewhere")
    assert (row.forked_from, row.forked_from_position) == ("original", 3)
    assert await original.get_items() == ITEMS


async def test_a_fork_goes_to_the_database_its_new_id_routes_to():
    with override_settings(DATABASE_ROUTERS=["tests.test_routing.RecordsHints"]):
        original = await source("d-original")  # "o-" ids route to "other"
        fork = await original.afork("o-fork", keep=2)
        assert await fork.get_items() == ITEMS[:2]
    assert await AgentSession.objects.using("other").filter(session_id="o-fork").aexists()
    assert not await AgentSession.objects.filter(session_id="o-fork").aexists()
    assert await original.get_items() == ITEMS


async def test_a_fork_into_another_database_refuses_an_existing_target_there():
    original = await source()
    await DjangoSession("there", using="other").add_items([{"role": "user", "content": "x"}])
    with pytest.raises(ValueError, match="that session exists"):
        await original.afork("there", using="other")
    assert await AgentMessage.objects.using("other").acount() == 1


async def test_forks_work_on_custom_tables():
    tables = {"sessions_table": "fork_sessions", "messages_table": "fork_messages"}
    original = DjangoSession("custom", create_tables=True, **tables)
    await original.add_items(ITEMS)

    fork = await original.afork("custom-copy", keep=2)

    assert fork.session_model is original.session_model
    assert await fork.get_items() == ITEMS[:2]
    assert await original.get_items() == ITEMS
