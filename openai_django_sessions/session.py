"""``DjangoSession``: the Agents SDK's session protocol on Django's ORM."""

from __future__ import annotations

import collections
import dataclasses
import datetime
import json
from collections.abc import Callable, Sequence
from functools import partial
from typing import TYPE_CHECKING, Any

from agents.items import TResponseInputItem
from agents.memory import session_settings as session_settings_module
from agents.memory.session import SessionABC
from agents.memory.session_settings import SessionSettings, resolve_session_limit
from asgiref.sync import sync_to_async
from django.db import IntegrityError, connections, transaction
from django.dispatch import Signal

from . import _conf as conf
from . import _leases as leases
from . import _rebalance as rebalance
from . import _retention as retention
from . import _routing as routing
from . import _storage as storage
from . import _tables as tables
from . import _transactions as transactions
from . import compaction, details, signals, usage
from ._completion import run_to_completion
from ._owners import owner_key
from .items import check_items, check_session_id
from .models import AgentMessage, AgentSession

if TYPE_CHECKING:
    from agents.run_context import RunContextWrapper

__all__ = ["DjangoSession"]


# The SDK's own check of a settings dict, in the SDKs that have it; for older
# ones (0.8 lacks it) the same check and wording are made here.
_sdk_coerce: Callable[[dict[str, Any]], SessionSettings] | None = getattr(
    session_settings_module, "coerce_session_settings", None
)


def _coerce_settings(value: SessionSettings | dict[str, Any] | None) -> SessionSettings:
    if value is None:
        return SessionSettings()
    if isinstance(value, dict):
        # Before SessionSettings sees it: it would make True 1.
        if isinstance(value.get("limit"), bool):
            raise TypeError("session_settings limit must be an int or None, not bool")
        value = _settings_from_dict(value)
    if not isinstance(value, SessionSettings):
        raise TypeError(
            "session_settings must be a SessionSettings, a dict or None, "
            f"not {type(value).__name__}"
        )
    _check_limit(value.limit, "session_settings limit")
    return value


def _settings_from_dict(value: dict[str, Any]) -> SessionSettings:
    """``SessionSettings(**value)``, refusing unknown keys as the SDK's stores do.

    ``SessionSettings`` alone ignores them: a typo would silently drop a limit.
    """
    if _sdk_coerce is not None:
        return _sdk_coerce(value)
    names = {field.name for field in dataclasses.fields(SessionSettings)}
    unknown = sorted(str(name) for name in value if name not in names)
    if unknown:
        raise TypeError(f"Unknown session settings: {', '.join(unknown)}")
    return SessionSettings(**value)


# The largest LIMIT every backend accepts; a larger limit means every item anyway.
_MAX_LIMIT = 2**63 - 1


class _Keep:
    """The default of ``aupdate_details(expires_after=...)``: leave it as it is
    (``None`` means something: the setting applies again)."""

    def __repr__(self) -> str:
        return "<unchanged>"


_KEEP = _Keep()


def _check_limit(limit: object, what: str) -> int | None:
    """``limit`` if it is ``None`` or a count (``True`` is not one), at most ``_MAX_LIMIT``."""
    if limit is None:
        return None
    if isinstance(limit, bool) or not isinstance(limit, int):
        raise TypeError(f"{what} must be an int or None, not {type(limit).__name__}")
    if limit < 0:
        raise ValueError(f"{what} must not be negative, got {limit}")
    return min(limit, _MAX_LIMIT)


def _fingerprint(item: Any) -> str:
    """Equal for equal JSON items, whatever the order of their keys."""
    return json.dumps(item, sort_keys=True, separators=(",", ":"))


def _refuse_encrypted_duplicates(items: Sequence[Any]) -> None:
    """Refuse the SDK's ``EncryptedSession`` envelopes under ``skip_duplicate_items``.

    Every envelope of one item is sealed afresh (a new nonce), so no two are
    equal and a repeated item would be stored twice, silently: refused instead.
    The keys are those ``agents.extensions.memory.encrypt_session`` writes.
    """
    for item in items:
        if (
            isinstance(item, dict)
            and item.get("__enc__") == 1
            and {"v", "kid", "payload"} <= item.keys()
        ):
            raise ValueError(
                "skip_duplicate_items=True cannot be used under EncryptedSession: every "
                "encrypted envelope differs, so a repeated item would be stored again; "
                "build the DjangoSession without skip_duplicate_items"
            )


class DjangoSession(SessionABC):
    """Conversation history for one ``session_id``, stored through Django's ORM.

    Construction is cheap and does no I/O, so a session can be built per request.
    Every method is one hop to a worker thread (Django's ``sync_to_async``, so
    each request context keeps its own connection) running one transaction.

    Args:
        session_id: the conversation's key, a non-empty str of at most 255 characters.
        sessions_table: the sessions' table name; ``None`` uses the name from
            ``OPENAI_DJANGO_SESSIONS`` (``agent_sessions``), the migrated table.
            Must be a plain SQL identifier.
        messages_table: the messages' table name, likewise (``agent_messages``).
        create_tables: create the tables on first use if missing (development only;
            use ``migrate`` in production).
        session_settings: the SDK's ``SessionSettings`` (or a dict of its fields);
            its ``limit`` applies when ``get_items`` is called without one.
        using: a database alias; default ``OPENAI_DJANGO_SESSIONS["DATABASE"]``,
            else Django's database routers.
        owner: a user (of ``AUTH_USER_MODEL``) or its primary key (a ``str``, an
            ``int`` or a ``uuid.UUID``: see ``owners.owner_key``). The row is
            created with this owner, and every method on a row owned by another
            user, or by no one, raises ``PermissionDenied`` having read and
            written nothing. ``None``: no scoping (every conversation).
        title: the conversation's title when its row is created; ``None``: the
            text of its first user message.
        metadata: a dict of JSON values stored when the row is created.
        skip_duplicate_items: ``add_items`` leaves out any item equal to one this
            instance already stored (as in 0.2): several agents run in turn on one
            user message store it once.
        expires_after: how long the conversation lives after its last write (a
            ``timedelta`` or seconds), stored on the row when it is created;
            ``None``: the row's stored value, else ``EXPIRE_AFTER``. An instance
            checks expiry only when given one or when the setting is set (see
            ``retention``).

    Raises ``ValueError`` for an invalid ``session_id``, table name, alias, title
    or owner (an ``AnonymousUser`` among them), ``TypeError`` for arguments of
    the wrong type (an owner that is a float, a ``Decimal``, bytes); with
    ``sessions_table``/``messages_table``, ``owner``, ``title``, ``metadata`` and
    ``expires_after`` raise ``ValueError`` (those tables lack the columns).
    On MySQL/MariaDB, the first call on a table whose ``session_id`` column
    compares ids ignoring case, accents or trailing spaces (one created by
    0.1/0.2) raises ``exceptions.LooseSessionIds`` naming the command that converts it.

    The four protocol methods accept the SDK's keyword-only ``wrapper`` (its
    ``RunContextWrapper``), so the ``Runner`` hands the run context over; with it,
    ``add_items`` records the run's token usage (see ``usage``).
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
        skip_duplicate_items: bool = False,
        expires_after: datetime.timedelta | float | None = None,
    ) -> None:
        self.session_id = check_session_id(session_id)
        self.session_settings = _coerce_settings(session_settings)
        if using is not None and using not in connections:
            raise ValueError(f"using={using!r} is not a database alias in DATABASES")
        if not isinstance(skip_duplicate_items, bool):
            raise TypeError(
                f"skip_duplicate_items must be a bool, not {type(skip_duplicate_items).__name__}"
            )
        self.using = using
        self.create_tables = create_tables
        self.skip_duplicate_items = skip_duplicate_items
        # Fingerprints of the items this instance stored (skip_duplicate_items).
        self._stored: collections.Counter[str] = collections.Counter()
        self.session_model, self.message_model = tables.models_for(sessions_table, messages_table)
        self.owner_id: Any = None if owner is None else owner_key(owner)
        self.title = None if title is None else details.check_title(title)
        self.metadata = None if metadata is None else details.check_metadata(metadata)
        self.expires_after = retention.check_expires_after(expires_after)
        if (owner, title, metadata, expires_after) != (None, None, None, None):
            self._require_details()

    @classmethod
    def from_settings(cls, session_id: str, **kwargs: Any) -> DjangoSession:
        """Same as ``DjangoSession(session_id, **kwargs)``: the name 0.1 gave it."""
        return cls(session_id, **kwargs)

    def __repr__(self) -> str:
        return f"<DjangoSession {self.session_id!r} on {self.session_model._meta.db_table}>"

    @property
    def _usage_key(self) -> str:
        return f"{self.session_model._meta.db_table}:{self.session_id}"

    # -- the SDK's Session protocol ------------------------------------------

    async def get_items(
        self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> list[TResponseInputItem]:
        """The conversation history, oldest first.

        ``limit=None`` falls back to ``session_settings.limit``; if that is ``None``
        too, every item is returned, else the ``limit`` most recent ones (in
        chronological order). Items come back in the order they were added.
        ``limit`` must be a non-negative ``int`` (not a ``bool``); one beyond
        ``2**63 - 1`` is read as that, which is every item.
        """
        limit = _check_limit(resolve_session_limit(limit, self.session_settings), "limit")
        usage.observe(usage.resolve(wrapper), self._usage_key)
        return await sync_to_async(self._get_items)(limit)

    async def add_items(
        self,
        items: list[TResponseInputItem],
        *,
        wrapper: RunContextWrapper[Any] | None = None,
    ) -> None:
        """Append ``items`` to the history, all or nothing.

        Creates the session row on first write and bumps ``updated_at``. ``[]``
        writes nothing. Raises ``TypeError``/``ValueError`` before writing if an
        item is not a JSON object (see ``items.check_items``). With ``wrapper``,
        the run's usage not recorded yet is recorded in the same transaction.
        """
        if not items and isinstance(items, (list, tuple)):
            return
        recording = usage.pending(usage.resolve(wrapper), self._usage_key)
        await run_to_completion(partial(self._add_items, items, recording))

    async def pop_item(
        self, *, wrapper: RunContextWrapper[Any] | None = None
    ) -> TResponseInputItem | None:
        """Remove and return the most recent item, or ``None`` if there is none.

        Concurrent callers on one session each get a different item.
        """
        return await run_to_completion(self._pop_item)

    async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
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
        expires_after: datetime.timedelta | float | _Keep | None = _KEEP,
    ) -> details.SessionDetails:
        """Set the title, replace the metadata and/or change the conversation's own
        retention; return the details as stored.

        ``expires_after`` (a ``timedelta`` or seconds) counts from the last
        activity, as when given to the constructor; ``None`` removes the
        conversation's own retention, so that ``EXPIRE_AFTER`` applies again.
        Creates the row (with this session's owner) if there is none yet, and
        starts afresh a conversation that has expired, as a write does.
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
        if not isinstance(expires_after, _Keep):
            changes["expires_after"] = retention.check_expires_after(expires_after)
        return await run_to_completion(partial(self._update_details, changes))

    def _require_details(self) -> None:
        if self.session_model is not AgentSession:
            raise ValueError(
                "owner, title, metadata and expires_after need the migrated tables: "
                "tables named with sessions_table=/messages_table= have the columns of "
                "0.1/0.2 only. Name your tables in OPENAI_DJANGO_SESSIONS (SESSIONS_TABLE, "
                "MESSAGES_TABLE) and run migrate, or leave owner, title, metadata and "
                "expires_after out."
            )

    def _get_details(self) -> details.SessionDetails | None:
        store = self._storage(write=False)
        row = transactions.run(
            store.alias,
            partial(store.session_details, session_id=self.session_id, owner=self.owner_id),
            atomic=False,
        )
        return None if row is None else _details(row)

    def _get_usage(self) -> usage.UsageTotals:
        store = self._storage(write=False)
        totals = transactions.run(
            store.alias,
            partial(store.usage_totals, session_id=self.session_id, owner=self.owner_id),
            atomic=False,
        )
        return usage.UsageTotals(**totals)

    def _update_details(self, changes: dict[str, Any]) -> details.SessionDetails:
        store = self._storage(write=True)

        def update() -> details.SessionDetails:
            # A new retention must not revive an expired conversation, even for
            # an instance that checks no expiry on its reads.
            self._purge_if_expired(store, always="expires_after" in changes)
            row = store.session_details(session_id=self.session_id, owner=self.owner_id, lock=True)
            if row is None:
                # A first add_items may create the row after this read: the upsert
                # then keeps that row's values, so the changes are set under its
                # lock all the same.
                values = {**self._new_row_values([]), **changes}
                session_pk = store.upsert_session(
                    session_id=self.session_id, values=values, owner=self.owner_id
                )
            else:
                session_pk = row["pk"]
            store.update_details(session_pk=session_pk, values=changes)
            stored = store.session_details(session_id=self.session_id, owner=self.owner_id)
            assert stored is not None  # written in this transaction
            return _details(stored)

        return transactions.run(store.alias, update)

    def _new_row_values(self, items: list[Any]) -> dict[str, Any]:
        """What a row created now gets: the title (given or automatic), the metadata."""
        if self.session_model is not AgentSession:
            return {}
        title = details.auto_title(items) if self.title is None else self.title
        values: dict[str, Any] = {"title": title, "metadata": self.metadata or {}}
        if self.expires_after is not None:
            values["expires_after"] = self.expires_after
        return values

    # -- retention (see ``retention``) -------------------------------------------

    def _expiry_applies(self) -> bool:
        """Whether this session checks for expiry: it costs a statement when it does."""
        return self.session_model is AgentSession and (
            self.expires_after is not None or conf.expire_after() is not None
        )

    def _expired(self, store: storage.Storage, *, lock: bool = False) -> bool:
        """Whether the row (this owner's, with an owner) has expired; ``lock`` locks it."""
        rows = AgentSession.objects.using(store.alias).filter(session_id=self.session_id)
        if self.owner_id is not None:  # someone else's row is refused, not expired
            rows = rows.filter(owner_id=self.owner_id)
        if lock:
            rows = rows.select_for_update()
        return retention.expired(rows).exists()

    def _purge_if_expired(self, store: storage.Storage, *, always: bool = False) -> None:
        """In a write: delete the expired history first, as ``clear_session`` does.

        Checked when expiry applies to this instance, or ``always`` (by the
        row's own retention then, whatever this instance was given)."""
        if (always or self._expiry_applies()) and self._expired(store, lock=True):
            store.delete_session(session_id=self.session_id)
            self._on_commit(store.alias, signals.session_cleared)
            self._stored.clear()

    # -- beyond the protocol -------------------------------------------------

    async def aget_usage(self) -> usage.UsageTotals:
        """This session's recorded token usage, summed (one query; zeros if none).

        ``PermissionDenied`` if the row is another owner's, as for every method
        (zeros before the first write). Sessions on custom tables record no
        usage: their totals are zeros.
        """
        if self.session_model is not AgentSession:
            return usage.UsageTotals()
        return await sync_to_async(self._get_usage)()

    async def arecord_usage(self, wrapper: RunContextWrapper[Any]) -> None:
        """Record the usage of ``wrapper``'s run that no write of it recorded yet.

        A run's usage is recorded by its writes (see ``usage``): what it spent
        after its last write, a model response whose items were never stored
        because the run was cancelled or failed, is not. Call this with the run's
        context (``result.context_wrapper``) when a run ends that way. It records
        exactly what is missing, in one transaction, and nothing if nothing is
        (a second call, a run whose last write recorded everything, a wrapper
        this session never saw): nothing is ever recorded twice. Creates the
        session row if there is none, as a write would; ``PermissionDenied`` if
        it is another owner's. Sessions on custom tables record no usage.
        """
        if self.session_model is not AgentSession:
            return
        recording = usage.pending(wrapper, self._usage_key)
        if recording is not None:
            await run_to_completion(partial(self._record_usage, recording))

    async def afork(
        self, new_session_id: str, *, keep: int | None = None, using: str | None = None
    ) -> DjangoSession:
        """Copy this conversation (all of it, or its first ``keep`` items) into a new one.

        Returns the ``DjangoSession`` of ``new_session_id`` (same tables and
        options). The new row copies owner, title, metadata and retention
        (``expires_after``) and records
        ``forked_from`` (this session's id) and ``forked_from_position`` (how many
        of its items were copied: the fork continues it after that item; ``0`` if
        none were). This session is unchanged.

        One transaction, and one ``INSERT ... SELECT`` for the messages, whatever
        their number. ``using`` puts the new session on another database (default:
        where ``new_session_id`` routes); if that is not this session's database,
        the copy is read here and written there in one transaction on each side.

        Raises ``ValueError`` if ``new_session_id`` exists or is invalid, if this
        session does not exist, or for a negative ``keep`` (``TypeError`` if it
        is not an int); nothing is written then. As for ``get_items``, a ``keep``
        beyond ``2**63 - 1`` is every item.
        """
        check_session_id(new_session_id)
        keep = _check_limit(keep, "keep")
        fork = DjangoSession(
            new_session_id,
            sessions_table=self.session_model._meta.db_table,
            messages_table=self.message_model._meta.db_table,
            create_tables=self.create_tables,
            session_settings=self.session_settings,
            using=using if using is not None else self.using,
            skip_duplicate_items=self.skip_duplicate_items,
            owner=self.owner_id,
        )
        await run_to_completion(partial(self._fork, fork, keep))
        return fork

    # -- one run at a time (see ``leases``) ----------------------------------------

    def exclusive(
        self,
        timeout: float | datetime.timedelta | None = 0.0,
        *,
        lease: float | datetime.timedelta = leases.DEFAULT_DURATION,
    ) -> leases.Lease:
        """``async with session.exclusive():`` hold this conversation while the block runs.

        A lease in the database the conversation lives on: another
        ``exclusive()`` on it, in this process or any other, waits until the
        block ends. ``timeout``: seconds to wait for it (``0``: not at all;
        ``None``: as long as it takes), then ``SessionBusy``. ``lease``: how
        long the lease lasts unrenewed; it is renewed while held, so it only
        runs out when its holder died, freeing the conversation after at most
        that long. Given back when the block exits, however it exits.

        Uncontended, taking and giving back cost one statement each. With an
        owner, ``PermissionDenied`` if the conversation is someone else's.
        ``TypeError``/``ValueError`` for a bad ``timeout`` or ``lease``.
        """
        seconds = leases.check_seconds(timeout, "timeout", allow_none=True, allow_zero=True)
        duration = leases.check_seconds(lease, "lease", allow_none=False, allow_zero=False)
        assert duration is not None
        return leases.Lease(self, timeout=seconds, duration=duration)

    def _lease_storage(self) -> storage.Storage:
        store = self._storage(write=True)
        if self.create_tables:  # the lease table comes with the migrated tables
            tables.ensure_tables(store.alias, (AgentSession, AgentMessage))
        return store

    # -- the SDK's compaction hooks (see ``compaction``) -----------------------

    def _hooks_apply(self) -> bool:
        # Like the SDK's stores: a subclass that transforms items on the way in or
        # out must not be bypassed by a replacement that writes rows directly.
        cls = type(self)
        return all(
            getattr(cls, name) is getattr(DjangoSession, name)
            for name in ("get_items", "add_items")
        )

    async def _get_compaction_snapshot(
        self, limit: int, *, prune_prefix: compaction.PrunePrefix | None = None
    ) -> Any | None:
        """The SDK's hook for automatic compaction: see ``compaction.snapshot``."""
        if not self._hooks_apply():
            return None
        return await compaction.snapshot(self, limit, prune_prefix)

    async def _atomic_replace_items(self, items: list[TResponseInputItem]) -> bool:
        """The SDK's hook for whole-history replacement (manual ``run_compaction``).

        Replaces every item with ``items`` in one transaction, keeping the session
        row. ``False`` (nothing done) for subclasses that transform items.
        """
        if not self._hooks_apply():
            return False
        return await self._replace(None, list(items))

    async def _replace(
        self,
        expected: list[compaction.Row] | None,
        output: list[TResponseInputItem],
        *,
        prune_prefix: compaction.PrunePrefix | None = None,
        batch: int = 100,
    ) -> bool:
        """Replace the ``expected`` newest rows (``None``: all) by ``output``.

        See ``_replace_rows``; the run's pending usage is recorded with it.
        """
        recording = usage.pending(usage.resolve(None), self._usage_key)
        replaced = await run_to_completion(
            partial(self._replace_rows, expected, output, prune_prefix, batch, recording)
        )
        if replaced:
            self._stored.clear()
        return replaced

    async def _tail(self, limit: int) -> tuple[list[compaction.Row], bool]:
        """The newest ``limit`` rows, oldest first, and whether they are all there is."""
        return await sync_to_async(self._tail_rows)(limit)

    # -- the work, run in a worker thread ---------------------------------------

    def _storage(self, *, write: bool) -> storage.Storage:
        alias = routing.alias_for(
            self.session_model, write=write, session_id=self.session_id, using=self.using
        )
        if self.create_tables:
            tables.ensure_tables(alias, (self.session_model, self.message_model))
        tables.require_exact_ids(alias, self.session_model)
        if self.using is None:  # a session still on its previous shard moves first
            rebalance.settle(self.session_model, self.message_model, self.session_id, alias)
        return storage.storage_for(self.session_model, self.message_model, alias)

    def _get_items(self, limit: int | None) -> list[TResponseInputItem]:
        store = self._storage(write=False)
        if limit == 0 and self.owner_id is None:
            return []

        def history() -> list[TResponseInputItem]:
            if self._expiry_applies() and self._expired(store):
                return []  # gone, even before it is purged
            return store.history(session_id=self.session_id, limit=limit, owner=self.owner_id)

        return transactions.run(store.alias, history, atomic=False)

    def _add_items(
        self, items: list[TResponseInputItem], recording: usage.Recording | None = None
    ) -> bool:
        """Store ``items`` (and ``recording``); False if there was nothing to store."""
        store = self._storage(write=True)
        checked = check_items(items, using=store.alias)
        fingerprints: list[str] = []
        if self.skip_duplicate_items:
            _refuse_encrypted_duplicates(checked)
            fingerprints = [_fingerprint(item) for item in checked]
            kept = [i for i, print_ in enumerate(fingerprints) if not self._stored[print_]]
            fingerprints = [fingerprints[i] for i in kept]
            checked = checked.subset(kept)
        if not checked:
            return False

        new_row = self._new_row_values(checked)
        # Rows that exist without a title get one from the first user message too.
        untitled = new_row.get("title", "") if self.title is None else ""

        def write() -> None:
            self._purge_if_expired(store)
            session_pk = store.upsert_session(
                session_id=self.session_id, values=new_row, owner=self.owner_id, untitled=untitled
            )
            store.insert_messages(
                session_pk=session_pk,
                rows=checked.rows(),
                usage=_usage_values(recording),
            )
            self._on_commit(store.alias, signals.session_items_added, items=checked)

        transactions.run(store.alias, write)
        usage.recorded(recording)
        self._stored.update(fingerprints)
        return True

    def _record_usage(self, recording: usage.Recording) -> None:
        store = self._storage(write=True)
        values = _usage_values(recording)
        assert values is not None  # a recording has values

        def write() -> None:
            session_pk = store.upsert_session(
                session_id=self.session_id, values=self._new_row_values([]), owner=self.owner_id
            )
            store.insert_usage(session_pk=session_pk, values=values)

        transactions.run(store.alias, write)
        usage.recorded(recording)

    def _pop_item(self) -> TResponseInputItem | None:
        store = self._storage(write=True)

        def pop() -> tuple[bool, TResponseInputItem | None]:
            self._purge_if_expired(store)
            if not store.lock_session(session_id=self.session_id, owner=self.owner_id):
                return False, None
            found, item = store.pop_newest(session_id=self.session_id)
            if found:
                self._on_commit(store.alias, signals.session_item_popped, item=item)
            return found, item

        found, item = transactions.run(store.alias, pop)
        if found and self._stored:
            self._stored[_fingerprint(item)] -= 1
            self._stored += collections.Counter()  # drops counts that reached zero
        return item

    def _clear_session(self) -> None:
        store = self._storage(write=True)

        def clear() -> None:
            if not store.lock_session(session_id=self.session_id, owner=self.owner_id):
                return
            store.delete_session(session_id=self.session_id)
            self._on_commit(store.alias, signals.session_cleared)

        transactions.run(store.alias, clear)
        self._stored.clear()

    def _fork(self, fork: DjangoSession, keep: int | None) -> None:
        source = self._storage(write=True)
        target = fork._storage(write=True)
        if source.alias == target.alias:
            transactions.run(source.alias, lambda: self._fork_here(fork, source, keep))
            return
        values, items = transactions.run(source.alias, lambda: self._fork_source(source, keep))
        transactions.run(target.alias, lambda: fork._fork_target(target, values, items))

    def _fork_source(
        self, store: storage.Storage, keep: int | None
    ) -> tuple[dict[str, Any], list[tuple[Any, Any]]]:
        """The fork's session row values and (data, created_at) of the messages to copy."""
        values = self._fork_values(store, keep)
        rows = store.messages_of(session_id=self.session_id)
        rows = rows.filter(pk__lte=values["_through_id"] or 0).order_by("id")
        return values, list(rows.values_list("data", "created_at"))

    def _fork_here(self, fork: DjangoSession, store: storage.Storage, keep: int | None) -> None:
        values = self._fork_values(store, keep)
        target_pk = fork._create_fork_row(store, values)
        if values["_through_id"] is not None:
            store.copy_messages(
                source_pk=values["_source_pk"],
                target_pk=target_pk,
                through_id=values["_through_id"],
            )

    def _fork_target(
        self, store: storage.Storage, values: dict[str, Any], items: list[tuple[Any, Any]]
    ) -> None:
        target_pk = self._create_fork_row(store, values)
        store.insert_messages(
            session_pk=target_pk,
            rows=[{"data": data, "created_at": created} for data, created in items],
        )

    def _fork_values(self, store: storage.Storage, keep: int | None) -> dict[str, Any]:
        """Lock this session's row and return what its fork's row is made of.

        The row is locked without bumping its ``updated_at``: a fork is not
        activity of the source.
        """
        expired = self._expiry_applies() and self._expired(store)
        row = (
            None
            if expired
            else store.session_details(session_id=self.session_id, owner=self.owner_id, lock=True)
        )
        if row is None:
            raise ValueError(f"cannot fork session {self.session_id!r}: it does not exist")
        through, count = store.fork_point(session_id=self.session_id, keep=keep)
        values: dict[str, Any] = {"_source_pk": row["pk"], "_through_id": through}
        if self.session_model is AgentSession:
            copied = ("owner_id", "title", "metadata", "expires_after")
            values.update(
                {name: row[name] for name in copied},
                forked_from=self.session_id,
                forked_from_position=count,
            )
        return values

    def _create_fork_row(self, store: storage.Storage, values: dict[str, Any]) -> int:
        """Insert this session's row with ``values``; ``ValueError`` if it exists."""
        exists = f"cannot fork into {self.session_id!r}: that session exists"
        manager = self.session_model._default_manager.using(store.alias)
        if manager.filter(session_id=self.session_id).exists():
            raise ValueError(exists)
        fields = {k: v for k, v in values.items() if not k.startswith("_")}
        if self.session_model is not AgentSession:  # custom tables have no fork columns
            fields = {}
        try:
            with transaction.atomic(using=store.alias):
                return store.insert_session(values={"session_id": self.session_id, **fields})
        except IntegrityError as exc:  # created meanwhile by another request
            raise ValueError(exists) from exc

    def _tail_rows(self, limit: int) -> tuple[list[compaction.Row], bool]:
        store = self._storage(write=False)

        def read() -> list[compaction.Row]:
            if self.owner_id is not None:  # refuses another owner's row
                store.session_details(session_id=self.session_id, owner=self.owner_id)
            if self._expiry_applies() and self._expired(store):
                return []
            return store.newest_rows(session_id=self.session_id, limit=limit + 1)

        # One row more than asked says whether older ones exist.
        rows = transactions.run(store.alias, read, atomic=False)
        return rows[:limit][::-1], len(rows) <= limit

    def _replace_rows(
        self,
        expected: list[compaction.Row] | None,
        output: list[TResponseInputItem],
        prune_prefix: compaction.PrunePrefix | None,
        batch: int,
        recording: usage.Recording | None,
    ) -> bool:
        """Swap stored rows for ``output`` in one transaction; whether they were replaced.

        ``expected`` (the newest rows, oldest first, as a snapshot read them) must
        still be exactly the newest rows, else nothing is replaced. ``None``
        replaces the whole history. The session row stays; ``session_compacted``
        is sent on commit.
        """
        store = self._storage(write=True)
        checked = check_items(output, using=store.alias)
        session_id = self.session_id
        values = _usage_values(recording)
        new_row = self._new_row_values(checked)

        def replace() -> tuple[bool, bool]:
            if expected is None:
                session_pk = store.upsert_session(
                    session_id=session_id, values=new_row, owner=self.owner_id
                )
            elif store.lock_session(session_id=session_id, owner=self.owner_id):
                session_pk = store.session_pk(session_id=session_id)
            else:  # cleared since the snapshot
                return False, False
            removed: list[Any] = []
            if expected is not None:
                newest = store.newest_rows(session_id=session_id, limit=len(expected))
                if newest[::-1] != expected:
                    # The history changed since the snapshot: keep it, but the
                    # compaction request was spent, so its usage is recorded.
                    if values is not None:
                        store.insert_usage(session_pk=session_pk, values=values)
                    return False, values is not None
                if prune_prefix is not None:
                    removed = self._prune_prefix(store, expected[0][0], prune_prefix, batch)
                removed += [item for _, item in expected]
                store.delete_messages(session_id=session_id, from_id=expected[0][0])
            else:
                if signals.session_compacted.has_listeners(DjangoSession):
                    removed = store.all_items(session_id=session_id)
                store.delete_messages(session_id=session_id)
            store.insert_messages(session_pk=session_pk, rows=checked.rows(), usage=values)
            self._on_commit(store.alias, signals.session_compacted, removed=removed, items=checked)
            return True, values is not None

        replaced, recorded = transactions.run(store.alias, replace)
        if recorded:
            usage.recorded(recording)
        return replaced

    def _prune_prefix(
        self, store: storage.Storage, before: int, prune_prefix: compaction.PrunePrefix, batch: int
    ) -> list[Any]:
        """Delete the oldest rows ``prune_prefix`` approves, up to the first it does not."""
        removed: list[Any] = []
        while True:
            prefix = store.oldest_rows(session_id=self.session_id, before_id=before, limit=batch)
            approved = []
            for pk, data in prefix:
                if not prune_prefix(data):
                    break
                approved.append((pk, data))
            if not approved:
                return removed
            store.delete_messages(session_id=self.session_id, through_id=approved[-1][0])
            removed += [data for _, data in approved]
            if len(approved) < len(prefix) or len(prefix) < batch:
                return removed

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


def _usage_values(recording: usage.Recording | None) -> dict[str, Any] | None:
    """The ``AgentUsage`` row values of ``recording``."""
    if recording is None:
        return None
    return {**recording.delta.columns(), "details": recording.details}
