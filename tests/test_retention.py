"""Retention: conversations expire after inactivity, read as gone and purged in batches.

Time passes on a frozen clock (the ``clock`` fixture), moved forward by hand.
"""

from __future__ import annotations

import datetime
import io
from collections.abc import Iterator
from typing import Any

import django
import pytest
from asgiref.sync import async_to_sync, sync_to_async
from django.core.checks import Error
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.test import override_settings

from openai_django_sessions import DjangoSession, maintenance, signals, tasks
from openai_django_sessions import _checks as checks
from openai_django_sessions._retention import MAX_EXPIRES_AFTER
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from openai_django_sessions.routers import shard_for
from openai_django_sessions.tasks import purge_expired
from tests.settings import SHARDS, with_driver_cursor

pytestmark = pytest.mark.django_db(transaction=True)

DAY = datetime.timedelta(days=1)
THIRTY_DAYS = override_settings(
    OPENAI_DJANGO_SESSIONS=with_driver_cursor({"EXPIRE_AFTER": 30 * DAY})
)
HELLO = [{"role": "user", "content": "hello"}, {"role": "assistant", "content": "hi"}]


@pytest.fixture
def cleared() -> Iterator[list[str]]:
    """The session ids ``session_cleared`` was sent for."""
    sent: list[str] = []

    def receiver(sender: Any, session_id: str, **kwargs: Any) -> None:
        sent.append(session_id)

    signals.session_cleared.connect(receiver)
    yield sent
    signals.session_cleared.disconnect(receiver)


@THIRTY_DAYS
async def test_a_conversation_inactive_past_the_setting_reads_as_empty_before_it_is_purged(
    clock,
):
    session = DjangoSession("chat")
    await session.add_items(HELLO)

    clock.advance(30 * DAY - datetime.timedelta(seconds=1))
    assert await session.get_items() == HELLO
    clock.advance(datetime.timedelta(seconds=2))

    assert await session.get_items() == []
    assert await session.get_items(limit=1) == []
    assert await AgentMessage.objects.acount() == 2  # still stored, until purged


@THIRTY_DAYS
async def test_each_write_extends_the_conversations_life(clock):
    session = DjangoSession("chat")
    await session.add_items(HELLO[:1])
    clock.advance(20 * DAY)
    await session.add_items(HELLO[1:])
    clock.advance(20 * DAY)

    assert await session.get_items() == HELLO


async def test_a_conversations_own_expiry_is_stored_and_honoured_without_a_setting(clock):
    session = DjangoSession("chat", expires_after=datetime.timedelta(hours=1))
    await session.add_items(HELLO)
    await DjangoSession("other").add_items(HELLO)  # no expiry at all

    row = await AgentSession.objects.aget(session_id="chat")
    assert row.expires_after == datetime.timedelta(hours=1)
    clock.advance(datetime.timedelta(minutes=61))

    assert await session.get_items() == []
    assert await DjangoSession("other").get_items() == HELLO
    result = await maintenance_prune_expired()
    assert result == maintenance.PruneResult(sessions=1, messages=2)
    assert [s async for s in AgentSession.objects.values_list("session_id", flat=True)] == ["other"]


@THIRTY_DAYS
async def test_a_conversations_own_expiry_overrides_the_setting(clock):
    await DjangoSession("long", expires_after=90 * DAY).add_items(HELLO)
    await DjangoSession("short", expires_after=3600).add_items(HELLO)
    clock.advance(31 * DAY)

    assert await DjangoSession("long").get_items() == HELLO
    assert await DjangoSession("short").get_items() == []


@THIRTY_DAYS
async def test_a_write_to_an_expired_conversation_starts_it_afresh(clock, cleared):
    session = DjangoSession("chat")
    await session.add_items(HELLO)
    clock.advance(31 * DAY)

    await session.add_items([{"role": "user", "content": "new start"}])

    assert await session.get_items() == [{"role": "user", "content": "new start"}]
    assert cleared == ["chat"]
    assert await AgentMessage.objects.acount() == 1


@THIRTY_DAYS
async def test_popping_from_an_expired_conversation_finds_nothing(clock):
    session = DjangoSession("chat")
    await session.add_items(HELLO)
    clock.advance(31 * DAY)

    assert await session.pop_item() is None
    assert await AgentSession.objects.acount() == 0


@THIRTY_DAYS
async def test_an_expired_conversation_cannot_be_forked_and_compaction_sees_no_history(clock):
    session = DjangoSession("chat")
    await session.add_items(HELLO)
    clock.advance(31 * DAY)

    with pytest.raises(ValueError, match="cannot fork session 'chat': it does not exist"):
        await session.afork("copy")
    assert await session._tail(10) == ([], True)
    assert not await AgentSession.objects.filter(session_id="copy").aexists()


@THIRTY_DAYS
async def test_another_users_expired_conversation_is_still_refused(clock, alice, bob):
    await DjangoSession("chat", owner=alice).add_items(HELLO)
    clock.advance(31 * DAY)

    with pytest.raises(PermissionDenied):
        await DjangoSession("chat", owner=bob).get_items()
    with pytest.raises(PermissionDenied):
        await DjangoSession("chat", owner=bob).add_items(HELLO)
    assert await DjangoSession("chat", owner=alice).get_items() == []


@THIRTY_DAYS
async def test_a_conversations_retention_can_be_changed_and_handed_back_to_the_setting(clock):
    session = DjangoSession("chat")
    await session.add_items(HELLO)
    assert (await session.aget_details()).expires_after is None

    stored = await session.aupdate_details(expires_after=60 * DAY)
    assert stored.expires_after == 60 * DAY
    clock.advance(45 * DAY)  # past the setting, within its own
    assert await session.get_items() == HELLO
    found = await sync_to_async(maintenance.prune)("default", expired=True, dry_run=True)
    assert found.sessions == 0

    stored = await session.aupdate_details(expires_after=None)  # the setting again
    assert stored.expires_after is None
    assert await session.get_items() == []


async def test_changing_the_retention_counts_from_the_last_activity_and_is_no_activity(clock):
    session = DjangoSession("chat", expires_after=10 * DAY)
    await session.add_items(HELLO)
    clock.advance(5 * DAY)
    before = (await session.aget_details()).updated_at

    stored = await session.aupdate_details(expires_after=2 * DAY)  # ended 3 days ago
    assert stored.updated_at == before
    assert await session.get_items() == []


@THIRTY_DAYS
async def test_changing_an_expired_conversations_retention_does_not_bring_it_back(clock, cleared):
    session = DjangoSession("chat")
    await session.add_items(HELLO)
    clock.advance(31 * DAY)

    stored = await session.aupdate_details(expires_after=365 * DAY)
    assert stored.expires_after == 365 * DAY
    assert await session.get_items() == []
    assert cleared == ["chat"]
    assert await AgentMessage.objects.acount() == 0


@pytest.mark.parametrize(
    ("value", "error"), [(0, ValueError), (-DAY, ValueError), ("7 days", TypeError)]
)
async def test_a_bad_retention_change_is_refused_before_anything_is_written(value, error):
    session = DjangoSession("chat", expires_after=DAY)
    await session.add_items(HELLO)

    with pytest.raises(error, match="expires_after"):
        await session.aupdate_details(title="kept?", expires_after=value)
    stored = await session.aget_details()
    assert (stored.title, stored.expires_after) == ("hello", DAY)


async def test_the_longest_retention_keeps_search_and_purging_working(clock, alice):
    # The last activity plus it must stay a date every database computes: one row
    # past year 9999 used to fail every search and purge on SQLite.
    session = DjangoSession("chat", owner=alice)
    await session.add_items(HELLO)
    await session.aupdate_details(expires_after=MAX_EXPIRES_AFTER)
    clock.advance(365 * DAY)

    assert await session.get_items() == HELLO
    found = await sync_to_async(AgentSession.objects.search)(alice, "hello")
    assert [s.session_id for s in found] == ["chat"]
    assert (await sync_to_async(maintenance.prune)("default", expired=True)).sessions == 0


async def test_a_new_retention_never_revives_an_expired_conversation_read_without_one(clock):
    # The instance knows no expiry (no setting, none given): the row's own decides.
    await DjangoSession("chat", expires_after=7 * DAY).add_items(HELLO)
    clock.advance(10 * DAY)
    plain = DjangoSession("chat")

    stored = await plain.aupdate_details(expires_after=90 * DAY)
    assert stored.expires_after == 90 * DAY
    assert await plain.get_items() == []
    assert await AgentMessage.objects.acount() == 0


async def test_a_fork_keeps_its_sources_retention(clock):
    await DjangoSession("chat", expires_after=7 * DAY).add_items(HELLO)

    fork = await DjangoSession("chat").afork("copy")
    assert (await fork.aget_details()).expires_after == 7 * DAY


@THIRTY_DAYS
def test_prune_expired_deletes_in_batches_with_usage_rows_and_signals(clock, cleared):
    for n in range(5):
        session = DjangoSession(f"old-{n}")
        async_add(session, HELLO)
    AgentUsage.objects.bulk_create(
        [AgentUsage(session=s, total_tokens=10) for s in AgentSession.objects.all()]
    )
    clock.advance(20 * DAY)
    async_add(DjangoSession("recent"), HELLO)
    clock.advance(11 * DAY)

    out = io.StringIO()
    call_command("agent_sessions", "prune", "--expired", "--dry-run", stdout=out)
    assert out.getvalue().splitlines()[-1] == "Would delete 5 session(s) and 10 message(s)."
    assert AgentSession.objects.count() == 6

    out = io.StringIO()
    call_command("agent_sessions", "prune", "--expired", "--batch-size", "2", stdout=out)

    assert out.getvalue().strip() == "Deleted 5 session(s) and 10 message(s)."
    assert list(AgentSession.objects.values_list("session_id", flat=True)) == ["recent"]
    assert AgentUsage.objects.count() == 0
    assert sorted(cleared) == [f"old-{n}" for n in range(5)]


@THIRTY_DAYS
def test_prune_expired_keeps_a_conversation_written_to_after_it_was_selected(clock, monkeypatch):
    async_add(DjangoSession("revived"), HELLO)
    async_add(DjangoSession("stale"), HELLO)
    clock.advance(31 * DAY)
    real = maintenance._delete_batch

    def activity_first(using: str, pks: list[int], stale: Any) -> maintenance.PruneResult:
        async_add(DjangoSession("revived"), [{"role": "user", "content": "still here"}])
        return real(using, pks, stale)

    monkeypatch.setattr(maintenance, "_delete_batch", activity_first)

    result = maintenance.prune("default", expired=True)

    assert result == maintenance.PruneResult(sessions=1, messages=2)
    assert list(AgentSession.objects.values_list("session_id", flat=True)) == ["revived"]


def test_without_any_expiry_nothing_expires(clock):
    async_add(DjangoSession("chat"), HELLO)
    clock.advance(3650 * DAY)

    assert maintenance.prune("default", expired=True).sessions == 0
    assert async_get(DjangoSession("chat")) == HELLO


@THIRTY_DAYS
def test_the_function_purges_expired_conversations(clock):
    async_add(DjangoSession("one"), HELLO)
    clock.advance(31 * DAY)

    assert purge_expired() == {"sessions": 1, "messages": 2}
    assert AgentSession.objects.count() == 0


if django.VERSION >= (6, 0):  # django.tasks; on 5.2 the function above is the way

    @THIRTY_DAYS
    def test_the_django_task_purges_expired_conversations(clock):
        async_add(DjangoSession("one"), HELLO)
        clock.advance(31 * DAY)

        result = tasks.purge_expired_conversations.enqueue()

        assert result.return_value == {"sessions": 1, "messages": 2}
        assert AgentSession.objects.count() == 0


@pytest.mark.vendor("postgresql", "sqlite")
@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
def test_purging_covers_every_shard(clock):
    sharded = override_settings(
        DATABASE_ROUTERS=["openai_django_sessions.routers.ShardRouter"],
        OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": SHARDS, "EXPIRE_AFTER": 30 * DAY}),
    )
    with sharded:
        ids = [f"user-{n}-chat" for n in range(9)]
        for session_id in ids:
            async_add(DjangoSession(session_id), HELLO)
        assert len({shard_for(session_id, SHARDS) for session_id in ids}) > 1
        clock.advance(31 * DAY)

        assert purge_expired() == {"sessions": 9, "messages": 18}
        assert [AgentSession.objects.using(alias).count() for alias in SHARDS] == [0, 0, 0]


@pytest.mark.parametrize(
    ("value", "error", "message"),
    [
        (0, ValueError, "expires_after must be positive"),
        (datetime.timedelta(seconds=-1), ValueError, "expires_after must be positive"),
        ("30d", TypeError, "expires_after must be a number of seconds, a timedelta or None"),
        (True, TypeError, "expires_after must be"),
        (36526 * DAY, ValueError, "expires_after must be at most 36525 days"),
        (float("inf"), ValueError, "expires_after must be at most 36525 days"),
        (10**20, ValueError, "expires_after must be at most 36525 days"),
        (datetime.timedelta.max, ValueError, "expires_after must be at most 36525 days"),
        (float("nan"), ValueError, "expires_after must be positive"),
        (1e-9, ValueError, "expires_after must be at least one microsecond"),
    ],
)
def test_a_bad_expires_after_is_refused_at_construction(value, error, message):
    with pytest.raises(error, match=message):
        DjangoSession("chat", expires_after=value)


def test_expires_after_on_custom_tables_is_refused_naming_the_missing_column():
    with pytest.raises(ValueError, match="expires_after need the migrated tables"):
        DjangoSession("chat", sessions_table="mine", messages_table="mine_items", expires_after=60)


@pytest.mark.parametrize(
    "value", [0, -5, datetime.timedelta(0), False, 36526 * DAY, float("inf"), 1e-9]
)
def test_a_setting_that_is_not_a_positive_duration_is_E010(settings, value):
    settings.OPENAI_DJANGO_SESSIONS = with_driver_cursor({"EXPIRE_AFTER": value})

    errors = checks.check_settings()

    assert [e.id for e in errors] == ["openai_django_sessions.E010"]
    assert isinstance(errors[0], Error)
    assert "'EXPIRE_AFTER'" in errors[0].msg and "not a positive duration" in errors[0].msg


@pytest.mark.parametrize("value", [None, 3600, 1.5, datetime.timedelta(days=30)])
def test_a_positive_duration_or_none_passes_the_checks(settings, value):
    settings.OPENAI_DJANGO_SESSIONS = with_driver_cursor({"EXPIRE_AFTER": value})

    assert checks.check_settings() == []


def test_prune_takes_inactive_for_or_expired_but_not_both():
    with pytest.raises(TypeError, match="one of the two"):
        maintenance.prune("default", inactive_for=DAY, expired=True)
    with pytest.raises(TypeError, match="one of the two"):
        maintenance.prune("default")


# -- helpers ---------------------------------------------------------------------


def async_add(session: DjangoSession, items: list[Any]) -> None:
    async_to_sync(session.add_items)(items)


def async_get(session: DjangoSession) -> list[Any]:
    return async_to_sync(session.get_items)()


async def maintenance_prune_expired() -> maintenance.PruneResult:
    return await sync_to_async(maintenance.prune)("default", expired=True)
