"""The hot statements on the driver's cursor, and on Django's whenever something observes it.

With ``DRIVER_CURSOR`` on (the default) and nothing watching Django's cursors, the
history read, the session upsert, the message insert and pop's lock and delete run
on the driver's cursor of Django's connection; with the setting off, with queries
logged (``DEBUG``, ``assertNumQueries``), with an execute wrapper, with the
connection's ``cursor`` replaced or ``CursorWrapper.execute`` replaced (as APM
integrations do), they run on Django's cursor. Which cursor ran a statement is seen
with ``sys.setprofile``, which watches the calls without changing any.

The suite as a whole runs both ways: ``TEST_DRIVER_CURSOR=0`` turns the setting off
for a run (``scripts/test``'s ``-orm`` variants).
"""

from __future__ import annotations

import functools
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from types import FrameType
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import DatabaseError, connection, connections, transaction
from django.db.backends.utils import CursorWrapper
from django.test.utils import CaptureQueriesContext

from openai_django_sessions import DjangoSession
from openai_django_sessions._driver import DriverCursor
from openai_django_sessions._storage import storage_for
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)

TURN = [{"role": "user", "content": f"question {n}"} for n in range(5)]


def hot_statements() -> dict[str, str]:
    """The statements a turn and a pop send, by name, as ``Storage`` compiled them."""
    store = storage_for(AgentSession, AgentMessage, "default")
    return {
        "history read": store.history_sql(limit=20),
        "session upsert": store._upsert,
        "message insert": store._insert_messages_sql(len(TURN))[0],
        "pop's lock": store._lock,
        "pop": store._pop,
    }


@dataclass
class Seen:
    """The SQL that went through Django's ``CursorWrapper`` and through ``DriverCursor``."""

    django: list[str] = field(default_factory=list)
    driver: list[str] = field(default_factory=list)


@contextmanager
def watching() -> Iterator[Seen]:
    """Which cursor runs each statement of this thread, seen with ``sys.setprofile``."""
    seen = Seen()
    django = CursorWrapper._execute.__code__  # every statement of Django's cursor ends here
    driver = DriverCursor.execute.__code__

    def profile(frame: FrameType, event: str, arg: Any) -> None:
        if event == "call":
            if frame.f_code is django:
                seen.django.append(frame.f_locals["sql"])
            elif frame.f_code is driver:
                seen.driver.append(frame.f_locals["sql"])

    sys.setprofile(profile)
    try:
        yield seen
    finally:
        sys.setprofile(None)


def turn_and_pop(session_id: str = "driver") -> list[Any]:
    """A turn (``get_items(limit=20)``, ``add_items`` of five) and a pop, run on this thread.

    ``async_to_sync`` brings the session's ``sync_to_async`` calls back to this
    thread, so they use the test's connection and the profile above sees them.
    """
    session = DjangoSession(session_id)

    async def work() -> list[Any]:
        await session.get_items(limit=20)
        await session.add_items(TURN)
        await session.pop_item()
        return await session.get_items()

    return async_to_sync(work)()


def run_warm() -> None:
    # Compiles every statement once first: what is compiled on first use is not a turn's.
    turn_and_pop("warm-up")


@pytest.fixture
def driver_cursor(settings: Any) -> Callable[[bool], None]:
    """Sets ``DRIVER_CURSOR`` for this test, whatever the run's ``TEST_DRIVER_CURSOR``."""

    def set_it(on: bool) -> None:
        settings.OPENAI_DJANGO_SESSIONS = {"DRIVER_CURSOR": on}

    set_it(True)
    return set_it


def test_with_nothing_observing_the_hot_statements_skip_djangos_cursor(
    driver_cursor: Callable[[bool], None],
) -> None:
    run_warm()
    hot = hot_statements()

    with watching() as seen:
        items = turn_and_pop()

    assert items == TURN[:4]
    assert set(hot.values()) <= set(seen.driver), seen.driver
    assert not set(hot.values()) & set(seen.django), seen.django


def test_with_the_setting_off_the_hot_statements_run_on_djangos_cursor(
    driver_cursor: Callable[[bool], None],
) -> None:
    run_warm()
    hot = hot_statements()

    driver_cursor(False)  # read again: setting_changed
    with watching() as seen:
        off = turn_and_pop("off")
    driver_cursor(True)
    with watching() as seen_again:
        on = turn_and_pop("on")

    assert off == on == TURN[:4]
    assert set(hot.values()) <= set(seen.django)
    assert seen.driver == []
    assert set(hot.values()) <= set(seen_again.driver)
    assert not set(hot.values()) & set(seen_again.django)


def test_an_execute_wrapper_sees_every_hot_statement(
    driver_cursor: Callable[[bool], None],
) -> None:
    run_warm()
    hot = hot_statements()
    wrapped: list[str] = []

    def wrapper(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        wrapped.append(sql)
        return execute(sql, params, many, context)

    with connection.execute_wrapper(wrapper), watching() as seen:
        assert turn_and_pop() == TURN[:4]

    assert set(hot.values()) <= set(wrapped), wrapped
    assert seen.driver == []


def test_queries_logged_under_debug_include_every_hot_statement(
    driver_cursor: Callable[[bool], None], settings: Any
) -> None:
    run_warm()
    hot = hot_statements()
    settings.DEBUG = True
    connection.queries_log.clear()

    with watching() as seen:
        assert turn_and_pop() == TURN[:4]

    logged = [query["sql"] for query in connection.queries]
    for name, sql in hot.items():
        # The log shows the statement with its parameters filled in.
        assert any(_same_statement(sql, entry) for entry in logged), (name, logged)
    assert seen.driver == []


def _same_statement(sql: str, logged: str) -> bool:
    head = sql.split("%s")[0].rstrip("(, =")
    return logged.startswith(head)


def test_assert_num_queries_counts_the_hot_statements(
    driver_cursor: Callable[[bool], None], django_assert_num_queries: Any
) -> None:
    run_warm()
    hot = hot_statements()
    with CaptureQueriesContext(connection) as on_djangos_cursor:
        driver_cursor(False)
        turn_and_pop("counted by hand")
        driver_cursor(True)
    expected = len(on_djangos_cursor.captured_queries)

    with django_assert_num_queries(expected) as captured, watching() as seen:
        assert turn_and_pop() == TURN[:4]

    sent = [query["sql"] for query in captured.captured_queries]
    for name, sql in hot.items():
        assert any(_same_statement(sql, entry) for entry in sent), (name, sent)
    assert seen.driver == []


def test_a_replaced_connection_cursor_or_cursor_wrapper_execute_sees_every_hot_statement(
    driver_cursor: Callable[[bool], None], monkeypatch: pytest.MonkeyPatch
) -> None:
    """django-debug-toolbar replaces ``connection.cursor``, Sentry ``CursorWrapper.execute``."""
    run_warm()
    hot = hot_statements()
    through_cursor: list[str] = []
    through_execute: list[str] = []
    django_cursor = connection.cursor
    django_execute = CursorWrapper.execute

    def cursor() -> Any:
        wrapped = django_cursor()
        through_cursor.append("cursor")
        return wrapped

    @functools.wraps(django_execute)
    def execute(self: CursorWrapper, sql: str, params: Any = None) -> Any:
        through_execute.append(sql)
        return django_execute(self, sql, params)

    # Set on the connection itself, and deleted after: the class's method again.
    connections["default"].cursor = cursor  # type: ignore[method-assign]
    try:
        with watching() as seen:
            assert turn_and_pop("toolbar") == TURN[:4]
    finally:
        del connections["default"].cursor
    assert seen.driver == []
    assert len(through_cursor) >= len(hot)

    with monkeypatch.context() as patch:
        patch.setattr(CursorWrapper, "execute", execute)
        with watching() as seen:
            assert turn_and_pop("apm") == TURN[:4]
    assert seen.driver == []
    assert set(hot.values()) <= set(through_execute), through_execute

    with watching() as seen:  # both put back: the driver's cursor again
        turn_and_pop("after")
    assert set(hot.values()) <= set(seen.driver)


class Rollback(Exception):
    pass


def test_a_callers_atomic_rolled_back_undoes_the_writes_on_the_drivers_cursor(
    driver_cursor: Callable[[bool], None],
) -> None:
    run_warm()
    session = DjangoSession("rolled back")
    async_to_sync(session.add_items)(TURN[:2])

    with pytest.raises(Rollback), watching() as seen, transaction.atomic():
        async_to_sync(session.add_items)(TURN)
        async_to_sync(session.pop_item)()
        # Inside the caller's transaction the writes are there, on the same connection.
        assert async_to_sync(session.get_items)() == TURN[:2] + TURN[:4]
        raise Rollback

    writes = hot_statements()
    del writes["history read"]  # the whole history was read, not 20
    assert set(writes.values()) <= set(seen.driver)
    assert async_to_sync(session.get_items)() == TURN[:2]
    assert AgentMessage.objects.filter(session__session_id="rolled back").count() == 2


def test_a_failing_statement_on_the_drivers_cursor_raises_djangos_exception_class(
    driver_cursor: Callable[[bool], None],
) -> None:
    store = storage_for(AgentSession, AgentMessage, "default")
    with pytest.raises(DatabaseError) as raised, transaction.atomic(), store._cursor() as cursor:
        assert isinstance(cursor, DriverCursor)
        cursor.execute(f"SELECT no_such_column FROM {AgentSession._meta.db_table}", [])

    assert type(raised.value).__module__ == "django.db.utils"
    assert raised.value.__cause__ is not None  # the driver's error, read by the retry logic
    assert type(raised.value.__cause__).__module__ != "django.db.utils"


def test_a_setting_that_is_not_a_bool_keeps_djangos_cursor(
    driver_cursor: Callable[[bool], None], settings: Any
) -> None:
    run_warm()
    hot = hot_statements()
    settings.OPENAI_DJANGO_SESSIONS = {"DRIVER_CURSOR": "yes"}  # check E003 reports it

    with watching() as seen:
        assert turn_and_pop() == TURN[:4]

    assert set(hot.values()) <= set(seen.django)
    assert seen.driver == []
