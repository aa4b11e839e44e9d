"""Owners of conversations stored on other databases than the users: shards.

On one database (every vendor) deleting a user deletes their conversations in
the user's transaction and the owner keeps its database constraint, as before.
With ``ShardRouter`` (three SQLite or PostgreSQL databases as shards, the users
on ``default``) owners work on every shard and ``user.delete()`` reaches every
shard.
"""

from __future__ import annotations

import contextlib
import io
import json
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models.signals import pre_delete
from django.test.utils import CaptureQueriesContext
from django.urls import reverse

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from openai_django_sessions.routers import shard_for
from tests.settings import SHARDS
from tests.test_shards import SHARDED

ON_SHARDS = [
    pytest.mark.vendor("sqlite", "postgresql"),
    pytest.mark.django_db(transaction=True, databases=["default", *SHARDS]),
    SHARDED,
]


def write(session_id: str, owner: Any, n: int = 2) -> None:
    """``n`` messages and one usage row in ``owner``'s conversation ``session_id``."""
    session = DjangoSession(session_id, owner=owner)
    session._add_items([{"role": "user", "content": f"{session_id} {i}"} for i in range(n)])
    alias = session._storage(write=True).alias
    row = AgentSession.objects.using(alias).get(session_id=session_id)
    AgentUsage.objects.using(alias).create(session=row, total_tokens=10)


def rows(aliases: list[str]) -> dict[str, list[tuple[str, int, int]]]:
    """Per alias: (session id, messages, usage rows) of every stored session."""
    found: dict[str, list[tuple[str, int, int]]] = {}
    for alias in aliases:
        for session in AgentSession.objects.using(alias).order_by("session_id"):
            found.setdefault(alias, []).append(
                (
                    session.session_id,
                    AgentMessage.objects.using(alias).filter(session=session).count(),
                    AgentUsage.objects.using(alias).filter(session=session).count(),
                )
            )
    return found


@contextlib.contextmanager
def no_session_tables_on_default() -> Iterator[None]:
    """``default`` as in a sharded project: the users are there, this app's tables are not."""
    tables = [model._meta.db_table for model in (AgentUsage, AgentMessage, AgentSession)]
    connection = connections["default"]
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        for table in tables:
            cursor.execute(f"ALTER TABLE {quote(table)} RENAME TO {quote(table + '_away')}")
    try:
        yield
    finally:
        with connection.cursor() as cursor:
            for table in tables:
                cursor.execute(f"ALTER TABLE {quote(table + '_away')} RENAME TO {quote(table)}")


def ids_on_every_shard(prefix: str) -> list[str]:
    """One session id per shard."""
    chosen: dict[str, str] = {}
    for n in range(200):
        chosen.setdefault(shard_for(f"{prefix}-{n}", SHARDS), f"{prefix}-{n}")
    return [chosen[alias] for alias in SHARDS]


# -- one database, every vendor ----------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_deleting_a_user_deletes_their_conversations_messages_and_usage_only(alice, bob):
    write("alice-1", alice)
    write("alice-2", alice, n=3)
    write("bob-1", bob)

    alice.delete()

    assert rows(["default"]) == {"default": [("bob-1", 2, 1)]}
    assert AgentMessage.objects.count() == 2 and AgentUsage.objects.count() == 1


@pytest.mark.django_db(transaction=True)
def test_on_one_database_the_owner_keeps_its_database_constraint(alice):
    missing = alice.pk + 1000
    with pytest.raises(IntegrityError), transaction.atomic():
        AgentSession.objects.create(session_id="nobody's", owner_id=missing)
    assert not AgentSession.objects.exists()


@pytest.mark.django_db(transaction=True)
def test_a_user_deletion_that_rolls_back_keeps_their_conversations(alice):
    write("alice-1", alice)
    with pytest.raises(RuntimeError), transaction.atomic():
        alice.delete()
        raise RuntimeError("changed my mind")
    assert rows(["default"]) == {"default": [("alice-1", 2, 1)]}


@pytest.mark.django_db(transaction=True)
def test_the_admin_deletes_a_user_with_their_conversations_and_says_so_first(admin_client, alice):
    write("alice-1", alice)
    url = reverse("admin:auth_user_delete", args=[alice.pk])

    page = admin_client.get(url).content.decode()
    assert "alice-1" in page and "Agent sessions: 1" in page

    assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert not get_user_model().objects.filter(pk=alice.pk).exists()
    assert rows(["default"]) == {}


# -- ShardRouter: the users on default, the conversations on three shards -------------


def _on_shards(test: Any) -> Any:
    for mark in reversed(ON_SHARDS):
        test = mark(test)
    return test


@_on_shards
def test_conversations_with_owners_work_on_every_shard(alice, bob):
    for session_id in ids_on_every_shard("alice"):
        write(session_id, alice)
        assert len(DjangoSession(session_id, owner=alice)._get_items(None)) == 2
        with pytest.raises(PermissionDenied):
            DjangoSession(session_id, owner=bob)._get_items(None)
    listed = {
        alias: list(AgentSession.objects.using(alias).owned_by(alice).values_list("session_id"))
        for alias in SHARDS
    }
    assert all(len(found) == 1 for found in listed.values()), listed


@_on_shards
def test_deleting_a_user_deletes_their_conversations_on_every_shard_in_one_call(alice, bob):
    for session_id in ids_on_every_shard("alice"):
        write(session_id, alice)
    for session_id in ids_on_every_shard("bob"):
        write(session_id, bob)

    with no_session_tables_on_default():
        alice.delete()

    left = rows(SHARDS)
    assert sorted(s for found in left.values() for s, _, _ in found) == sorted(
        ids_on_every_shard("bob")
    )
    assert all(counts == [2, 1] for found in left.values() for _, *counts in found)
    assert AgentMessage.objects.using(SHARDS[0]).filter(session__owner_id=alice.pk).count() == 0


@_on_shards
def test_deleting_users_without_conversations_works_with_shards(django_user_model, alice):
    with no_session_tables_on_default():
        alice.delete()
        django_user_model.objects.create_user("carol")
        django_user_model.objects.all().delete()
    assert not django_user_model.objects.exists()


@_on_shards
def test_a_user_deletion_failing_on_one_shard_keeps_the_user_and_a_rerun_finishes(alice):
    for session_id in ids_on_every_shard("alice"):
        write(session_id, alice)

    def shard_down(sender: Any, instance: Any, using: str, **kwargs: Any) -> None:
        if using == SHARDS[1]:
            raise DatabaseError(f"{using} is down")

    pre_delete.connect(shard_down, sender=AgentSession)
    try:
        with pytest.raises(DatabaseError, match="is down"):
            alice.delete()
    finally:
        pre_delete.disconnect(shard_down, sender=AgentSession)

    # Shards are done in order: the first lost its conversation, the others kept theirs;
    # the user's own transaction rolled back, so the user is there to delete again.
    assert get_user_model().objects.filter(pk=alice.pk).exists()
    assert sorted(rows(SHARDS)) == SHARDS[1:]
    alice.delete()
    assert rows(SHARDS) == {}
    assert not get_user_model().objects.filter(pk=alice.pk).exists()


@_on_shards
def test_the_admin_deletes_a_user_and_lists_their_conversations_on_every_shard(admin_client, alice):
    session_ids = ids_on_every_shard("alice")
    for session_id in session_ids:
        write(session_id, alice)
    url = reverse("admin:auth_user_delete", args=[alice.pk])

    with no_session_tables_on_default():
        page = admin_client.get(url).content.decode()
        assert all(f"{s} ({shard_for(s, SHARDS)})" in page for s in session_ids)
        assert "Agent sessions: 3" in page
        assert admin_client.post(url, {"post": "yes"}).status_code == 302
    assert rows(SHARDS) == {}
    assert not get_user_model().objects.filter(pk=alice.pk).exists()


@_on_shards
def test_a_shard_that_kept_the_owner_constraint_is_E009_until_migrated_again():
    from openai_django_sessions._checks import check_owner_constraints

    def errors() -> list[str]:
        return [e.id for e in check_owner_constraints(databases=SHARDS)]

    assert errors() == []
    quiet = {"verbosity": 0, "stdout": io.StringIO()}
    call_command("migrate", "openai_django_sessions", "0006", database=SHARDS[0], **quiet)
    try:
        # Migrating back put the constraint back: it points at the shard's empty user table.
        assert errors() == ["openai_django_sessions.E009"]
        [error] = check_owner_constraints(databases=SHARDS)
        assert SHARDS[0] in error.msg and "0006 --database" in (error.hint or "")
    finally:
        call_command("migrate", "openai_django_sessions", database=SHARDS[0], **quiet)
    assert errors() == []


# -- ShardRouter: users looked up by name on default, never on the shards ------------------


def command(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_sessions", *args, stdout=out)
    return out.getvalue()


def alice_and_bob_on_every_shard(alice: Any, bob: Any) -> tuple[list[str], list[str]]:
    """Two conversations per shard, alice's and bob's; their ids."""
    mine, theirs = ids_on_every_shard("alice"), ids_on_every_shard("bob")
    for session_id in mine:
        write(session_id, alice)
    for session_id in theirs:
        write(session_id, bob)
    return mine, theirs


@_on_shards
def test_sessions_owned_by_a_username_are_found_on_every_shard(alice, bob):
    mine, _ = alice_and_bob_on_every_shard(alice, bob)

    with no_session_tables_on_default():
        found = {
            alias: list(
                AgentSession.objects.using(alias)
                .owned_by_username("alice")
                .values_list("session_id", flat=True)
            )
            for alias in SHARDS
        }
        nobody = [AgentSession.objects.using(a).owned_by_username("zoe").count() for a in SHARDS]

    assert found == {alias: [session_id] for alias, session_id in zip(SHARDS, mine, strict=True)}
    assert nobody == [0, 0, 0]


@_on_shards
def test_erase_owner_deletes_that_users_conversations_on_every_shard(alice, bob):
    _, theirs = alice_and_bob_on_every_shard(alice, bob)

    with no_session_tables_on_default():
        said = command("erase", "--owner", "alice", "--noinput")

    assert "Deleted 3 session(s) and 6 message(s) of 'alice'." in said
    assert sorted(s for found in rows(SHARDS).values() for s, _, _ in found) == sorted(theirs)


@_on_shards
def test_export_owner_writes_every_shards_conversations_with_the_owners_name(alice, bob):
    mine, _ = alice_and_bob_on_every_shard(alice, bob)

    with no_session_tables_on_default():
        lines = [json.loads(line) for line in command("export", "--owner", "alice").splitlines()]
        everyone = [json.loads(line) for line in command("export").splitlines()]

    assert sorted(line["session_id"] for line in lines) == sorted(mine)
    assert {line["owner"] for line in lines} == {"alice"}
    assert len(everyone) == 6
    assert all(line["owner"] == line["session_id"].split("-")[0] for line in everyone)


@_on_shards
def test_import_gives_conversations_on_shards_their_owners_by_username(alice, bob, tmp_path):
    mine, _ = alice_and_bob_on_every_shard(alice, bob)
    exported = tmp_path / "alice.jsonl"
    exported.write_text(command("export", "--owner", "alice"))
    command("erase", "--owner", "alice", "--noinput")

    with no_session_tables_on_default():
        command("import", str(exported))

    owned = {
        alias: list(
            AgentSession.objects.using(alias)
            .filter(owner_id=alice.pk)
            .values_list("session_id", flat=True)
        )
        for alias in SHARDS
    }
    assert owned == {alias: [session_id] for alias, session_id in zip(SHARDS, mine, strict=True)}


@_on_shards
def test_list_and_show_name_the_owners_of_conversations_on_shards(alice, bob):
    mine, theirs = alice_and_bob_on_every_shard(alice, bob)

    with no_session_tables_on_default():
        listed = json.loads(command("list", "--json"))
        of_alice = command("list", "--owner", "alice")
        shown = command("show", mine[1])

    assert {s["session_id"]: s["owner"] for s in listed} == {
        **dict.fromkeys(mine, "alice"),
        **dict.fromkeys(theirs, "bob"),
    }
    assert all(s in of_alice for s in mine) and not any(s in of_alice for s in theirs)
    assert "3 session(s)." in of_alice
    assert "Owner: alice" in shown


@_on_shards
def test_the_admin_shows_filters_and_searches_owners_of_conversations_on_shards(
    admin_client, alice, bob
):
    mine, _ = alice_and_bob_on_every_shard(alice, bob)
    changelist = reverse("admin:openai_django_sessions_agentsession_changelist")
    shard = SHARDS[1]
    alices = AgentSession.objects.using(shard).get(session_id=mine[1])

    with no_session_tables_on_default():
        page = admin_client.get(changelist, {"database": shard})
        filtered = admin_client.get(changelist, {"database": shard, "owner__id__exact": alice.pk})
        searched = admin_client.get(changelist, {"database": shard, "q": "alic"})
        change = admin_client.get(
            reverse("admin:openai_django_sessions_agentsession_change", args=[alices.pk]),
            {"database": shard},
        )

    html = page.content.decode()
    assert ">alice<" in html and ">bob<" in html
    assert [s.session_id for s in filtered.context["cl"].result_list] == [mine[1]]
    assert [s.session_id for s in searched.context["cl"].result_list] == [mine[1]]
    assert change.status_code == 200
    assert ">alice<" in change.content.decode()


@_on_shards
def test_a_listing_over_shards_reads_its_owners_names_in_one_query(alice, bob):
    alice_and_bob_on_every_shard(alice, bob)
    users_table = get_user_model()._meta.db_table

    with no_session_tables_on_default(), CaptureQueriesContext(connections["default"]) as read:
        listed = json.loads(command("list", "--json"))

    assert len(listed) == 6
    assert len([q for q in read.captured_queries if users_table in q["sql"]]) == 1
