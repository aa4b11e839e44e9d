"""Moving sessions to their shard after ``SHARDS`` changed, while traffic flows.

With ``PREVIOUS_SHARDS`` (the list before the change) set beside ``SHARDS``:

- ``DjangoSession`` moves a session it finds on its previous shard before its
  first operation there (``settle``), so that no request ever reads a moved
  session as empty or writes half of it on the new shard;
- ``manage.py agent_sessions rebalance`` moves the rest (``rebalance``).

``move`` is the one way a session moves, used by both. It locks the session's
row on the shard it is on, copies the row, its messages (in order) and its
usage rows to the shard it belongs on in one committed transaction there, and
only then deletes it where it was, in the source's transaction. Every request
for the session checks the source first and waits on that lock, so a write
during a move lands after it, on the new shard. A crash (or a failure) at any
point leaves the session whole: before the copy's commit it is on the source
only; after it, on both, identical, and the next ``move`` (the next request, or
a rerun of the command) sees the copy, checks it holds the source's history and
deletes the source. Message and usage ids differ on the new shard; order,
timestamps and every other column are kept.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from django.db.models import Model

from . import _conf as conf
from . import _routing as routing
from . import _storage as storage
from . import _transactions as transactions
from .models import AgentMessage, AgentSession, AgentUsage
from .routers import shard_for


class MoveConflict(RuntimeError):
    """The session is on two shards with histories that differ: not a move's leftover."""


def settle(
    session_model: type[Model], message_model: type[Model], session_id: str, alias: str
) -> None:
    """Move ``session_id`` to ``alias`` (its shard) if it is still on its previous shard.

    One indexed query on the previous shard when the session's shard changed;
    nothing at all otherwise, or without ``PREVIOUS_SHARDS``.
    """
    previous = conf.previous_shards()
    if not previous or conf.database() or alias not in conf.shards():
        return
    source = shard_for(session_id, previous)
    if source == alias:
        return
    manager = session_model._default_manager.using(source)
    if manager.filter(session_id=session_id).exists():
        move(session_model, message_model, session_id, source=source, target=alias)


def move(
    session_model: type[Model],
    message_model: type[Model],
    session_id: str,
    *,
    source: str,
    target: str,
) -> bool:
    """Move ``session_id`` from ``source`` to ``target``; False if it is not on ``source``.

    Raises ``MoveConflict`` (changing nothing) if ``target`` holds the session
    with a history that does not start with the source's.
    """
    src = storage.storage_for(session_model, message_model, source)
    dst = storage.storage_for(session_model, message_model, target)

    def out_of_source() -> bool:
        row = _locked_row(src, session_id)
        if row is None:
            return False  # moved meanwhile, or never here
        copy = _Copy.read(src, row)
        transactions.run(target, lambda: copy.write(dst))
        src.delete_session(session_id=session_id)
        return True

    return transactions.run(source, out_of_source)


def _locked_row(store: storage.Storage, session_id: str) -> dict[str, Any] | None:
    """The session's row (every column, ``pk`` too), locked until the transaction ends."""
    rows = store.session_model._default_manager.using(store.alias).select_for_update()
    names = [f.attname for f in store.session_columns]
    return rows.filter(session_id=session_id).values("pk", *names).first()


@dataclass
class _Copy:
    """One session as stored: its row, its messages in order, its usage rows."""

    row: dict[str, Any]
    messages: list[dict[str, Any]]
    usage: list[dict[str, Any]]

    @classmethod
    def read(cls, store: storage.Storage, row: dict[str, Any]) -> _Copy:
        pk = row.pop("pk")
        fk = store.session_fk.attname
        names = [f.attname for f in store.message_columns if f.attname != fk]
        messages = store.message_model._default_manager.using(store.alias)
        usage: list[dict[str, Any]] = []
        if store.usage_model is not None:
            columns = [f.attname for f in store.usage_columns if f.attname != "session_id"]
            usage = list(
                AgentUsage.objects.using(store.alias)
                .filter(session_id=pk)
                .order_by("pk")
                .values(*columns)
            )
        return cls(
            row=row,
            messages=list(messages.filter(**{fk: pk}).order_by("pk").values(*names)),
            usage=usage,
        )

    def write(self, store: storage.Storage) -> None:
        session_id = self.row["session_id"]
        if _locked_row(store, session_id) is not None:
            # A move that crashed after this commit: the copy is here already.
            stored = store.all_items(session_id=session_id)
            if stored[: len(self.messages)] != [m["data"] for m in self.messages]:
                raise MoveConflict(
                    f"Session {session_id!r} is on {store.alias!r} and on its previous "
                    "shard with different histories; it was written on both. Export both, "
                    "merge them by hand and delete one."
                )
            return
        pk = store.insert_session(values=self.row)
        store.insert_messages(session_pk=pk, rows=self.messages)
        for values in self.usage:
            store.insert_usage(session_pk=pk, values=values)


@dataclass(frozen=True)
class Progress:
    """Where ``rebalance`` is on ``alias``: sessions looked at, and moved (or to move)."""

    alias: str
    seen: int
    moved: int


def misplaced(alias: str, *, batch_size: int = 500) -> Iterator[tuple[int, list[str]]]:
    """Batches of sessions on ``alias``: how many, and the ids of those whose shard is
    another one. Keyset pagination by primary key, so moves meanwhile skip nothing."""
    shards = conf.shards()
    rows = AgentSession.objects.using(alias).order_by("pk")
    after = 0
    while True:
        batch = list(rows.filter(pk__gt=after).values_list("pk", "session_id")[:batch_size])
        if not batch:
            return
        after = batch[-1][0]
        yield len(batch), [sid for _, sid in batch if shard_for(sid, shards) != alias]


def rebalance(
    *,
    dry_run: bool = False,
    batch_size: int = 500,
    report: Callable[[Progress], None] = lambda progress: None,
) -> int:
    """Move every session that is not on its shard to it; return how many (would) move.

    Looks at every alias of ``SHARDS`` and ``PREVIOUS_SHARDS``. Safe to run while
    requests are served and to run again after a crash: each session moves on
    its own (see ``move``), and a rerun finds what is left. ``report`` is called
    after each batch. Sessions of custom tables (``sessions_table=``) are not
    looked at: they move on first use.
    """
    shards = conf.shards()
    total = 0
    for alias in routing.databases(AgentSession):
        seen = moved = 0
        for looked_at, session_ids in misplaced(alias, batch_size=batch_size):
            for session_id in session_ids:
                target = shard_for(session_id, shards)
                if dry_run or move(
                    AgentSession, AgentMessage, session_id, source=alias, target=target
                ):
                    moved += 1
            seen += looked_at
            report(Progress(alias=alias, seen=seen, moved=moved))
        total += moved
    return total
