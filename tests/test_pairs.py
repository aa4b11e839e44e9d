"""Pairs: every feature run against every other where they meet, on every database.

Each feature is an aspect, on or off. ``CASES`` is a pairwise covering set of
aspect combinations (every value of every aspect beside every value of every
other, at least once), built greedily at import. A case runs a short
conversation through the real ``Runner`` with ``ScriptedModel`` and checks the
invariants any combination must keep: the history reads back in order, the
rows a signal receiver saw replay to the rows stored, owner isolation holds,
the usage stored equals the usage the runs reported, export then import
restores the rows, prune removes everything of the case's sessions and nothing
else.

Pairs that cannot be combined are left out of the matrix (``APART``) and have a
test of their own below: the documented refusal, or a strict ``xfail`` naming
the problem. Needs openai-agents 0.22 or newer (``agents.testing``); the oldest
leg leaves this module out.
"""

from __future__ import annotations

import contextlib
import io
import itertools
import zlib
from collections.abc import Iterator
from dataclasses import dataclass, field
from datetime import timedelta
from functools import partial
from pathlib import Path
from typing import Any

import pytest
from agents import Agent, Runner
from agents.extensions.memory import EncryptedSession
from agents.testing import ScriptedModel, assistant_message
from asgiref.sync import sync_to_async
from django.core.exceptions import PermissionDenied
from django.core.management import CommandError, call_command
from django.db import connections
from django.test import override_settings
from django.utils import timezone

from openai_django_sessions import DjangoSession, signals
from openai_django_sessions import _routing as routing
from openai_django_sessions.compaction import CompactionSession
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from openai_django_sessions.routers import shard_for
from openai_django_sessions.usage import UsageTotals
from tests.settings import SHARDS, with_driver_cursor
from tests.test_compaction import FakeClient, always
from tests.test_runner import texts
from tests.test_usage import reported, spent

ASPECTS = (
    "owner",
    "fork",
    "compaction",
    "usage",
    "skip_duplicates",
    "custom_tables",
    "shards",
    "encrypted",
    "export_import",
    "prune",
    "signals",
)
# Pairs never combined in one case: each has a test of its own below.
APART = {
    frozenset({"owner", "custom_tables"}),  # refused: custom tables have no owner column
    frozenset({"owner", "shards"}),  # the users on default: a test of its own below
    frozenset({"custom_tables", "export_import"}),  # the command sees migrated tables only
    frozenset({"custom_tables", "prune"}),  # likewise
    frozenset({"encrypted", "skip_duplicates"}),  # envelopes never repeat (xfail below)
}
KEY = "k" * 32
SOURCE = "pair-source"
ROUTERS = ["openai_django_sessions.routers.ShardRouter"]
SHARDED = override_settings(
    DATABASE_ROUTERS=ROUTERS, OPENAI_DJANGO_SESSIONS=with_driver_cursor({"SHARDS": SHARDS})
)


def aspects_here() -> tuple[str, ...]:
    """The aspects this database can run: the shard aliases exist on SQLite and PostgreSQL."""
    return tuple(a for a in ASPECTS if a != "shards" or "shard1" in connections)


def pairwise(aspects: tuple[str, ...], apart: set[frozenset[str]]) -> list[frozenset[str]]:
    """A small set of aspect combinations covering every pair of (aspect, on/off) values.

    Greedy: among the combinations that hold no pair of ``apart`` both on, take
    the one covering most pairs not covered yet (the first such, so the result
    is the same on every run) until every coverable pair is covered.
    """
    allowed = [
        frozenset(a for a, on in zip(aspects, bits, strict=True) if on)
        for bits in itertools.product((False, True), repeat=len(aspects))
    ]
    allowed = [c for c in allowed if not any(pair <= c for pair in apart)]
    needed = {p for c in allowed for p in value_pairs(c, aspects)}
    cases: list[frozenset[str]] = []
    while needed:
        best = max(allowed, key=lambda c: len(needed & value_pairs(c, aspects)))
        cases.append(best)
        needed -= value_pairs(best, aspects)
    return cases


def value_pairs(case: frozenset[str], aspects: tuple[str, ...]) -> set[tuple[Any, ...]]:
    values = [(a, a in case) for a in aspects]
    return {(x, y) for x, y in itertools.combinations(values, 2)}


CASES = pairwise(aspects_here(), APART)


def case_id(case: frozenset[str]) -> str:
    return "+".join(a for a in ASPECTS if a in case) or "plain"


def params(cases: list[frozenset[str]]) -> list[Any]:
    """``cases`` for ``parametrize``, each with the databases it writes (fewer to flush)."""
    return [
        pytest.param(
            case,
            id=case_id(case),
            marks=pytest.mark.django_db(
                transaction=True, databases=["default", *SHARDS] if "shards" in case else None
            ),
        )
        for case in cases
    ]


def route(case: frozenset[str], settings: Any) -> None:
    """With the shards aspect, ``ShardRouter`` over the three shard aliases (for this test)."""
    if "shards" in case:
        settings.DATABASE_ROUTERS = ROUTERS
        settings.OPENAI_DJANGO_SESSIONS = with_driver_cursor({"SHARDS": SHARDS})


def tag(case: frozenset[str]) -> str:
    """A short name for ``case``, the same in every run."""
    return f"{zlib.crc32(case_id(case).encode()):08x}"


# -- a case: sessions built from its aspects, a conversation run on them ---------------


@dataclass
class World:
    """What a case ran: its sessions (as stored and as run), and what each run reported."""

    case: frozenset[str]
    inner: dict[str, DjangoSession] = field(default_factory=dict)
    outer: dict[str, Any] = field(default_factory=dict)
    expected: dict[str, list[str]] = field(default_factory=dict)
    results: dict[str, list[Any]] = field(default_factory=dict)
    base: dict[str, list[Any]] = field(default_factory=dict)  # a fork's items when made


def make_session(
    world: World, session_id: str, owner: Any, base: DjangoSession | None = None
) -> Any:
    """The ``DjangoSession`` (or ``base``, a fork already made) and the stack the runs use."""
    case = world.case
    if base is not None:
        inner = base
    elif "custom_tables" in case:
        inner = DjangoSession(
            session_id,
            # Tables of the case's own: rows in tables this app did not migrate
            # outlive a test (flushes and rollbacks know only migrated models).
            sessions_table=f"pair_{tag(case)}_sessions",
            messages_table=f"pair_{tag(case)}_messages",
            create_tables=True,
            skip_duplicate_items="skip_duplicates" in case,
        )
    else:
        inner = DjangoSession(
            session_id,
            owner=owner if "owner" in case else None,
            skip_duplicate_items="skip_duplicates" in case,
        )
    outer: Any = inner
    if "encrypted" in case:
        # The SDK derives the key from the id it is given: a fork's envelopes were
        # sealed under its source's id, so a fork is read under that id (docs: forks).
        sealed_under = SOURCE if base else session_id
        outer = EncryptedSession(sealed_under, underlying_session=outer, encryption_key=KEY)
    if "compaction" in case:
        outer = CompactionSession(
            session_id=session_id,
            underlying_session=outer,
            client=FakeClient(),
            should_trigger_compaction=always,
        )
    world.inner[session_id], world.outer[session_id] = inner, outer
    world.results.setdefault(session_id, [])
    return outer


async def run(
    world: World, session_id: str, question: str, answer: str, *, session: Any = None
) -> None:
    """One turn on ``session_id`` (through its stack, or a plain ``session(session_id)``)."""
    # Distinct per run, so that sums cannot match by accident; off: the model's default.
    runs = sum(map(len, world.results.values()))
    usage = spent(runs + 1) if "usage" in world.case else None
    model = ScriptedModel([[assistant_message(answer)]], default_usage=usage)
    stack = world.outer[session_id] if session is None else session(session_id)
    result = await Runner.run(Agent(name=answer, model=model), question, session=stack)
    world.results.setdefault(session_id, []).append(result)


def fork_id_for(case: frozenset[str]) -> str:
    """The fork's id: with shards, one placed on another shard than its source's."""
    for n in itertools.count():
        fork_id = f"pair-fork-{n}"
        if "shards" not in case or shard_for(fork_id, SHARDS) != shard_for(SOURCE, SHARDS):
            return fork_id
    raise AssertionError("unreachable")


async def play(case: frozenset[str], owner: Any) -> World:
    """Run the case's conversation: two turns, a second agent, a fork and a turn on it."""
    world = World(case)
    source = SOURCE
    make_session(world, source, owner)
    await run(world, source, "question 1", "answer 1")
    await run(world, source, "question 2", "answer 2")
    world.expected[source] = ["question 1", "answer 1", "question 2", "answer 2"]
    if "skip_duplicates" in case:
        # A second agent answers the same user message: it is stored once.
        await run(world, source, "question 2", "second opinion")
        world.expected[source].append("second opinion")
    if "fork" in case:
        fork_id = fork_id_for(case)
        fork = await world.inner[source].afork(fork_id, keep=2)
        world.base[fork_id] = await fork.get_items()
        # The fork holds the source's first two rows as stored (envelopes included).
        assert world.base[fork_id] == (await world.inner[source].get_items())[:2]
        make_session(world, fork_id, owner, base=fork)
        await run(world, fork_id, "question 3", "answer 3")
        world.expected[fork_id] = [*world.expected[source][:2], "question 3", "answer 3"]
    return world


SIGNALS = ("session_items_added", "session_item_popped", "session_cleared", "session_compacted")


@contextlib.contextmanager
def listening(on: bool) -> Iterator[list[tuple[str, dict[str, Any]]]]:
    """Every signal this app sends meanwhile, in order, as (name, arguments); none if not ``on``.

    Off, no receiver is connected: the writes take their path without listeners.
    """
    seen: list[tuple[str, dict[str, Any]]] = []

    def receiver_for(name: str) -> Any:
        return lambda **kwargs: seen.append((name, kwargs))

    receivers = {name: receiver_for(name) for name in SIGNALS} if on else {}
    for name, receiver in receivers.items():
        getattr(signals, name).connect(receiver, weak=False)
    try:
        yield seen
    finally:
        for name, receiver in receivers.items():
            getattr(signals, name).disconnect(receiver)


# -- the invariants -------------------------------------------------------------------


async def check_history(world: World) -> None:
    """Each session reads back what its runs stored, in order; compaction leaves a summary."""
    for session_id, outer in world.outer.items():
        stored = texts(await outer.get_items())
        if "compaction" in world.case:
            # Every run compacts the whole history into its summary (one per run).
            assert stored == [f"summary {len(world.results[session_id])}"], session_id
        else:
            assert stored == world.expected[session_id], session_id


async def check_signals(world: World, seen: list[tuple[str, dict[str, Any]]]) -> None:
    """Replaying what receivers got gives each session's stored rows: one signal per write."""
    for session_id, inner in world.inner.items():
        history = list(world.base.get(session_id, []))
        for name, kwargs in seen:
            if kwargs["session_id"] != session_id:
                continue
            assert kwargs["using"] == await alias_of(inner), name
            if name == "session_items_added":
                history += kwargs["items"]
            else:
                assert name == "session_compacted", name
                removed = kwargs["removed"]
                assert history[len(history) - len(removed) :] == removed
                history = history[: len(history) - len(removed)] + kwargs["items"]
        assert history == await inner.get_items(), session_id


async def alias_of(session: DjangoSession) -> str:
    return await sync_to_async(lambda: session._storage(write=False).alias)()


async def check_usage(world: World) -> None:
    """The usage stored per session equals the sum the runs on it reported."""
    for session_id, inner in world.inner.items():
        if "custom_tables" in world.case:  # documented: custom tables record no usage
            assert await inner.aget_usage() == UsageTotals()
        else:
            assert await inner.aget_usage() == reported(*world.results[session_id]), session_id


async def check_owner(world: World, owner: Any, other: Any) -> None:
    """The owner lists exactly the case's sessions; another user reads none of them."""
    await DjangoSession("pair-others", owner=other).add_items([{"role": "user", "content": "x"}])
    mine = AgentSession.objects.owned_by(owner).values_list("session_id", flat=True)
    assert sorted([s async for s in mine]) == sorted(world.inner)
    for session_id in world.inner:
        with pytest.raises(PermissionDenied):
            await DjangoSession(session_id, owner=other).get_items()


def rows(session_ids: list[str], *, all_fields: bool = False) -> dict[str, Any]:
    """Every row stored for ``session_ids`` on every alias: all fields but keys.

    Without ``all_fields``, usage rows are left out. Fork provenance is a position
    (``forked_from_position``), which means the same in any database.
    """
    found: dict[str, Any] = {}
    for alias in aliases():
        for row in AgentSession.objects.using(alias).filter(session_id__in=session_ids):
            values = {
                f.attname: getattr(row, f.attname)
                for f in AgentSession._meta.concrete_fields
                if f.attname != "id"
            }
            messages = AgentMessage.objects.using(alias).filter(session=row).order_by("id")
            values["messages"] = list(messages.values_list("data", "created_at"))
            if all_fields:
                usage = AgentUsage.objects.using(alias).filter(session=row).order_by("id")
                values["usage"] = list(usage.values(*usage_fields()))
            found[row.session_id] = (alias, values)
    return found


def usage_fields() -> list[str]:
    return [f.attname for f in AgentUsage._meta.concrete_fields if f.attname not in ("id",)][1:]


def aliases() -> list[str]:
    """Where sessions live now: the shards when ``ShardRouter`` is on, else ``default``."""
    return routing.databases(AgentSession)


def export_import(session_ids: list[str], tmp_path: Path) -> None:
    path = tmp_path / "export.jsonl"
    call_command("agent_sessions", "export", *session_ids, output=str(path), stdout=io.StringIO())
    call_command("agent_sessions", "import", str(path), replace=True, stdout=io.StringIO())


def check_prune(world: World) -> None:
    """Prune removes the case's sessions with their messages and usage, and nothing else."""
    bystander = rows(["pair-bystander"], all_fields=True)
    [(_, values)] = bystander.values()
    assert values["messages"] and values["usage"]  # made by the test, active
    long_ago = timezone.now() - timedelta(days=3)
    for alias in aliases():
        AgentSession.objects.using(alias).filter(session_id__in=list(world.inner)).update(
            updated_at=long_ago
        )
    call_command("agent_sessions", "prune", "--inactive-for", "1d", stdout=io.StringIO())
    for alias in aliases():
        ids = list(world.inner)
        assert not AgentSession.objects.using(alias).filter(session_id__in=ids).exists()
        assert not AgentMessage.objects.using(alias).filter(session__session_id__in=ids).exists()
        assert not AgentUsage.objects.using(alias).filter(session__session_id__in=ids).exists()
    assert rows(["pair-bystander"], all_fields=True) == bystander


# -- the matrix -----------------------------------------------------------------------


def test_the_cases_cover_every_pair_of_aspects_not_kept_apart():
    aspects = aspects_here()
    covered = set().union(*(value_pairs(c, aspects) for c in CASES))
    for (a, x), (b, y) in itertools.combinations([(a, v) for a in aspects for v in (0, 1)], 2):
        if a == b or (x and y and frozenset({a, b}) in APART):
            continue
        assert ((a, bool(x)), (b, bool(y))) in covered, (a, x, b, y)
    assert len(CASES) <= 12  # pairwise, not every combination


@pytest.mark.parametrize("case", params(CASES))
async def test_features_that_meet_keep_every_invariant(case, django_user_model, tmp_path, settings):
    route(case, settings)
    alice = await django_user_model.objects.acreate(username="alice")
    bob = await django_user_model.objects.acreate(username="bob")
    with listening("signals" in case) as received:
        world = await play(case, alice)
        await check_history(world)
        await check_usage(world)
        if "signals" in case:
            await check_signals(world, received)
        if "owner" in case:
            await check_owner(world, alice, bob)
        sent = len(received)
        if "export_import" in case:
            before = await sync_to_async(rows)(list(world.inner))
            await sync_to_async(export_import)(list(world.inner), tmp_path)
            assert await sync_to_async(rows)(list(world.inner)) == before
            await check_history(world)
        assert received[sent:] == []  # importing sends no signals
        if "prune" in case:
            await run(world, "pair-bystander", "stay", "staying", session=DjangoSession)
            sent = len(received)
            await sync_to_async(check_prune)(world)
            # Pruning deletes as clear_session does: session_cleared once per session.
            pruned = sorted((name, kwargs["session_id"]) for name, kwargs in received[sent:])
            expected = [("session_cleared", sid) for sid in sorted(world.inner)]
            assert pruned == (expected if "signals" in case else [])


EXPORTS = [case for case in CASES if "export_import" in case]


@pytest.mark.parametrize("case", params(EXPORTS))
async def test_export_then_import_keeps_usage_rows_and_fork_provenance(
    case, django_user_model, tmp_path, settings
):
    route(case, settings)
    world = await play(case, await django_user_model.objects.acreate(username="alice"))
    before = await sync_to_async(partial(rows, all_fields=True))(list(world.inner))
    assert all(values["usage"] for _, values in before.values())  # every run recorded some

    await sync_to_async(export_import)(list(world.inner), tmp_path)

    assert await sync_to_async(partial(rows, all_fields=True))(list(world.inner)) == before


# -- pairs kept apart: each refused as documented, or a known problem -------------------


@pytest.mark.django_db(transaction=True, databases=["default", *SHARDS])
@pytest.mark.vendor("sqlite", "postgresql")
@SHARDED
async def test_owners_on_shards_store_and_isolate_their_conversations(django_user_model):
    alice = await django_user_model.objects.acreate(username="alice")
    session = DjangoSession("pair-owned", owner=alice)
    model = ScriptedModel([[assistant_message("answer")]])

    await Runner.run(Agent(name="a", model=model), "question", session=session)

    assert texts(await session.get_items()) == ["question", "answer"]
    bob = await django_user_model.objects.acreate(username="bob")
    with pytest.raises(PermissionDenied):
        await DjangoSession("pair-owned", owner=bob).get_items()


@pytest.mark.django_db
def test_an_owner_on_custom_tables_is_refused_before_anything_is_written(django_user_model):
    alice = django_user_model.objects.create_user("alice")
    with pytest.raises(
        ValueError, match="owner, title, metadata and expires_after need the migrated tables"
    ):
        DjangoSession(
            "pair-custom",
            sessions_table="pair_sessions",
            messages_table="pair_messages",
            owner=alice,
        )


@pytest.mark.django_db(transaction=True)
async def test_the_command_sees_migrated_tables_only_and_leaves_custom_tables_alone():
    custom = DjangoSession(
        "pair-custom",
        sessions_table="pair_sessions",
        messages_table="pair_messages",
        create_tables=True,
    )
    await custom.add_items([{"role": "user", "content": "kept"}])
    model = custom.session_model
    await model.objects.filter(session_id="pair-custom").aupdate(
        updated_at=timezone.now() - timedelta(days=3)
    )

    with pytest.raises(CommandError, match="pair-custom"):
        await sync_to_async(call_command)("agent_sessions", "export", "pair-custom")
    await sync_to_async(call_command)(
        "agent_sessions", "prune", "--inactive-for", "1d", stdout=io.StringIO()
    )

    assert texts(await custom.get_items()) == ["kept"]


@pytest.mark.django_db(transaction=True)
async def test_skip_duplicate_items_under_encryption_is_refused_before_anything_is_written():
    inner = DjangoSession("pair-sealed", skip_duplicate_items=True)
    session = EncryptedSession("pair-sealed", underlying_session=inner, encryption_key=KEY)
    model = ScriptedModel([[assistant_message("first opinion")]])

    with pytest.raises(ValueError, match=r"skip_duplicate_items.*EncryptedSession"):
        await Runner.run(Agent(name="first", model=model), "question", session=session)

    assert await inner.get_items() == []
    assert not await AgentSession.objects.filter(session_id="pair-sealed").aexists()


@pytest.mark.django_db(transaction=True)
async def test_a_fork_of_an_encrypted_conversation_opens_under_its_sources_id_only():
    source = EncryptedSession(
        "pair-sealed", underlying_session=DjangoSession("pair-sealed"), encryption_key=KEY
    )
    await source.add_items([{"role": "user", "content": "secret"}])

    copy = await source.underlying_session.afork("pair-sealed-b")

    assert (
        await EncryptedSession(
            "pair-sealed-b", underlying_session=copy, encryption_key=KEY
        ).get_items()
        == []
    )
    fork = EncryptedSession("pair-sealed", underlying_session=copy, encryption_key=KEY)
    assert texts(await fork.get_items()) == ["secret"]
