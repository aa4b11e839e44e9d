"""Moving sessions in and out: JSON Lines export/import, and the SDK's SQLite files.

The JSON Lines format has one session per line::

    {"session_id": "...", "created_at": "<ISO 8601>", "updated_at": "<ISO 8601>",
     "owner": "<the owner's USERNAME_FIELD value>" | null, "title": "...", "metadata": {...},
     "forked_from": "<source session id>" | "", "forked_from_position": N | null,
     "items": [{"data": {...the SDK item...}, "created_at": "<ISO 8601>"}, ...],
     "usage": [{"requests": N, "input_tokens": N, ..., "details": {...},
                "created_at": "<ISO 8601>"}, ...]}

Items and usage rows are in the order they were stored. The keys are the
models' fields (``_meta``): every concrete field of the session row but its
primary key, of each message and each usage row (``AgentUsage``) but its
primary key and session, so a field added to a model is exported and imported
with no change here. A message's ``text`` (what search indexes) is not
written: it is computed from ``data`` again by the import, never read from
a file. The owner is the exception: it is written as ``"owner"``,
the user's ``USERNAME_FIELD`` value (``null``: no owner), so a file moves
between databases whose primary keys differ; a fork's provenance is the source's
session id and a position (how many of its items the fork copied), never a
primary key. Export then import gives back every row this app stores for a
session: the same items in the same order, usage rows, timestamps, owner,
title, metadata and fork provenance. Each session is read in one transaction
(``transactions.snapshot``), so a line is the session as it was at one moment,
even while a compaction replaces its history.

On import every value passes the checks ``DjangoSession`` applies to it
(``check_session_id``, ``details.check_title``, ``details.check_metadata``,
``items.check_items``...), for every line, before anything is written.
``created_at`` and ``updated_at`` may be left out (they become the time of the
import), and so may the other fields (their defaults: no owner, empty title
and metadata, not a fork, no usage); a timestamp without an offset is read as
UTC, as the SDK's SQLite files store them.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, time, timedelta
from decimal import Decimal
from functools import partial
from pathlib import Path
from typing import Any, Literal, Protocol
from uuid import UUID

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import DatabaseError, IntegrityError, models
from django.utils import timezone
from django.utils.duration import duration_iso_string

from . import _owners as owners
from . import _routing as routing
from . import _storage as storage
from . import _transactions as transactions
from . import details, usage
from .items import MAX_DEPTH, check_items, check_json_object, check_session_id, check_text
from .models import AgentMessage, AgentSession, AgentUsage

Existing = Literal["refuse", "replace", "skip"]
# What an import does with a session whose owner is not a user of the target database.
MissingOwners = Literal["refuse", "drop"]

MAX_REPORTED_PROBLEMS = 20


class TransferError(Exception):
    """The input or the target database does not allow the transfer; the message says why."""


class MissingOwnersError(TransferError):
    """Sessions of the input name owners that are not users of the target database."""

    def __init__(self, message: str, usernames: list[str]) -> None:
        super().__init__(message)
        self.usernames = usernames


class ExistingSessionsError(TransferError):
    """Sessions of the input already exist and the import was told to refuse them."""

    def __init__(self, message: str, session_ids: list[str]) -> None:
        super().__init__(message)
        self.session_ids = session_ids


@dataclass
class StoredItem:
    """One message: its values by field ``attname`` (``data`` always, a JSON object)."""

    values: dict[str, Any]

    @property
    def data(self) -> dict[str, Any]:
        return self.values["data"]  # type: ignore[no-any-return]


@dataclass
class SessionRecord:
    """One session: its row's values by field ``attname`` (``session_id`` always), its
    items, and its usage rows (each by ``AgentUsage`` field ``attname``)."""

    values: dict[str, Any]
    items: list[StoredItem] = field(default_factory=list)
    owner: str | None = None  # the owner's USERNAME_FIELD value
    usage: list[dict[str, Any]] = field(default_factory=list)

    @property
    def session_id(self) -> str:
        return self.values["session_id"]  # type: ignore[no-any-return]


@dataclass
class Entry:
    """What a reader yields: a session, or why the input at ``where`` is not one."""

    where: str
    record: SessionRecord | None = None
    error: str = ""


@dataclass
class TransferResult:
    sessions: int = 0
    items: int = 0
    skipped: int = 0
    replaced: int = 0


def session_fields() -> list[models.Field[Any, Any]]:
    """The session row's fields a record carries: every concrete one but the primary key
    and the owner (carried as ``"owner"``, by name)."""
    return [f for f in storage.columns(AgentSession) if f.name != "owner"]


# Fields computed from others when a row is written, never read from a file:
# ``text``, what full-text search indexes (search.message_text of ``data``).
DERIVED_ITEM_FIELDS = frozenset({"text"})


def item_fields() -> list[models.Field[Any, Any]]:
    """An item's fields: every concrete one of the message but the primary key, the session
    and the derived ones (``DERIVED_ITEM_FIELDS``)."""
    session = storage.session_key(AgentMessage, AgentSession)
    return [
        f
        for f in storage.columns(AgentMessage)
        if f is not session and f.name not in DERIVED_ITEM_FIELDS
    ]


def usage_fields() -> list[models.Field[Any, Any]]:
    """A usage row's fields: every concrete one of ``AgentUsage`` but the primary key and
    the session."""
    session = storage.session_key(AgentUsage, AgentSession)
    return [f for f in storage.columns(AgentUsage) if f is not session]


# -- export -------------------------------------------------------------------


class TextSink(Protocol):
    """Where ``export_sessions`` writes: a text file, ``sys.stdout``, anything with ``write``."""

    def write(self, text: str, /) -> object: ...


def export_sessions(
    stream: TextSink,
    *,
    using: str | None = None,
    session_ids: Sequence[str] | None = None,
    owner: str | None = None,
    batch_size: int = 1000,
    on_session: Callable[[], None] | None = None,
) -> TransferResult:
    """Write sessions to ``stream`` as JSON Lines, oldest session first (database by database).

    ``using`` is the database; ``None`` means every database sessions live on
    (``routing.databases``: every shard with ``routers.ShardRouter``), each
    named session looked up where the routing rule places it.
    ``session_ids`` picks sessions (default: all); one that does not exist
    raises ``TransferError`` before anything is written. ``owner`` (a
    ``USERNAME_FIELD`` value, not with ``session_ids``) picks that user's
    sessions; a user who does not exist raises ``TransferError``.

    Each session is read in a transaction of its own that sees one moment of it
    (``transactions.snapshot``): its row, items and usage rows are consistent
    even while a compaction or another write changes it; one deleted meanwhile
    is left out. Rows are read ``batch_size`` at a time and written as they
    arrive, so memory does not grow with the number of sessions or of items.
    ``on_session`` is called after each session is written.
    """
    if owner is not None and session_ids is not None:
        raise TransferError("Name sessions or an owner, not both.")
    plan = _export_plan(using, session_ids)
    missing = [
        sid for alias, wanted in plan if wanted is not None for sid in _missing(alias, wanted)
    ]
    if missing:
        where = _quote_list(sorted({alias for alias, _ in plan}))
        raise TransferError(
            f"No session {_quote_list(missing)} in database {where}; nothing was exported."
        )
    aliases = [alias for alias, _ in plan]
    if owner is not None and not owners.user_exists(owner, aliases):
        where = _quote_list(owners.users_databases(aliases))
        raise TransferError(f"No user {owner!r} in database {where}; nothing was exported.")
    result = TransferResult()
    for alias, wanted in plan:
        queryset = AgentSession.objects.using(alias).all()
        if wanted is not None:
            queryset = queryset.filter(session_id__in=wanted)
        if owner is not None:
            queryset = queryset.owned_by_username(owner)
        names = _owner_names(alias, queryset, batch_size)
        for session_pk in _pks_in_batches(queryset, batch_size):
            with transactions.snapshot(alias):
                written = _export_session(stream, alias, session_pk, batch_size, names)
            if written is None:  # deleted since it was listed
                continue
            result.sessions += 1
            result.items += written
            if on_session is not None:
                on_session()
    return result


def _owner_names(using: str, queryset: models.QuerySet[AgentSession], chunk: int) -> dict[Any, str]:
    """The owners' names of ``queryset``'s sessions, read in batches from the users'
    database; none where the users are on ``using`` (they are selected with each session)."""
    users = owners.users_database(using)
    if using == users:
        return {}
    keys = queryset.order_by().exclude(owner=None).values_list("owner_id", flat=True).distinct()
    return owners.names_of(keys, users, chunk)


def _export_session(
    stream: TextSink, using: str, session_pk: int, batch_size: int, names: dict[Any, str]
) -> int | None:
    """Write one session's line; how many items it had (``None``: the session is gone).

    ``names``: owners' names read beforehand (``_owner_names``); an owner not
    among them is read with the session or, on another database, on its own.
    """
    session = AgentSession.objects.using(using).filter(pk=session_pk)
    if using == owners.users_database(using):
        session = session.select_related("owner")
    found = session.first()
    if found is None:
        return None
    head = {f.attname: _to_json(getattr(found, f.attname)) for f in session_fields()}
    if found.owner_id in names:
        head["owner"] = names[found.owner_id]
    else:
        [(_, head["owner"])] = owners.with_names([found])
    # The record is written in pieces, rows as they are read: "]}" closes it.
    stream.write(_dumps(head)[:-1] + ',"items":[')
    items = 0
    for values in _rows_in_batches(AgentMessage, item_fields(), using, session_pk, batch_size):
        stream.write(("," if items else "") + _dumps(values))
        items += 1
    stream.write('],"usage":[')
    first = True
    for values in _rows_in_batches(AgentUsage, usage_fields(), using, session_pk, batch_size):
        stream.write(("" if first else ",") + _dumps(values))
        first = False
    stream.write("]}\n")
    return items


def count_sessions(
    using: str | None = None, session_ids: Sequence[str] | None = None, owner: str | None = None
) -> int:
    """How many sessions ``export_sessions`` would write (for a progress bar)."""
    total = 0
    for alias, wanted in _export_plan(using, session_ids):
        queryset = AgentSession.objects.using(alias).all()
        if wanted is not None:
            queryset = queryset.filter(session_id__in=wanted)
        if owner is not None:
            queryset = queryset.owned_by_username(owner)
        total += queryset.count()
    return total


def _export_plan(
    using: str | None, session_ids: Sequence[str] | None
) -> list[tuple[str, list[str] | None]]:
    """(alias, the session ids to read there or None for all), in the order to read them."""
    if session_ids is None:
        return [(alias, None) for alias in routing.databases(AgentSession, using=using)]
    groups: dict[str, list[str]] = {}
    for session_id in dict.fromkeys(session_ids):
        alias = routing.alias_for(AgentSession, write=False, session_id=session_id, using=using)
        groups.setdefault(alias, []).append(session_id)
    return list(groups.items())


def _pks_in_batches(queryset: models.QuerySet[AgentSession], size: int) -> Iterator[int]:
    # Keyset pagination, not a cursor: flat memory on every backend (MySQL's
    # driver buffers whole results) and no transaction held open meanwhile.
    last_pk = 0
    while True:
        page = queryset.filter(pk__gt=last_pk).order_by("pk")
        batch = list(page.values_list("pk", flat=True)[:size])
        if not batch:
            return
        yield from batch
        last_pk = batch[-1]


def _rows_in_batches(
    model: type[models.Model],
    fields: list[models.Field[Any, Any]],
    using: str,
    session_pk: int,
    size: int,
) -> Iterator[dict[str, Any]]:
    """The session's rows of ``model`` in id order, each as JSON values by field attname."""
    rows = model._default_manager.using(using).filter(session_id=session_pk)
    names = [f.attname for f in fields]
    last_pk = 0
    while True:
        page = rows.filter(pk__gt=last_pk).order_by("pk")
        batch = list(page.values_list("pk", *names)[:size])
        if not batch:
            return
        for row in batch:
            yield {name: _to_json(value) for name, value in zip(names, row[1:], strict=True)}
        last_pk = batch[-1][0]


# -- reading input --------------------------------------------------------------


def read_jsonl(lines: Iterable[str]) -> Iterator[Entry]:
    """One ``Entry`` per non-blank line of ``lines``, located as ``line N``."""
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        where = f"line {number}"
        try:
            line.encode("utf-8")
        except UnicodeEncodeError:  # undecodable bytes, kept as surrogates by the reader
            yield Entry(where, error="not valid UTF-8 text")
            continue
        try:
            value = json.loads(line, parse_constant=_reject_constant)
        except ValueError as exc:
            yield Entry(where, error=f"not valid JSON ({exc})")
            continue
        except RecursionError:
            yield Entry(where, error=f"nested more than {MAX_DEPTH} levels deep")
            continue
        try:
            yield Entry(where, record=_record_from_json(value))
        except (TypeError, ValueError) as exc:
            yield Entry(where, error=str(exc))


def read_sdk_sqlite(
    path: str | Path,
    *,
    sessions_table: str = "agent_sessions",
    messages_table: str = "agent_messages",
) -> Iterator[Entry]:
    """The sessions of a database written by the SDK's ``SQLiteSession`` or ``SQLAlchemySession``.

    Both use a sessions table ``(session_id, created_at, updated_at)`` and a
    messages table ``(id, session_id, message_data, created_at)``. Messages whose
    session has no row in the sessions table are still a conversation to the
    SDK, so they are read too. The file is opened read-only. Raises
    ``TransferError`` if it cannot be read or lacks the tables.
    """
    db = _open_sqlite(Path(path), (sessions_table, messages_table))
    sessions, messages = _quote_sqlite(sessions_table), _quote_sqlite(messages_table)
    try:
        rows = db.execute(
            f"SELECT session_id, created_at, updated_at FROM {sessions} "
            f"UNION ALL SELECT session_id, MIN(created_at), MAX(created_at) FROM {messages} "
            f"WHERE session_id NOT IN (SELECT session_id FROM {sessions}) GROUP BY session_id"
        )
        for session_id, created_at, updated_at in rows:
            where = f"session {session_id!r}"
            try:
                record = SessionRecord(
                    values={
                        "session_id": check_session_id(session_id),
                        "created_at": _timestamp(created_at, "created_at"),
                        "updated_at": _timestamp(updated_at, "updated_at"),
                    }
                )
                for message_id, text, stamp in db.execute(
                    f"SELECT id, message_data, created_at FROM {messages} "
                    "WHERE session_id = ? ORDER BY id",
                    (session_id,),
                ):
                    record.items.append(_sdk_item(message_id, text, stamp))
            except ValueError as exc:
                yield Entry(where, error=str(exc))
                continue
            yield Entry(where, record=record)
    except sqlite3.Error as exc:
        raise TransferError(f"Cannot read {path}: {exc}.") from exc
    finally:
        db.close()


def _open_sqlite(path: Path, tables: tuple[str, str]) -> sqlite3.Connection:
    if not path.is_file():
        raise TransferError(f"{path} does not exist or is not a file.")
    try:
        db = sqlite3.connect(f"{path.resolve().as_uri()}?mode=ro", uri=True)
        present = {
            name for (name,) in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")
        }
    except sqlite3.Error as exc:
        raise TransferError(f"{path} is not a readable SQLite database: {exc}.") from exc
    absent = [name for name in tables if name not in present]
    if absent:
        db.close()
        raise TransferError(
            f"{path} has no table {_quote_list(absent)}; it has {_quote_list(sorted(present))}."
        )
    return db


def _quote_sqlite(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _sdk_item(message_id: int, text: object, stamp: object) -> StoredItem:
    try:
        raw = text.decode() if isinstance(text, bytes) else str(text)
        data = json.loads(raw, parse_constant=_reject_constant)
    except ValueError as exc:
        raise ValueError(f"message {message_id} is not valid JSON ({exc})") from exc
    if not isinstance(data, dict):
        raise ValueError(f"message {message_id} is not a JSON object")
    created_at = _timestamp(stamp, f"message {message_id} created_at")
    return StoredItem(values={"data": data, "created_at": created_at})


def _record_from_json(value: object) -> SessionRecord:
    if not isinstance(value, dict):
        raise ValueError("a line must be a JSON object with session_id and items")
    fields = {f.attname: f for f in session_fields()}
    unknown = sorted(set(value) - set(fields) - {"items", "owner", "usage"})
    if unknown:
        raise ValueError(f"unknown key {_quote_list(unknown)}")
    if "session_id" not in value or "items" not in value:
        raise ValueError("session_id and items are required")
    values = _values_from_json(value, fields, "")
    items, usage = value["items"], value.get("usage", [])
    if not isinstance(items, list):
        raise ValueError("items must be a list")
    if not isinstance(usage, list):
        raise ValueError("usage must be a list")
    owner = value.get("owner")
    if owner is not None and (not isinstance(owner, str) or not owner):
        raise ValueError(f"owner must be a non-empty string or null, got {owner!r:.80}")
    if owner is not None:
        check_text("owner", owner)
    return SessionRecord(
        values=values,
        items=[StoredItem(values=_row_from_json(f"items[{i}]", v)) for i, v in enumerate(items)],
        owner=owner,
        usage=[_row_from_json(f"usage[{i}]", v) for i, v in enumerate(usage)],
    )


def _row_from_json(where: str, value: object) -> dict[str, Any]:
    """An item's (``items[N]``) or a usage row's (``usage[N]``) values."""
    model_fields = item_fields() if where.startswith("items") else usage_fields()
    fields = {f.attname: f for f in model_fields}
    required = ["data"] if "data" in fields else []
    if not isinstance(value, dict) or set(required) - set(value) or set(value) - set(fields):
        keys = ", ".join(f'"{name}": ...' for name in fields)
        raise ValueError(f"{where} must be an object {{{keys}}}")
    if required and not isinstance(value["data"], dict):
        raise ValueError(f"{where}.data must be a JSON object")
    return _values_from_json(value, fields, f"{where}.")


def _check_forked_from(value: object) -> str:
    # "" (not a fork) or the id of the session it was forked from.
    if value == "":
        return ""
    try:
        return check_session_id(value)
    except ValueError as exc:
        raise ValueError(f'forked_from must be "" or a session id: {exc}') from None


# The checks DjangoSession applies to a session's values, by field name: an
# import accepts exactly what the session accepts.
_SESSION_CHECKS: dict[str, Callable[[Any], object]] = {
    "session_id": check_session_id,
    "title": details.check_title,
    "metadata": details.check_metadata,
    "forked_from": _check_forked_from,
}


def _values_from_json(
    value: dict[str, Any], fields: dict[str, models.Field[Any, Any]], where: str
) -> dict[str, Any]:
    """The values of ``value`` for ``fields``, as the fields hold them.

    Each is checked as ``DjangoSession`` checks it (``_SESSION_CHECKS``), else
    by its kind: text without U+0000 or lone surrogates, whole numbers (not
    ``1.5``, ``"1"`` or ``true``), JSON objects within an item's limits, then
    the field's validators (``max_length``, a positive integer...). Timestamps
    left out (or null) become the time of the import, as ``auto_now`` would make
    them; other fields left out get their default when stored. ``TypeError`` or
    ``ValueError`` name the first value refused.
    """
    values: dict[str, Any] = {}
    for name, model_field in fields.items():
        raw = value.get(name)
        automatic = getattr(model_field, "auto_now", False) or getattr(
            model_field, "auto_now_add", False
        )
        if raw is None and (automatic or name not in value):
            continue
        if raw is None and not model_field.null:
            raise ValueError(f"{where}{name} must not be null")
        if raw is None:
            values[name] = raw
        elif not where and name in _SESSION_CHECKS:
            values[name] = _SESSION_CHECKS[name](raw)
        elif isinstance(model_field, models.JSONField):
            # A field whose default is {} (metadata, usage details) holds a JSON object.
            if model_field.default is dict and not isinstance(raw, dict):
                raise ValueError(f"{where}{name} must be a JSON object, got {raw!r:.80}")
            if isinstance(raw, dict) and name != "data":  # items are checked as items
                check_json_object(f"{where}{name}", raw)
            values[name] = raw
        elif isinstance(model_field, models.DateTimeField):
            values[name] = _timestamp(raw, f"{where}{name}")
        else:
            values[name] = _plain_value(model_field, raw, f"{where}{name}")
    return values


def _plain_value(model_field: models.Field[Any, Any], raw: object, what: str) -> Any:
    """``raw`` as a text or number field holds it, or ``ValueError`` naming ``what``."""
    if isinstance(model_field, models.IntegerField) and (
        isinstance(raw, bool) or not isinstance(raw, int)
    ):
        raise ValueError(f"{what} must be a whole number, got {raw!r:.80}")
    if isinstance(model_field, models.CharField | models.TextField):
        if not isinstance(raw, str):
            raise ValueError(f"{what} must be a string, got {raw!r:.80}")
        check_text(what, raw)
    try:
        value = model_field.to_python(raw)
        model_field.run_validators(value)  # max_length, a positive integer and the like
    except ValidationError as exc:
        raise ValueError(f"{what}: {' '.join(exc.messages)}") from None
    return value


def _timestamp(value: object, what: str) -> datetime:
    if value is None:
        return timezone.now()
    if not isinstance(value, str):
        raise ValueError(f"{what} must be an ISO 8601 string, got {value!r:.80}")
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError:
        raise ValueError(f"{what} is not an ISO 8601 timestamp: {value!r:.80}") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=UTC)
    try:  # stored in UTC: near year 1 or 9999 an offset can push it out of range
        parsed.astimezone(UTC)
        return parsed if settings.USE_TZ else timezone.make_naive(parsed)
    except OverflowError:
        raise ValueError(
            f"{what} is out of the range a database can store: {value!r:.80}"
        ) from None


def _check_record(record: SessionRecord) -> None:
    """``ValueError`` for a session no ``DjangoSession`` could have stored: usage
    counters out of range or summing past 64 bits, or a last activity before its
    creation (the session list would show it, and pruning would judge it, wrongly)."""
    usage.check_counters((f"usage[{n}]", row) for n, row in enumerate(record.usage))
    created, updated = record.values.get("created_at"), record.values.get("updated_at")
    if created is not None and updated is not None and updated < created:
        raise ValueError(
            f"updated_at ({updated.isoformat()}) is earlier than created_at ({created.isoformat()})"
        )


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not allowed in JSON")


# -- import ---------------------------------------------------------------------


def import_sessions(
    read: Callable[[], Iterable[Entry]],
    *,
    using: str | None = None,
    existing: Existing = "refuse",
    missing_owners: MissingOwners = "refuse",
    batch_size: int = 1000,
) -> TransferResult:
    """Store the sessions that ``read()`` yields; each session all or nothing.

    ``using`` is the database; ``None`` places each session where the routing
    rule says (its shard, with ``routers.ShardRouter``).

    ``read`` is called twice: a first pass checks the whole input (every
    problem, located, raises ``TransferError`` with nothing written, and so do
    session ids repeated in the input); a second pass writes each session in a
    transaction of its own, keeping item order and timestamps.

    ``existing`` says what happens to a session id already in the database:
    ``"refuse"`` raises ``ExistingSessionsError`` before writing anything,
    ``"replace"`` deletes the stored session first (in the same transaction),
    ``"skip"`` leaves it as it is.

    Owners are looked up by the user model's ``USERNAME_FIELD`` on the users'
    database of where each session goes (``owners.users_database``: not a shard).
    ``missing_owners`` says what happens to a session whose owner is not found:
    ``"refuse"`` raises ``MissingOwnersError`` naming them before writing
    anything, ``"drop"`` imports those sessions without owner.
    """

    def place(session_id: str) -> str:
        return routing.alias_for(AgentSession, write=True, session_id=session_id, using=using)

    first_seen: dict[str, str] = {}
    targets: dict[str, list[str]] = {}
    usernames: dict[str, set[str]] = {}  # by the database their users are read from
    problems: list[str] = []
    for entry in read():
        record = entry.record
        if record is None:
            problems.append(f"{entry.where}: {entry.error}")
            continue
        alias = place(record.session_id)
        if record.owner is not None:
            usernames.setdefault(owners.users_database(alias), set()).add(record.owner)
        try:
            check_items([item.data for item in record.items], using=alias)
            _check_record(record)
        except (TypeError, ValueError) as exc:
            problems.append(f"{entry.where}: {exc}")
        if record.session_id in first_seen:
            problems.append(
                f"{entry.where}: session {record.session_id!r} already appears at "
                f"{first_seen[record.session_id]}"
            )
        else:
            first_seen[record.session_id] = entry.where
            targets.setdefault(alias, []).append(record.session_id)
    if problems:
        shown = problems[:MAX_REPORTED_PROBLEMS]
        more = len(problems) - len(shown)
        raise TransferError(
            f"Nothing was imported: {len(problems)} problem(s) in the input.\n"
            + "\n".join(shown)
            + (f"\n…and {more} more." if more else "")
        )
    owner_keys = {users: owners.keys_of(names, users) for users, names in usernames.items()}
    missing = sorted(
        {name for users, names in usernames.items() for name in names - set(owner_keys[users])}
    )
    if missing and missing_owners == "refuse":
        raise MissingOwnersError(
            f"Nothing was imported: {len(missing)} owner(s) are not users in database "
            f"{_quote_list(sorted(usernames))}: {_quote_list(missing)}.",
            missing,
        )
    present = {sid for alias, ids in targets.items() for sid in _present(alias, ids)}
    if present and existing == "refuse":
        raise ExistingSessionsError(
            f"Nothing was imported: {len(present)} session(s) already exist in database "
            f"{_quote_list(sorted(targets))}: {_quote_list(sorted(present))}.",
            sorted(present),
        )
    result = TransferResult()
    for entry in read():
        record = entry.record
        assert record is not None  # the first pass proved it
        if record.session_id in present and existing == "skip":
            result.skipped += 1
            continue
        alias = place(record.session_id)
        known = owner_keys.get(owners.users_database(alias), {})
        try:
            replaced = transactions.run(
                alias,
                partial(
                    _write,
                    alias,
                    record,
                    existing == "replace",
                    batch_size,
                    None if record.owner is None else known.get(record.owner),
                ),
            )
        except IntegrityError as exc:
            if record.session_id in present or not _present_now(alias, record.session_id):
                raise TransferError(
                    f"Database {alias!r} refused session {record.session_id!r} ({exc}); "
                    f"{result.sessions} session(s) were imported before it, none of it."
                ) from exc
            raise TransferError(
                f"Session {record.session_id!r} was created in database {alias!r} while the "
                f"import ran; {result.sessions} session(s) were imported before it, "
                "none of it."
            ) from exc
        except DatabaseError as exc:
            raise TransferError(
                f"Database {alias!r} refused session {record.session_id!r} ({exc}); "
                f"{result.sessions} session(s) were imported before it, none of it."
            ) from exc
        result.sessions += 1
        result.items += len(record.items)
        result.replaced += replaced
    return result


def _write(
    using: str, record: SessionRecord, replace: bool, batch_size: int, owner_key: Any
) -> bool:
    """Insert one session, its items and usage rows, owned by ``owner_key``; True if it
    replaced one."""
    store = storage.storage_for(AgentSession, AgentMessage, using)
    # Lock the stored row first (as clear_session and prune do): a writer adding
    # to the session meanwhile waits for the import instead of adding a message
    # between the deletion of its messages and of its row.
    replaced = bool(
        replace
        and store.lock_session(session_id=record.session_id)
        and store.delete_session(session_id=record.session_id)
    )
    session_pk = store.insert_session(values={**record.values, "owner_id": owner_key})
    store.insert_messages(
        session_pk=session_pk,
        rows=[item.values for item in record.items],
        batch_size=batch_size,
    )
    for values in record.usage:
        store.insert_usage(session_pk=session_pk, values=values)
    return replaced


def _present_now(using: str, session_id: str) -> bool:
    return AgentSession.objects.using(using).filter(session_id=session_id).exists()


def _present(using: str, session_ids: list[str], chunk: int = 500) -> Iterator[str]:
    rows = AgentSession.objects.using(using)
    for start in range(0, len(session_ids), chunk):
        yield from rows.filter(session_id__in=session_ids[start : start + chunk]).values_list(
            "session_id", flat=True
        )


def _missing(using: str, session_ids: list[str]) -> list[str]:
    present = set(_present(using, session_ids))
    return [session_id for session_id in session_ids if session_id not in present]


def _quote_list(values: Sequence[str], limit: int = 10) -> str:
    shown = ", ".join(repr(value) for value in values[:limit])
    return shown + (f" and {len(values) - limit} more" if len(values) > limit else "")


def _dumps(value: object) -> str:
    # ASCII-only output cannot fail to encode, whatever the stream's encoding
    # or stray surrogates in stored text, and decodes to the same strings.
    return json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)


def _to_json(value: object) -> object:
    """A field's value as JSON holds it: timestamps and durations in ISO 8601, decimals
    and UUIDs as text."""
    if isinstance(value, (datetime, date, time)):
        return value.isoformat()
    if isinstance(value, timedelta):
        return duration_iso_string(value)
    if isinstance(value, (Decimal, UUID)):
        return str(value)
    return value
