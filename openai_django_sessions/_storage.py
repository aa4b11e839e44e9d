"""The SQL behind every session operation, for one model pair on one database.

``storage_for(session_model, message_model, alias)`` returns the ``Storage``
that ``DjangoSession``, export/import and anything else writing sessions use.
Its statements are built by the ORM from the models' ``_meta`` (so custom
table names, quoting and fields added to a model are followed) and compiled
once per shape, then kept: building and compiling a queryset costs more than
running the query on an indexed row.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Mapping, Sequence
from typing import Any, Protocol, cast

from django.core.exceptions import PermissionDenied
from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.backends.utils import CursorWrapper
from django.db.models import Count, Field, ForeignKey, Max, Model, QuerySet, Subquery
from django.db.models.constants import OnConflict
from django.db.models.expressions import RawSQL
from django.db.models.sql import InsertQuery, UpdateQuery
from django.utils import timezone

from . import _driver, limits
from .items import JSONText, encode, json_size
from .models import AgentMessage, AgentSession, AgentUsage
from .search import message_text
from .usage import COUNTERS, sums

# Stand for the session id and the owner while the ORM compiles a statement; never sent.
_SESSION_ID = "<session id>"
_OWNER = "<owner>"
# The owner's key reaches the compiled SQL as a bare parameter: the foreign key
# would try to convert the stand-in to the user model's key type.
_OWNER_PARAM = RawSQL("%s", (_OWNER,))


class _Decoder(Protocol):
    """A field that converts the values its column returns (``JSONField`` does)."""

    def from_db_value(
        self, value: Any, expression: Any, connection: BaseDatabaseWrapper
    ) -> Any: ...


def columns(model: type[Model]) -> list[Field[Any, Any]]:
    """The concrete fields of ``model`` that a row is written with: all but the primary key."""
    return [
        cast("Field[Any, Any]", field)
        for field in model._meta.concrete_fields
        if not field.primary_key
    ]


def session_key(message_model: type[Model], session_model: type[Model]) -> ForeignKey[Any, Any]:
    """The foreign key from ``message_model`` to ``session_model``."""
    for field in message_model._meta.concrete_fields:
        if isinstance(field, ForeignKey) and field.related_model is session_model:
            return field
    raise LookupError(f"{message_model.__name__} has no foreign key to {session_model.__name__}")


def _default(field: Field[Any, Any], now: Any) -> Any:
    # auto_now / auto_now_add fields are what the ORM's pre_save would set.
    if getattr(field, "auto_now", False) or getattr(field, "auto_now_add", False):
        return now
    return field.get_default()


class _Blank:
    """Stands for a row while an INSERT is compiled: ``None`` in every column."""

    def __init__(self, fields: Sequence[Field[Any, Any]]) -> None:
        for field in fields:
            setattr(self, field.attname, None)


class Storage:
    """Every statement a session needs, for ``session_model``/``message_model`` on ``alias``.

    Contract:

    - One instance per (model pair, alias), from ``storage_for``; it holds no
      connection (each call takes the calling thread's ``connections[alias]``),
      so one instance serves every thread.
    - Methods run statements, nothing else: they open no transaction, retry
      nothing and send no signal. Callers run them inside
      ``transactions.run(alias, ...)``, several in one transaction when an
      operation needs it (``DjangoSession.add_items`` = ``upsert_session`` +
      ``insert_messages``).
    - Arguments are keyword-only. Values are Python values as the models hold
      them; ``values``/``rows`` mappings are keyed by field ``attname`` and a
      field left out gets what the ORM would give it (now for ``auto_now`` and
      ``auto_now_add``, else its default).
    - Writes that must serialize per session start with ``lock_session`` or
      ``upsert_session``: both take the session row's lock (SQLite's write
      lock), so writers to one session queue there instead of deadlocking
      later, and one that waited sees the rows the other left.
    - ``owner=`` (a user's primary key; ``None``: no scoping) makes the
      session-row operations (``history``, ``lock_session``, ``upsert_session``,
      ``session_details``, ``update_details``) refuse a row that belongs to
      another owner or to none with ``PermissionDenied``, in the statement that
      reads or locks the row or right after it under its lock, so nothing is
      read or kept (the caller's transaction rolls back) and no other
      transaction can slip in between. Only models with an ``owner`` field
      (the migrated ``AgentSession``) take it: see ``has_details``.
    """

    def __init__(
        self,
        session_model: type[Model],
        message_model: type[Model],
        alias: str,
        *,
        returning: bool | None = None,
    ) -> None:
        """``returning=None`` uses ``RETURNING`` where the backend has it; ``False``
        builds the statements of backends without it (MySQL) on any backend."""
        self.session_model = session_model
        self.message_model = message_model
        self.alias = alias
        connection = connections[alias]
        self.vendor: str = connection.vendor
        self.session_columns = columns(session_model)
        self.message_columns = columns(message_model)
        self.session_fk = session_key(message_model, session_model)
        self._data = cast(_Decoder, message_model._meta.get_field("data"))
        # The backends that return columns from INSERT (PostgreSQL, SQLite 3.35+,
        # MariaDB 10.5+) return them from DELETE too.
        supported = bool(connection.features.can_return_columns_from_insert)
        self._returns_rows = supported if returning is None else returning and supported
        self._history: dict[tuple[int | None, bool], str] = {}
        self._inserts: dict[int, tuple[str, bool]] = {}
        # The upsert returns the row's owner and title with its id, where the
        # backend returns rows: checking the owner and naming an untitled
        # conversation then cost no query.
        self._upsert_returns = [session_model._meta.pk] + (
            [_field(session_model, "owner"), _field(session_model, "title")]
            if self.has_details
            else []
        )
        self._upsert, _ = self._compile_insert(
            session_model,
            self.session_columns,
            1,
            returning=True,
            upsert=True,
            returning_fields=self._upsert_returns,
        )
        self._insert_session, _ = self._compile_insert(
            session_model, self.session_columns, 1, returning=True, upsert=False
        )
        self._lock = self._compile_lock()
        # Usage has a table beside the migrated models only.
        self.usage_model: type[Model] | None = AgentUsage if session_model is AgentSession else None
        self.usage_columns = columns(AgentUsage) if self.usage_model is not None else []
        self._usage = ""
        if self.usage_model is not None:
            self._usage, _ = self._compile_insert(
                AgentUsage, self.usage_columns, 1, returning=False, upsert=False
            )
        self._pop = self._compile_pop()
        # The migrated message model's column for full-text search (see search).
        self._has_text = message_model is AgentMessage
        self._owned_lock: str | None = None

    def __repr__(self) -> str:
        return (
            f"<Storage {self.session_model._meta.db_table}/"
            f"{self.message_model._meta.db_table} on {self.alias!r}>"
        )

    # -- reading ---------------------------------------------------------------

    def messages_of(self, *, session_id: str, owner: Any = None) -> QuerySet[Any]:
        """The messages of ``session_id`` (if ``owner``'s), as a queryset on this alias."""
        session_pk = self.session_model._default_manager.using(self.alias).filter(
            session_id=session_id
        )
        if owner is not None:  # after the session id: the compiled statements' order
            session_pk = session_pk.filter(owner_id=owner)
        return self.message_model._default_manager.using(self.alias).filter(
            # A subquery rather than a join, so the planner walks the (session_id, id)
            # index from either end instead of sorting every row of the session.
            **{self.session_fk.name: Subquery(session_pk.values("pk")[:1])}
        )

    def history_sql(self, *, limit: int | None, owned: bool = False) -> str:
        """The history query for ``limit``; its parameters are the session id, then
        (``owned``) the owner's key."""
        key = (limit, owned)
        if key not in self._history:
            rows = self.messages_of(session_id=_SESSION_ID, owner=_OWNER_PARAM if owned else None)
            ordered = rows.order_by("id") if limit is None else rows.order_by("-id")[:limit]
            query = ordered.values_list("data", flat=True).query
            sql, params = query.get_compiler(using=self.alias).as_sql()
            expected = (_SESSION_ID, _OWNER) if owned else (_SESSION_ID,)
            if tuple(params) != expected:
                raise RuntimeError(f"unexpected parameters in the history query: {params!r}")
            self._history[key] = sql
        return self._history[key]

    def history(self, *, session_id: str, limit: int | None, owner: Any = None) -> list[Any]:
        """The session's items, oldest first; with ``limit``, only the newest ``limit``.

        With ``owner`` the one query reads the messages of the row only if it is
        that owner's; when it finds none, the row (if any) is looked at to tell
        an empty conversation from someone else's (``PermissionDenied``).
        """
        connection = connections[self.alias]
        params: list[Any] = [session_id]
        if owner is not None:
            params.append(self._owner_param(owner))
        with self._cursor() as cursor:
            if limit != 0:
                cursor.execute(self.history_sql(limit=limit, owned=owner is not None), params)
                rows = cursor.fetchall()
            else:
                rows = []
        if not rows and owner is not None:
            self._refuse_unless_owned(session_id=session_id, owner=owner)
        decode = self._data.from_db_value
        items = [decode(value, None, connection) for (value,) in rows]
        if limit is not None:
            items.reverse()
        return items

    # -- the session row -----------------------------------------------------------

    def lock_session(self, *, session_id: str, owner: Any = None) -> bool:
        """Bump ``updated_at`` of the session row and lock it; False if there is none.

        With ``owner`` only that owner's row is bumped, in the same statement;
        ``PermissionDenied`` if the row is someone else's (or no one's).
        """
        connection = connections[self.alias]
        updated_at = _field(self.session_model, "updated_at")
        now = updated_at.get_db_prep_save(timezone.now(), connection)
        with self._cursor() as cursor:
            if owner is None:
                cursor.execute(self._lock, [now, session_id])
            else:
                if self._owned_lock is None:
                    self._owned_lock = self._compile_lock(owned=True)
                cursor.execute(self._owned_lock, [now, session_id, self._owner_param(owner)])
            locked = bool(cursor.rowcount)
        if not locked and owner is not None:
            self._refuse_unless_owned(session_id=session_id, owner=owner)
        return locked

    def upsert_session(
        self,
        *,
        session_id: str,
        values: Mapping[str, Any] | None = None,
        owner: Any = None,
        untitled: str = "",
    ) -> int:
        """Create the session row or bump its ``updated_at``, locking it; return its pk.

        ``values`` (by field ``attname``) fill the row when it is created and are
        ignored when it exists. With ``owner`` the row is created with that owner,
        and an existing row of someone else's (or no one's) raises
        ``PermissionDenied``, checked under the row's lock. ``untitled`` is the
        title an existing row without one gets (the automatic title).
        """
        row = {**(values or {}), "session_id": session_id}
        if owner is not None:
            row["owner_id"] = owner
        params = self._params(self.session_columns, row)
        with self._cursor() as cursor:
            cursor.execute(self._upsert, params)
            returned = cursor.fetchone() if self._returns_rows else None
        if returned is not None:
            session_pk, *found = returned
        else:
            # Backends that cannot return rows from an upsert (MySQL): the row is
            # locked by now, so reading it is safe.
            rows = self.session_model._default_manager.using(self.alias)
            names = [f.attname for f in self._upsert_returns]
            session_pk, *found = rows.filter(session_id=session_id).values_list(*names).get()
        if found:
            found_owner, found_title = found
            if found_owner is not None:  # a raw column value from RETURNING: the key's type
                found_owner = _field(self.session_model, "owner").to_python(found_owner)
            if owner is not None and found_owner != owner:
                raise PermissionDenied(_refusal(session_id))
            if untitled and not found_title:
                self.name_untitled(session_pk=int(session_pk), title=untitled)
        return int(session_pk)

    # -- details: owner, title, metadata (models that have them) -------------------

    @property
    def has_details(self) -> bool:
        """Whether the session model has ``owner``, ``title`` and ``metadata``.

        The migrated ``AgentSession`` has; models of tables created by 0.1/0.2
        (``sessions_table=``) have not.
        """
        return {"owner", "title", "metadata"} <= {f.name for f in self.session_columns}

    def session_details(
        self, *, session_id: str, owner: Any = None, lock: bool = False
    ) -> dict[str, Any] | None:
        """The session row's details by field name; ``None`` if there is no row.

        ``pk``, ``session_id``, the timestamps and, for models that have them
        (``has_details``), ``owner_id``, ``title``, ``metadata`` and ``expires_after``.
        ``PermissionDenied`` with ``owner`` if the row is someone else's. ``lock``
        locks the row (``SELECT ... FOR UPDATE``) until the transaction ends,
        without bumping its ``updated_at``.
        """
        rows = self.session_model._default_manager.using(self.alias)
        if lock:
            rows = rows.select_for_update()
        names = ["pk", "session_id", "created_at", "updated_at"]
        if self.has_details:
            names[2:2] = ["owner_id", "title", "metadata", "expires_after"]
        row = rows.filter(session_id=session_id).values(*names).first()
        if row is not None and owner is not None and row["owner_id"] != owner:
            raise PermissionDenied(_refusal(session_id))
        return row

    def usage_totals(self, *, session_id: str, owner: Any = None) -> dict[str, int]:
        """The session's recorded usage summed, by ``UsageTotals`` field; zeros if none.

        One query: the session row and its sums together, so checking ``owner``
        (``PermissionDenied`` if the row is someone else's or no one's) costs
        none. Models without a usage table (custom tables) have zeros.
        """
        if self.usage_model is None:
            return dict.fromkeys(COUNTERS, 0)
        rows = self.session_model._default_manager.using(self.alias).filter(session_id=session_id)
        row = rows.values("pk", "owner_id").annotate(**sums("usage__")).first()
        if row is None:
            return dict.fromkeys(COUNTERS, 0)
        if owner is not None and row["owner_id"] != owner:
            raise PermissionDenied(_refusal(session_id))
        return {name: int(row[name]) for name in COUNTERS}

    def update_details(self, *, session_pk: int, values: Mapping[str, Any]) -> None:
        """Set ``values`` (title, metadata, expires_after) on the row; ``updated_at`` is
        left as it is."""
        if values:
            rows = self.session_model._default_manager.using(self.alias)
            rows.filter(pk=session_pk).update(**values)

    def name_untitled(self, *, session_pk: int, title: str) -> None:
        """Give the row ``title`` if it has none yet (the automatic title)."""
        rows = self.session_model._default_manager.using(self.alias)
        rows.filter(pk=session_pk, title="").update(title=title)

    def _refuse_unless_owned(self, *, session_id: str, owner: Any) -> None:
        """``PermissionDenied`` if the session row exists and is not ``owner``'s.

        Called after a statement scoped to ``owner`` matched nothing: a row
        that is there now is someone else's, unless the same owner created it
        meanwhile (then it was not there for that statement, which is fine).
        """
        rows = self.session_model._default_manager.using(self.alias)
        found = rows.filter(session_id=session_id).values_list("owner_id", flat=True)[:1]
        if list(found) not in ([], [owner]):
            raise PermissionDenied(_refusal(session_id))

    def _owner_param(self, owner: Any) -> Any:
        field = _field(self.session_model, "owner")
        return field.get_db_prep_value(owner, connections[self.alias])

    def session_pk(self, *, session_id: str) -> int:
        """The primary key of the session row; ``DoesNotExist`` if there is none."""
        manager = self.session_model._default_manager.using(self.alias)
        return int(manager.filter(session_id=session_id).values_list("pk", flat=True).get())

    def insert_session(self, *, values: Mapping[str, Any]) -> int:
        """Insert a session row with ``values`` (``session_id`` required); return its pk.

        Unlike ``upsert_session`` the given timestamps are kept, for imports.
        ``IntegrityError`` if the session id exists.
        """
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self._insert_session, self._params(self.session_columns, values))
            return self._inserted_pk(cursor)

    def delete_session(self, *, session_id: str) -> int:
        """Delete the session row and its messages; how many session rows went (0 or 1).

        Through the ORM, so ``pre_delete``/``post_delete`` receivers a project
        connected still run.
        """
        if not self._cascades:
            self.messages_of(session_id=session_id).delete()
        rows = self.session_model._default_manager.using(self.alias)
        _, per_model = rows.filter(session_id=session_id).delete()
        return per_model.get(self.session_model._meta.label, 0)

    @functools.cached_property
    def _cascades(self) -> bool:
        # Models of custom table names live in a registry of their own, whose
        # relation graph Django's deletion collector cannot see: their messages
        # are deleted first, by hand (the database has no ON DELETE CASCADE).
        return any(
            rel.related_model is self.message_model
            for rel in self.session_model._meta.related_objects
        )

    # -- messages ------------------------------------------------------------------

    def insert_messages(
        self,
        *,
        session_pk: int,
        rows: Sequence[Mapping[str, Any]],
        batch_size: int | None = None,
        usage: Mapping[str, Any] | None = None,
    ) -> None:
        """Insert one message per mapping of ``rows`` (``data`` required) into the session.

        As few statements as the backend's parameter limit, ``batch_size`` (rows)
        and ``limits.max_item_bytes`` (bytes of item JSON per statement, so that
        MariaDB's ``max_allowed_packet`` holds every one) allow, in order, so ids
        follow the order of ``rows``. ``data`` that is not ``JSONText`` yet is
        encoded here, once. An item over ``limits.max_item_bytes`` raises
        ``ValueError`` before any row is sent. ``usage`` (values of a usage row,
        see ``insert_usage``) is inserted with them: on PostgreSQL by the same
        statement (a data-modifying ``WITH``), so it costs no round trip. Where
        the model has the ``text`` column of full-text search, a row without
        ``text`` (or with ``None``) gets ``search.message_text`` of its ``data``.
        """
        if not rows:
            if usage is not None:
                self.insert_usage(session_pk=session_pk, values=usage)
            return
        prefix, prefix_params = "", []
        if usage is not None and self.usage_model is not None and self.vendor == "postgresql":
            prefix = (
                f"WITH {connections[self.alias].ops.quote_name('usage_row')} AS ({self._usage}) "
            )
            prefix_params = self._usage_params(session_pk, usage)
            usage = None
        fields = self.message_columns
        rows = [_encoded(row, self._has_text) for row in rows]
        max_rows = connections[self.alias].ops.bulk_batch_size(fields, rows) or len(rows)
        if batch_size is not None:
            max_rows = min(max_rows, batch_size)
        sizes = [json_size(row["data"]) for row in rows]
        max_bytes = limits.max_item_bytes(self.alias)
        for index, size in enumerate(sizes):
            # Rows that were not checked here (a fork's, read from another
            # database) are refused too, before any is sent.
            if size > max_bytes:
                where = f" ({limits.describe(self.alias)})"
                raise limits.too_large(f"items[{index}]", size, max_bytes, where)
        runs = limits.batches(sizes, max_bytes=max_bytes, max_rows=max_rows)
        connection = connections[self.alias]
        # The session and the timestamps are prepared once per call, not once per
        # row; other defaults per row (a callable default gives each row its own).
        now = timezone.now()
        shared = {
            f.attname: f.get_db_prep_save(now, connection)
            for f in fields
            if getattr(f, "auto_now", False) or getattr(f, "auto_now_add", False)
        }
        fk = self.session_fk.attname
        shared[fk] = self.session_fk.get_db_prep_save(session_pk, connection)
        with self._cursor() as cursor:
            for run in runs:
                batch = rows[run.start : run.stop]
                values = [
                    [
                        _prepare(f, row[f.attname], connection)
                        if f.attname in row and f.attname != fk
                        else shared[f.attname]
                        if f.attname in shared
                        else f.get_db_prep_save(f.get_default(), connection)
                        for f in fields
                    ]
                    for row in batch
                ]
                sql, columnar = self._insert_messages_sql(len(batch))
                if columnar:  # PostgreSQL's INSERT ... SELECT * FROM UNNEST: one array a column
                    params = [list(column) for column in zip(*values, strict=True)]
                else:
                    params = [param for row in values for param in row]
                cursor.execute(prefix + sql, prefix_params + params)
                prefix, prefix_params = "", []
        if usage is not None:
            self.insert_usage(session_pk=session_pk, values=usage)

    def insert_usage(self, *, session_pk: int, values: Mapping[str, Any]) -> None:
        """Insert a usage row (``AgentUsage`` columns by attname) for the session.

        Does nothing for model pairs without a usage table (custom tables).
        """
        if self.usage_model is None:
            return
        with connections[self.alias].cursor() as cursor:
            cursor.execute(self._usage, self._usage_params(session_pk, values))

    def newest_rows(self, *, session_id: str, limit: int) -> list[tuple[int, Any]]:
        """``(id, data)`` of the newest ``limit`` messages, newest first."""
        rows = self.messages_of(session_id=session_id).order_by("-id")
        return [(int(pk), data) for pk, data in rows.values_list("pk", "data")[:limit]]

    def oldest_rows(self, *, session_id: str, before_id: int, limit: int) -> list[tuple[int, Any]]:
        """``(id, data)`` of the oldest ``limit`` messages with an id below ``before_id``."""
        rows = self.messages_of(session_id=session_id).filter(pk__lt=before_id).order_by("id")
        return [(int(pk), data) for pk, data in rows.values_list("pk", "data")[:limit]]

    def all_items(self, *, session_id: str) -> list[Any]:
        """Every item of the session, oldest first (for ``session_compacted``)."""
        rows = self.messages_of(session_id=session_id).order_by("id")
        return list(rows.values_list("data", flat=True))

    def delete_messages(
        self, *, session_id: str, from_id: int | None = None, through_id: int | None = None
    ) -> None:
        """Delete the session's messages with ids from ``from_id`` through ``through_id``."""
        rows = self.messages_of(session_id=session_id)
        if from_id is not None:
            rows = rows.filter(pk__gte=from_id)
        if through_id is not None:
            rows = rows.filter(pk__lte=through_id)
        rows.delete()

    def fork_point(self, *, session_id: str, keep: int | None) -> tuple[int | None, int]:
        """The id of the session's ``keep``-th message (its last if fewer, or with
        ``keep=None``) and how many messages go up to it; ``(None, 0)`` if none do."""
        rows = self.messages_of(session_id=session_id).order_by("id")
        if keep == 0:
            return None, 0
        kept = rows if keep is None else rows[:keep]
        found = kept.aggregate(last=Max("id"), count=Count("id"))
        last = found["last"]
        return (None, 0) if last is None else (int(last), int(found["count"]))

    def copy_messages(self, *, source_pk: int, target_pk: int, through_id: int) -> int:
        """Copy session ``source_pk``'s messages up to id ``through_id`` to ``target_pk``.

        One ``INSERT ... SELECT``, in id order (so the copies keep the order),
        every column copied as stored (timestamps included) but the foreign key.
        Returns the number of rows copied.
        """
        connection = connections[self.alias]
        quote = connection.ops.quote_name
        table = quote(self.message_model._meta.db_table)
        pk = quote(_column(self.message_model, self.message_model._meta.pk.name))
        fk = self.session_fk.column
        copied = [str(field.column) for field in self.message_columns if field.column != fk]
        columns = ", ".join(quote(column) for column in [fk, *copied])
        selected = ", ".join(["%s", *(quote(column) for column in copied)])
        sql = (
            f"INSERT INTO {table} ({columns}) SELECT {selected} FROM {table}"
            f" WHERE {quote(fk)} = %s AND {pk} <= %s ORDER BY {pk}"
        )
        with connection.cursor() as cursor:
            cursor.execute(sql, [target_pk, source_pk, through_id])
            return int(cursor.rowcount)

    def pop_newest(self, *, session_id: str) -> tuple[bool, Any]:
        """Delete the newest message of ``session_id``; return ``(found, data)``.

        The caller holds the session row's lock (``lock_session``), so that no
        other pop races for the same row.
        """
        connection = connections[self.alias]
        with self._cursor() as cursor:
            cursor.execute(self._pop, [session_id])
            row = cursor.fetchone()
            if row is None:
                return False, None
            if not self._returns_rows:  # the SELECT found it; now delete it
                cursor.execute(self._delete_message, [row[0]])
                row = row[1:]
        return True, self._data.from_db_value(row[0], None, connection)

    def _cursor(self) -> _driver.Cursor:
        """The cursor the hot statements (history, lock, upsert, insert, pop) run on.

        The driver's cursor of this thread's connection to the alias, or
        Django's whenever something observes Django's cursors (see ``_driver``).
        """
        return _driver.cursor(connections[self.alias])

    # -- building the statements -------------------------------------------------

    def _params(
        self, fields: Sequence[Field[Any, Any]], values: Mapping[str, Any], now: Any = None
    ) -> list[Any]:
        connection = connections[self.alias]
        if now is None:
            now = timezone.now()
        params = []
        for field in fields:
            value = values[field.attname] if field.attname in values else _default(field, now)
            params.append(_prepare(field, value, connection))
        return params

    def _usage_params(self, session_pk: int, values: Mapping[str, Any]) -> list[Any]:
        return self._params(self.usage_columns, {**values, "session_id": session_pk})

    def _inserted_pk(self, cursor: CursorWrapper) -> int:
        if self._returns_rows:
            return int(cursor.fetchone()[0])
        meta = self.session_model._meta
        pk_column = _column(self.session_model, meta.pk.name)
        return int(connections[self.alias].ops.last_insert_id(cursor, meta.db_table, pk_column))

    def _compile_insert(
        self,
        model: type[Model],
        fields: Sequence[Field[Any, Any]],
        count: int,
        *,
        returning: bool,
        upsert: bool,
        returning_fields: Sequence[Field[Any, Any]] | None = None,
    ) -> tuple[str, bool]:
        """The INSERT of ``count`` rows, and whether it takes one array per column."""
        kwargs: dict[str, Any] = {}
        if upsert:
            # MySQL's ON DUPLICATE KEY UPDATE takes no conflict target.
            target = connections[self.alias].features.supports_update_conflicts_with_target
            kwargs = {
                "on_conflict": OnConflict.UPDATE,
                "update_fields": [f for f in fields if getattr(f, "auto_now", False)],
                "unique_fields": [model._meta.get_field("session_id")] if target else [],
            }
        query = InsertQuery(model, **kwargs)
        blanks: list[Any] = [_Blank(fields) for _ in range(count)]
        query.insert_values(fields, blanks, raw=True)
        compiler = query.get_compiler(using=self.alias)
        if returning and self._returns_rows:
            compiler.returning_fields = list(returning_fields or [model._meta.pk])
        statements = compiler.as_sql()
        if len(statements) != 1:
            raise RuntimeError(f"expected one INSERT statement, got {len(statements)}")
        sql, params = statements[0]
        columnar = count > 1 and all(
            isinstance(column, list) and len(column) == count for column in params
        )
        if len(params) != (len(fields) if columnar else count * len(fields)):
            raise RuntimeError(f"unexpected parameters in an INSERT: {params!r}")
        return str(sql), columnar

    def _insert_messages_sql(self, count: int) -> tuple[str, bool]:
        if count not in self._inserts:
            self._inserts[count] = self._compile_insert(
                self.message_model, self.message_columns, count, returning=False, upsert=False
            )
        return self._inserts[count]

    def _compile_lock(self, *, owned: bool = False) -> str:
        rows = self.session_model._default_manager.using(self.alias).filter(session_id=_SESSION_ID)
        if owned:
            rows = rows.filter(owner_id=_OWNER_PARAM)
        query = cast(UpdateQuery, rows.query.chain(UpdateQuery))
        query.add_update_values({"updated_at": timezone.now()})
        sql, params = query.get_compiler(using=self.alias).as_sql()
        expected = [_SESSION_ID, _OWNER] if owned else [_SESSION_ID]
        if len(params) != 1 + len(expected) or list(params[1:]) != expected:
            raise RuntimeError(f"unexpected parameters in the lock statement: {params!r}")
        return str(sql)

    def _compile_pop(self) -> str:
        connection = connections[self.alias]
        quote = connection.ops.quote_name
        messages = quote(self.message_model._meta.db_table)
        message_id = quote(_column(self.message_model, self.message_model._meta.pk.name))
        self._delete_message = f"DELETE FROM {messages} WHERE {message_id} = %s"
        if not self._returns_rows:
            # No DELETE ... RETURNING (MySQL): read the newest row, then delete it by id.
            newest = self.messages_of(session_id=_SESSION_ID).order_by("-id")
            query = newest.values_list("pk", "data")[:1].query
            sql, params = query.get_compiler(using=self.alias).as_sql()
            if tuple(params) != (_SESSION_ID,):
                raise RuntimeError(f"unexpected parameters in the pop query: {params!r}")
            return str(sql)
        # DELETE ... RETURNING, one round trip, which the ORM cannot express.
        data = quote(_column(self.message_model, "data"))
        foreign_key = quote(self.session_fk.column)
        session_pk = (
            f"(SELECT {quote(_column(self.session_model, self.session_model._meta.pk.name))}"
            f" FROM {quote(self.session_model._meta.db_table)}"
            f" WHERE {quote(_column(self.session_model, 'session_id'))} = %s)"
        )
        if connection.features.delete_can_self_reference_subquery:
            return (
                f"DELETE FROM {messages} WHERE {message_id} = ("
                f"SELECT {message_id} FROM {messages} WHERE {foreign_key} = {session_pk}"
                f" ORDER BY {message_id} DESC LIMIT 1) RETURNING {data}"
            )
        # MariaDB: no subquery on the table being deleted from.
        return (
            f"DELETE FROM {messages} WHERE {foreign_key} = {session_pk}"
            f" ORDER BY {message_id} DESC LIMIT 1 RETURNING {data}"
        )


class _AsIs(json.JSONEncoder):
    """Hands back the ``JSONText`` it is given: that JSON was encoded once, when checked."""

    def encode(self, o: Any) -> str:
        return str(o)


def _prepare(field: Field[Any, Any], value: Any, connection: BaseDatabaseWrapper) -> Any:
    """``value`` as ``field.get_db_prep_save`` prepares it; ``JSONText`` is not encoded again."""
    if isinstance(value, JSONText):
        # The backend's own JSON adapter (psycopg's Jsonb on PostgreSQL), fed the text.
        return connection.ops.adapt_json_value(value, _AsIs)
    return field.get_db_prep_save(value, connection)


def _encoded(row: Mapping[str, Any], with_text: bool) -> Mapping[str, Any]:
    """``row`` with its ``data`` as ``JSONText`` (rows of a fork come decoded) and,
    ``with_text``, its ``text`` (the search text) computed if it has none (or NULL:
    a row copied from before migration 0009)."""
    data = row["data"]
    if with_text and row.get("text") is None:
        item = json.loads(data) if isinstance(data, JSONText) and _may_have_text(data) else data
        row = {**row, "text": message_text(item) if isinstance(item, dict) else ""}
    if isinstance(data, JSONText):
        return row
    return {**row, "data": JSONText(encode(data))}


def _may_have_text(data: JSONText) -> bool:
    # encode() writes compact JSON: an item without this has no user or assistant
    # role, and is not decoded just to find that out.
    return '"role":"user"' in data or '"role":"assistant"' in data


def _refusal(session_id: str) -> str:
    # Says nothing of who owns it: the caller may be guessing ids.
    return f"Session {session_id!r} belongs to another user."


def _field(model: type[Model], name: str) -> Field[Any, Any]:
    field = model._meta.get_field(name)
    assert isinstance(field, Field)  # a concrete field, not a reverse relation
    return field


def _column(model: type[Model], name: str) -> str:
    column = _field(model, name).column
    assert column is not None
    return column


@functools.lru_cache(maxsize=256)
def storage_for(session_model: type[Model], message_model: type[Model], alias: str) -> Storage:
    """The one ``Storage`` for this model pair on ``alias``."""
    return Storage(session_model, message_model, alias)
