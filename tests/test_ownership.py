"""Conversations that belong to someone: owner, title, metadata, access scoped by owner."""

from __future__ import annotations

from decimal import Decimal
from typing import Any

import pytest
from asgiref.sync import sync_to_async
from django.contrib.auth.models import AnonymousUser
from django.core.exceptions import PermissionDenied
from django.db import connection
from django.test.utils import CaptureQueriesContext

from openai_django_sessions import DjangoSession, SessionDetails
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from openai_django_sessions.usage import UsageTotals
from tests.conftest import in_requests

pytestmark = pytest.mark.django_db(transaction=True)

# Rounds of a race between two requests: enough for it to go each way many times.
ROUNDS = 150


def msg(n: int, role: str = "user") -> dict[str, Any]:
    return {"role": role, "content": f"message {n}"}


async def snapshot(session_id: str) -> tuple[Any, ...]:
    """What a refused call must leave as it was: the row, its timestamps, its messages."""
    row = (
        await AgentSession.objects.filter(session_id=session_id)
        .values("pk", "owner_id", "title", "metadata", "updated_at")
        .afirst()
    )
    items = [
        data
        async for data in AgentMessage.objects.filter(session__session_id=session_id)
        .order_by("pk")
        .values_list("data", flat=True)
    ]
    return row, items, await AgentSession.objects.acount(), await AgentMessage.objects.acount()


# -- construction -------------------------------------------------------------------


def test_owner_is_a_user_or_its_primary_key(alice: Any) -> None:
    assert DjangoSession("s", owner=alice).owner_id == alice.pk
    assert DjangoSession("s", owner=alice.pk).owner_id == alice.pk
    assert DjangoSession("s", owner=str(alice.pk)).owner_id == alice.pk
    assert DjangoSession("s").owner_id is None


def test_anonymous_user_is_refused_at_construction() -> None:
    with pytest.raises(ValueError, match="anonymous user"):
        DjangoSession("s", owner=AnonymousUser())


def test_unsaved_user_and_values_that_are_not_keys_are_refused(django_user_model: Any) -> None:
    with pytest.raises(ValueError, match="unsaved"):
        DjangoSession("s", owner=django_user_model(username="ghost"))
    with pytest.raises(ValueError, match="not a valid primary key"):
        DjangoSession("s", owner="alice")
    with pytest.raises(TypeError, match="owner must be"):
        DjangoSession("s", owner=True)
    with pytest.raises(TypeError, match="owner must be"):
        DjangoSession("s", owner=AgentSession(session_id="x"))


@pytest.mark.parametrize(
    "value", [1.5, 1.0, Decimal("1.9"), b"1", bytearray(b"1"), float("inf"), float("nan"), 1j, [1]]
)
async def test_owner_values_that_are_not_keys_are_refused_before_anything_is_read(
    alice: Any, value: Any
) -> None:
    # Each of them would otherwise be converted to alice's key (or overflow).
    await DjangoSession("trip", owner=alice).add_items([msg(1)])

    with pytest.raises(TypeError, match=r"owner must be .* or its primary key .*, not "):
        DjangoSession("trip", owner=value)
    with pytest.raises(TypeError, match=r"owner must be .* or its primary key .*, not "):
        AgentSession.objects.owned_by(value)
    with pytest.raises(TypeError, match=r"owner must be .* or its primary key .*, not "):
        AgentSession.objects.conversations(value)


@pytest.mark.parametrize("value", [2**63, -(2**63) - 1, 10**30, "1.5", "1e400", "", " "])
def test_keys_the_user_models_key_cannot_hold_are_refused(value: Any) -> None:
    with pytest.raises(ValueError, match=r"is not a valid primary key of auth\.User"):
        DjangoSession("trip", owner=value)
    with pytest.raises(ValueError, match=r"is not a valid primary key of auth\.User"):
        AgentSession.objects.owned_by(value)


def test_title_and_metadata_are_checked_at_construction() -> None:
    with pytest.raises(ValueError, match="title"):
        DjangoSession("s", title="x" * 256)
    with pytest.raises(TypeError, match="title"):
        DjangoSession("s", title=5)  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata must be a dict"):
        DjangoSession("s", metadata=["agent"])  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="metadata"):
        DjangoSession("s", metadata={"when": object()})


@pytest.mark.parametrize(
    ("title", "metadata", "problem"),
    [
        ("a\x00b", None, "title must not contain the character U\\+0000"),
        ("a\ud800", None, "title contains a lone surrogate"),
        (None, {"note": "a\x00b"}, "metadata contains the character U\\+0000"),
        (None, {"note": "a\ud800"}, "metadata contains a lone surrogate"),
        (None, {1: "a"}, "metadata has a dict key that is not a str"),
        (
            None,
            {"deep": [[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[[]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]]},
            "nested",
        ),
    ],
)
async def test_titles_and_metadata_any_database_cannot_store_are_refused_before_writing(
    alice: Any, title: Any, metadata: Any, problem: str
) -> None:
    with pytest.raises((TypeError, ValueError), match=problem):
        DjangoSession("s", owner=alice, title=title, metadata=metadata)
    session = DjangoSession("s", owner=alice)
    await session.add_items([msg(1)])
    changes = {"title": title} if title is not None else {"metadata": metadata}
    with pytest.raises((TypeError, ValueError), match=problem):
        await session.aupdate_details(**changes)
    details = await session.aget_details()
    assert details is not None and (details.title, details.metadata) == ("message 1", {})


def test_owner_title_and_metadata_are_keyword_only(alice: Any) -> None:
    with pytest.raises(TypeError):
        DjangoSession("s", alice)  # type: ignore[misc]


# -- the owner's conversation ---------------------------------------------------------


async def test_first_write_creates_the_row_with_owner_title_and_metadata(alice: Any) -> None:
    session = DjangoSession("trip-7", owner=alice, title="Trip", metadata={"agent": "planner"})

    await session.add_items([msg(1)])
    await session.add_items([msg(2)])

    row = await AgentSession.objects.aget(session_id="trip-7")
    assert (row.owner_id, row.title, row.metadata) == (alice.pk, "Trip", {"agent": "planner"})
    assert await session.get_items() == [msg(1), msg(2)]
    assert await session.pop_item() == msg(2)
    await session.clear_session()
    assert not await AgentSession.objects.filter(session_id="trip-7").aexists()


async def test_title_and_metadata_apply_only_when_the_row_is_created(alice: Any) -> None:
    await DjangoSession("s", owner=alice, title="First").add_items([msg(1)])

    await DjangoSession("s", owner=alice, title="Second", metadata={"x": 1}).add_items([msg(2)])

    row = await AgentSession.objects.aget(session_id="s")
    assert (row.title, row.metadata) == ("First", {})


# -- another owner's conversation -------------------------------------------------------


@pytest.mark.parametrize("stored_owner", ["bob", "nobody"])
async def test_every_method_on_a_conversation_owned_by_someone_else_is_refused_unchanged(
    alice: Any, bob: Any, stored_owner: str
) -> None:
    owner = bob if stored_owner == "bob" else None
    await DjangoSession("shared-id", owner=owner).add_items([msg(1), msg(2)])
    before = await snapshot("shared-id")
    intruder = DjangoSession("shared-id", owner=alice)

    calls = {
        "get_items": intruder.get_items,
        "get_items(limit=1)": lambda: intruder.get_items(limit=1),
        "get_items(limit=0)": lambda: intruder.get_items(limit=0),
        "add_items": lambda: intruder.add_items([msg(3)]),
        "pop_item": intruder.pop_item,
        "clear_session": intruder.clear_session,
        "aget_details": intruder.aget_details,
        "aupdate_details": lambda: intruder.aupdate_details(title="mine"),
        "aget_usage": intruder.aget_usage,
    }
    for name, call in calls.items():
        with pytest.raises(PermissionDenied):
            await call()
        assert await snapshot("shared-id") == before, name


async def test_usage_totals_are_read_by_their_owner_only_and_say_no_more_than_get_items(
    alice: Any, bob: Any
) -> None:
    await DjangoSession("trip", owner=alice).add_items([msg(1)])
    row = await AgentSession.objects.aget(session_id="trip")
    await AgentUsage.objects.acreate(session=row, requests=1, input_tokens=7, total_tokens=9)
    await AgentSession.objects.acreate(session_id="nobodys")

    with pytest.raises(PermissionDenied, match="'trip' belongs to another user"):
        await DjangoSession("trip", owner=bob).aget_usage()
    with pytest.raises(PermissionDenied, match="'nobodys' belongs to another user"):
        await DjangoSession("nobodys", owner=bob).aget_usage()
    # An id no one has stored reads as empty, as get_items reads it.
    assert await DjangoSession("unknown", owner=bob).aget_usage() == UsageTotals()
    assert await DjangoSession("unknown", owner=bob).get_items() == []
    assert (await DjangoSession("trip", owner=alice).aget_usage()).total_tokens == 9
    assert (await DjangoSession("trip").aget_usage()).input_tokens == 7


async def test_a_session_without_owner_still_reads_every_conversation(alice: Any) -> None:
    await DjangoSession("s", owner=alice).add_items([msg(1)])

    assert await DjangoSession("s").get_items() == [msg(1)]


async def test_concurrent_first_writes_by_two_owners_make_one_row_and_refuse_the_other(
    alice: Any, bob: Any
) -> None:
    for round_ in range(6):
        session_id = f"race-{round_}"

        async def write(owner: Any, n: int, session_id: str = session_id) -> str:
            try:
                await DjangoSession(session_id, owner=owner).add_items([msg(n)])
            except PermissionDenied:
                return "refused"
            return "written"

        results = await in_requests(lambda: write(alice, 1), lambda: write(bob, 2))

        assert sorted(results) == ["refused", "written"]
        winner = alice if results[0] == "written" else bob
        row = await AgentSession.objects.aget(session_id=session_id)
        assert row.owner_id == winner.pk
        stored = [m async for m in row.messages.values_list("data", flat=True)]
        assert stored == [msg(1 if winner is alice else 2)]  # nothing merged into it


async def test_deleting_a_user_deletes_their_conversations_and_messages(
    alice: Any, bob: Any
) -> None:
    await DjangoSession("a1", owner=alice).add_items([msg(1), msg(2)])
    await DjangoSession("a2", owner=alice).add_items([msg(3)])
    await DjangoSession("b1", owner=bob).add_items([msg(4)])

    await alice.adelete()

    assert [s async for s in AgentSession.objects.values_list("session_id", flat=True)] == ["b1"]
    assert await AgentMessage.objects.acount() == 1


# -- the automatic title -----------------------------------------------------------------


async def test_without_a_title_the_first_user_message_names_the_conversation() -> None:
    session = DjangoSession("auto")

    await session.add_items(
        [
            {"role": "system", "content": "You are terse."},
            {"role": "user", "content": "  Plan a trip to Lisbon\nin May, for two  "},
        ]
    )
    await session.add_items([{"role": "user", "content": "And Porto?"}])

    assert (await AgentSession.objects.aget(session_id="auto")).title == "Plan a trip to Lisbon"


async def test_auto_title_reads_input_text_parts_and_waits_for_a_user_message() -> None:
    session = DjangoSession("parts")
    await session.add_items([{"role": "assistant", "content": "Hello! How can I help?"}])
    assert (await AgentSession.objects.aget(session_id="parts")).title == ""

    await session.add_items(
        [
            {
                "role": "user",
                "content": [
                    {"type": "input_image", "image_url": "https://example.com/a.png"},
                    {"type": "input_text", "text": "What is " + "very " * 40 + "this?"},
                ],
            }
        ]
    )

    title = (await AgentSession.objects.aget(session_id="parts")).title
    assert title.startswith("What is very very")
    assert len(title) <= 80 and title.endswith("…")


async def test_a_given_title_is_kept_and_not_replaced_by_the_first_message() -> None:
    await DjangoSession("named", title="Mine").add_items([msg(1)])

    assert (await AgentSession.objects.aget(session_id="named")).title == "Mine"


# -- details ------------------------------------------------------------------------------


async def test_aget_details_reads_the_row_and_none_before_the_first_write(alice: Any) -> None:
    session = DjangoSession("d", owner=alice, metadata={"agent": "planner"})
    assert await session.aget_details() is None

    await session.add_items([msg(1)])
    details = await session.aget_details()

    assert isinstance(details, SessionDetails)
    assert (details.session_id, details.owner_id, details.title) == ("d", alice.pk, "message 1")
    assert details.metadata == {"agent": "planner"}
    assert details.created_at <= details.updated_at


async def test_aupdate_details_changes_title_and_metadata_not_the_last_activity(
    alice: Any,
) -> None:
    session = DjangoSession("d", owner=alice)
    await session.add_items([msg(1)])
    before = await session.aget_details()
    assert before is not None

    after = await session.aupdate_details(title="Renamed", metadata={"pinned": True})
    only_title = await session.aupdate_details(title="Again")

    assert (after.title, after.metadata) == ("Renamed", {"pinned": True})
    assert (only_title.title, only_title.metadata) == ("Again", {"pinned": True})
    assert only_title.updated_at == before.updated_at
    assert await session.get_items() == [msg(1)]


async def test_aupdate_details_creates_the_owned_row_before_any_message(alice: Any) -> None:
    session = DjangoSession("new", owner=alice)

    details = await session.aupdate_details(title="Draft")

    assert (details.owner_id, details.title) == (alice.pk, "Draft")
    assert await session.get_items() == []


async def test_aupdate_details_racing_the_first_write_of_a_new_id_loses_neither(
    alice: Any,
) -> None:
    # Each round a new id: both requests may find no row and race to create it.
    for n in range(ROUNDS):
        session_id = f"race-{n}"
        await in_requests(
            lambda sid=session_id, n=n: DjangoSession(sid, owner=alice).add_items([msg(n)]),
            lambda sid=session_id, n=n: DjangoSession(sid, owner=alice).aupdate_details(
                title="Named", metadata={"round": n}
            ),
        )
        row = await AgentSession.objects.aget(session_id=session_id)
        assert (row.title, row.metadata) == ("Named", {"round": n}), session_id
        assert await DjangoSession(session_id).get_items() == [msg(n)]


async def test_aupdate_details_checks_its_arguments_before_writing() -> None:
    session = DjangoSession("d")
    with pytest.raises(TypeError, match="metadata must be a dict"):
        await session.aupdate_details(metadata="x")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="title"):
        await session.aupdate_details(title="x" * 256)
    assert not await AgentSession.objects.aexists()


# -- listing a user's conversations --------------------------------------------------------


async def test_conversations_lists_one_owners_sessions_newest_first_counted_in_one_query(
    alice: Any, bob: Any
) -> None:
    await DjangoSession("old", owner=alice).add_items([msg(1), msg(2), msg(3)])
    await DjangoSession("empty", owner=alice).aupdate_details(title="Nothing yet")
    await DjangoSession("theirs", owner=bob).add_items([msg(4)])
    await DjangoSession("new", owner=alice).add_items([msg(5)])
    await DjangoSession("old", owner=alice).add_items([msg(6)])  # the newest activity now

    def listing() -> list[tuple[str, str, int]]:
        with CaptureQueriesContext(connection) as queries:
            rows = [
                (s.session_id, s.title, s.message_count)
                for s in AgentSession.objects.conversations(alice)
            ]
        assert len(queries) == 1
        return rows

    assert await sync_to_async(listing)() == [
        ("old", "message 1", 4),
        ("new", "message 5", 1),
        ("empty", "Nothing yet", 0),
    ]
    by_key = [s.session_id async for s in AgentSession.objects.conversations(bob.pk)]
    assert by_key == ["theirs"]


def test_conversations_of_an_anonymous_user_is_refused() -> None:
    with pytest.raises(ValueError, match="anonymous user"):
        AgentSession.objects.conversations(AnonymousUser())


# -- tables without the new columns -------------------------------------------------------


def test_owner_title_metadata_with_custom_tables_are_refused_saying_what_to_do(
    alice: Any,
) -> None:
    for kwargs in ({"owner": alice}, {"title": "t"}, {"metadata": {}}):
        with pytest.raises(ValueError, match="sessions_table=") as refused:
            DjangoSession("s", sessions_table="old_threads", messages_table="old_items", **kwargs)
        assert "OPENAI_DJANGO_SESSIONS" in str(refused.value)


async def test_custom_tables_without_owner_keep_working(alice: Any) -> None:
    session = DjangoSession(
        "s", sessions_table="own_threads", messages_table="own_items", create_tables=True
    )
    await session.add_items([msg(1), msg(2)])
    assert await session.pop_item() == msg(2)
    assert await session.get_items() == [msg(1)]
    await session.clear_session()
    assert await session.get_items() == []
    with pytest.raises(ValueError, match="sessions_table="):
        await session.aget_details()


# -- forks and compaction snapshots ---------------------------------------------------


async def test_forks_and_compaction_reads_of_someone_elses_conversation_are_refused(
    alice: Any, bob: Any
) -> None:
    await DjangoSession("trip", owner=alice).add_items([msg(1), msg(2, "assistant")])
    before = await snapshot("trip")
    intruder = DjangoSession("trip", owner=bob)

    with pytest.raises(PermissionDenied):
        await intruder.afork("stolen")
    with pytest.raises(PermissionDenied):
        await intruder._tail(5)
    with pytest.raises(PermissionDenied):
        await intruder._atomic_replace_items([msg(3)])

    assert await snapshot("trip") == before
    assert not await AgentSession.objects.filter(session_id="stolen").aexists()


async def test_a_fork_belongs_to_the_same_owner_and_is_scoped_to_them(alice: Any, bob: Any) -> None:
    await DjangoSession("trip", owner=alice).add_items([msg(1), msg(2, "assistant")])

    fork = await DjangoSession("trip", owner=alice).afork("trip-2", keep=1)

    assert fork.owner_id == alice.pk
    assert await fork.get_items() == [msg(1)]
    with pytest.raises(PermissionDenied):
        await DjangoSession("trip-2", owner=bob).get_items()
