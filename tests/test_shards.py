"""routers.ShardRouter: each conversation on one of several databases.

The placement tests need no database (they run on every leg, with the SQLite
aliases there too); the end-to-end ones use three PostgreSQL databases as shards.
"""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from collections import Counter
from datetime import timedelta

import pytest
from agents import Agent, Runner
from asgiref.sync import sync_to_async
from django.core.management import call_command
from django.db import connections, router
from django.db.migrations.executor import MigrationExecutor
from django.test import override_settings
from django.utils import timezone

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession
from openai_django_sessions.routers import ShardRouter, shard_for
from tests.settings import SHARDS, with_driver_cursor

SHARDED = override_settings(
    DATABASE_ROUTERS=["openai_django_sessions.routers.ShardRouter"],
    OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": SHARDS}),
)
IDS = [f"user-{n}-chat" for n in range(1000)]


def test_a_thousand_sessions_spread_within_15_percent_of_even():
    counts = Counter(shard_for(session_id, SHARDS) for session_id in IDS)

    even = len(IDS) / len(SHARDS)
    assert set(counts) == set(SHARDS)
    assert all(abs(count - even) <= 0.15 * even for count in counts.values()), counts


def test_adding_a_fourth_shard_moves_only_sessions_to_it_and_at_most_30_percent():
    before = {session_id: shard_for(session_id, SHARDS) for session_id in IDS}
    after = {session_id: shard_for(session_id, [*SHARDS, "shard4"]) for session_id in IDS}

    moved = [session_id for session_id in IDS if before[session_id] != after[session_id]]
    assert len(moved) <= 0.30 * len(IDS), len(moved)
    assert moved  # the new shard takes its share
    assert {after[session_id] for session_id in moved} == {"shard4"}


def test_placement_is_the_same_in_every_process_and_ignores_the_order_of_the_shards():
    reordered = list(reversed(SHARDS))
    here = [shard_for(session_id, SHARDS) for session_id in IDS[:200]]
    assert here == [shard_for(session_id, reordered) for session_id in IDS[:200]]
    # Another interpreter, with another str hash seed, places them the same way.
    script = (
        "import json, sys; from openai_django_sessions.routers import shard_for; "
        "ids, shards = json.load(sys.stdin); print(json.dumps([shard_for(i, shards) for i in ids]))"
    )
    elsewhere = subprocess.run(
        [sys.executable, "-c", script],
        input=json.dumps([IDS[:200], SHARDS]),
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONHASHSEED": "12345"},
    )
    assert json.loads(elsewhere.stdout) == here


@SHARDED
def test_the_router_sends_each_session_to_its_shard_and_migrations_only_to_shards():
    placed = ShardRouter()
    for session_id in IDS[:50]:
        home = shard_for(session_id, SHARDS)
        assert router.db_for_write(AgentMessage, session_id=session_id) == home
        assert router.db_for_read(AgentSession, session_id=session_id) == home
        assert placed.db_for_read(AgentSession, session_id=session_id) == home
    for alias in dict.fromkeys([*connections, *SHARDS]):
        allowed = router.allow_migrate_model(alias, AgentSession)
        assert allowed is (alias in SHARDS), alias
        assert router.allow_migrate(alias, "auth")  # other apps are left alone
    assert placed.db_for_write(AgentSession) == SHARDS[0]  # no session meant
    assert placed.session_databases() == SHARDS


@pytest.mark.vendor("sqlite")
@pytest.mark.django_db(transaction=True, databases="__all__")
@SHARDED
def test_migrate_writes_this_apps_tables_on_shards_and_nowhere_else():
    for alias in connections:
        loader = MigrationExecutor(connections[alias]).loader
        plan = [
            (loader.get_migration("openai_django_sessions", name), False)
            for name in ("0001_initial", "0002_agentmessage_session_id_index")
        ]
        sql = "\n".join(loader.collect_sql(plan))
        assert ("CREATE TABLE" in sql) is (alias in SHARDS), (alias, sql[:200])


# -- on PostgreSQL, three databases as shards --------------------------------------


def where(session_id: str) -> list[str]:
    """The shards holding rows of ``session_id`` (its session row or any message)."""
    return [
        alias
        for alias in SHARDS
        if AgentSession.objects.using(alias).filter(session_id=session_id).exists()
        or AgentMessage.objects.using(alias).filter(session__session_id=session_id).exists()
    ]


@pytest.mark.vendor("postgresql")
@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
@SHARDED
async def test_runner_conversations_live_each_on_exactly_its_shard():
    from agents.testing import ScriptedModel, assistant_message

    session_ids = [f"chat-{n}" for n in range(12)]
    for session_id in session_ids:
        model = ScriptedModel([[assistant_message("hello")], [assistant_message("again")]])
        agent = Agent(name="assistant", model=model)
        await Runner.run(agent, "hi", session=DjangoSession(session_id))
        result = await Runner.run(agent, "once more", session=DjangoSession(session_id))
        assert result.final_output == "again"
        assert len(model.calls[1].input) == 3  # the first turn came back from its shard

    homes = {session_id: await sync_to_async(where)(session_id) for session_id in session_ids}
    assert homes == {s: [shard_for(s, SHARDS)] for s in session_ids}
    assert len({home[0] for home in homes.values()}) > 1  # they did spread
    session = DjangoSession(session_ids[0])
    assert len(await session.get_items()) == 4
    assert await session.pop_item() is not None
    await session.clear_session()
    assert await sync_to_async(where)(session_ids[0]) == []


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_sessions", *args, stdout=out)
    return out.getvalue()


@pytest.mark.vendor("postgresql")
@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
@SHARDED
def test_commands_cover_every_shard_and_import_places_each_session_on_its_shard(tmp_path):
    session_ids = [f"cmd-{n}" for n in range(9)]
    for n, session_id in enumerate(session_ids):
        DjangoSession(session_id)._add_items([{"role": "user", "content": f"hi {n}"}])
    assert {shard_for(s, SHARDS) for s in session_ids} == set(SHARDS)

    listed = json.loads(run("list", "--json"))
    assert sorted(row["session_id"] for row in listed) == sorted(session_ids)
    one = json.loads(run("list", "--json", "--database", SHARDS[0]))
    assert {row["session_id"] for row in one} == {
        s for s in session_ids if shard_for(s, SHARDS) == SHARDS[0]
    }
    assert "hi 4" in run("show", "cmd-4")

    exported = tmp_path / "all.jsonl"
    run("export", "--output", str(exported))
    assert len(exported.read_text().splitlines()) == len(session_ids)
    two = [json.loads(line) for line in run("export", "cmd-1", "cmd-2").splitlines()]
    assert sorted(record["session_id"] for record in two) == ["cmd-1", "cmd-2"]

    for alias in SHARDS:
        AgentSession.objects.using(alias).all().delete()
    run("import", str(exported))
    for session_id in session_ids:
        assert where(session_id) == [shard_for(session_id, SHARDS)]

    old = timezone.now() - timedelta(days=10)
    for alias in SHARDS:
        AgentSession.objects.using(alias).update(updated_at=old)
    assert "Deleted 9 session(s) and 9 message(s)." in run("prune", "--inactive-for", "1d")
    assert all(not AgentSession.objects.using(alias).exists() for alias in SHARDS)


@pytest.mark.vendor("postgresql")
@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
@SHARDED
def test_admin_shows_one_shard_at_a_time_says_which_and_switches(admin_client):
    from django.urls import reverse

    session_ids: dict[str, str] = {}  # a session on each shard
    for n in range(200):
        session_ids.setdefault(shard_for(f"admin-{n}-x", SHARDS), f"admin-{n}-x")
    for alias, session_id in session_ids.items():
        DjangoSession(session_id)._add_items([{"role": "user", "content": f"on {alias}"}])
    changelist = reverse("admin:openai_django_sessions_agentsession_changelist")

    first = admin_client.get(changelist).content.decode()
    assert f"Database: {SHARDS[0]}" in first
    assert session_ids[SHARDS[0]] in first and session_ids[SHARDS[1]] not in first
    for alias in SHARDS:
        assert f"?database={alias}" in first  # the filter offers every shard

    second = admin_client.get(changelist, {"database": SHARDS[1]}).content.decode()
    assert f"Database: {SHARDS[1]}" in second
    assert session_ids[SHARDS[1]] in second and session_ids[SHARDS[0]] not in second

    session = AgentSession.objects.using(SHARDS[2]).get(session_id=session_ids[SHARDS[2]])
    change = reverse("admin:openai_django_sessions_agentsession_change", args=[session.pk])
    page = admin_client.get(change, {"_changelist_filters": f"database={SHARDS[2]}"})
    assert page.status_code == 200
    assert f"on {SHARDS[2]}" in page.content.decode()


def test_aliases_longer_than_64_bytes_each_get_sessions_in_any_order():
    prefix = "sessions_on_a_database_server_with_a_rather_long_name_" + "x" * 20
    shards = [f"{prefix}_1", f"{prefix}_2", f"{prefix}_3"]  # the same first 64 bytes
    here = [shard_for(session_id, shards) for session_id in IDS]

    assert set(here) == set(shards)
    assert here == [shard_for(session_id, list(reversed(shards))) for session_id in IDS]
    assert here == [shard_for(session_id, shards[1:] + shards[:1]) for session_id in IDS]


def test_sessions_on_short_aliases_stay_where_earlier_releases_placed_them():
    import hashlib

    def placed_before(session_id: str, shards: list[str]) -> str:
        key = session_id.encode()
        return max(
            shards, key=lambda a: hashlib.blake2b(key, digest_size=8, key=a.encode()).digest()
        )

    for shards in (SHARDS, [*SHARDS, "shard4"], ["a" * 64, "b", "sessions_é"]):
        assert [shard_for(s, shards) for s in IDS] == [placed_before(s, shards) for s in IDS]
