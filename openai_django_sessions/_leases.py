"""One run at a time per conversation: a lease held in the database.

``DjangoSession.exclusive()`` returns a ``Lease``. The lease is a row of
``AgentSessionLease`` on the database the conversation lives on (its shard,
with ``ShardRouter``), keyed by the conversation table's name and the session
id, so that it works across processes and servers and for custom tables.

Contract:

- Taking a free lease is one statement (an upsert that takes the row only if
  it is missing or expired, and, with an owner, only if the conversation is
  not someone else's); giving it back is one statement (a delete of the row
  by its holder's token). No transaction is opened around either.
- A lease expires ``duration`` seconds after it was taken or last renewed. A
  holder renews it every third of ``duration`` while it is held (one
  statement each time), so a long run keeps it and a process that dies
  (SIGKILL, a lost server) frees it after at most ``duration``.
- Expiry is read from the clock of the process taking the lease: servers
  sharing a database must keep their clocks in step (NTP) to well within
  ``duration``.
- A lease is advisory: it serializes the code that takes it, not every write
  to the conversation (``add_items`` outside a lease is not refused).
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime
import functools
import logging
import secrets
import time
from types import TracebackType
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.utils import timezone

from . import _transactions as transactions
from ._completion import run_to_completion
from ._storage import Storage, _column, _field
from .exceptions import SessionBusy
from .models import AgentSessionLease

if TYPE_CHECKING:
    from .session import DjangoSession

logger = logging.getLogger("openai_django_sessions")

DEFAULT_DURATION = 30.0
# Waiting for a held lease: polls start quick (a short run ends soon) and
# slow down to this pause, so that waiters cost little while a long run holds it.
FIRST_PAUSE = 0.05
LONGEST_PAUSE = 1.0


def check_seconds(value: object, what: str, *, allow_none: bool, allow_zero: bool) -> float | None:
    """``value`` (seconds as an int or float, or a ``timedelta``) as seconds.

    ``TypeError`` for another type (a bool among them), ``ValueError`` for a
    negative value, or zero when ``allow_zero`` is false.
    """
    if value is None and allow_none:
        return None
    if isinstance(value, datetime.timedelta):
        value = value.total_seconds()
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        kinds = "a number of seconds, a timedelta" + (" or None" if allow_none else "")
        raise TypeError(f"{what} must be {kinds}, not {type(value).__name__}")
    if value < 0 or (value == 0 and not allow_zero) or value != value:
        raise ValueError(f"{what} must be {'zero or more' if allow_zero else 'positive'}: {value}")
    return float(value)


class Statements:
    """The lease's three statements for one conversation table on one database."""

    def __init__(self, store: Storage) -> None:
        self.store = store
        self.alias = store.alias
        connection = connections[store.alias]
        self.vendor = connection.vendor
        quote = connection.ops.quote_name
        meta = AgentSessionLease._meta
        table = quote(meta.db_table)
        self.table_name = str(store.session_model._meta.db_table)
        self._expires = _field(AgentSessionLease, "expires_at")
        names = ("sessions_table", "session_id", "token", "expires_at")
        kind, key, token, expires = (quote(_column(AgentSessionLease, n)) for n in names)
        columns = f"{kind}, {key}, {token}, {expires}"
        self._returns = bool(connection.features.can_return_columns_from_insert)
        # Tables without owners (custom tables) get no owner-scoped statement.
        self._acquire = {
            owned: self._upsert(table, columns, (kind, key, token, expires), owned)
            for owned in ((False, True) if store.has_details else (False,))
        }
        mine = f"{kind} = %s AND {key} = %s AND {token} = %s"
        self._read = f"SELECT {token} FROM {table} WHERE {kind} = %s AND {key} = %s"
        self._renew = f"UPDATE {table} SET {expires} = %s WHERE {mine}"
        self._release = f"DELETE FROM {table} WHERE {mine}"

    def _upsert(self, table: str, columns: str, names: tuple[str, ...], owned: bool) -> str:
        _, _, token, expires = names
        connection = connections[self.alias]
        quote = connection.ops.quote_name
        condition = "1 = 1"  # SQLite needs a WHERE to read ON CONFLICT as the upsert's
        if owned:
            model = self.store.session_model
            owner = quote(_column(model, "owner"))
            session_id = quote(_column(model, "session_id"))
            condition = (
                f"NOT EXISTS (SELECT 1 FROM {quote(model._meta.db_table)} WHERE {session_id} = %s"
                f" AND ({owner} IS NULL OR {owner} <> %s))"
            )
        if self.vendor == "mysql":
            # The assignments run in order: the second sees the token the first set.
            return (
                f"INSERT INTO {table} ({columns}) SELECT %s, %s, %s, %s FROM DUAL"
                f" WHERE {condition} ON DUPLICATE KEY UPDATE"
                f" {token} = IF({expires} <= %s, VALUES({token}), {token}),"
                f" {expires} = IF({token} = VALUES({token}), VALUES({expires}), {expires})"
                + (f" RETURNING {token}" if self._returns else "")
            )
        kind, key, _, _ = names
        return (
            f"INSERT INTO {table} ({columns}) SELECT %s, %s, %s, %s WHERE {condition}"
            f" ON CONFLICT ({kind}, {key}) DO UPDATE SET {token} = EXCLUDED.{token},"
            f" {expires} = EXCLUDED.{expires} WHERE {table}.{expires} <= %s"
        )

    def _time(self, value: datetime.datetime) -> Any:
        return self._expires.get_db_prep_save(value, connections[self.alias])

    def acquire(self, *, session_id: str, token: str, duration: float, owner: Any = None) -> bool:
        """Take the lease if it is free (missing or expired); whether it was taken.

        With ``owner``, ``PermissionDenied`` if the conversation is someone else's.
        """
        now = timezone.now()
        params: list[Any] = [
            self.table_name,
            session_id,
            token,
            self._time(now + datetime.timedelta(seconds=duration)),
        ]
        if owner is not None:
            params += [session_id, self.store._owner_param(owner)]
        params.append(self._time(now))
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self._acquire[owner is not None], params)
            if self.vendor != "mysql":
                taken = cursor.rowcount == 1
            else:
                if not self._returns:  # MySQL: no RETURNING, so read the holder back
                    cursor.execute(self._read, [self.table_name, session_id])
                row = cursor.fetchone()
                taken = row is not None and row[0] == token
        if not taken and owner is not None:
            self.store._refuse_unless_owned(session_id=session_id, owner=owner)
        return taken

    def renew(self, *, session_id: str, token: str, duration: float) -> bool:
        """Push the lease's expiry ``duration`` from now; False if it is no longer held."""
        expires = self._time(timezone.now() + datetime.timedelta(seconds=duration))
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self._renew, [expires, self.table_name, session_id, token])
            return cursor.rowcount == 1

    def release(self, *, session_id: str, token: str) -> None:
        """Give the lease back (nothing if another holder took it after it expired)."""
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self._release, [self.table_name, session_id, token])


@functools.lru_cache(maxsize=256)
def statements_for(store: Storage) -> Statements:
    """The one ``Statements`` for ``store``'s conversation table and database."""
    return Statements(store)


class Lease:
    """``async with session.exclusive(...)``: hold the conversation while the block runs.

    ``timeout``: seconds to wait for a held lease (0: raise ``SessionBusy`` at
    once; ``None``: wait as long as it takes). ``duration``: seconds the lease
    lasts without renewal. Not reentrant: a second ``exclusive()`` on the same
    conversation inside the block waits for the first like any other run.
    """

    def __init__(self, session: DjangoSession, *, timeout: float | None, duration: float) -> None:
        self.session = session
        self.timeout = timeout
        self.duration = duration
        self.token = ""
        self.lost = False
        self._renewing: asyncio.Task[None] | None = None

    async def __aenter__(self) -> Lease:
        deadline = None if self.timeout is None else time.monotonic() + self.timeout
        pause = FIRST_PAUSE
        token = secrets.token_hex(16)
        while not await self._try(token):
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise SessionBusy(self.session.session_id)
            await asyncio.sleep(pause if left is None else min(pause, left))
            pause = min(pause * 2, LONGEST_PAUSE)
        self.token = token
        self._renewing = asyncio.ensure_future(self._keep_renewed())
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        if self._renewing is not None:
            self._renewing.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._renewing
        await run_to_completion(self._release)
        self.token = ""

    async def _try(self, token: str) -> bool:
        """One attempt at taking the lease with ``token``."""
        try:
            return await run_to_completion(functools.partial(self._acquire, token))
        except asyncio.CancelledError:
            # Cancelled while the statement ran: it may have taken the lease,
            # which nobody would give back before it expires.
            self.token = token
            await run_to_completion(self._release)
            self.token = ""
            raise

    async def renew(self) -> bool:
        """Push the expiry ``duration`` from now; False (and ``lost``) if the lease
        expired and another run took it meanwhile."""
        held = await run_to_completion(self._renew)
        self.lost = self.lost or not held
        return held

    async def _keep_renewed(self) -> None:
        while not self.lost:
            await asyncio.sleep(self.duration / 3)
            try:
                if await self.renew():
                    continue
            except Exception:  # the database is unreachable: try again next time
                logger.warning("Could not renew the lease on %r", self.session.session_id)
                continue
            logger.warning(
                "The lease on %r expired while held: another run may have taken the conversation",
                self.session.session_id,
            )

    def _statements(self) -> Statements:
        return statements_for(self.session._lease_storage())

    def _acquire(self, token: str) -> bool:
        statements = self._statements()
        owner = self.session.owner_id
        return transactions.run(
            statements.alias,
            functools.partial(
                statements.acquire,
                session_id=self.session.session_id,
                token=token,
                duration=self.duration,
                owner=owner,
            ),
            atomic=False,
        )

    def _renew(self) -> bool:
        statements = self._statements()
        return transactions.run(
            statements.alias,
            functools.partial(
                statements.renew,
                session_id=self.session.session_id,
                token=self.token,
                duration=self.duration,
            ),
            atomic=False,
        )

    def _release(self) -> None:
        statements = self._statements()
        transactions.run(
            statements.alias,
            functools.partial(
                statements.release, session_id=self.session.session_id, token=self.token
            ),
            atomic=False,
        )
