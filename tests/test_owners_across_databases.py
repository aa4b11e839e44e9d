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
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management import call_command
from django.db import DatabaseError, IntegrityError, connections, transaction
from django.db.models.signals import pre_delete
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
