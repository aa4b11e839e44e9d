"""``DjangoSession``: the Agents SDK's session protocol on Django's ORM."""

from __future__ import annotations

import asyncio
import dataclasses
from collections.abc import Awaitable, Callable
from functools import partial
from typing import Any, TypeVar

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, resolve_session_limit
from asgiref.sync import sync_to_async
from django.db import connections, router, transaction
from django.dispatch import Signal
from django.utils import timezone

from . import conf, signals, statements, tables, transactions
from .items import check_items

T = TypeVar("T")


async def _finish[T](awaitable: Awaitable[T]) -> T:
    """Await a write to its end even if the caller is cancelled meanwhile.

    The write runs in a worker thread that cancellation cannot stop; waiting for
    it means that once ``CancelledError`` reaches the caller, the write has
    committed or rolled back, never still in flight.
    """
    task = asyncio.ensure_future(awaitable)
    cancelled = False
    while not task.done():
        try:
            await asyncio.wait({task})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not task.cancelled():
            task.exception()  # retrieved, so asyncio does not log it as lost
        raise asyncio.CancelledError
    return task.result()


def _check_session_id(session_id: object) -> str:
    if not isinstance(session_id, str) or not session_id or len(session_id) > 255:
        raise ValueError(
            f"session_id must be a non-empty str of at most 255 characters, got {session_id!r:.80}"
        )
    return session_id


def _coerce_settings(value: SessionSettings | dict[str, Any] | None) -> SessionSettings:
    if value is None:
        return SessionSettings()
    if isinstance(value, SessionSettings):
        return value
    if isinstance(value, dict):
        # SessionSettings ignores unknown keys: a typo would silently drop a limit.
        unknown = set(value) - {field.name for field in dataclasses.fields(SessionSettings)}
        if unknown:
            raise TypeError(f"session_settings has unknown keys: {', '.join(sorted(unknown))}")
        return SessionSettings(**value)
    raise TypeError(
        f"session_settings must be a SessionSettings, a dict or None, not {type(value).__name__}"
    )


class DjangoSession(SessionABC):
    """Conversation history for one ``session_id``, stored through Django's ORM.

    Construction is cheap and does no I/O, so a session can be built per request.
    Every method is one hop to a worker thread (Django's ``sync_to_async``, so
    each request context keeps its own connection) running one transaction.

    Args:
        session_id: the conversation's key, a non-empty str of at most 255 characters.
        sessions_table, messages_table: table names; ``None`` uses the names from
            ``OPENAI_DJANGO_SESSIONS`` (``agent_sessions`` / ``agent_messages``),
            which are the migrated tables. Must be plain SQL identifiers.
        create_tables: create the tables on first use if missing (development only;
            use ``migrate`` in production).
        session_settings: the SDK's ``SessionSettings`` (or a dict of its fields);
            its ``limit`` applies when ``get_items`` is called without one.
        using: a database alias; default ``OPENAI_DJANGO_SESSIONS["DATABASE"]``,
            else Django's database routers.

    Raises ``ValueError`` for an invalid ``session_id``, table name or alias.
    """

    session_settings: SessionSettings | None

    def __init__(
        self,
        session_id: str,
        *,
        sessions_table: str | None = None,
        messages_table: str | None = None,
        create_tables: bool = False,
        session_settings: SessionSettings | dict[str, Any] | None = None,
        using: str | None = None,
    ) -> None:
        self.session_id = _check_session_id(session_id)
        self.session_settings = _coerce_settings(session_settings)
        if using is not None and using not in connections:
            raise ValueError(f"using={using!r} is not a database alias in DATABASES")
        self.using = using
        self.create_tables = create_tables
        self.session_model, self.message_model = tables.models_for(sessions_table, messages_table)

    @classmethod
    def from_settings(cls, session_id: str, **kwargs: Any) -> DjangoSession:
        """Same as ``DjangoSession(session_id, **kwargs)``: the seed's name for it."""
        return cls(session_id, **kwargs)

    def __repr__(self) -> str:
        return f"<DjangoSession {self.session_id!r} on {self.session_model._meta.db_table}>"

    # -- the SDK's Session protocol ------------------------------------------

    async def get_items(self, limit: int | None = None) -> list[TResponseInputItem]:
        """The conversation history, oldest first.

        ``limit=None`` falls back to ``session_settings.limit``; if that is ``None``
        too, every item is returned, else the ``limit`` most recent ones (in
        chronological order). Items come back in the order they were added.
        """
        limit = resolve_session_limit(limit, self.session_settings)
        if limit is not None and (isinstance(limit, bool) or not isinstance(limit, int)):
            raise TypeError(f"limit must be an int or None, not {type(limit).__name__}")
        if limit is not None and limit < 0:
            raise ValueError(f"limit must not be negative, got {limit}")
        return await sync_to_async(self._get_items)(limit)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` to the history, all or nothing.

        Creates the session row on first write and bumps ``updated_at``. ``[]``
        writes nothing. Raises ``TypeError``/``ValueError`` before writing if an
        item is not a JSON object (see ``items.check_items``).
        """
        if not items and isinstance(items, (list, tuple)):
            return
        await _finish(sync_to_async(self._add_items)(items))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the most recent item, or ``None`` if there is none.

        Concurrent callers on one session each get a different item.
        """
        return await _finish(sync_to_async(self._pop_item)())

    async def clear_session(self) -> None:
        """Delete every item of this session and its session row."""
        await _finish(sync_to_async(self._clear_session)())

    # -- the work, run in a worker thread ---------------------------------------

    def _alias(self, *, write: bool) -> str:
        if self.using:
            return self.using
        configured = conf.database()
        if configured:
            return str(configured)
        route = router.db_for_write if write else router.db_for_read
        return route(self.session_model)

    def _prepare(self, *, write: bool) -> str:
        alias = self._alias(write=write)
        if self.create_tables:
            tables.ensure_tables(alias, (self.session_model, self.message_model))
        return alias

    def _get_items(self, limit: int | None) -> list[TResponseInputItem]:
        alias = self._prepare(write=False)
        if limit == 0:
            return []
        return transactions.run(
            alias,
            lambda: statements.history(
                alias, self.session_model, self.message_model, self.session_id, limit
            ),
            atomic=False,
        )

    def _add_items(self, items: list[TResponseInputItem]) -> None:
        alias = self._prepare(write=True)
        checked = check_items(items, vendor=connections[alias].vendor)
        if not checked:
            return

        def write() -> None:
            session_pk = self._upsert_session(alias)
            # mypy sees the abstract base, which has no foreign key; every concrete
            # message model (migrated or built by ``tables``) adds ``session``.
            messages = [
                self.message_model(session_id=session_pk, data=item)  # type: ignore[misc]
                for item in checked
            ]
            self.message_model._default_manager.using(alias).bulk_create(messages)
            self._on_commit(alias, signals.session_items_added, items=checked)

        transactions.run(alias, write)

    def _pop_item(self) -> TResponseInputItem | None:
        alias = self._prepare(write=True)

        def pop() -> TResponseInputItem | None:
            if not self._lock_session(alias):
                return None
            found, item = self._delete_newest(alias)
            if found:
                self._on_commit(alias, signals.session_item_popped, item=item)
            return item

        return transactions.run(alias, pop)

    def _clear_session(self) -> None:
        alias = self._prepare(write=True)

        def clear() -> None:
            if not self._lock_session(alias):
                return
            rows = self.session_model._default_manager.using(alias)
            rows.filter(session_id=self.session_id).delete()
            self._on_commit(alias, signals.session_cleared)

        transactions.run(alias, clear)

    def _delete_newest(self, alias: str) -> tuple[bool, Any]:
        """Remove the newest message; ``(found, item)``. Needs the session lock held."""
        if statements.can_delete_returning(alias):
            return statements.delete_newest(
                alias, self.session_model, self.message_model, self.session_id
            )
        rows = statements.messages_of(
            self.session_model, self.message_model, alias, self.session_id
        )
        newest = rows.order_by("-id").values_list("pk", "data").first()
        if newest is None:
            return False, None
        self.message_model._default_manager.using(alias).filter(pk=newest[0]).delete()
        return True, newest[1]

    # Every write starts with one of these two statements on purpose: they take
    # the session row's lock (SQLite's write lock), so writers to one session
    # serialize there instead of deadlocking later, and a pop that waited for
    # another sees the rows that one left.

    def _lock_session(self, alias: str) -> bool:
        """Bump ``updated_at`` of an existing session row; False if there is none."""
        rows = self.session_model._default_manager.using(alias).filter(session_id=self.session_id)
        return bool(rows.update(updated_at=timezone.now()))

    def _upsert_session(self, alias: str) -> int:
        """Create the session row or bump its ``updated_at``; return its primary key."""
        manager = self.session_model._default_manager.using(alias)
        row = self.session_model(session_id=self.session_id)
        # MySQL's ON DUPLICATE KEY UPDATE takes no conflict target.
        target = connections[alias].features.supports_update_conflicts_with_target
        manager.bulk_create(
            [row],
            update_conflicts=True,
            unique_fields=["session_id"] if target else None,
            update_fields=["updated_at"],
        )
        if row.pk is None:  # backends that cannot return ids from an upsert
            row.pk = manager.filter(session_id=self.session_id).values_list("pk", flat=True).get()
        return int(row.pk)

    def _on_commit(self, alias: str, signal: Signal, **kwargs: Any) -> None:
        if signal.has_listeners(DjangoSession):
            send: Callable[[], object] = partial(
                signal.send_robust,
                sender=DjangoSession,
                session_id=self.session_id,
                using=alias,
                **kwargs,
            )
            transaction.on_commit(send, using=alias)
