"""Run one session operation against one database, retrying what is safe to retry.

Every operation of ``DjangoSession`` is a short sync function run in a single
``sync_to_async`` hop. This module gives those functions the two guarantees the
SDK's own backends give: lock contention is waited out rather than raised, and a
connection the server has dropped is replaced instead of failing every call made
on it afterwards.
"""

from __future__ import annotations

import contextlib
import random
import threading
import time
from collections.abc import Callable, Iterator
from typing import TypeVar

from django.db import DatabaseError, connections, transaction

T = TypeVar("T")

MAX_ATTEMPTS = 12
# MySQL/MariaDB: deadlock found, lock wait timeout exceeded.
MYSQL_CONTENTION = {1213, 1205}
# PostgreSQL: serialization failure, deadlock detected.
POSTGRES_CONTENTION = {"40001", "40P01"}
# MySQL/MariaDB: server gone away, lost connection, connection killed, inactivity timeout.
MYSQL_LOST = {2006, 2013, 2055, 1927, 4031}
# PostgreSQL: connection exceptions and the server shutting the session down.
POSTGRES_LOST = ("08", "57P")
STRICT_LEVELS = {"REPEATABLE_READ", "SERIALIZABLE"}
# Dropped connections replaced in one call before giving up: the pool is
# checked after the first, so more means the server is still unreachable.
MAX_RECONNECTS = 3


def is_contention(exc: DatabaseError) -> bool:
    """True when the database aborted the transaction because of another one.

    The transaction was rolled back as a whole, so running it again is safe.
    """
    cause = exc.__cause__
    message = str(exc).lower()
    if "database is locked" in message or "database table is locked" in message:
        return True
    if getattr(cause, "sqlstate", None) in POSTGRES_CONTENTION:
        return True
    args: tuple[object, ...] = getattr(cause, "args", ())
    return bool(args) and args[0] in MYSQL_CONTENTION


def connection_lost(alias: str, exc: DatabaseError) -> bool:
    """True when ``exc`` means this thread's connection to ``alias`` is gone."""
    cause = exc.__cause__
    sqlstate = getattr(cause, "sqlstate", None)
    if sqlstate and sqlstate.startswith(POSTGRES_LOST):
        return True
    args: tuple[object, ...] = getattr(cause, "args", ())
    if args and args[0] in MYSQL_LOST:
        return True
    conn = connections[alias]
    return conn.connection is None or not conn.is_usable()


def discard_connection(alias: str) -> None:
    """Close this thread's connection so that the next query opens a new one.

    With Django's PostgreSQL pool, the pool's idle connections are checked too
    (and the dead ones replaced): what dropped this one, a restart or an idle
    timeout, has most likely dropped them as well, and the next call would
    otherwise be handed one of them.
    """
    conn = connections[alias]
    with contextlib.suppress(DatabaseError):
        conn.close()
    pool = getattr(conn, "pool", None)
    if pool is not None:
        with contextlib.suppress(Exception):  # the server may still be coming back
            pool.check()


def _isolation_above_read_committed(alias: str) -> bool:
    """Whether ``alias`` is a PostgreSQL connection set to REPEATABLE READ or SERIALIZABLE."""
    conn = connections[alias]
    if conn.vendor != "postgresql":
        return False
    level = getattr(conn, "isolation_level", None)
    # psycopg 3's IsolationLevel has names; psycopg 2 uses 2 and 3 for these two.
    return getattr(level, "name", None) in STRICT_LEVELS or (
        isinstance(level, int) and not hasattr(level, "name") and level in (2, 3)
    )


def begin_write(alias: str) -> None:
    """Start the transaction just opened on ``alias`` the way a write must start.

    SQLite: take the write lock now (``BEGIN IMMEDIATE``), whatever the
    configured transaction mode. A deferred transaction that reads first and
    then writes is answered "database is locked" at once, without waiting,
    when another process holds the lock; one that asks for the lock up front
    waits for it. PostgreSQL: see ``read_committed``.
    """
    conn = connections[alias]
    if conn.vendor == "sqlite":
        mode = str(getattr(conn, "transaction_mode", None) or "").upper()
        if mode in ("IMMEDIATE", "EXCLUSIVE"):
            return  # Django began the transaction that way already
        with conn.cursor() as cursor:
            # Django opened it with a plain (deferred) BEGIN and nothing ran in
            # it yet: end it and begin again, asking for the lock.
            if conn.connection.in_transaction:
                cursor.execute("COMMIT")
            cursor.execute("BEGIN IMMEDIATE")
    else:
        read_committed(alias)


def read_committed(alias: str) -> None:
    """Run the transaction just opened on ``alias`` at READ COMMITTED (PostgreSQL only).

    Every write starts by locking its session row, so writers to one session
    take turns and each sees what the previous one committed. Under REPEATABLE
    READ or SERIALIZABLE, PostgreSQL would instead abort each writer that
    waited for the lock (its snapshot predates the row it waited for): with
    dozens of writers, retries cannot keep up. The transactions this module
    opens are self-contained, so they run at READ COMMITTED whatever the
    connection's level; a transaction the caller opened keeps its own.
    """
    if _isolation_above_read_committed(alias):
        with connections[alias].cursor() as cursor:
            cursor.execute("SET TRANSACTION ISOLATION LEVEL READ COMMITTED")


@contextlib.contextmanager
def snapshot(alias: str) -> Iterator[None]:
    """A read-only transaction on ``alias`` whose reads all see the database at one moment.

    What export reads a session in: its row, items and usage rows in several
    queries, none of them showing a change committed meanwhile (a compaction
    replacing the history). PostgreSQL and MySQL/MariaDB run it at REPEATABLE
    READ (Django's MySQL backend defaults to READ COMMITTED), whose reads use
    one snapshot and take no locks; on SQLite a read transaction holds one
    snapshot (in WAL mode writers go on meanwhile; in the rollback-journal
    modes they wait for it). Inside a transaction the caller opened, the
    caller's isolation decides. Nothing is retried: what was read has been
    handed on already.
    """
    conn = connections[alias]
    if conn.in_atomic_block:
        yield
        return
    with transaction.atomic(using=alias):
        if conn.vendor in ("postgresql", "mysql"):
            with conn.cursor() as cursor:
                # Before the first read: the level applies to this transaction.
                cursor.execute("SET TRANSACTION ISOLATION LEVEL REPEATABLE READ, READ ONLY")
        yield


_sqlite_write_locks: dict[str, threading.Lock] = {}
_sqlite_write_locks_guard = threading.Lock()


def write_lock(alias: str) -> contextlib.AbstractContextManager[object]:
    """A process-wide lock per SQLite database file, to hold around a write transaction.

    SQLite lets one writer in at a time. Threads of one process queuing on a
    Python lock are woken the moment it is free, where SQLite's busy handler
    would poll in sleeps of up to 100 ms: under many concurrent requests that
    is the difference between queuing and stalling. Other databases lock rows
    themselves and get a no-op.
    """
    conn = connections[alias]
    if conn.vendor != "sqlite":
        return contextlib.nullcontext()
    name = str(conn.settings_dict["NAME"])
    with _sqlite_write_locks_guard:
        return _sqlite_write_locks.setdefault(name, threading.Lock())


_owned = threading.local()


def on_commit(alias: str, callback: Callable[[], object]) -> None:
    """Call ``callback`` once the current write on ``alias`` has committed.

    In a transaction ``run`` opened, that is after the commit *and* after the
    SQLite write lock is released: a callback (a signal receiver) may then
    write through another session, and other writers of the process do not
    wait for it. In a transaction the caller opened, it is Django's
    ``transaction.on_commit``: when the caller's transaction commits.
    """
    pending: list[Callable[[], object]] | None = getattr(_owned, alias, None)
    if pending is None:
        transaction.on_commit(callback, using=alias)
    else:
        pending.append(callback)


def backoff(attempt: int) -> None:
    # Jitter keeps writers that collided from colliding again in lockstep.
    time.sleep(random.uniform(0, min(0.005 * 2**attempt, 0.25)))


def run(alias: str, func: Callable[[], T], *, atomic: bool = True) -> T:
    """Run ``func`` on ``alias`` (in a transaction when ``atomic``) and return its result.

    - Contention (SQLite "database is locked", InnoDB deadlocks and lock wait
      timeouts, PostgreSQL serialization failures) rolls the transaction back;
      it is retried with backoff, up to ``MAX_ATTEMPTS`` times.
    - A dropped connection is closed and the work retried on a new one (with
      Django's pool, after the pool's idle connections were checked, so the
      next one is alive whatever the pool size), up to ``MAX_RECONNECTS``
      times, unless the commit itself was under way: then whether it landed
      is unknown, so the error is raised rather than risking a second write,
      and the connection is still replaced for the next call.
    - On SQLite the transaction takes the write lock up front; on PostgreSQL
      under REPEATABLE READ or SERIALIZABLE it runs at READ COMMITTED (see
      ``begin_write``).
    - Inside a transaction the caller opened, ``func`` runs in a savepoint and
      nothing is retried: the caller's transaction decides.
    """
    if connections[alias].in_atomic_block:
        with transaction.atomic(using=alias):
            return func()
    reconnects = 0
    attempt = 0
    while True:
        committing = False
        callbacks: list[Callable[[], object]] = []
        try:
            if not atomic:
                return func()
            setattr(_owned, alias, callbacks)
            try:
                with write_lock(alias), transaction.atomic(using=alias):
                    begin_write(alias)
                    result = func()
                    committing = True
            finally:
                delattr(_owned, alias)
        except DatabaseError as exc:
            attempt += 1
            if is_contention(exc) and attempt < MAX_ATTEMPTS:
                backoff(attempt)
                continue
            if reconnects >= MAX_RECONNECTS or not connection_lost(alias, exc):
                raise
            discard_connection(alias)
            if committing:
                raise
            if reconnects:
                backoff(reconnects)
            reconnects += 1
        else:
            # Committed, and the write lock released: see ``on_commit``.
            for callback in callbacks:
                callback()
            return result
