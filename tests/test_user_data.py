"""A user's data: ``agent_sessions export --owner`` and ``erase --owner``, on every shard."""

from __future__ import annotations

import io
import json
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.core.management.base import CommandError
from django.test import override_settings

from openai_django_sessions import DjangoSession, maintenance, signals
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from tests.settings import SHARDS, with_driver_cursor


def run(*args: str) -> str:
    out = io.StringIO()
    call_command("agent_sessions", *args, stdout=out)
    return out.getvalue()


def converse(session_id: str, owner: Any, using: str | None = None) -> None:
    """A stored conversation of ``owner`` with one usage row."""
    session = DjangoSession(session_id, owner=owner, using=using)
    async_to_sync(session.add_items)([{"role": "user", "content": f"hello from {session_id}"}])
    store = session._storage(write=True)
    row = AgentSession.objects.using(store.alias).get(session_id=session_id)
    AgentUsage.objects.using(store.alias).create(session=row, total_tokens=7)


def users(*names: str, on: list[str]) -> list[Any]:
    """Users ``names`` on every alias of ``on``, with the same primary key everywhere."""
    model = get_user_model()
    made = []
    for number, name in enumerate(names, start=100):
        for alias in on:
            user = model._default_manager.db_manager(alias).create_user(name, id=number)
        made.append(user)
    return made


def sessions_on(aliases: list[str]) -> set[str]:
    return {
        session_id
        for alias in aliases
        for session_id in AgentSession.objects.using(alias).values_list("session_id", flat=True)
    }


@pytest.mark.django_db(transaction=True)
def test_export_owner_writes_that_users_sessions_only() -> None:
    alice, bob = users("alice", "bob", on=["default"])
    converse("alice-1", alice)
    converse("alice-2", alice)
    converse("bob-1", bob)
    async_to_sync(DjangoSession("nobody").add_items)([{"role": "user", "content": "hi"}])

    lines = [json.loads(line) for line in run("export", "--owner", "alice").splitlines()]

    assert [(line["session_id"], line["owner"]) for line in lines] == [
        ("alice-1", "alice"),
        ("alice-2", "alice"),
    ]
    assert all(len(line["usage"]) == 1 for line in lines)


@pytest.mark.django_db
def test_export_owner_refuses_an_unknown_user_and_named_sessions_beside_it() -> None:
    users("alice", on=["default"])

    with pytest.raises(CommandError, match="No user 'mallory' in database 'default'"):
        run("export", "--owner", "mallory")
    with pytest.raises(CommandError, match="Name sessions or pass --owner, not both"):
        run("export", "some-id", "--owner", "alice")


@pytest.mark.django_db(transaction=True)
def test_erase_owner_deletes_that_users_sessions_with_messages_and_usage_as_clear_does() -> None:
    alice, bob = users("alice", "bob", on=["default"])
    for session_id in ("alice-1", "alice-2"):
        converse(session_id, alice)
    converse("bob-1", bob)
    cleared: list[str] = []

    def receiver(sender: Any, session_id: str, **kwargs: Any) -> None:
        cleared.append(session_id)

    signals.session_cleared.connect(receiver)
    try:
        output = run("erase", "--owner", "alice", "--noinput")
    finally:
        signals.session_cleared.disconnect(receiver)

    assert output.strip() == "Deleted 2 session(s) and 2 message(s) of 'alice'."
    assert sorted(cleared) == ["alice-1", "alice-2"]
    assert list(AgentSession.objects.values_list("session_id", flat=True)) == ["bob-1"]
    assert AgentMessage.objects.count() == 1 and AgentUsage.objects.count() == 1
    assert get_user_model().objects.filter(username="alice").exists()  # the user stays


@pytest.mark.django_db
def test_erase_requires_an_owner_that_exists_and_deletes_nothing_otherwise() -> None:
    alice, _ = users("alice", "bob", on=["default"])
    converse("alice-1", alice)

    with pytest.raises(CommandError, match="No user 'mallory' in database 'default'"):
        run("erase", "--owner", "mallory", "--noinput")
    with pytest.raises(CommandError, match="--owner"):
        run("erase")
    assert AgentSession.objects.count() == 1


class Terminal(io.StringIO):
    """Standard input that is a terminal on which the user types ``answer``."""

    def __init__(self, answer: str) -> None:
        super().__init__(answer + "\n")

    def isatty(self) -> bool:
        return True


def alice_with_two_sessions() -> Any:
    alice, bob = users("alice", "bob", on=["default"])
    converse("alice-1", alice)
    converse("alice-2", alice)
    converse("bob-1", bob)
    return alice


@pytest.mark.django_db(transaction=True)
def test_erase_dry_run_counts_that_users_sessions_and_deletes_nothing() -> None:
    alice_with_two_sessions()

    output = run("erase", "--owner", "alice", "--dry-run")

    assert output.strip() == "Would delete 2 session(s) and 2 message(s) of 'alice'."
    assert AgentSession.objects.count() == 3 and AgentUsage.objects.count() == 3


@pytest.mark.django_db(transaction=True)
@pytest.mark.parametrize(("answer", "left"), [("yes", ["bob-1"]), ("no", None), ("y", None)])
def test_erase_on_a_terminal_asks_and_deletes_only_on_yes(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str], answer: str, left: Any
) -> None:
    alice_with_two_sessions()
    monkeypatch.setattr("sys.stdin", Terminal(answer))

    output = run("erase", "--owner", "alice")

    assert "This deletes 2 session(s) and 2 message(s) of 'alice'" in capsys.readouterr().out
    remaining = sorted(AgentSession.objects.values_list("session_id", flat=True))
    if left is None:
        assert output.strip() == "Erase cancelled."
        assert remaining == ["alice-1", "alice-2", "bob-1"]
    else:
        assert output.strip() == "Deleted 2 session(s) and 2 message(s) of 'alice'."
        assert remaining == left


@pytest.mark.django_db(transaction=True)
def test_erase_without_a_terminal_refuses_unless_noinput_and_deletes_nothing(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    alice_with_two_sessions()
    monkeypatch.setattr("sys.stdin", io.StringIO("yes\n"))  # piped: not a terminal

    with pytest.raises(CommandError, match="pass --noinput to erase without asking"):
        run("erase", "--owner", "alice")
    assert AgentSession.objects.count() == 3

    assert run("erase", "--owner", "alice", "--no-input").startswith("Deleted 2 session(s)")
    assert AgentSession.objects.count() == 1


SHARDED = override_settings(
    DATABASE_ROUTERS=["openai_django_sessions.routers.ShardRouter"],
    OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": SHARDS}),
)


@pytest.mark.vendor("sqlite", "postgresql")
@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
@SHARDED
def test_export_and_erase_owner_cover_every_shard() -> None:
    # Users replicated on every shard, with the same keys, so the owner key holds there.
    alice, bob = users("alice", "bob", on=["default", *SHARDS])
    mine = [f"alice-{n}" for n in range(12)]
    for session_id in mine:
        converse(session_id, alice)
    converse("bob-1", bob)
    holding = {a for a in SHARDS if AgentSession.objects.using(a).filter(owner=alice.pk).exists()}
    assert len(holding) > 1  # spread over several shards

    exported = {
        json.loads(line)["session_id"] for line in run("export", "--owner", "alice").splitlines()
    }
    erased = maintenance.erase_owner("alice")

    assert exported == set(mine)
    assert (erased.sessions, erased.messages) == (12, 12)
    assert sessions_on(SHARDS) == {"bob-1"}
    assert sum(AgentUsage.objects.using(a).count() for a in SHARDS) == 1
