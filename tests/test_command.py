"""``manage.py agent_sessions``: list, show, export, import, prune."""

from __future__ import annotations

import asyncio
import io
import json
import sqlite3
import subprocess
import sys
import tracemalloc
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone
from model_bakery import baker

from openai_django_sessions import DjangoSession, maintenance
from openai_django_sessions import _storage as storage
from openai_django_sessions import _transfer as transfer
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from tests.settings import with_driver_cursor

pytestmark = pytest.mark.django_db

CONVERSATION: list[dict[str, Any]] = [
    {"role": "user", "content": "What's the weather in Paris?"},
    {
        "type": "function_call",
        "name": "get_weather",
        "arguments": '{"city": "Paris"}',
        "call_id": "call_1",
    },
    {"type": "function_call_output", "call_id": "call_1", "output": "18°C, cloudy"},
    {
        "type": "message",
        "role": "assistant",
        "content": [{"type": "output_text", "text": "It is 18°C and cloudy.", "annotations": []}],
    },
]


USAGE_COUNTERS = (
    *("requests", "input_tokens", "output_tokens"),
    *("total_tokens", "cached_tokens", "reasoning_tokens"),
)


def make_session(
    session_id: str,
    items: list[dict[str, Any]] | None = None,
    *,
    idle: timedelta = timedelta(0),
    using: str = "default",
) -> AgentSession:
    """A stored session whose last activity was ``idle`` ago."""
    session = baker.make(AgentSession, session_id=session_id, _using=using)
    AgentMessage.objects.using(using).bulk_create(
        [AgentMessage(session=session, data=item) for item in items or []]
    )
    if idle:
        when = timezone.now() - idle
        AgentSession.objects.using(using).filter(pk=session.pk).update(
            created_at=when - timedelta(hours=1), updated_at=when
        )
        session.refresh_from_db(using=using)
    return session


def run(*args: str, **kwargs: Any) -> str:
    out = io.StringIO()
    call_command("agent_sessions", *args, stdout=out, **kwargs)
    return out.getvalue()


def stored(using: str = "default") -> dict[str, list[dict[str, Any]]]:
    """Every session's items, in order, as the database holds them."""
    result: dict[str, list[dict[str, Any]]] = {}
    for session in AgentSession.objects.using(using).order_by("pk"):
        rows = AgentMessage.objects.using(using).filter(session=session).order_by("pk")
        result[session.session_id] = list(rows.values_list("data", flat=True))
    return result


def session_rows() -> list[tuple[str, datetime, datetime]]:
    rows = AgentSession.objects.order_by("session_id")
    return list(rows.values_list("session_id", "created_at", "updated_at"))


def write_lines(path: Path, *records: object) -> Path:
    path.write_text(
        "".join(r if isinstance(r, str) else json.dumps(r) + "\n" for r in records),
        encoding="utf-8",
    )
    return path


# -- parse_duration ------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30d", timedelta(days=30)),
        ("12h", timedelta(hours=12)),
        ("1w2d", timedelta(weeks=1, days=2)),
        ("90m", timedelta(minutes=90)),
        ("45s", timedelta(seconds=45)),
        (" 2D ", timedelta(days=2)),
    ],
)
def test_parse_duration_reads_numbers_with_units(text: str, expected: timedelta) -> None:
    assert maintenance.parse_duration(text) == expected


@pytest.mark.parametrize("text", ["", "30", "d", "30x", "3.5d", "-1d", "0d", "1d 2"])
def test_parse_duration_rejects_anything_else_with_a_readable_message(text: str) -> None:
    with pytest.raises(ValueError, match=r"duration|zero"):
        maintenance.parse_duration(text)


# -- list ----------------------------------------------------------------------


def test_list_shows_sessions_with_message_counts_most_recent_first() -> None:
    make_session("older", CONVERSATION[:1], idle=timedelta(days=3))
    make_session("newer", CONVERSATION)

    lines = run("list").splitlines()

    assert lines[0].split() == [
        *("SESSION", "ID", "MESSAGES", "TOKENS", "CREATED", "LAST", "ACTIVITY", "OWNER", "TITLE")
    ]
    assert lines[1].split()[:3] == ["newer", "4", "0"]
    assert lines[2].split()[:3] == ["older", "1", "0"]
    assert lines[-1] == "2 session(s)."


def test_list_and_show_give_each_sessions_usage_totals() -> None:
    spent = make_session("spent", CONVERSATION)
    make_session("idle", CONVERSATION[:1], idle=timedelta(days=1))
    for tokens in (1200, 34):
        AgentUsage.objects.create(
            session=spent, requests=1, input_tokens=tokens - 4, output_tokens=4, total_tokens=tokens
        )

    lines = run("list").splitlines()
    assert lines[1].split()[:3] == ["spent", "4", "1,234"]
    assert lines[2].split()[:3] == ["idle", "1", "0"]
    [row, _] = json.loads(run("list", "--json"))
    assert row["usage"] == {
        "requests": 2,
        "input_tokens": 1226,
        "output_tokens": 8,
        "total_tokens": 1234,
        "cached_tokens": 0,
        "reasoning_tokens": 0,
    }
    assert "Usage: 1,234 tokens (1,226 in, 0 cached; 8 out, 0 reasoning) in 2 requests" in run(
        "show", "spent"
    )
    assert lines[-1] == "2 session(s)."


def test_list_inactive_for_keeps_only_sessions_idle_that_long() -> None:
    make_session("stale", idle=timedelta(days=40))
    make_session("fresh", idle=timedelta(days=2))

    output = run("list", "--inactive-for", "30d")

    assert "stale" in output
    assert "fresh" not in output


def test_list_search_matches_part_of_the_session_id_ignoring_case() -> None:
    make_session("user-42-chat")
    make_session("user-7-chat")

    output = run("list", "--search", "42-CH")

    assert "user-42-chat" in output
    assert "user-7-chat" not in output


def test_list_json_prints_an_array_with_counts_and_timestamps() -> None:
    session = make_session("s1", CONVERSATION)

    rows = json.loads(run("list", "--json"))

    assert rows == [
        {
            "session_id": "s1",
            "owner": None,
            "title": "",
            "messages": 4,
            "usage": dict.fromkeys(USAGE_COUNTERS, 0),
            "created_at": session.created_at.isoformat(),
            "updated_at": session.updated_at.isoformat(),
        }
    ]


def test_list_without_sessions_says_so_and_json_is_an_empty_array() -> None:
    assert run("list").strip() == "No sessions."
    assert json.loads(run("list", "--json")) == []


# -- show ----------------------------------------------------------------------


def test_show_prints_the_conversation_readably_in_order() -> None:
    make_session("chat", CONVERSATION)

    output = run("show", "chat")

    assert output.startswith("Session 'chat': 4 item(s);")
    positions = [output.index(marker) for marker in ("#1 user", "#2 function_call", "#3 f", "#4")]
    assert positions == sorted(positions)
    assert "What's the weather in Paris?" in output
    assert 'get_weather({"city": "Paris"})  [call_1]' in output
    assert "-> 18°C, cloudy" in output
    assert "#4 assistant\n    It is 18°C and cloudy." in output


def test_show_limit_prints_only_the_most_recent_items_numbered_in_the_conversation() -> None:
    make_session("chat", CONVERSATION)

    output = run("show", "chat", "--limit", "2")

    assert "showing the last 2" in output
    assert "#1 " not in output and "#2 " not in output
    assert "#3 function_call_output" in output and "#4 assistant" in output


def test_show_json_prints_the_items_as_stored() -> None:
    make_session("chat", CONVERSATION)

    assert json.loads(run("show", "chat", "--json")) == CONVERSATION
    assert json.loads(run("show", "chat", "--json", "--limit", "1")) == CONVERSATION[-1:]


def test_show_unknown_session_is_a_command_error_naming_it() -> None:
    with pytest.raises(CommandError, match="No session 'nope' in database 'default'"):
        run("show", "nope")


# -- export --------------------------------------------------------------------


def test_export_writes_one_json_line_per_session_with_items_in_order() -> None:
    first = make_session("first", CONVERSATION, idle=timedelta(days=1))
    make_session("second", [{"role": "user", "content": "hi"}])
    make_session("empty")

    lines = run("export").splitlines()

    records = [json.loads(line) for line in lines]
    assert [r["session_id"] for r in records] == ["first", "second", "empty"]
    assert [i["data"] for i in records[0]["items"]] == CONVERSATION
    assert records[0]["created_at"] == first.created_at.isoformat()
    assert records[0]["updated_at"] == first.updated_at.isoformat()
    created = list(first.messages.order_by("pk").values_list("created_at", flat=True))
    assert [i["created_at"] for i in records[0]["items"]] == [c.isoformat() for c in created]
    assert records[2]["items"] == []


def test_export_named_sessions_only() -> None:
    make_session("a", CONVERSATION[:1])
    make_session("b", CONVERSATION[:2])
    make_session("c")

    records = [json.loads(line) for line in run("export", "c", "a").splitlines()]

    assert sorted(r["session_id"] for r in records) == ["a", "c"]


def test_export_unknown_session_is_a_command_error_and_writes_nothing(tmp_path: Path) -> None:
    make_session("a")
    target = tmp_path / "out.jsonl"

    with pytest.raises(CommandError, match="No session 'missing'"):
        run("export", "a", "missing", "--output", str(target))

    assert not target.exists()
    assert list(tmp_path.iterdir()) == []


def test_export_to_a_file_reports_what_it_wrote(tmp_path: Path) -> None:
    make_session("a", CONVERSATION)
    target = tmp_path / "sessions.jsonl"

    output = run("export", "--output", str(target))

    assert output.strip() == f"Exported 1 session(s), 4 item(s) to {target}."
    [record] = [json.loads(line) for line in target.read_text(encoding="utf-8").splitlines()]
    assert [i["data"] for i in record["items"]] == CONVERSATION


def test_export_reads_sessions_and_items_in_bounded_batches() -> None:
    for n in range(5):
        make_session(f"s{n}", [{"role": "user", "content": str(i)} for i in range(7)])

    with CaptureQueriesContext(connection) as queries:
        output = run("export", "--batch-size", "3")

    assert len(output.splitlines()) == 5
    selects = [q["sql"] for q in queries if q["sql"].lstrip().upper().startswith("SELECT")]
    # Per session, its row is read by primary key (one row) in the snapshot of its items.
    reads = [sql for sql in selects if "COUNT(" not in sql.upper() and "LIMIT 1" not in sql]
    assert reads and all("LIMIT 3" in sql for sql in reads)
    # 5 session ids in 2 pages + an empty one; per session, 7 items in 3 pages + an
    # empty one and an empty page of usage rows.
    assert len(reads) == 3 + 5 * (4 + 1)


class _Sink(io.TextIOBase):
    def __init__(self) -> None:
        self.written = 0

    def write(self, text: str) -> int:
        self.written += len(text)
        return len(text)


def test_export_memory_does_not_grow_with_the_number_of_items() -> None:
    session = make_session("big")
    payload = "x" * 2000
    AgentMessage.objects.bulk_create(
        [
            AgentMessage(session=session, data={"role": "user", "content": payload})
            for _ in range(20_000)
        ],
        batch_size=1000,
    )
    sink = _Sink()

    tracemalloc.start()
    try:
        transfer.export_sessions(sink, using="default", batch_size=500)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()

    assert sink.written > 40_000_000
    assert peak < 10_000_000, f"export peaked at {peak:,} bytes for {sink.written:,} written"


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_export_shows_a_progress_bar_on_a_terminal_and_nothing_otherwise() -> None:
    make_session("a")
    make_session("b")
    terminal, pipe = _Terminal(), io.StringIO()

    run("export", stderr=terminal)
    run("export", stderr=pipe)

    assert "2/2 sessions" in terminal.getvalue()
    assert "#" * 30 in terminal.getvalue()
    assert pipe.getvalue() == ""


# -- import --------------------------------------------------------------------


def test_export_then_import_round_trip_is_lossless(tmp_path: Path) -> None:
    tricky = {
        "role": "user",
        "content": [{"type": "input_text", "text": 'naïve 日本語 \U0001f600 "quoted" \\ back'}],
        "n": [0.1, 1e-7, 2**53, -0.0, True, None],
        "nested": {"b": 1, "a": {"z": [], "y": {}}},
    }
    make_session("one", [*CONVERSATION, tricky], idle=timedelta(days=3, microseconds=123457))
    make_session("two", [{"role": "user", "content": f"{i}"} for i in range(30)])
    make_session("empty", idle=timedelta(days=1))
    sessions_before = list(
        AgentSession.objects.order_by("session_id").values_list(
            "session_id", "created_at", "updated_at"
        )
    )
    items_before = stored()
    times_before = {
        s.session_id: list(s.messages.order_by("pk").values_list("created_at", flat=True))
        for s in AgentSession.objects.all()
    }
    export = tmp_path / "all.jsonl"
    run("export", "--output", str(export))
    AgentSession.objects.all().delete()

    output = run("import", str(export))

    assert output.strip() == f"Imported 3 session(s), 35 item(s) from {export}."
    assert stored() == items_before
    assert (
        list(
            AgentSession.objects.order_by("session_id").values_list(
                "session_id", "created_at", "updated_at"
            )
        )
        == sessions_before
    )
    assert {
        s.session_id: list(s.messages.order_by("pk").values_list("created_at", flat=True))
        for s in AgentSession.objects.all()
    } == times_before


def test_import_refuses_sessions_that_exist_naming_them_and_imports_nothing(tmp_path: Path) -> None:
    make_session("taken", [{"role": "user", "content": "original"}])
    source = write_lines(
        tmp_path / "in.jsonl",
        {"session_id": "new", "items": [{"data": {"role": "user", "content": "n"}}]},
        {"session_id": "taken", "items": [{"data": {"role": "user", "content": "t"}}]},
    )

    with pytest.raises(CommandError, match=r"already exist.*'taken'.*--replace.*--skip-existing"):
        run("import", str(source))

    assert stored() == {"taken": [{"role": "user", "content": "original"}]}


def test_import_replace_overwrites_existing_sessions(tmp_path: Path) -> None:
    make_session("taken", [{"role": "user", "content": "original"}] * 3)
    source = write_lines(
        tmp_path / "in.jsonl",
        {"session_id": "taken", "items": [{"data": {"role": "user", "content": "imported"}}]},
        {"session_id": "new", "items": []},
    )

    output = run("import", str(source), "--replace")

    assert "Imported 2 session(s), 1 item(s)" in output and "(1 replaced)" in output
    assert stored() == {"taken": [{"role": "user", "content": "imported"}], "new": []}


def test_import_skip_existing_keeps_stored_sessions_and_imports_the_others(tmp_path: Path) -> None:
    make_session("taken", [{"role": "user", "content": "original"}])
    source = write_lines(
        tmp_path / "in.jsonl",
        {"session_id": "taken", "items": [{"data": {"role": "user", "content": "imported"}}]},
        {"session_id": "new", "items": [{"data": {"role": "user", "content": "n"}}]},
    )

    output = run("import", str(source), "--skip-existing")

    assert "Imported 1 session(s)" in output and "1 skipped as already present" in output
    assert stored() == {
        "taken": [{"role": "user", "content": "original"}],
        "new": [{"role": "user", "content": "n"}],
    }


def test_import_replace_and_skip_existing_cannot_be_combined(tmp_path: Path) -> None:
    source = write_lines(tmp_path / "in.jsonl")
    with pytest.raises(CommandError, match="not allowed with argument"):
        run("import", str(source), "--replace", "--skip-existing")


def test_import_reports_every_malformed_line_by_number_and_imports_nothing(tmp_path: Path) -> None:
    good = {"session_id": "good", "items": [{"data": {"role": "user", "content": "hi"}}]}
    source = write_lines(
        tmp_path / "in.jsonl",
        good,
        "{not json\n",
        "\n",
        {"session_id": "", "items": []},
        {"session_id": "x", "items": [{"data": "not an object"}]},
        {"session_id": "y", "items": [], "colour": "blue"},
        {"session_id": "z", "items": [], "created_at": "yesterday"},
        '{"session_id": "n", "items": [{"data": {"v": NaN}}]}\n',
        [1, 2],
    )

    with pytest.raises(CommandError) as raised:
        run("import", str(source))

    message = str(raised.value)
    assert message.startswith("Nothing was imported: 7 problem(s)")
    for number in (2, 4, 5, 6, 7, 8, 9):
        assert f"line {number}:" in message
    assert "line 1:" not in message and "line 3:" not in message
    assert AgentSession.objects.count() == 0


def test_import_rejects_a_session_id_repeated_in_the_input(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        {"session_id": "twice", "items": []},
        {"session_id": "twice", "items": []},
    )

    with pytest.raises(CommandError, match="line 2: session 'twice' already appears at line 1"):
        run("import", str(source))

    assert AgentSession.objects.count() == 0


@pytest.mark.django_db(transaction=True)
def test_import_stores_each_session_all_or_nothing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        {"session_id": "fine", "items": [{"data": {"role": "user", "content": "1"}}]},
        {"session_id": "doomed", "items": [{"data": {"role": "user", "content": "2"}}] * 5},
    )
    real_insert = storage.Storage.insert_messages

    def failing_insert(self: storage.Storage, *, rows: Any, **kwargs: Any) -> None:
        if rows[0]["data"]["content"] == "2":
            raise DatabaseError("disk full")
        real_insert(self, rows=rows, **kwargs)

    monkeypatch.setattr(storage.Storage, "insert_messages", failing_insert)

    with pytest.raises(CommandError, match=r"refused session 'doomed' \(disk full\); 1 session"):
        run("import", str(source))

    assert stored() == {"fine": [{"role": "user", "content": "1"}]}


def test_import_reads_standard_input_given_a_dash(monkeypatch: pytest.MonkeyPatch) -> None:
    line = {"session_id": "piped", "items": [{"data": {"role": "user", "content": "hi"}}]}
    monkeypatch.setattr(sys, "stdin", io.StringIO(json.dumps(line) + "\n"))

    output = run("import", "-")

    assert "from standard input" in output
    assert stored() == {"piped": [{"role": "user", "content": "hi"}]}


def test_import_missing_file_is_a_command_error(tmp_path: Path) -> None:
    with pytest.raises(CommandError, match=r"Cannot read .*nope\.jsonl"):
        run("import", str(tmp_path / "nope.jsonl"))


def test_import_timestamps_without_offset_are_utc_and_missing_ones_are_now(tmp_path: Path) -> None:
    source = write_lines(
        tmp_path / "in.jsonl",
        {
            "session_id": "s",
            "created_at": "2024-05-01 10:00:00",
            "items": [{"data": {"role": "user", "content": "hi"}}],
        },
    )
    before = timezone.now()

    run("import", str(source))

    session = AgentSession.objects.get()
    assert session.created_at == datetime(2024, 5, 1, 10, tzinfo=UTC)
    assert session.updated_at >= before
    assert session.messages.get().created_at >= before


def _sdk_rows(path: Path, sessions: str = "agent_sessions", messages: str = "agent_messages"):
    db = sqlite3.connect(path)
    try:
        session_rows = {
            sid: (created, updated)
            for sid, created, updated in db.execute(
                f"SELECT session_id, created_at, updated_at FROM {sessions}"
            )
        }
        message_times = {
            sid: [
                c
                for (c,) in db.execute(
                    f"SELECT created_at FROM {messages} WHERE session_id = ? ORDER BY id", (sid,)
                )
            ]
            for sid in session_rows
        }
    finally:
        db.close()
    return session_rows, message_times


def _as_utc(text: str) -> datetime:
    return datetime.fromisoformat(text).replace(tzinfo=UTC)


def test_import_from_sqlite_reads_an_sdk_sqlite_session_file(tmp_path: Path) -> None:
    from agents import SQLiteSession

    path = tmp_path / "conversations.db"
    for session_id, items in (("alpha", CONVERSATION), ("beta", CONVERSATION[:1])):
        sdk = SQLiteSession(session_id, path)
        asyncio.run(sdk.add_items(items))
        sdk.close()
    sessions, message_times = _sdk_rows(path)

    output = run("import", "--from-sqlite", str(path))

    assert output.strip() == f"Imported 2 session(s), 5 item(s) from {path}."
    assert stored() == {"alpha": CONVERSATION, "beta": CONVERSATION[:1]}
    for session in AgentSession.objects.all():
        created, updated = sessions[session.session_id]
        assert (session.created_at, session.updated_at) == (_as_utc(created), _as_utc(updated))
        times = session.messages.order_by("pk").values_list("created_at", flat=True)
        assert list(times) == [_as_utc(t) for t in message_times[session.session_id]]


def test_import_from_sqlite_reads_an_sdk_sqlalchemy_session_file(tmp_path: Path) -> None:
    from agents.extensions.memory.sqlalchemy_session import SQLAlchemySession

    path = tmp_path / "alchemy.db"

    async def write() -> None:
        for session_id, items in (("one", CONVERSATION), ("two", CONVERSATION[2:])):
            sdk = SQLAlchemySession.from_url(
                session_id, url=f"sqlite+aiosqlite:///{path}", create_tables=True
            )
            await sdk.add_items(items)
            await sdk.engine.dispose()

    asyncio.run(write())
    sessions, _ = _sdk_rows(path)

    run("import", "--from-sqlite", str(path))

    assert stored() == {"one": CONVERSATION, "two": CONVERSATION[2:]}
    one = AgentSession.objects.get(session_id="one")
    assert one.created_at == _as_utc(sessions["one"][0])


def test_import_from_sqlite_with_other_table_names_and_orphan_messages(tmp_path: Path) -> None:
    from agents import SQLiteSession

    path = tmp_path / "custom.db"
    sdk = SQLiteSession("kept", path, sessions_table="convs", messages_table="msgs")
    asyncio.run(sdk.add_items(CONVERSATION))
    sdk.close()
    db = sqlite3.connect(path)
    with db:  # the SDK reads messages by session_id, with or without a sessions row
        db.execute("DELETE FROM convs")
    db.close()

    with pytest.raises(CommandError, match="has no table 'agent_sessions', 'agent_messages'"):
        run("import", "--from-sqlite", str(path))
    run(
        "import",
        "--from-sqlite",
        str(path),
        "--sessions-table",
        "convs",
        "--messages-table",
        "msgs",
    )

    assert stored() == {"kept": CONVERSATION}


def test_import_from_sqlite_refuses_a_file_that_is_not_a_database(tmp_path: Path) -> None:
    path = tmp_path / "notes.txt"
    path.write_text("hello, this is not SQLite\n" * 100)

    with pytest.raises(CommandError, match="not a readable SQLite database"):
        run("import", "--from-sqlite", str(path))
    with pytest.raises(CommandError, match="does not exist"):
        run("import", "--from-sqlite", str(tmp_path / "absent.db"))


def test_import_from_sqlite_reports_corrupt_messages_by_session(tmp_path: Path) -> None:
    from agents import SQLiteSession

    path = tmp_path / "corrupt.db"
    sdk = SQLiteSession("bad", path)
    asyncio.run(sdk.add_items(CONVERSATION[:2]))
    sdk.close()
    db = sqlite3.connect(path)
    with db:
        db.execute("UPDATE agent_messages SET message_data = '{oops' WHERE id = 2")
    db.close()

    with pytest.raises(CommandError, match=r"session 'bad': message 2 is not valid JSON"):
        run("import", "--from-sqlite", str(path))

    assert AgentSession.objects.count() == 0


# -- prune ---------------------------------------------------------------------


def test_prune_deletes_inactive_sessions_with_their_messages_and_prints_counts() -> None:
    make_session("stale-1", CONVERSATION, idle=timedelta(days=31))
    make_session("stale-2", CONVERSATION[:1], idle=timedelta(days=45))
    make_session("fresh", CONVERSATION, idle=timedelta(days=29))

    output = run("prune", "--inactive-for", "30d")

    assert output.strip() == "Deleted 2 session(s) and 5 message(s)."
    assert list(AgentSession.objects.values_list("session_id", flat=True)) == ["fresh"]
    assert AgentMessage.objects.count() == 4


def test_prune_dry_run_lists_what_would_go_and_deletes_nothing() -> None:
    make_session("stale", CONVERSATION, idle=timedelta(days=8))
    make_session("fresh", CONVERSATION)

    output = run("prune", "--inactive-for", "1w", "--dry-run")

    assert "stale  4 message(s), last activity" in output
    assert "fresh" not in output
    assert output.splitlines()[-1] == "Would delete 1 session(s) and 4 message(s)."
    assert AgentSession.objects.count() == 2 and AgentMessage.objects.count() == 8


def test_prune_dry_run_counts_as_maintenance_prune_does_what_prune_then_deletes() -> None:
    make_session("stale", CONVERSATION, idle=timedelta(days=8))
    make_session("stale-empty", idle=timedelta(days=9))
    make_session("fresh", CONVERSATION)

    with CaptureQueriesContext(connection) as queries:
        dry = run("prune", "--inactive-for", "1w", "--dry-run", verbosity=0)
    # Quiet, it lists nothing: it only counts, as maintenance.prune(dry_run=True) does.
    reads = [q["sql"].lstrip().upper() for q in queries]
    reads = [sql for sql in reads if sql.startswith("SELECT")]
    assert len(reads) == 2 and all(sql.startswith("SELECT COUNT(") for sql in reads), reads
    assert maintenance.prune("default", inactive_for=timedelta(weeks=1), dry_run=True) == (
        maintenance.PruneResult(sessions=2, messages=4)
    )

    assert dry.strip() == "Would delete 2 session(s) and 4 message(s)."
    assert run("prune", "--inactive-for", "1w").strip() == "Deleted 2 session(s) and 4 message(s)."


def test_prune_deletes_in_batches() -> None:
    for n in range(5):
        make_session(f"stale-{n}", CONVERSATION[:1], idle=timedelta(days=2))

    with CaptureQueriesContext(connection) as queries:
        output = run("prune", "--inactive-for", "1d", "--batch-size", "2")

    assert output.strip() == "Deleted 5 session(s) and 5 message(s)."
    session_deletes = [
        q["sql"]
        for q in queries
        if q["sql"].upper().startswith("DELETE") and "agent_sessions" in q["sql"]
    ]
    assert len(session_deletes) == 3


def test_prune_keeps_a_session_that_became_active_after_it_was_selected(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    make_session("revived", CONVERSATION[:1], idle=timedelta(days=2))
    make_session("stale", CONVERSATION[:1], idle=timedelta(days=2))
    real = maintenance._delete_batch

    def activity_first(using: str, pks: list[int], cutoff: datetime) -> maintenance.PruneResult:
        AgentSession.objects.filter(session_id="revived").update(updated_at=timezone.now())
        return real(using, pks, cutoff)

    monkeypatch.setattr(maintenance, "_delete_batch", activity_first)

    result = maintenance.prune("default", inactive_for=timedelta(days=1))

    assert result == maintenance.PruneResult(sessions=1, messages=1)
    assert list(AgentSession.objects.values_list("session_id", flat=True)) == ["revived"]


def test_prune_requires_a_valid_inactive_for() -> None:
    with pytest.raises(CommandError, match="--inactive-for"):
        run("prune")
    with pytest.raises(CommandError, match="not a duration"):
        run("prune", "--inactive-for", "soon")


# -- every subcommand ------------------------------------------------------------


@pytest.mark.django_db(databases=["default", "other"])
def test_database_option_works_on_every_subcommand(tmp_path: Path) -> None:
    make_session("local", CONVERSATION[:1])
    make_session("remote", CONVERSATION, using="other", idle=timedelta(days=9))
    export = tmp_path / "other.jsonl"

    assert "remote" in run("list", "--database", "other")
    assert "local" not in run("list", "--database", "other")
    assert "#4 assistant" in run("show", "remote", "--database", "other")
    run("export", "--output", str(export), "--database", "other")
    run("import", str(export))
    assert run("prune", "--inactive-for", "1w", "--database", "other").startswith("Deleted 1")

    assert stored("default") == {"local": CONVERSATION[:1], "remote": CONVERSATION}
    assert stored("other") == {}


def test_database_setting_is_the_default_alias(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = with_driver_cursor({"DATABASE": "missing"})
    with pytest.raises(CommandError, match="Unknown database alias 'missing'"):
        run("list")


@pytest.mark.parametrize("subcommand", ["list", "show", "export", "import", "prune", "erase"])
def test_every_subcommand_has_help_with_a_database_option(
    subcommand: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        run(subcommand, "--help")

    assert exited.value.code == 0
    assert "--database ALIAS" in capsys.readouterr().out


MANAGE_OPTIONS = ("--settings=tests.settings", "--skip-checks")


def _manage(*args: str) -> subprocess.CompletedProcess[str]:
    # Without checks: Django's own model checks would connect to the (absent)
    # non-test database on some backends, and they are not what is tested here.
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "django",
            "agent_sessions",
            "--settings=tests.settings",
            "--skip-checks",
            *args,
        ],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        check=False,
    )


def test_exit_codes_follow_django_conventions() -> None:
    usage = _manage("prune", "--inactive-for", "soon")
    user_error = _manage("list", "--database", "nowhere")

    assert usage.returncode == 2
    assert "'soon' is not a duration" in usage.stderr
    assert user_error.returncode == 1
    assert user_error.stderr.strip() == (
        "CommandError: Unknown database alias 'nowhere'; it is not in DATABASES."
    )


# -- owners, titles, metadata ---------------------------------------------------


def own(session: AgentSession, owner: Any, title: str = "", **metadata: Any) -> AgentSession:
    AgentSession.objects.filter(pk=session.pk).update(owner=owner, title=title, metadata=metadata)
    session.refresh_from_db()
    return session


def test_list_owner_keeps_that_users_sessions_and_shows_owner_and_title(
    alice: Any, bob: Any
) -> None:
    own(make_session("a1", CONVERSATION[:1]), alice, "Weather in Paris")
    own(make_session("b1"), bob, "Taxes")
    make_session("nobody")

    lines = run("list", "--owner", "alice").splitlines()
    rows = json.loads(run("list", "--owner", "bob", "--json"))

    assert len(lines) == 3 and lines[-1] == "1 session(s)."
    assert lines[1].split() == [
        "a1",
        "1",
        *lines[1].split()[2:-4],
        "alice",
        "Weather",
        "in",
        "Paris",
    ]
    assert [(r["session_id"], r["owner"], r["title"]) for r in rows] == [("b1", "bob", "Taxes")]


def test_list_owner_unknown_user_is_a_command_error(alice: Any) -> None:
    with pytest.raises(CommandError, match="No user 'carol' in database 'default'"):
        run("list", "--owner", "carol")


def test_show_prints_owner_title_and_metadata(alice: Any) -> None:
    own(make_session("chat", CONVERSATION), alice, "Paris", agent="planner")
    make_session("plain")

    output = run("show", "chat").splitlines()
    plain = run("show", "plain").splitlines()

    assert output[1:4] == ["Owner: alice", "Title: Paris", 'Metadata: {"agent": "planner"}']
    assert plain[1:4] == ["Owner: (none)", "Title: (none)", "Metadata: {}"]


def test_export_import_round_trip_keeps_owner_title_and_metadata(
    tmp_path: Path, alice: Any, bob: Any
) -> None:
    own(make_session("a1", CONVERSATION), alice, "Paris", agent="planner", n=[1, 2])
    own(make_session("b1"), bob, "Taxes")
    make_session("nobody")
    export = tmp_path / "all.jsonl"
    run("export", "--output", str(export))
    records = {r["session_id"]: r for r in map(json.loads, export.read_text().splitlines())}
    AgentSession.objects.all().delete()

    run("import", str(export))

    assert (records["a1"]["owner"], records["a1"]["title"]) == ("alice", "Paris")
    assert records["nobody"]["owner"] is None
    rows = AgentSession.objects.order_by("session_id").values_list(
        "session_id", "owner__username", "title", "metadata"
    )
    assert list(rows) == [
        ("a1", "alice", "Paris", {"agent": "planner", "n": [1, 2]}),
        ("b1", "bob", "Taxes", {}),
        ("nobody", None, "", {}),
    ]


def test_import_names_owners_by_username_whatever_their_primary_keys(
    tmp_path: Path, django_user_model: Any
) -> None:
    django_user_model.objects.create_user("first")  # takes a primary key before alice's
    alice = django_user_model.objects.create_user("alice")
    path = write_lines(
        tmp_path / "in.jsonl", {"session_id": "s", "owner": "alice", "title": "T", "items": []}
    )

    run("import", str(path))

    assert AgentSession.objects.get().owner_id == alice.pk


def test_import_with_owners_that_do_not_exist_lists_them_and_imports_nothing(
    tmp_path: Path, alice: Any
) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        {"session_id": "s1", "owner": "alice", "items": []},
        {"session_id": "s2", "owner": "zoe", "items": []},
        {"session_id": "s3", "owner": "carol", "items": []},
        {"session_id": "s4", "owner": "zoe", "items": []},
    )

    with pytest.raises(CommandError) as refused:
        run("import", str(path))

    assert "2 owner(s) are not users in database 'default': 'carol', 'zoe'" in str(refused.value)
    assert "--drop-missing-owners" in str(refused.value)
    assert not AgentSession.objects.exists()


def test_import_drop_missing_owners_imports_those_sessions_without_owner(
    tmp_path: Path, alice: Any
) -> None:
    path = write_lines(
        tmp_path / "in.jsonl",
        {"session_id": "s1", "owner": "alice", "items": []},
        {"session_id": "s2", "owner": "zoe", "title": "Kept", "items": []},
    )

    run("import", str(path), "--drop-missing-owners")

    rows = AgentSession.objects.order_by("session_id").values_list("session_id", "owner", "title")
    assert list(rows) == [("s1", alice.pk, ""), ("s2", None, "Kept")]


@pytest.mark.parametrize(
    ("field", "value", "problem"),
    [
        ("owner", 5, "owner must be a non-empty string or null"),
        ("owner", "", "owner must be a non-empty string or null"),
        ("title", "x" * 256, "title must be at most 255 characters, got 256"),
        ("metadata", [1], "metadata must be a dict, not list"),
    ],
)
def test_import_rejects_bad_owner_title_or_metadata_by_line(
    tmp_path: Path, field: str, value: Any, problem: str
) -> None:
    path = write_lines(tmp_path / "in.jsonl", {"session_id": "s", field: value, "items": []})

    with pytest.raises(CommandError, match=f"line 1: {problem}"):
        run("import", str(path))
    assert not AgentSession.objects.exists()


# -- what users typed is printed escaped, never acted on by the terminal -------------

HOSTILE = "\x1b]0;owned\x07\x1b[2JHello\nFAKE LINE\r\u202eevil\x9b\x7f"
ESCAPED = "\\x1b]0;owned\\x07\\x1b[2JHello\\nFAKE LINE\\r\\u202eevil\\x9b\\x7f"
UNSAFE = ("\x1b", "\x07", "\r", "\u202e", "\x9b", "\x7f")


@pytest.mark.django_db(transaction=True)  # the session writes from its own thread
def test_list_show_and_prune_print_control_characters_escaped_and_json_exact(alice: Any) -> None:
    # A title defaults to the first user message: an end user chooses it.
    session = DjangoSession("chat-1", owner=alice, title=HOSTILE)
    asyncio.run(session.add_items([{"role": "user", "content": HOSTILE}]))
    asyncio.run(session.add_items([{"type": "function_call", "name": HOSTILE, "call_id": "c"}]))
    AgentSession.objects.update(
        metadata={"note": "\x9b\u202e"}, updated_at=timezone.now() - timedelta(days=2)
    )

    listed, shown = run("list"), run("show", "chat-1")
    pruned = run("prune", "--inactive-for", "1d", "--dry-run")

    for output in (listed, shown, pruned):
        assert not any(char in output for char in UNSAFE), output
    assert "FAKE LINE" not in listed.replace(ESCAPED, "")
    assert listed.splitlines()[1].endswith(f"{'alice':<20}  {ESCAPED}")
    assert f"Title: {ESCAPED}" in shown
    assert 'Metadata: {"note": "\\x9b\\u202e"}' in shown
    # The item's text keeps its line breaks, indented under its head: no line of it
    # can pass for one the command printed.
    assert "#1 user\n    \\x1b]0;owned\\x07\\x1b[2JHello\n    FAKE LINE\\r\\u202eevil" in shown
    assert f"#2 function_call  {ESCAPED}()  [c]" in shown
    assert json.loads(run("list", "--json"))[0]["title"] == HOSTILE
    assert json.loads(run("show", "chat-1", "--json"))[0]["content"] == HOSTILE
