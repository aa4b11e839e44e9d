"""The hot statements on the driver's cursor of Django's own connection.

A turn's statements (history read, session upsert, message insert, pop) are
short and already compiled (see ``_storage``); on them Django's
``CursorWrapper`` costs about as much as the database does on SQLite: a
wrapper object per cursor, the execute wrappers' chain, a regular expression
over every SQLite statement, the checks before each ``execute``. ``cursor()``
here hands out either Django's cursor or the driver's cursor of the same
connection, so the statements run on the same connection, in the same
transaction (a caller's ``atomic`` included, through its savepoint), and
fail with the same ``django.db`` exception classes (the driver's error as
``__cause__``), which the retry and reconnect logic of ``_transactions``
reads.

Django's cursor is used whenever something may be watching it, checked on
every call: ``DRIVER_CURSOR`` set to ``False``, queries being logged
(``DEBUG``, or a forced debug cursor: ``assertNumQueries``,
``CaptureQueriesContext``), execute wrappers installed, the connection's
``cursor`` replaced on the instance (django-debug-toolbar), or
``CursorWrapper.execute`` replaced by code outside Django (APM integrations
such as Sentry's). Each is an attribute check.
"""

from __future__ import annotations

import types
from collections.abc import Sequence
from typing import Any, Protocol

from django.conf import settings
from django.core.signals import setting_changed
from django.db.backends import utils as backend_utils
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper

from . import _conf as conf


class Cursor(Protocol):
    """What the hot statements use of a cursor: Django's ``CursorWrapper`` or ``DriverCursor``."""

    @property
    def rowcount(self) -> int: ...

    def execute(self, sql: str, params: Sequence[Any]) -> Any: ...

    def fetchone(self) -> Any: ...

    def fetchall(self) -> Sequence[Any]: ...

    def __enter__(self) -> Cursor: ...

    def __exit__(self, *exc: object) -> None: ...


# DRIVER_CURSOR as last read; None until read, and again after the setting changes.
_enabled: bool | None = None


def enabled() -> bool:
    """``OPENAI_DJANGO_SESSIONS["DRIVER_CURSOR"]``: read once, again after ``setting_changed``."""
    global _enabled
    if _enabled is None:
        # Anything but True (a value check E003 reports) keeps Django's cursor.
        _enabled = conf.get("DRIVER_CURSOR") is True
    return _enabled


def _setting_changed(*, setting: str, **kwargs: Any) -> None:
    global _enabled
    if setting == conf.SETTING_NAME:
        _enabled = None


setting_changed.connect(_setting_changed, dispatch_uid="openai_django_sessions._driver")

_DJANGO_UTILS = backend_utils.__file__
# The last ``CursorWrapper.execute`` looked at, and whether it is Django's own.
_execute_seen: tuple[object, bool] = (None, False)


def _stock_execute() -> bool:
    """Whether ``CursorWrapper.execute`` is still the function Django defines."""
    global _execute_seen
    execute = CursorWrapper.execute
    seen, stock = _execute_seen
    if execute is seen:
        return stock
    # functools.wraps copies a wrapped function's name and module, not its code.
    code = getattr(execute, "__code__", None)
    stock = isinstance(code, types.CodeType) and code.co_filename == _DJANGO_UTILS
    _execute_seen = (execute, stock)
    return stock


def observed(connection: BaseDatabaseWrapper) -> bool:
    """True when Django's cursor must run the statements: something may be watching it."""
    return (
        not enabled()
        or connection.force_debug_cursor
        or settings.DEBUG
        or bool(connection.execute_wrappers)
        or "cursor" in connection.__dict__
        or not _stock_execute()
    )


def cursor(connection: BaseDatabaseWrapper) -> Cursor:
    """A cursor on ``connection`` for the hot statements: the driver's unless ``observed``."""
    if observed(connection):
        return connection.cursor()  # type: ignore[return-value]  # CursorWrapper has them all
    if connection.vendor == "sqlite":
        if type(connection).create_cursor is not _sqlite_create_cursor():
            # A backend of its own making cursors its own way: let Django's run.
            return connection.cursor()  # type: ignore[return-value]
        return DriverCursor(connection, qmark=True)
    return DriverCursor(connection, qmark=False)


def _sqlite_create_cursor() -> object:
    from django.db.backends.sqlite3.base import DatabaseWrapper

    return DatabaseWrapper.create_cursor


# Statements converted to SQLite's paramstyle, by their Django (``%s``) text.
# The statements are the few ``Storage`` compiles; the bound only guards
# against a caller passing many different history limits.
_QMARK: dict[str, str] = {}
_QMARK_MAX = 4096


def qmark(sql: str) -> str:
    """``sql`` with Django's ``%s`` placeholders as SQLite's ``?`` and ``%%`` as ``%``.

    The conversion of Django's ``SQLiteCursorWrapper``, done once per statement.
    """
    converted = _QMARK.get(sql)
    if converted is None:
        from django.db.backends.sqlite3.base import FORMAT_QMARK_REGEX

        converted = FORMAT_QMARK_REGEX.sub("?", sql).replace("%%", "%")
        if len(_QMARK) < _QMARK_MAX:
            _QMARK[sql] = converted
    return converted


class DriverCursor:
    """The driver's cursor of ``connection``, raising Django's exception classes.

    Opened as Django opens its cursor: the connection's health check (with
    ``CONN_HEALTH_CHECKS``), ``ensure_connection`` (a dropped connection is
    reopened outside a transaction, refused inside one), the thread-sharing
    check and the broken-transaction check. Driver errors from ``execute``
    and the fetches go through ``connection.wrap_database_errors``, as in
    ``CursorWrapper``. On PostgreSQL and MySQL/MariaDB the cursor comes from
    the backend's ``create_cursor`` (its timezone loader, MySQL's error
    mapping); on SQLite from the ``sqlite3`` connection, the statements
    converted by ``qmark`` instead of on every ``execute``.
    """

    __slots__ = ("_cursor", "_errors", "_qmark")

    def __init__(self, connection: BaseDatabaseWrapper, *, qmark: bool) -> None:
        connection.close_if_health_check_failed()
        connection.ensure_connection()
        connection.validate_thread_sharing()
        connection.validate_no_broken_transaction()
        self._errors = connection.wrap_database_errors
        self._qmark = qmark
        with self._errors:
            self._cursor = connection.connection.cursor() if qmark else connection.create_cursor()

    def __enter__(self) -> DriverCursor:
        return self

    def __exit__(self, *exc: object) -> None:
        # As CursorWrapper: an error while closing is of no use to anyone.
        # (try/except rather than contextlib.suppress: free when nothing is raised.)
        try:  # noqa: SIM105
            self._cursor.close()
        except Exception:
            pass

    @property
    def rowcount(self) -> int:
        return int(self._cursor.rowcount)

    def execute(self, sql: str, params: Sequence[Any]) -> None:
        if self._qmark:
            sql = qmark(sql)
        with self._errors:
            self._cursor.execute(sql, params)

    def fetchone(self) -> Any:
        with self._errors:
            return self._cursor.fetchone()

    def fetchall(self) -> Sequence[Any]:
        with self._errors:
            return self._cursor.fetchall()  # type: ignore[no-any-return]
