"""``DjangoSession``: the Agents SDK's session protocol on Django's ORM."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from functools import partial
from typing import Any

from agents.items import TResponseInputItem
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, resolve_session_limit
from asgiref.sync import sync_to_async
from django.db import connections
from django.dispatch import Signal

from . import details, routing, signals, storage, tables, transactions
from .completion import run_to_completion
from .items import check_items, check_session_id
from .models import AgentSession
from .owners import owner_key


def _coerce_settings(value: SessionSettings | dict[str, Any] | None) -> SessionSettings:
    if value is None:
        return SessionSettings()
    if isinstance(value, dict):
        # SessionSettings ignores unknown keys: a typo would silently drop a limit.
        unknown = set(value) - {field.name for field in dataclasses.fields(SessionSettings)}
        if unknown:
            raise TypeError(f"session_settings has unknown keys: {', '.join(sorted(unknown))}")
        if isinstance(value.get("limit"), bool):  # SessionSettings would make True 1
            raise TypeError("session_settings limit must be an int or None, not bool")
        value = SessionSettings(**value)
    if not isinstance(value, SessionSettings):
        raise TypeError(
            "session_settings must be a SessionSettings, a dict or None, "
            f"not {type(value).__name__}"
        )
    _check_limit(value.limit, "session_settings limit")
    return value


# The largest LIMIT every backend accepts; a larger limit means every item anyway.
_MAX_LIMIT = 2**63 - 1


def _check_limit(limit: object, what: str) -> int | None:
    """``limit`` if it is ``None`` or a count (``True`` is not one), at most ``_MAX_LIMIT``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"{what} must be an int or None, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"{what} must not be negative, got {limit}")
    return min(limit, _MAX_LIMIT)


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
        owner: a user (of ``AUTH_USER_MODEL``) or its primary key. The row is
            created with this owner, and every method on a row owned by another
            user, or by no one, raises ``PermissionDenied`` having read and
            written nothing. ``None``: no scoping (every conversation).
        title: the conversation's title when its row is created; ``None``: the
            text of its first user message.
        metadata: a dict of JSON values stored when the row is created.

    Raises ``ValueError`` for an invalid ``session_id``, table name, alias, title
    or owner (an ``AnonymousUser`` among them), ``TypeError`` for arguments of
    the wrong type; with ``sessions_table``/``messages_table``, ``owner``,
    ``title`` and ``metadata`` raise ``ValueError`` (those tables lack the columns).
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
        owner: Any = None,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> None:
        self.session_id = check_session_id(session_id)
        self.session_settings = _coerce_settings(session_settings)
        if using is not None and using not in connections:
            raise ValueError(f"using={using!r} is not a database alias in DATABASES")
        self.using = using
        self.create_tables = create_tables
        self.session_model, self.message_model = tables.models_for(sessions_table, messages_table)
        self.owner_id: Any = None if owner is None else owner_key(owner)
        self.title = None if title is None else details.check_title(title)
        self.metadata = None if metadata is None else details.check_metadata(metadata)
        if (owner, title, metadata) != (None, None, None):
            self._require_details()

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
        ``limit`` must be a non-negative ``int`` (not a ``bool``); one beyond
        ``2**63 - 1`` is read as that, which is every item.
        """
        limit = _check_limit(resolve_session_limit(limit, self.session_settings), "limit")
        return await sync_to_async(self._get_items)(limit)

    async def add_items(self, items: list[TResponseInputItem]) -> None:
        """Append ``items`` to the history, all or nothing.

        Creates the session row on first write and bumps ``updated_at``. ``[]``
        writes nothing. Raises ``TypeError``/``ValueError`` before writing if an
        item is not a JSON object (see ``items.check_items``).
        """
        if not items and isinstance(items, (list, tuple)):
            return
        await run_to_completion(partial(self._add_items, items))

    async def pop_item(self) -> TResponseInputItem | None:
        """Remove and return the most recent item, or ``None`` if there is none.

        Concurrent callers on one session each get a different item.
        """
        return await run_to_completion(self._pop_item)

    async def clear_session(self) -> None:
        """Delete every item of this session and its session row."""
        await run_to_completion(self._clear_session)

    # -- the conversation's details ---------------------------------------------

    async def aget_details(self) -> details.SessionDetails | None:
        """The stored row's owner, title, metadata and timestamps; ``None`` before
        the first write. ``PermissionDenied`` if the row is another owner's."""
        self._require_details()
        return await sync_to_async(self._get_details)()

    async def aupdate_details(
        self,
        *,
        title: str | None = None,
        metadata: dict[str, Any] | None = None,
    ) -> details.SessionDetails:
        """Set the title and/or replace the metadata; return the details as stored.

        Creates the row (with this session's owner) if there is none yet.
        ``updated_at``, the last activity, is left as it is. ``TypeError`` /
        ``ValueError`` for bad values before anything is written;
        ``PermissionDenied`` if the row is another owner's.
        """
        self._require_details()
        changes: dict[str, Any] = {}
        if title is not None:
            changes["title"] = details.check_title(title)
        if metadata is not None:
            changes["metadata"] = details.check_metadata(metadata)
        return await run_to_completion(partial(self._update_details, changes))

    def _require_details(self) -> None:
        if self.session_model is not AgentSession:
            raise ValueError(
                "owner, title and metadata need the migrated tables: tables named with "
                "sessions_table=/messages_table= have the columns of 0.1/0.2 only. Name "
                "your tables in OPENAI_DJANGO_SESSIONS (SESSIONS_TABLE, MESSAGES_TABLE) "
                "and run migrate, or leave owner, title and metadata out."
            )

    def _get_details(self) -> details.SessionDetails | None:
        store = self._storage(write=False)
        row = transactions.run(
            store.alias,
            partial(store.session_details, session_id=self.session_id, owner=self.owner_id),
            atomic=False,
        )
        return None if row is None else _details(row)

    def _update_details(self, changes: dict[str, Any]) -> details.SessionDetails:
        store = self._storage(write=True)

        def update() -> details.SessionDetails:
            row = store.session_details(session_id=self.session_id, owner=self.owner_id, lock=True)
            if row is None:
                values = {**self._new_row_values([]), **changes}
                store.upsert_session(session_id=self.session_id, values=values, owner=self.owner_id)
            else:
                store.update_details(session_pk=row["pk"], values=changes)
            stored = store.session_details(session_id=self.session_id, owner=self.owner_id)
            assert stored is not None  # written in this transaction
            return _details(stored)

        return transactions.run(store.alias, update)

    def _new_row_values(self, items: list[Any]) -> dict[str, Any]:
        """What a row created now gets: the title (given or automatic), the metadata."""
        if self.session_model is not AgentSession:
            return {}
        title = details.auto_title(items) if self.title is None else self.title
        return {"title": title, "metadata": self.metadata or {}}

    # -- the work, run in a worker thread ---------------------------------------

    def _storage(self, *, write: bool) -> storage.Storage:
        alias = routing.alias_for(
            self.session_model, write=write, session_id=self.session_id, using=self.using
        )
        if self.create_tables:
            tables.ensure_tables(alias, (self.session_model, self.message_model))
        return storage.storage_for(self.session_model, self.message_model, alias)

    def _get_items(self, limit: int | None) -> list[TResponseInputItem]:
        store = self._storage(write=False)
        if limit == 0 and self.owner_id is None:
            return []
        return transactions.run(
            store.alias,
            partial(store.history, session_id=self.session_id, limit=limit, owner=self.owner_id),
            atomic=False,
        )

    def _add_items(self, items: list[TResponseInputItem]) -> None:
        store = self._storage(write=True)
        checked = check_items(items, vendor=store.vendor)
        if not checked:
            return

        new_row = self._new_row_values(checked)
        # Rows that exist without a title get one from the first user message too.
        untitled = new_row.get("title", "") if self.title is None else ""

        def write() -> None:
            session_pk = store.upsert_session(
                session_id=self.session_id, values=new_row, owner=self.owner_id, untitled=untitled
            )
            store.insert_messages(
                session_pk=session_pk,
                rows=[{"data": item} for item in checked],
                batch_size=checked.batch_size,
            )
            self._on_commit(store.alias, signals.session_items_added, items=checked)

        transactions.run(store.alias, write)

    def _pop_item(self) -> TResponseInputItem | None:
        store = self._storage(write=True)

        def pop() -> TResponseInputItem | None:
            if not store.lock_session(session_id=self.session_id, owner=self.owner_id):
                return None
            found, item = store.pop_newest(session_id=self.session_id)
            if found:
                self._on_commit(store.alias, signals.session_item_popped, item=item)
            return item

        return transactions.run(store.alias, pop)

    def _clear_session(self) -> None:
        store = self._storage(write=True)

        def clear() -> None:
            if not store.lock_session(session_id=self.session_id, owner=self.owner_id):
                return
            store.delete_session(session_id=self.session_id)
            self._on_commit(store.alias, signals.session_cleared)

        transactions.run(store.alias, clear)

    def _on_commit(self, alias: str, signal: Signal, **kwargs: Any) -> None:
        if signal.has_listeners(DjangoSession):
            send: Callable[[], object] = partial(
                signal.send_robust,
                sender=DjangoSession,
                session_id=self.session_id,
                using=alias,
                **kwargs,
            )
            transactions.on_commit(alias, send)


def _details(row: dict[str, Any]) -> details.SessionDetails:
    return details.SessionDetails(**{k: v for k, v in row.items() if k != "pk"})
