"""Full-text search's index: the backfill, the query plans, migrations, shards, the admin."""

from __future__ import annotations

import io
import re
from typing import Any

import pytest
from django.core.management import call_command
from django.db import connection, connections
from django.test import Client, override_settings
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from openai_django_sessions import DjangoSession, search
from openai_django_sessions import _backfill as backfill
from openai_django_sessions import _fulltext as fulltext
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.settings import SHARDS, with_driver_cursor

pytestmark = pytest.mark.django_db(transaction=True)

SHARDED = override_settings(
    DATABASE_ROUTERS=["openai_django_sessions.routers.ShardRouter"],
    OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": SHARDS}),
)
CHANGELIST = reverse("admin:openai_django_sessions_agentsession_changelist")
TABLE = AgentMessage._meta.db_table


def user_says(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_sessions", *args, stdout=out)
    return out.getvalue()


def forget_texts() -> None:
    """Make every message look stored before migration 0009."""
    AgentMessage.objects.update(text=None)


@pytest.fixture
def alice(django_user_model: Any) -> Any:
    return django_user_model.objects.create_user("alice")


# -- the backfill ---------------------------------------------------------------------------


def test_index_text_fills_rows_stored_before_the_migration(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items(
        [user_says(f"lisbon {n}") for n in range(5)] + [{"type": "reasoning", "id": "r"}]
    )
    forget_texts()
    assert AgentSession.objects.search(alice, "lisbon") == []

    output = run("index-text", "--batch-size", "2")

    assert AgentMessage.objects.filter(text__isnull=True).count() == 0
    assert [s.session_id for s in AgentSession.objects.search(alice, "lisbon")] == ["s"]
    assert "default: 2 of 6 message(s) filled." in output
    assert "default: 6 of 6 message(s) filled." in output
    assert "Filled the search text of 6 message(s)." in output
    assert AgentMessage.objects.order_by("pk").last().text == ""  # type: ignore[union-attr]
    # Nothing left: a second run fills nothing.
    assert "Filled the search text of 0 message(s)." in run("index-text")


def test_an_interrupted_index_text_resumes_with_the_rows_still_empty(
    alice: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says(f"word{n} lisbon") for n in range(7)])
    forget_texts()
    calls = 0

    def failing(item: Any) -> str:
        nonlocal calls
        calls += 1
        if calls == 5:  # in the third batch of two
            raise KeyboardInterrupt
        return search.message_text(item)

    monkeypatch.setattr(backfill, "message_text", failing)
    with pytest.raises(KeyboardInterrupt):
        run("index-text", "--batch-size", "2")
    filled = AgentMessage.objects.filter(text__isnull=False).order_by("pk")
    assert [m.text for m in filled] == [f"word{n} lisbon" for n in range(4)]  # two batches
    assert [s.session_id for s in AgentSession.objects.search(alice, "word1")] == ["s"]
    assert AgentSession.objects.search(alice, "word5") == []

    monkeypatch.undo()
    output = run("index-text", "--batch-size", "2")
    assert "Filled the search text of 3 message(s)." in output
    assert AgentMessage.objects.filter(text__isnull=True).count() == 0
    assert [s.session_id for s in AgentSession.objects.search(alice, "word6")] == ["s"]


def test_index_text_refuses_an_unknown_database() -> None:
    from django.core.management.base import CommandError

    with pytest.raises(CommandError, match="Unknown database alias 'nowhere'"):
        run("index-text", "--database", "nowhere")


@pytest.mark.vendor("postgresql")
def test_index_text_rebuilds_the_postgresql_index_when_the_configuration_changed(
    alice: Any, settings: Any
) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says("she runs every morning")])
    assert fulltext.index_config(connection, TABLE) == "simple"
    # "simple" does not stem: "running" is not "runs".
    assert AgentSession.objects.search(alice, "running") == []

    settings.OPENAI_DJANGO_SESSIONS = with_driver_cursor({"SEARCH_CONFIG": "english"})
    try:
        # Until the rebuild, the query is parsed with "english" ("run") and compared with
        # the vectors "simple" made ("runs"): not found.
        assert AgentSession.objects.search(alice, "running") == []
        output = run("index-text")
        assert "rebuilt with the text search configuration 'english' (it had 'simple')" in output
        assert fulltext.index_config(connection, TABLE) == "english"
        assert [s.session_id for s in AgentSession.objects.search(alice, "running")] == ["s"]
        assert "rebuilt" not in run("index-text")  # in step now
    finally:
        settings.OPENAI_DJANGO_SESSIONS = with_driver_cursor({})
        run("index-text")
    assert fulltext.index_config(connection, TABLE) == "simple"


# -- the query plans ------------------------------------------------------------------------


def plan_of(sql: str, *, verbose: bool = False) -> str:
    prefix = {
        "postgresql": "EXPLAIN (VERBOSE)" if verbose else "EXPLAIN",
        "sqlite": "EXPLAIN QUERY PLAN",
        "mysql": "EXPLAIN",
    }
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":  # tiny tables: make any usable index win
            cursor.execute("SET enable_seqscan = off")
        try:
            cursor.execute(f"{prefix[connection.vendor]} {sql}")
            return "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())
        finally:
            if connection.vendor == "postgresql":
                cursor.execute("RESET enable_seqscan")


@pytest.mark.parametrize("scoped", [True, False], ids=["owner", "all"])
def test_a_search_reads_the_full_text_index(alice: Any, scoped: bool) -> None:
    for n in range(30):
        DjangoSession(f"s{n}", owner=alice)._add_items([user_says(f"message number{n} here")])
    with CaptureQueriesContext(connection) as queries:
        if scoped:
            AgentSession.objects.search(alice, "number7")
        else:
            AgentSession.objects.search_all("number7")
    plan = plan_of(queries[-1]["sql"])

    if connection.vendor == "postgresql":
        # One owner's few conversations: the planner may as well read their messages
        # by the (session_id, id) index; everyone's: the text index.
        indexes = [f"{TABLE}_text_idx"] + (["agent_msg_session_id_idx"] if scoped else [])
        assert any(index in plan for index in indexes), plan
        assert "Seq Scan" not in plan, plan
        # Matched and ranked on the stored vector: no message's text parsed again.
        verbose = plan_of(queries[-1]["sql"], verbose=True)
        assert "search_vector @@" in verbose, verbose
        assert "ts_rank(m.search_vector" in verbose, verbose
        assert "to_tsvector" not in verbose, verbose
    elif connection.vendor == "sqlite":
        assert re.search(rf"SCAN {TABLE}_fts VIRTUAL TABLE INDEX", plan), plan
    else:
        assert re.search(rf"fulltext .*{TABLE}_text_idx", plan), plan


# -- MariaDB's word limits ------------------------------------------------------------------


@pytest.mark.vendor("mysql")
def test_words_innodb_does_not_index_are_left_out_of_the_query(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says("the ox is in Lisbon")])
    # "the", "is", "in" are stop words, "ox" is shorter than innodb_ft_min_token_size:
    # required, they would match nothing; left out, the other words decide.
    assert [s.session_id for s in AgentSession.objects.search(alice, "the ox in Lisbon")] == ["s"]
    assert fulltext.searchable("default", ["the", "ox", "lisbon"]) == ["lisbon"]
    # A query of such words only finds nothing.
    assert AgentSession.objects.search(alice, "the ox") == []


@pytest.mark.vendor("postgresql", "sqlite")
def test_short_and_common_words_are_searched_where_the_index_holds_them(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says("the ox is in Lisbon")])
    assert [s.session_id for s in AgentSession.objects.search(alice, "the ox")] == ["s"]


# -- migrations -----------------------------------------------------------------------------


def test_migrating_back_drops_the_index_and_forward_builds_it_again(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says("lisbon")])
    call_command("migrate", "openai_django_sessions", "0008", verbosity=0)
    try:
        columns = [
            c.name
            for c in connection.introspection.get_table_description(connection.cursor(), TABLE)
        ]
        assert "text" not in columns
        assert fulltext.VECTOR_COLUMN not in columns  # PostgreSQL's, generated from text
        assert not set(connection.introspection.table_names()) & {f"{TABLE}_fts"}
    finally:
        call_command("migrate", "openai_django_sessions", verbosity=0)
    # The rows come back without text; the backfill makes them searchable again.
    assert AgentSession.objects.search(alice, "lisbon") == []
    run("index-text")
    assert [s.session_id for s in AgentSession.objects.search(alice, "lisbon")] == ["s"]


# -- the admin ------------------------------------------------------------------------------


def test_the_admins_search_finds_conversations_by_what_was_said(admin_client: Client) -> None:
    DjangoSession("trip-1")._add_items([user_says("We should see Lisbon")])
    DjangoSession("lisbon-id")._add_items([user_says("nothing")])
    DjangoSession("other")._add_items([user_says("Porto")])

    response = admin_client.get(CHANGELIST, {"q": "lisbon"})
    listed = sorted(s.session_id for s in response.context["cl"].result_list)
    assert listed == ["lisbon-id", "trip-1"]
    # Syntax in the term is a plain word there too; an overlong term searches ids only.
    assert admin_client.get(CHANGELIST, {"q": '"lisbon* -('}).status_code == 200
    assert admin_client.get(CHANGELIST, {"q": "x" * 2000}).status_code == 200


def test_the_changelist_reads_a_page_that_holds_every_match_with_a_limit(
    admin_client: Client,
) -> None:
    # Unsliced, PostgreSQL costs the per-row counts for every row it guesses the
    # search matches, and JIT-compiles that plan: 0.7 s for a rare word.
    for n in range(3):
        DjangoSession(f"trip-{n}")._add_items([user_says("We should see Lisbon")])
    DjangoSession("other")._add_items([user_says("Porto")])

    with CaptureQueriesContext(connection) as queries:
        response = admin_client.get(CHANGELIST, {"q": "lisbon"})

    listed = sorted(s.session_id for s in response.context["cl"].result_list)
    assert listed == ["trip-0", "trip-1", "trip-2"]
    page = [q["sql"] for q in queries if "message_count" in q["sql"]]
    assert len(page) == 1, page
    assert re.search(r"LIMIT \d+\s*$", page[0]), page[0]


# -- shards ---------------------------------------------------------------------------------


@pytest.mark.vendor("postgresql", "sqlite")
@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
@SHARDED
def test_search_covers_every_shard_best_first(alice: Any, django_user_model: Any) -> None:
    bob = django_user_model.objects.create_user("bob")
    session_ids = [f"chat-{n}" for n in range(9)]
    for n, session_id in enumerate(session_ids):
        DjangoSession(session_id, owner=alice)._add_items([user_says("lisbon " * (n + 1))])
        DjangoSession(f"bob-{session_id}", owner=bob)._add_items([user_says("lisbon")])
    homes = {
        alias
        for alias in SHARDS
        if AgentSession.objects.using(alias).filter(owner_id=alice.pk).exists()
    }
    assert len(homes) > 1  # they did spread

    found = search.search(alice, "lisbon")

    assert sorted(s.session_id for s in found) == session_ids
    assert [s.search_rank for s in found] == sorted((s.search_rank for s in found), reverse=True)
    assert found[0].session_id == "chat-8"  # the most mentions
    assert [s.session_id for s in search.search(alice, "lisbon", limit=3)] == [
        s.session_id for s in found[:3]
    ]
    for alias in SHARDS:
        with CaptureQueriesContext(connections[alias]) as queries:
            AgentSession.objects.using(alias).search(alice, "lisbon")
        assert len(queries) == 1


@pytest.mark.vendor("sqlite")
def test_index_text_rebuilds_sqlites_index_when_a_trigger_is_missing(alice: Any) -> None:
    # As after a migration that rebuilt the messages table (SQLite drops its triggers).
    DjangoSession("s", owner=alice)._add_items([user_says("lisbon")])
    with connection.cursor() as cursor:
        cursor.execute(f'DROP TRIGGER "{TABLE}_fts_ai"')
    DjangoSession("t", owner=alice)._add_items([user_says("lisbon again")])
    assert [s.session_id for s in AgentSession.objects.search(alice, "lisbon")] == ["s"]

    assert "default: the search index was incomplete; rebuilt." in run("index-text")
    assert sorted(s.session_id for s in AgentSession.objects.search(alice, "lisbon")) == ["s", "t"]
    assert "rebuilt" not in run("index-text")
    DjangoSession("u", owner=alice)._add_items([user_says("lisbon thrice")])  # triggers back
    assert len(AgentSession.objects.search(alice, "lisbon")) == 3
