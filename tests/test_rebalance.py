"""Rebalancing after a fourth shard was added: ``PREVIOUS_SHARDS`` and ``agent_sessions
rebalance``. SQLite and PostgreSQL (four databases as shards); the test that kills the
command while writers run is PostgreSQL's.
"""

from __future__ import annotations

import io
import os
import random
import signal
import subprocess
import sys
import threading
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.db import DatabaseError, connection, connections
from django.db.models.signals import pre_delete
from django.test import override_settings

from openai_django_sessions import DjangoSession
from openai_django_sessions._rebalance import MoveConflict, move
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from openai_django_sessions.routers import shard_for
from tests.settings import NEW_SHARD, SHARDS, with_driver_cursor

ALL = [*SHARDS, NEW_SHARD]
BEFORE = override_settings(
    DATABASE_ROUTERS=["openai_django_sessions.routers.ShardRouter"],
    OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": SHARDS}),
)
AFTER = override_settings(
    DATABASE_ROUTERS=["openai_django_sessions.routers.ShardRouter"],
    OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": ALL, "PREVIOUS_SHARDS": SHARDS}),
)
ROOT = Path(__file__).resolve().parent.parent

pytestmark = [
    pytest.mark.vendor("sqlite", "postgresql"),
    pytest.mark.django_db(transaction=True, databases=["default", *ALL]),
]


def moving(count: int, prefix: str = "chat") -> list[str]:
    """``count`` session ids whose shard is the new one."""
    ids = (f"{prefix}-{n}" for n in range(100_000))
    return [s for s in ids if shard_for(s, ALL) != shard_for(s, SHARDS)][:count]


def staying(count: int, prefix: str = "chat") -> list[str]:
    ids = (f"{prefix}-{n}" for n in range(100_000))
    return [s for s in ids if shard_for(s, ALL) == shard_for(s, SHARDS)][:count]


def write_before(session_id: str, n: int, **kwargs: Any) -> None:
    """``n`` messages and two usage rows in ``session_id``, on its shard of three."""
    with BEFORE:
        session = DjangoSession(session_id, **kwargs)
        session._add_items([{"role": "user", "content": f"{session_id} {i}"} for i in range(n)])
        alias = shard_for(session_id, SHARDS)
        row = AgentSession.objects.using(alias).get(session_id=session_id)
        for tokens in (7, 35):
            AgentUsage.objects.using(alias).create(session=row, total_tokens=tokens, requests=1)


def stored(session_id: str) -> dict[str, Any]:
    """Everything stored for ``session_id`` (but primary keys), by shard."""
    found = {}
    for alias in ALL:
        row = (
            AgentSession.objects.using(alias)
            .filter(session_id=session_id)
            .values(
                "session_id",
                "created_at",
                "updated_at",
                "owner_id",
                "title",
                "metadata",
                "forked_from",
                "forked_from_position",
            )
            .first()
        )
        if row is None:
            continue
        messages = AgentMessage.objects.using(alias).filter(session__session_id=session_id)
        usage = AgentUsage.objects.using(alias).filter(session__session_id=session_id)
        found[alias] = {
            "row": row,
            "messages": list(messages.order_by("pk").values_list("data", "created_at")),
            "usage": list(
                usage.order_by("pk").values_list(
                    "requests", "total_tokens", "details", "created_at"
                )
            ),
        }
    return found


def test_a_session_on_its_previous_shard_moves_whole_on_first_use(alice):
    [session_id] = moving(1)
    write_before(session_id, 5, owner=alice, title="trip", metadata={"k": [1, "é"]})
    old, new = shard_for(session_id, SHARDS), shard_for(session_id, ALL)
    AgentSession.objects.using(old).filter(session_id=session_id).update(
        forked_from="source", forked_from_position=3
    )
    before = stored(session_id)

    with AFTER:
        items = DjangoSession(session_id, owner=alice)._get_items(None)

    assert [item["content"] for item in items] == [f"{session_id} {i}" for i in range(5)]
    assert stored(session_id) == {new: before[old]}


def test_writes_after_the_move_land_on_the_new_shard_after_the_moved_history():
    [session_id] = moving(1)
    write_before(session_id, 3)
    with AFTER:
        DjangoSession(session_id)._add_items([{"role": "user", "content": "after"}])
        items = DjangoSession(session_id)._get_items(None)
    assert [item["content"] for item in items][-2:] == [f"{session_id} 2", "after"]
    assert list(stored(session_id)) == [shard_for(session_id, ALL)]


def test_sessions_that_stay_are_not_touched_and_cost_no_query_on_another_shard(
    django_assert_num_queries,
):
    [session_id] = staying(1)
    write_before(session_id, 2)
    home = shard_for(session_id, SHARDS)
    with AFTER:
        session = DjangoSession(session_id)
        for alias in ALL:
            if alias != home:
                with django_assert_num_queries(0, connection=connections[alias]):
                    session._get_items(None)
    assert list(stored(session_id)) == [home]


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_sessions", *args, stdout=out)
    return out.getvalue()


def test_rebalance_counts_with_dry_run_moves_every_session_and_a_rerun_moves_nothing():
    moved, kept = moving(6), staying(6)
    for session_id in moved + kept:
        write_before(session_id, 2)
    before = {session_id: stored(session_id) for session_id in moved + kept}

    with AFTER:
        assert "Would move 6 session(s) to their shard." in run("rebalance", "--dry-run")
        assert all(len(stored(s)) == 1 for s in moved)  # nothing moved yet
        output = run("rebalance", "--batch-size", "2")
        assert "Moved 6 session(s) to their shard." in output
        assert "session(s) looked at" in output  # progress, per batch and shard
        assert "PREVIOUS_SHARDS can be removed" in output
        assert "Moved 0 session(s)" in run("rebalance")

    for session_id, was in before.items():
        [(_, content)] = was.items()
        assert stored(session_id) == {shard_for(session_id, ALL): content}


@override_settings(OPENAI_DJANGO_SESSIONS=with_driver_cursor({}))
def test_rebalance_without_shards_is_a_command_error():
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="SHARDS"):
        run("rebalance")


def test_a_move_that_fails_after_the_copy_is_finished_by_the_next_use():
    [session_id] = moving(1)
    write_before(session_id, 4)
    old, new = shard_for(session_id, SHARDS), shard_for(session_id, ALL)
    before = stored(session_id)

    def fail_on_the_source(sender: Any, using: str, **kwargs: Any) -> None:
        if using == old:
            raise DatabaseError("the old shard went away")

    pre_delete.connect(fail_on_the_source, sender=AgentSession)
    try:
        with pytest.raises(DatabaseError, match="went away"):
            move(AgentSession, AgentMessage, session_id, source=old, target=new)
    finally:
        pre_delete.disconnect(fail_on_the_source, sender=AgentSession)

    # Whole on both: the copy committed, the source's deletion rolled back.
    assert stored(session_id) == {old: before[old], new: before[old]}
    with AFTER:
        assert len(DjangoSession(session_id)._get_items(None)) == 4
    assert stored(session_id) == {new: before[old]}


def test_a_session_written_on_both_shards_is_a_conflict_that_changes_nothing():
    [session_id] = moving(1)
    write_before(session_id, 2)
    new = shard_for(session_id, ALL)
    DjangoSession(session_id, using=new)._add_items([{"role": "user", "content": "split"}])
    before = stored(session_id)

    with AFTER, pytest.raises(MoveConflict, match="different histories"):
        DjangoSession(session_id)._get_items(None)
    assert stored(session_id) == before


# -- rebalance killed at random points while writers write ---------------------------


def rebalance_process() -> subprocess.Popen[bytes]:
    # The subprocess uses this test's databases under their own names.
    env = {
        **os.environ,
        "TEST_DB_NAME": connection.settings_dict["NAME"],
        "DJANGO_SETTINGS_MODULE": "tests.settings_rebalance",
        "PYTHONUNBUFFERED": "1",  # progress lines as they are written
    }
    return subprocess.Popen(
        [sys.executable, "-m", "django", "agent_sessions", "rebalance", "--batch-size", "5"],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )


def kill_while_moving(process: subprocess.Popen[bytes], rng: random.Random) -> None:
    """SIGKILL ``process`` after a random number of its progress lines (one per batch
    of five sessions), a random instant later: in the middle of a batch of moves."""
    assert process.stdout is not None
    for _ in range(rng.randint(1, 30)):
        if not process.stdout.readline():
            return  # it finished first
    time.sleep(rng.uniform(0, 0.05))
    process.send_signal(signal.SIGKILL)


@pytest.mark.vendor("postgresql")
def test_rebalance_killed_at_random_points_while_writers_write_loses_and_splits_nothing():
    session_ids = [f"load-{n}" for n in range(200)]
    for session_id in session_ids:
        write_before(session_id, 3)
    usage_before = usage_totals()
    written: dict[str, list[str]] = {session_id: [] for session_id in session_ids}
    errors: list[BaseException] = []
    stop = threading.Event()

    def writer(number: int) -> None:
        rng = random.Random(number)
        try:
            count = 0
            while not stop.is_set():
                # Half the sessions see traffic (moved on first use); the command
                # alone moves the other half.
                session_id = rng.choice(session_ids[:100])
                item = f"w{number}-{count}"
                DjangoSession(session_id)._add_items([{"role": "user", "content": item}])
                written[session_id].append(item)  # only once the write returned
                count += 1
                if count % 10 == 0:  # reads too: a session being moved is never empty
                    assert len(DjangoSession(session_id)._get_items(None)) >= 3
        except BaseException as exc:  # reported by the test, not lost in the thread
            errors.append(exc)
        finally:
            connections.close_all()

    rng = random.Random(20261204)
    with AFTER:  # settings are global: set once, for the writers' threads too
        writers = [threading.Thread(target=writer, args=(n,)) for n in range(3)]
        for thread in writers:
            thread.start()
        try:
            killed = 0
            for _ in range(6):
                process = rebalance_process()
                kill_while_moving(process, rng)
                _, err = process.communicate()
                assert process.returncode in (0, -signal.SIGKILL), err.decode()
                killed += process.returncode == -signal.SIGKILL
            final = rebalance_process()
            out, err = final.communicate(timeout=300)
            assert final.returncode == 0, err.decode()
            assert b"PREVIOUS_SHARDS can be removed" in out
            assert killed  # the runs before were cut short, in the middle of moving
        finally:
            stop.set()
            for thread in writers:
                thread.join(60)
    assert not errors, errors

    for session_id in session_ids:
        where = stored(session_id)
        assert list(where) == [shard_for(session_id, ALL)], session_id
        [content] = where.values()
        items = [data["content"] for data, _ in content["messages"]]
        assert items[:3] == [f"{session_id} {i}" for i in range(3)]
        # Each write once; a writer's own writes in the order it made them.
        assert Counter(items[3:]) == Counter(written[session_id]), session_id
        for number in range(3):
            mine = [item for item in items[3:] if item.startswith(f"w{number}-")]
            assert mine == [item for item in written[session_id] if item in mine]
        assert len(content["usage"]) == 2
    assert usage_totals() == usage_before
    assert sum(len(items) for items in written.values()) > 0


def usage_totals() -> tuple[int, int]:
    """(usage rows, total tokens) over every shard."""
    rows = tokens = 0
    for alias in ALL:
        usage = AgentUsage.objects.using(alias)
        rows += usage.count()
        tokens += sum(usage.values_list("total_tokens", flat=True))
    return rows, tokens
