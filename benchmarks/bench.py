"""Throughput of ``DjangoSession`` next to the SDK's own sessions and a plain-driver floor.

Every contender stores its history on the same database server (or, for SQLite,
in its own WAL-mode file in one temporary directory) and runs in this one
process. Within a round the contenders take turns every few operations (a few
milliseconds), so load from outside the benchmark hits them alike; the tables show
the median over the rounds of operations per second (wall time) and of the
process's CPU time per operation.

    python benchmarks/bench.py --db sqlite|postgres|mysql [--rounds N] [--quick] [--markdown]
    python benchmarks/bench.py --search --db sqlite|postgres|mysql [--quick]  # search_workload.py

See ``benchmarks/README.md`` for what each workload does and how to read the table.
"""

from __future__ import annotations

import argparse
import asyncio
import functools
import importlib.metadata
import importlib.util
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import threading
import time
from collections.abc import Awaitable, Callable, Generator, Sequence
from contextlib import AbstractAsyncContextManager, asynccontextmanager, nullcontext
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeAlias, TypeVar

import search_workload  # the --search workload, from beside this file
from tables import render_markdown, render_text

Item = dict[str, Any]

DB_NAME = os.environ.get("BENCH_DB_NAME", "ods_bench")  # dropped and created each run
PG = {
    "host": os.environ.get("PGHOST", "127.0.0.1"),
    "port": int(os.environ.get("PGPORT", "5432")),
    "user": os.environ.get("PGUSER", "postgres"),
}
MY = {
    "host": os.environ.get("MYSQL_HOST", "127.0.0.1"),
    "port": int(os.environ.get("MYSQL_PORT", "3306")),
    "user": os.environ.get("MYSQL_USER", "root"),
    "password": os.environ.get("MYSQL_PASSWORD", ""),
}
SA_TABLES = {"sessions_table": "sa_sessions", "messages_table": "sa_messages"}
HISTORY = 2000  # items in the session that read_all_2000 and read_20_of_2000 read
CONVERSATIONS = 32
TURNS_PER_REQUEST = 4  # turns each conversation makes in one request context
BACKGROUND = 100  # other conversations of 20 items each, so tables are not a single session
DJANGO, DJANGO_CURSOR, SDK_SQLITE, SQLALCHEMY, FLOOR = (
    "DjangoSession",
    "Django's cursor",
    "SQLiteSession",
    "SQLAlchemySession",
    "floor",
)


# -- realistic conversation items ---------------------------------------------------


def turn_items(n: int) -> list[Item]:
    """One agent turn: user message, reasoning, tool call and output, answer (~200-800 B each)."""
    city = ("Lisbon", "Osaka", "Quito", "Tallinn", "Perth")[n % 5]
    call_id = f"call_{n:08d}{'x' * 16}"
    forecast = [{"day": d, "high_c": 18 + (n + d) % 9, "rain_mm": (n * d) % 7} for d in range(5)]
    return [
        {
            "role": "user",
            "content": f"Turn {n}: I'm flying to {city} on Friday for a conference. What will "
            "the weather be like over the next five days, and should I pack a rain jacket "
            "or is an umbrella enough? Also, any neighbourhood worth a walk in the evening?",
        },
        {
            "type": "reasoning",
            "id": f"rs_{n:08d}{'r' * 40}",
            "summary": [
                {
                    "type": "summary_text",
                    "text": f"The user wants a five-day forecast for {city} and packing advice. "
                    "I should call the weather tool with the city and a five-day range, then "
                    "summarise highs and rainfall and suggest an evening walk.",
                }
            ],
        },
        {
            "type": "function_call",
            "id": f"fc_{n:08d}{'f' * 40}",
            "call_id": call_id,
            "name": "get_forecast",
            "arguments": json.dumps({"city": city, "days": 5, "units": "metric"}),
            "status": "completed",
        },
        {
            "type": "function_call_output",
            "call_id": call_id,
            "output": json.dumps({"city": city, "forecast": forecast, "source": "met-office"}),
        },
        {
            "id": f"msg_{n:08d}{'m' * 40}",
            "type": "message",
            "role": "assistant",
            "status": "completed",
            "content": [
                {
                    "type": "output_text",
                    "annotations": [],
                    "text": f"{city} looks mild this week: highs between 18 and 26 °C. Light "
                    "rain is likely on two of the five days, so a packable rain jacket is the "
                    "safer choice; an umbrella alone will struggle with the wind. For an "
                    "evening walk, head to the old town: the waterfront is lit until late and "
                    "most cafés stay open past ten.",
                }
            ],
        },
    ]


BATCHES = [turn_items(n) for n in range(50)]


def batch(n: int) -> list[Item]:
    return BATCHES[n % len(BATCHES)]


def items(count: int) -> list[Item]:
    """``count`` items, a prefix of consecutive turns."""
    out: list[Item] = []
    n = 0
    while len(out) < count:
        out.extend(batch(n))
        n += 1
    return out[:count]


# -- contenders -----------------------------------------------------------------------


class Store(Protocol):
    """The SDK's session protocol: all that the workloads use."""

    async def get_items(self, limit: int | None = None) -> list[Any]: ...
    async def add_items(self, items: list[Any]) -> None: ...
    async def pop_item(self) -> Any: ...
    async def clear_session(self) -> None: ...


@dataclass
class Contender:
    """One storage implementation: a session per id, and how a request wraps calls."""

    name: str
    factory: Callable[[str], Store]
    request: Callable[[], AbstractAsyncContextManager[object]] = nullcontext
    on_close: Callable[[Contender], Awaitable[None]] | None = None
    error: str | None = None  # set when it cannot run on this database
    sessions: dict[str, Store] = field(default_factory=dict)

    def session(self, session_id: str) -> Store:
        if session_id not in self.sessions:
            self.sessions[session_id] = self.factory(session_id)
        return self.sessions[session_id]

    async def close(self) -> None:
        if self.on_close is not None:
            await self.on_close(self)


class CursorChoice:
    """A ``DjangoSession`` whose calls run with ``DRIVER_CURSOR`` set to ``on``.

    Both settings take turns in one process (``--django-cursor``): the flag the
    setting is read into is set before each call, which costs nothing next to
    ``override_settings``; only one contender's calls are in flight at a time.
    """

    def __init__(self, session_id: str, on: bool) -> None:
        from openai_django_sessions import DjangoSession

        self._session = DjangoSession(session_id)
        self._on = on

    def _choose(self) -> None:
        from openai_django_sessions import _driver

        _driver._enabled = self._on

    async def get_items(self, limit: int | None = None) -> list[Any]:
        self._choose()
        return await self._session.get_items(limit)

    async def add_items(self, items: list[Any]) -> None:
        self._choose()
        await self._session.add_items(items)

    async def pop_item(self) -> Any:
        self._choose()
        return await self._session.pop_item()

    async def clear_session(self) -> None:
        self._choose()
        await self._session.clear_session()


def django_contender(driver_cursor: bool | None = None) -> Contender:
    """``DjangoSession``; with ``driver_cursor``, that value of ``DRIVER_CURSOR`` for its calls."""
    from asgiref.sync import ThreadSensitiveContext, sync_to_async
    from django.db import close_old_connections, connections

    from openai_django_sessions import DjangoSession

    @asynccontextmanager
    async def request() -> Any:
        # What Django's ASGI handler does per request: its own thread (so its own
        # connection), closed at request_finished since CONN_MAX_AGE is 0 (on
        # PostgreSQL, handed back to the pool).
        async with ThreadSensitiveContext():
            try:
                yield
            finally:
                await sync_to_async(close_old_connections)()

    async def close(_: Contender) -> None:
        await sync_to_async(connections.close_all)()

    if driver_cursor is None:
        return Contender(DJANGO, DjangoSession, request=request, on_close=close)
    return Contender(
        DJANGO if driver_cursor else DJANGO_CURSOR,
        # Conversations of their own: both contenders share Django's database.
        lambda sid: CursorChoice(sid if driver_cursor else f"cursor-{sid}", driver_cursor),
        request=request,
        on_close=close,
    )


def sdk_sqlite_contender(path: Path) -> Contender:
    from agents import SQLiteSession

    async def close(contender: Contender) -> None:
        for session in contender.sessions.values():
            session.close()  # type: ignore[attr-defined]

    return Contender(SDK_SQLITE, lambda sid: SQLiteSession(sid, str(path)), on_close=close)


def sqlalchemy_url(db: str, workdir: Path) -> str:
    if db == "sqlite":
        return f"sqlite+aiosqlite:///{workdir / 'sqlalchemy.sqlite3'}"
    if db == "postgres":
        return f"postgresql+asyncpg://{PG['user']}@{PG['host']}:{PG['port']}/{DB_NAME}"
    driver = next((d for d in ("aiomysql", "asyncmy") if importlib.util.find_spec(d)), None)
    if driver is None:
        raise RuntimeError("no async MySQL driver installed (pip install aiomysql)")
    return (
        f"mysql+{driver}://{MY['user']}:{MY['password']}@{MY['host']}:{MY['port']}/{DB_NAME}"
        "?charset=utf8mb4"
    )


async def sqlalchemy_contender(db: str, workdir: Path) -> Contender:
    """One engine for every session, its tables created by the first (as an app would)."""
    from agents.extensions.memory import SQLAlchemySession

    def failed(error: str) -> Contender:
        return Contender(SQLALCHEMY, FloorSession, error=error)  # never called

    try:
        first = SQLAlchemySession.from_url(
            "setup", url=sqlalchemy_url(db, workdir), create_tables=True, **SA_TABLES
        )
    except Exception as exc:
        return failed(f"cannot connect: {type(exc).__name__}: {exc}")
    engine = first.engine
    try:
        await first.get_items()
    except Exception as exc:
        await engine.dispose()
        return failed(f"cannot create its tables: {type(exc).__name__}: {exc}")

    async def close(_: Contender) -> None:
        await engine.dispose()

    return Contender(
        SQLALCHEMY,
        lambda sid: SQLAlchemySession(sid, engine=engine, **SA_TABLES),
        on_close=close,
    )


# -- the plain-driver floor -------------------------------------------------------------
#
# The least a correct implementation needs, in the same shape as the ORM path:
# one session-row upsert plus a bulk insert in one transaction per add, a newest-N
# select through the session key, a locked pop. Operations are written once, as
# generators of queries, and run by a sync driver in a thread or an async one.


@dataclass(frozen=True)
class Query:
    sql: str
    params: Sequence[Any]
    fetch: str = "none"  # none | all | one | scalar | rowcount | lastrowid | many


T = TypeVar("T")
Plan: TypeAlias = Generator[Query, Any, T]


@dataclass(frozen=True)
class FloorSQL:
    ddl: tuple[str, ...]
    upsert: str
    upsert_fetch: str
    get_all: str
    get_newest: str
    insert: str
    lock: str
    newest_row: str
    delete_row: str
    clear_messages: str
    clear_session: str
    stamp: Callable[[], Any]
    load: Callable[[Any], Any]


FLOOR_DDL = {
    "sqlite": (
        "CREATE TABLE floor_sessions (id integer PRIMARY KEY AUTOINCREMENT, "
        "session_id varchar(255) NOT NULL UNIQUE, created_at text NOT NULL, "
        "updated_at text NOT NULL)",
        "CREATE TABLE floor_messages (id integer PRIMARY KEY AUTOINCREMENT, "
        "session_id bigint NOT NULL REFERENCES floor_sessions (id) ON DELETE CASCADE, "
        "data text NOT NULL, created_at text NOT NULL)",
    ),
    "postgres": (
        "CREATE TABLE floor_sessions (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "session_id varchar(255) NOT NULL UNIQUE, created_at timestamptz NOT NULL, "
        "updated_at timestamptz NOT NULL)",
        "CREATE TABLE floor_messages (id bigint GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY, "
        "session_id bigint NOT NULL REFERENCES floor_sessions (id) ON DELETE CASCADE "
        "DEFERRABLE INITIALLY DEFERRED, data jsonb NOT NULL, created_at timestamptz NOT NULL)",
    ),
    "mysql": (
        "CREATE TABLE floor_sessions (id bigint AUTO_INCREMENT PRIMARY KEY, "
        "session_id varchar(255) NOT NULL UNIQUE, created_at datetime(6) NOT NULL, "
        "updated_at datetime(6) NOT NULL)",
        "CREATE TABLE floor_messages (id bigint AUTO_INCREMENT PRIMARY KEY, "
        "session_id bigint NOT NULL, data longtext NOT NULL CHECK (json_valid(data)), "
        "created_at datetime(6) NOT NULL, FOREIGN KEY (session_id) "
        "REFERENCES floor_sessions (id) ON DELETE CASCADE)",
    ),
}


def floor_sql(db: str) -> FloorSQL:
    p = "?" if db == "sqlite" else "%s"
    data = "%s::jsonb" if db == "postgres" else p
    # A subquery for the session key, not a join: with a join PostgreSQL walks the
    # primary key backwards over every session's rows instead of the index.
    newest = (
        "FROM floor_messages m WHERE m.session_id = "
        f"(SELECT id FROM floor_sessions WHERE session_id = {p}) ORDER BY m.id DESC"
    )
    insert_session = (
        f"INSERT INTO floor_sessions (session_id, created_at, updated_at) VALUES ({p}, {p}, {p})"
    )
    if db == "mysql":
        upsert = (
            f"{insert_session} ON DUPLICATE KEY UPDATE id = LAST_INSERT_ID(id), "
            "updated_at = VALUES(updated_at)"
        )
    else:
        upsert = (
            f"{insert_session} ON CONFLICT (session_id) "
            "DO UPDATE SET updated_at = excluded.updated_at RETURNING id"
        )
    stamps: dict[str, Callable[[], Any]] = {
        "sqlite": lambda: datetime.now(UTC).isoformat(),
        "postgres": lambda: datetime.now(UTC),
        "mysql": lambda: datetime.now(UTC).replace(tzinfo=None),
    }
    return FloorSQL(
        ddl=(
            *FLOOR_DDL[db],
            "CREATE INDEX floor_msg_session_id ON floor_messages (session_id, id)",
        ),
        upsert=upsert,
        upsert_fetch="lastrowid" if db == "mysql" else "scalar",
        get_all=f"SELECT m.data {newest.removesuffix(' DESC')}",
        get_newest=f"SELECT m.data {newest} LIMIT {p}",
        insert=(
            f"INSERT INTO floor_messages (session_id, data, created_at) VALUES ({p}, {data}, {p})"
        ),
        lock=f"UPDATE floor_sessions SET updated_at = {p} WHERE session_id = {p}",
        newest_row=f"SELECT m.id, m.data {newest} LIMIT 1",
        delete_row=f"DELETE FROM floor_messages WHERE id = {p}",
        clear_messages=(
            "DELETE FROM floor_messages WHERE session_id IN "
            f"(SELECT id FROM floor_sessions WHERE session_id = {p})"
        ),
        clear_session=f"DELETE FROM floor_sessions WHERE session_id = {p}",
        stamp=stamps[db],
        # psycopg parses jsonb itself; the others hand back JSON text.
        load=(lambda value: value) if db == "postgres" else json.loads,
    )


def get_plan(sql: FloorSQL, sid: str, limit: int | None) -> Plan[list[Any]]:
    if limit is None:
        rows = yield Query(sql.get_all, (sid,), "all")
    else:
        rows = (yield Query(sql.get_newest, (sid, limit), "all"))[::-1]
    return [sql.load(row[0]) for row in rows]


def add_plan(sql: FloorSQL, sid: str, new: list[Item]) -> Plan[None]:
    now = sql.stamp()
    pk = yield Query(sql.upsert, (sid, now, now), sql.upsert_fetch)
    yield Query(sql.insert, [(pk, json.dumps(item), now) for item in new], "many")


def pop_plan(sql: FloorSQL, sid: str) -> Plan[Any]:
    if not (yield Query(sql.lock, (sql.stamp(), sid), "rowcount")):
        return None
    row = yield Query(sql.newest_row, (sid,), "one")
    if row is None:
        return None
    yield Query(sql.delete_row, (row[0],))
    return sql.load(row[1])


def clear_plan(sql: FloorSQL, sid: str) -> Plan[None]:
    yield Query(sql.clear_messages, (sid,))
    yield Query(sql.clear_session, (sid,))


def fetched(cursor: Any, fetch: str, rows: Any) -> Any:
    """What a query hands back to its plan once executed (``rows`` for all/one)."""
    if fetch == "scalar":
        return rows[0]
    if fetch == "rowcount":
        return cursor.rowcount
    if fetch == "lastrowid":
        return cursor.lastrowid
    return rows


def drive_sync(cursor: Any, plan: Plan[T]) -> T:
    try:
        query = next(plan)
        while True:
            if query.fetch == "many":
                cursor.executemany(query.sql, query.params)
            else:
                cursor.execute(query.sql, query.params)
            rows = cursor.fetchall() if query.fetch == "all" else None
            if query.fetch in ("one", "scalar"):
                rows = cursor.fetchone()
            query = plan.send(fetched(cursor, query.fetch, rows))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


async def drive_async(cursor: Any, plan: Plan[T]) -> T:
    try:
        query = next(plan)
        while True:
            if query.fetch == "many":
                await cursor.executemany(query.sql, query.params)
            else:
                await cursor.execute(query.sql, query.params)
            rows = await cursor.fetchall() if query.fetch == "all" else None
            if query.fetch in ("one", "scalar"):
                rows = await cursor.fetchone()
            query = plan.send(fetched(cursor, query.fetch, rows))
    except StopIteration as done:
        return done.value  # type: ignore[no-any-return]


class Backend(Protocol):
    async def run(self, plan: Plan[T], *, write: bool) -> T: ...
    async def close(self) -> None: ...


class ThreadedBackend:
    """A blocking DB-API driver: one connection per worker thread, one hop per operation."""

    def __init__(self, connect: Callable[[], Any], begin: str) -> None:
        self._connect = connect
        self._begin = begin
        self._local = threading.local()
        self._opened: list[Any] = []
        self._lock = threading.Lock()

    def _connection(self) -> Any:
        conn = getattr(self._local, "conn", None)
        if conn is None:
            conn = self._local.conn = self._connect()
            with self._lock:
                self._opened.append(conn)
        return conn

    def _run(self, plan: Plan[T], write: bool) -> T:
        cursor = self._connection().cursor()
        try:
            if not write:
                return drive_sync(cursor, plan)
            cursor.execute(self._begin)
            try:
                result = drive_sync(cursor, plan)
            except BaseException:
                cursor.execute("ROLLBACK")
                raise
            cursor.execute("COMMIT")
            return result
        finally:
            cursor.close()

    async def run(self, plan: Plan[T], *, write: bool) -> T:
        return await asyncio.to_thread(self._run, plan, write)

    async def close(self) -> None:
        for conn in self._opened:
            conn.close()


class PsycopgBackend:
    """psycopg's async connection, from a small pool of reused connections."""

    def __init__(self, conninfo: str, size: int) -> None:
        self._conninfo = conninfo
        self._slots = asyncio.Semaphore(size)
        self._idle: list[Any] = []
        self._opened: list[Any] = []

    @asynccontextmanager
    async def _connection(self) -> Any:
        import psycopg

        async with self._slots:
            if self._idle:
                conn = self._idle.pop()
            else:
                conn = await psycopg.AsyncConnection.connect(self._conninfo, autocommit=True)
                self._opened.append(conn)
            try:
                yield conn
            finally:
                self._idle.append(conn)

    async def run(self, plan: Plan[T], *, write: bool) -> T:
        async with self._connection() as conn:
            if not write:
                async with conn.cursor() as cursor:
                    return await drive_async(cursor, plan)
            async with conn.transaction(), conn.cursor() as cursor:
                return await drive_async(cursor, plan)

    async def close(self) -> None:
        for conn in self._opened:
            await conn.close()


@dataclass
class FloorSession:
    session_id: str
    sql: FloorSQL
    backend: Backend

    async def get_items(self, limit: int | None = None) -> list[Any]:
        return await self.backend.run(get_plan(self.sql, self.session_id, limit), write=False)

    async def add_items(self, items: list[Any]) -> None:
        if items:
            await self.backend.run(add_plan(self.sql, self.session_id, items), write=True)

    async def pop_item(self) -> Any:
        return await self.backend.run(pop_plan(self.sql, self.session_id), write=True)

    async def clear_session(self) -> None:
        await self.backend.run(clear_plan(self.sql, self.session_id), write=True)


def sqlite_connect(path: Path) -> Callable[[], sqlite3.Connection]:
    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, timeout=20, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA foreign_keys=ON")
        return conn

    return connect


def mysql_connect() -> Any:
    import MySQLdb
    from MySQLdb.constants import CLIENT

    return MySQLdb.connect(
        host=MY["host"],
        port=MY["port"],
        user=MY["user"],
        password=MY["password"],
        database=DB_NAME,
        charset="utf8mb4",
        autocommit=True,
        client_flag=CLIENT.FOUND_ROWS,
        # Django's default on MySQL and MariaDB.
        init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
    )


def floor_backend(db: str, workdir: Path) -> Backend:
    if db == "sqlite":
        return ThreadedBackend(sqlite_connect(workdir / "floor.sqlite3"), "BEGIN IMMEDIATE")
    if db == "postgres":
        conninfo = f"host={PG['host']} port={PG['port']} user={PG['user']} dbname={DB_NAME}"
        return PsycopgBackend(conninfo, size=16)
    return ThreadedBackend(mysql_connect, "START TRANSACTION")


async def floor_contender(db: str, workdir: Path) -> Contender:
    sql = floor_sql(db)
    backend = floor_backend(db, workdir)

    def ddl() -> Plan[None]:
        for statement in sql.ddl:
            yield Query(statement, ())

    await backend.run(ddl(), write=False)

    async def close(_: Contender) -> None:
        await backend.close()

    return Contender(FLOOR, lambda sid: FloorSession(sid, sql, backend), on_close=close)


# -- database and Django setup ---------------------------------------------------------


def recreate_server_database(db: str) -> None:
    """Drop and create ``ods_bench``: the benchmark's own scratch database."""
    if db == "postgres":
        import psycopg

        with psycopg.connect(dbname="postgres", autocommit=True, **PG) as conn:  # type: ignore[arg-type]
            conn.execute(f"DROP DATABASE IF EXISTS {DB_NAME} WITH (FORCE)")
            conn.execute(f"CREATE DATABASE {DB_NAME}")
    elif db == "mysql":
        import MySQLdb

        conn = MySQLdb.connect(
            host=MY["host"], port=MY["port"], user=MY["user"], password=MY["password"]
        )
        try:
            cursor = conn.cursor()
            cursor.execute(f"DROP DATABASE IF EXISTS {DB_NAME}")
            cursor.execute(
                f"CREATE DATABASE {DB_NAME} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci"
            )
        finally:
            conn.close()


def django_database(db: str, workdir: Path) -> dict[str, Any]:
    if db == "sqlite":
        return {
            "ENGINE": "django.db.backends.sqlite3",
            "NAME": str(workdir / "django.sqlite3"),
            "OPTIONS": {
                "init_command": "PRAGMA journal_mode=WAL;",
                "transaction_mode": "IMMEDIATE",
                "timeout": 20,
            },
        }
    if db == "postgres":
        # Django's own connection pool (psycopg_pool), as an ASGI deployment should
        # use: each request is a new thread, so without it every request connects.
        return {
            "ENGINE": "django.db.backends.postgresql",
            "NAME": DB_NAME,
            "USER": PG["user"],
            "HOST": PG["host"],
            "PORT": PG["port"],
            "OPTIONS": {"pool": {"min_size": 4, "max_size": 40}},
        }
    return {
        "ENGINE": "django.db.backends.mysql",
        "NAME": DB_NAME,
        "USER": MY["user"],
        "PASSWORD": MY["password"],
        "HOST": MY["host"],
        "PORT": MY["port"],
        "OPTIONS": {"charset": "utf8mb4"},
    }


def setup_django(
    db: str, workdir: Path, prepare_threshold: int | None = None, *, admin: bool = False
) -> str:
    """Configure Django, migrate the app, and return the database server's version.

    ``prepare_threshold`` (PostgreSQL): the OPTIONS under which psycopg prepares a
    statement once it has run that many times on a connection. ``admin``: Django's
    admin is installed too (the search workload times its changelist).
    """
    import django
    from django.conf import settings
    from django.core.management import call_command
    from django.db import connection

    recreate_server_database(db)
    database = django_database(db, workdir)
    if prepare_threshold is not None:
        if db != "postgres":
            raise SystemExit("--prepare-threshold applies to --db postgres only")
        database["OPTIONS"] |= {"server_side_binding": True, "prepare_threshold": prepare_threshold}
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        USE_TZ=True,
        INSTALLED_APPS=[
            *(["django.contrib.admin"] if admin else []),
            "django.contrib.auth",  # the sessions' owner is a user
            "django.contrib.contenttypes",
            "openai_django_sessions",
        ],
        DATABASES={"default": database},
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    # With the admin, every app (the users' table as it is now, not as the app's
    # first migration needs it); without, the app and what it depends on.
    call_command("migrate", *([] if admin else ["openai_django_sessions"]), verbosity=0)
    version = {
        "sqlite": "SELECT 'SQLite ' || sqlite_version()",
        "postgres": "SELECT 'PostgreSQL ' || current_setting('server_version')",
        "mysql": "SELECT VERSION()",
    }[db]
    with connection.cursor() as cursor:
        cursor.execute(version)
        (server,) = cursor.fetchone()
    connection.close()
    return str(server)


def check_wal(workdir: Path) -> None:
    """Every SQLite contender's file must be in WAL mode (the mode persists in the file)."""
    for path in sorted(workdir.glob("*.sqlite3")):
        with sqlite3.connect(path) as conn:
            mode = conn.execute("PRAGMA journal_mode").fetchone()[0]
        if mode != "wal":
            raise SystemExit(f"{path.name} is in journal_mode={mode}, not WAL")


async def build_contenders(db: str, workdir: Path, django_cursor: bool) -> list[Contender]:
    if django_cursor:  # both settings of DRIVER_CURSOR, taking turns like the others
        contenders = [django_contender(True), django_contender(False)]
    else:
        contenders = [django_contender()]
    if db == "sqlite":
        contenders.append(sdk_sqlite_contender(workdir / "sdk.sqlite3"))
    contenders.append(await sqlalchemy_contender(db, workdir))
    contenders.append(await floor_contender(db, workdir))
    return contenders


async def verify(contender: Contender) -> None:
    """Each contender must really implement the protocol before it is timed."""
    session = contender.session("verify")
    await session.clear_session()
    await session.add_items(batch(0))
    checks = [
        await session.get_items() == batch(0),
        await session.get_items(2) == batch(0)[-2:],
        await session.pop_item() == batch(0)[-1],
        await session.get_items() == batch(0)[:-1],
    ]
    await session.clear_session()
    checks.append(await session.get_items() == [])
    if not all(checks):
        raise SystemExit(f"{contender.name} does not behave like a session: {checks}")


async def fill(session: Store, count: int) -> None:
    """Clear ``session`` and give it ``count`` items, in calls of at most 100."""
    await session.clear_session()
    history = items(count)
    for start in range(0, count, 100):
        await session.add_items(history[start : start + 100])


async def prepare_data(contender: Contender) -> None:
    """Untimed data every round relies on, and other conversations around it."""
    await fill(contender.session("history"), HISTORY)
    for index in range(BACKGROUND):
        await contender.session(f"background-{index}").add_items(items(20))
    for index in range(CONVERSATIONS):
        await contender.session(f"conversation-{index}").add_items(batch(index))
    contender.sessions.clear()  # the background ones are not needed again


def analyze(db: str, workdir: Path) -> None:
    """Refresh planner statistics after the data is in, as a database in use would have them."""
    if db == "sqlite":
        for path in sorted(workdir.glob("*.sqlite3")):
            with sqlite3.connect(path, timeout=20) as conn:
                conn.execute("ANALYZE")
    elif db == "postgres":
        import psycopg

        with psycopg.connect(dbname=DB_NAME, autocommit=True, **PG) as conn:  # type: ignore[arg-type]
            conn.execute("ANALYZE")
    else:
        conn = mysql_connect()
        try:
            cursor = conn.cursor()
            cursor.execute("SHOW TABLES")
            tables = ", ".join(name for (name,) in cursor.fetchall())
            cursor.execute(f"ANALYZE TABLE {tables}")
            cursor.fetchall()
        finally:
            conn.close()


# -- workloads -------------------------------------------------------------------------
#
# A workload is one operation (``step``), repeated. Contenders take turns every few
# operations (a slice of a few milliseconds), so load from outside the benchmark
# weighs on them alike.


async def nothing(contender: Contender, ops: int) -> None:
    return None


async def turn(session: Store, n: int, limit: int | None) -> None:
    await session.get_items(limit=limit)
    await session.add_items(batch(n))


async def step_turn(contender: Contender, n: int) -> None:
    await turn(contender.session("turn"), n, 20)


async def prepare_turn_full(contender: Contender, ops: int) -> None:
    await fill(contender.session("turn_full"), 50)


async def step_turn_full(contender: Contender, n: int) -> None:
    await turn(contender.session("turn_full"), n, None)


async def step_read_all(contender: Contender, n: int) -> None:
    await contender.session("history").get_items()


async def step_read_20(contender: Contender, n: int) -> None:
    await contender.session("history").get_items(limit=20)


async def prepare_pop(contender: Contender, ops: int) -> None:
    await fill(contender.session("pop"), ops + 5)


async def step_pop(contender: Contender, n: int) -> None:
    if await contender.session("pop").pop_item() is None:
        raise RuntimeError(f"{contender.name}: pop found the session empty")


async def conversation(contender: Contender, index: int, wave: int) -> None:
    """A few turns of one conversation, inside one request context."""
    async with contender.request():
        session = contender.session(f"conversation-{index}")
        for n in range(TURNS_PER_REQUEST):
            await turn(session, index + wave + n, 20)


async def step_concurrent(contender: Contender, wave: int) -> None:
    """One wave: 32 conversations at once, each making a few turns."""
    await asyncio.gather(*(conversation(contender, i, wave) for i in range(CONVERSATIONS)))


@dataclass(frozen=True)
class Workload:
    name: str
    ops: int  # operations per round at full scale
    step: Callable[[Contender, int], Awaitable[None]]  # one step, the n-th of the round
    prepare: Callable[[Contender, int], Awaitable[None]] = nothing
    unit: str = "ops"
    per_step: int = 1  # operations one step makes
    per_slice: int = 1  # steps a contender makes before the next one's turn (a few ms)

    def scaled(self, scale: float) -> int:
        """Steps per round."""
        return max(self.per_slice, round(self.ops * scale / self.per_step))


WORKLOADS = (
    Workload("turn", 200, step_turn, unit="turns", per_slice=4),
    Workload("turn_full", 60, step_turn_full, prepare_turn_full, unit="turns", per_slice=2),
    Workload("read_all_2000", 16, step_read_all, unit="reads"),
    Workload("read_20_of_2000", 400, step_read_20, unit="reads", per_slice=8),
    Workload("pop", 240, step_pop, prepare_pop, unit="pops", per_slice=4),
    Workload(
        "concurrent_32",
        256,
        step_concurrent,
        unit="turns",
        per_step=CONVERSATIONS * TURNS_PER_REQUEST,
    ),
)


# The workloads a run times (--workload NAME, repeatable; all by default).
ONLY: list[str] = []


def chosen_workloads() -> list[Workload]:
    return [w for w in WORKLOADS if not ONLY or w.name in ONLY]


# -- running and reporting ---------------------------------------------------------------


@dataclass
class Spent:
    """What one contender spent on one workload in one round."""

    wall: float = 0.0  # seconds
    cpu: float = 0.0  # seconds of this process's CPU, every thread (SQLite runs in it)
    ops: int = 0

    @property
    def rate(self) -> float:
        return self.ops / self.wall

    @property
    def cpu_us(self) -> float:
        return self.cpu / self.ops * 1e6


Results = dict[tuple[str, str], list[Spent]]
Step = Callable[[int], Awaitable[object]]


def rotated(contenders: list[T], shift: int) -> list[T]:
    shift %= len(contenders)
    return contenders[shift:] + contenders[:shift]


async def interleaved(
    steps: dict[str, Step], count: int, per_slice: int, shift: int = 0, per_step: int = 1
) -> dict[str, Spent]:
    """Run ``count`` steps of each contender, ``per_slice`` at a time, taking turns.

    The order of the contenders rotates from one slice to the next. Wall time and
    the process's CPU time are taken around each slice, so between two readings
    only that contender's work runs.
    """
    spent = {name: Spent() for name in steps}
    names = list(steps)
    for slice_no, first in enumerate(range(0, count, per_slice)):
        last = min(first + per_slice, count)
        for name in rotated(names, shift + slice_no):
            step, into = steps[name], spent[name]
            wall, cpu = time.perf_counter(), time.process_time()
            for n in range(first, last):
                await step(n)
            into.cpu += time.process_time() - cpu
            into.wall += time.perf_counter() - wall
            into.ops += (last - first) * per_step
    return spent


async def run_rounds(contenders: list[Contender], rounds: int, scale: float) -> Results:
    results: Results = {}
    live = [c for c in contenders if c.error is None]
    for round_no in range(-1, rounds):  # round -1 warms connections and caches up
        for index, workload in enumerate(chosen_workloads()):
            count = workload.scaled(scale if round_no >= 0 else scale / 4)
            for contender in live:
                await workload.prepare(contender, count * workload.per_step)
            steps: dict[str, Step] = {c.name: functools.partial(workload.step, c) for c in live}
            spent = await interleaved(
                steps, count, workload.per_slice, round_no + index, workload.per_step
            )
            if round_no >= 0:
                for name, one in spent.items():
                    results.setdefault((workload.name, name), []).append(one)
        if round_no >= 0:
            print(f"round {round_no + 1}/{rounds} done", file=sys.stderr, flush=True)
    return results


def machine(server: str) -> str:
    cpu = "unknown CPU"
    cpuinfo = Path("/proc/cpuinfo")
    if cpuinfo.exists():
        for line in cpuinfo.read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    versions = ", ".join(
        f"{name} {importlib.metadata.version(name)}"
        for name in ("Django", "openai-agents", "SQLAlchemy")
    )
    return (
        f"{cpu}, {os.cpu_count()} cores, {platform.system()}; "
        f"Python {platform.python_version()}, {versions}; {server}"
    )


def ratio(results: Results, workload: str, numerator: str, denominator: str, cpu: bool) -> str:
    """The median over rounds of each round's ratio (the contenders of a round ran
    interleaved, so load from outside the benchmark weighs on both alike); above 1
    ``numerator`` is faster (wall) or spends less CPU (cpu)."""
    top, bottom = results.get((workload, numerator)), results.get((workload, denominator))
    if not top or not bottom or len(top) != len(bottom):
        return "—"
    pairs = zip(top, bottom, strict=True)
    per_round = [b.cpu_us / t.cpu_us if cpu else t.rate / b.rate for t, b in pairs]
    return f"{statistics.median(per_round):.2f}x"


def table_rows(contenders: list[Contender], results: Results, cpu: bool) -> list[list[str]]:
    baselines = [SDK_SQLITE] if any(c.name == SDK_SQLITE for c in contenders) else []
    baselines += [SQLALCHEMY, FLOOR]
    if any(c.name == DJANGO_CURSOR for c in contenders):
        baselines.append(DJANGO_CURSOR)
    short = {SDK_SQLITE: "SQLite", SQLALCHEMY: "SA", FLOOR: "floor", DJANGO_CURSOR: "cursor"}
    # With both settings of DRIVER_CURSOR: Django's cursor against the same baselines.
    before = (
        [b for b in baselines if b in (SDK_SQLITE, FLOOR)] if DJANGO_CURSOR in baselines else []
    )
    header = [
        "CPU µs per operation" if cpu else "workload (per second)",
        *(c.name for c in contenders),
        *(f"Django/{short[name]}" for name in baselines),
        *(f"cursor/{short[name]}" for name in before),
    ]
    rows = [header]
    for workload in chosen_workloads():
        cells = [f"{workload.name} ({workload.unit})"]
        for contender in contenders:
            spent = results.get((workload.name, contender.name))
            if contender.error is not None:
                cells.append(contender.error.split(":", 1)[0])
            elif not spent:
                cells.append("—")
            else:
                value = statistics.median(s.cpu_us if cpu else s.rate for s in spent)
                cells.append(f"{value:,.0f}")
        cells += [ratio(results, workload.name, DJANGO, name, cpu) for name in baselines]
        cells += [ratio(results, workload.name, DJANGO_CURSOR, name, cpu) for name in before]
        rows.append(cells)
    return rows


def report(
    args: argparse.Namespace, contenders: list[Contender], results: Results, server: str
) -> str:
    render = render_markdown if args.markdown else render_text
    tables = [render(table_rows(contenders, results, cpu)) for cpu in (False, True)]
    body = "\n\n".join(tables)
    prepared = (
        "" if args.prepare_threshold is None else f", prepare_threshold={args.prepare_threshold}"
    )
    title = f"{args.db}{prepared}: median of {args.rounds} rounds{' (quick)' if args.quick else ''}"
    notes = [f"{c.name}: {c.error}" for c in contenders if c.error is not None]
    if args.markdown:
        head = f"**{title}** — {machine(server)}"
        return "\n\n".join([head, body, *(f"{n}" for n in notes)])
    return "\n".join([title, machine(server), "", body, *notes])


# -- what usage recording costs ---------------------------------------------------------


def statements_per_turn() -> str:
    """Statements a ``turn`` sends, without and with the SDK's run context (``wrapper``).

    With a wrapper, each turn's ``add_items`` records the usage the run spent since
    the last one (here one model request per turn), as under ``Runner``.
    """
    from agents import RunContextWrapper
    from agents.usage import Usage
    from asgiref.sync import async_to_sync, sync_to_async
    from django.db import connections
    from django.test.utils import CaptureQueriesContext

    from openai_django_sessions import DjangoSession

    async def turns(session_id: str, wrapper: Any) -> None:
        session = DjangoSession(session_id)
        for n in range(5):
            await session.get_items(limit=20, wrapper=wrapper)
            if wrapper is not None:  # the model call the turn stands for
                wrapper.usage.add(Usage(requests=1, input_tokens=900, total_tokens=1000))
            await session.add_items(batch(n), wrapper=wrapper)

    def count(session_id: str, wrapper: Any) -> float:
        async_to_sync(turns)(f"{session_id}-warm", wrapper)
        with CaptureQueriesContext(connections["default"]) as queries:
            async_to_sync(turns)(session_id, wrapper)
        return len(queries.captured_queries) / 5

    def measure() -> tuple[float, float]:
        # Runs in one thread, so the sessions' queries land on the connection captured.
        without = count("stmts-plain", None)
        with_wrapper = count("stmts-usage", RunContextWrapper(context=None))
        connections.close_all()
        return without, with_wrapper

    without, with_wrapper = asyncio.run(sync_to_async(measure, thread_sensitive=False)())
    return (
        f"statements per turn (get_items(limit=20) + add_items of 5): "
        f"{without:g} without a run context, {with_wrapper:g} recording usage"
    )


# -- entry point -----------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "mysql"), default="sqlite")
    parser.add_argument(
        "--rounds", type=int, default=None, help="measured rounds (default 7, 2 with --quick)"
    )
    parser.add_argument("--quick", action="store_true", help="smoke run: fewer, shorter rounds")
    parser.add_argument("--markdown", action="store_true", help="print a markdown table")
    parser.add_argument(
        "--prepare-threshold",
        type=int,
        default=None,
        metavar="N",
        help="PostgreSQL: Django's alias gets OPTIONS server_side_binding=True and "
        "prepare_threshold=N (prepared statements)",
    )
    parser.add_argument(
        "--workload",
        action="append",
        default=[],
        choices=[w.name for w in WORKLOADS],
        help="time only this workload (repeatable; default: all)",
    )
    search_workload.add_arguments(parser)
    parser.add_argument(
        "--django-cursor",
        action="store_true",
        help="one more contender: DjangoSession with DRIVER_CURSOR off (Django's cursor)",
    )
    args = parser.parse_args(argv)
    ONLY[:] = args.workload
    if args.rounds is None:
        args.rounds = 2 if args.quick else 7
    if args.rounds < 1:
        parser.error("--rounds must be at least 1")
    return args


async def benchmark(args: argparse.Namespace, workdir: Path) -> tuple[list[Contender], Results]:
    contenders = await build_contenders(args.db, workdir, args.django_cursor)
    try:
        for contender in contenders:
            if contender.error is None:
                await verify(contender)
        for contender in contenders:
            if contender.error is None:
                await prepare_data(contender)
        await asyncio.to_thread(analyze, args.db, workdir)
        if args.db == "sqlite":
            check_wal(workdir)
        scale = 0.15 if args.quick else 1.0
        results = await run_rounds(contenders, args.rounds, scale)
    finally:
        for contender in contenders:
            await contender.close()
    return contenders, results


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    if args.search:
        search(args)
        return
    with tempfile.TemporaryDirectory(prefix="ods-bench-") as tmp:
        workdir = Path(tmp)
        server = setup_django(args.db, workdir, args.prepare_threshold)
        contenders, results = asyncio.run(benchmark(args, workdir))
        statements = statements_per_turn()
    print(report(args, contenders, results, server))
    print(statements)


def search(args: argparse.Namespace) -> None:
    """The search workload (``search_workload.py``), on its own scratch database."""
    global DB_NAME
    DB_NAME = os.environ.get("BENCH_DB_NAME", "ods_bench_search")
    with tempfile.TemporaryDirectory(prefix="ods-bench-") as tmp:
        workdir = Path(tmp)
        server = setup_django(args.db, workdir, args.prepare_threshold, admin=True)
        print(
            search_workload.run(
                args, functools.partial(analyze, args.db, workdir), lambda: machine(server)
            )
        )
        from django.db import connections

        connections.close_all()


if __name__ == "__main__":
    main()
