"""``manage.py agent_sessions``: list, show, export, import, prune, erase stored sessions,
convert-ids for tables of 0.1/0.2 on MySQL/MariaDB, and index-text for full-text search.

The command parses and reports; the work is in ``maintenance`` and ``transfer``.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import os
import sys
import tempfile
from argparse import ArgumentTypeError
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime, timedelta
from functools import partial
from pathlib import Path
from typing import IO, Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser, OutputWrapper
from django.db import connections
from django.utils import timezone

from ... import _backfill as backfill
from ... import _conf as conf
from ... import _display as display
from ... import _owners as owners
from ... import _rebalance as rebalance
from ... import _routing as routing
from ... import _tables as tables
from ... import _transfer as transfer
from ... import maintenance, usage
from ...items import check_session_id
from ...models import AgentMessage, AgentSession, AgentUsage


class Command(BaseCommand):
    help = (
        "Inspect and maintain stored agent sessions: list, show, export, import, prune, "
        "erase, convert-ids, rebalance, index-text."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        commands = parser.add_subparsers(
            dest="subcommand", metavar="SUBCOMMAND", required=True, title="subcommands"
        )

        listing = commands.add_parser(
            "list", help="List sessions with their message counts and timestamps."
        )
        listing.add_argument(
            "--inactive-for",
            metavar="DURATION",
            type=_duration,
            help="Only sessions with no activity for this long (30d, 12h, 1w2d).",
        )
        listing.add_argument("--search", metavar="TEXT", help="Only session ids containing TEXT.")
        listing.add_argument("--owner", metavar="USERNAME", help="Only the sessions of this user.")
        listing.add_argument(
            "--json", dest="as_json", action="store_true", help="Print a JSON array."
        )

        show = commands.add_parser("show", help="Print one session's conversation.")
        show.add_argument("session_id", metavar="SESSION_ID")
        show.add_argument(
            "--json", dest="as_json", action="store_true", help="Print the items as a JSON array."
        )
        show.add_argument(
            "--limit", metavar="N", type=_positive_int, help="Only the N most recent items."
        )

        export = commands.add_parser(
            "export", help="Write sessions as JSON Lines, one session per line."
        )
        export.add_argument(
            "session_ids", metavar="SESSION_ID", nargs="*", help="Sessions to export (all if none)."
        )
        export.add_argument(
            "--owner",
            metavar="USERNAME",
            help="Only the sessions of this user (on every database sessions live on).",
        )
        export.add_argument(
            "--output", "-o", metavar="FILE", help="Write to FILE instead of standard output."
        )
        export.add_argument(
            "--batch-size", type=_positive_int, default=1000, help="Rows read per query."
        )

        importing = commands.add_parser(
            "import",
            help="Read sessions from a JSON Lines export, or from an SDK SQLite database.",
        )
        source = importing.add_mutually_exclusive_group(required=True)
        source.add_argument(
            "file", metavar="FILE", nargs="?", help="A JSON Lines file ('-' for standard input)."
        )
        source.add_argument(
            "--from-sqlite",
            metavar="PATH",
            help="A database written by the SDK's SQLiteSession or SQLAlchemySession.",
        )
        importing.add_argument(
            "--sessions-table",
            default="agent_sessions",
            help="With --from-sqlite: the sessions table (default: agent_sessions).",
        )
        importing.add_argument(
            "--messages-table",
            default="agent_messages",
            help="With --from-sqlite: the messages table (default: agent_messages).",
        )
        existing = importing.add_mutually_exclusive_group()
        existing.add_argument(
            "--replace",
            action="store_true",
            help="Replace sessions whose id already exists.",
        )
        existing.add_argument(
            "--skip-existing",
            action="store_true",
            help="Keep sessions whose id already exists and import the others.",
        )
        importing.add_argument(
            "--drop-missing-owners",
            action="store_true",
            help="Import sessions whose owner is not a user of the database without owner "
            "(by default the import is refused, naming those users).",
        )
        importing.add_argument(
            "--batch-size", type=_positive_int, default=1000, help="Rows written per query."
        )

        prune = commands.add_parser(
            "prune", help="Delete sessions with no activity for a given time, or expired ones."
        )
        which = prune.add_mutually_exclusive_group(required=True)
        which.add_argument(
            "--inactive-for",
            metavar="DURATION",
            type=_duration,
            help="Delete sessions with no activity for this long (30d, 12h, 1w2d).",
        )
        which.add_argument(
            "--expired",
            action="store_true",
            help="Delete sessions whose retention ran out (EXPIRE_AFTER, expires_after).",
        )
        prune.add_argument(
            "--dry-run", action="store_true", help="Print what would be deleted; delete nothing."
        )
        prune.add_argument(
            "--batch-size",
            type=_positive_int,
            default=500,
            help="Sessions deleted per transaction.",
        )

        erase = commands.add_parser(
            "erase",
            help="Delete every session of one user (messages and usage with them), "
            "on every database sessions live on.",
        )
        erase.add_argument("--owner", metavar="USERNAME", required=True, help="The user.")
        erase.add_argument(
            "--dry-run", action="store_true", help="Count what would be deleted; delete nothing."
        )
        erase.add_argument(
            "--noinput",
            "--no-input",
            action="store_false",
            dest="interactive",
            help="Do not ask for confirmation (needed when standard input is not a terminal).",
        )

        convert = commands.add_parser(
            "convert-ids",
            help="Make a sessions table of 0.1/0.2 on MySQL/MariaDB compare ids exactly "
            "(case, accents and trailing spaces count).",
        )
        convert.add_argument(
            "--sessions-table",
            metavar="TABLE",
            default=None,
            help="The table to convert (default: OPENAI_DJANGO_SESSIONS['SESSIONS_TABLE']).",
        )

        moving = commands.add_parser(
            "rebalance",
            help="Move every session that is not on its shard (after SHARDS changed) to it.",
        )
        moving.add_argument(
            "--dry-run", action="store_true", help="Count the sessions to move; move nothing."
        )
        moving.add_argument(
            "--batch-size",
            type=_positive_int,
            default=500,
            help="Sessions looked at per query.",
        )

        indexing = commands.add_parser(
            "index-text",
            help="Fill the search text of messages stored before full-text search "
            "(resumable), and rebuild PostgreSQL's index after SEARCH_CONFIG changed.",
        )
        indexing.add_argument(
            "--batch-size",
            type=_positive_int,
            default=500,
            help="Messages filled per transaction.",
        )

        for sub in (listing, show, export, importing, prune, erase, convert, indexing):
            sub.add_argument(
                "--database",
                metavar="ALIAS",
                help="The database alias to use (default: OPENAI_DJANGO_SESSIONS['DATABASE'], "
                "else every shard of a router that lists them, else the database routers).",
            )

    def handle(self, *args: Any, subcommand: str, **options: Any) -> None:
        if subcommand == "rebalance":
            self.handle_rebalance(**options)
            return
        # Before routing or any query: a database would raise its own error for these.
        for session_id in [options.get("session_id"), *(options.get("session_ids") or [])]:
            if session_id is not None:
                _text_argument("SESSION_ID", session_id)
                try:
                    check_session_id(session_id)
                except ValueError as exc:
                    raise CommandError(f"{exc}.") from exc
        for option in ("owner", "search"):
            if options.get(option) is not None:
                _text_argument(f"--{option}", options[option])
        for option in ("limit", "batch_size"):
            if (options.get(option) or 0) > MAX_COUNT:
                raise CommandError(
                    f"--{option.replace('_', '-')} {options[option]} is too large: "
                    f"it must be at most {MAX_COUNT:,}."
                )
        if options.get("inactive_for") is not None:
            try:
                maintenance.check_inactive_for(options["inactive_for"])
            except ValueError as exc:
                raise CommandError(f"--inactive-for {exc}.") from exc
        if subcommand == "show":
            # One session: the routing rule says where it lives.
            aliases = [
                routing.alias_for(
                    AgentSession,
                    write=False,
                    session_id=options["session_id"],
                    using=options["database"],
                )
            ]
        else:
            # Every database sessions live on (every shard), or the one --database names.
            aliases = routing.databases(AgentSession, using=options["database"])
        for alias in aliases:
            if alias not in connections:
                raise CommandError(f"Unknown database alias {alias!r}; it is not in DATABASES.")
        handler: Callable[..., None] = getattr(self, f"handle_{subcommand.replace('-', '_')}")
        try:
            handler(aliases, **options)
        except BrokenPipeError:
            _exit_on_closed_pipe()

    # -- subcommands ---------------------------------------------------------------

    def handle_list(
        self,
        aliases: list[str],
        *,
        inactive_for: timedelta | None,
        search: str | None,
        owner: str | None,
        as_json: bool,
        **options: Any,
    ) -> None:
        if owner is not None:
            _require_user(owner, aliases)
        rows = maintenance.sessions_of(
            aliases, inactive_for=inactive_for, search=search, owner=owner
        )
        # Closed here, while the connections are open, even if writing fails midway.
        with contextlib.closing(rows):
            self._list(rows, as_json=as_json)

    def _list(self, rows: Iterator[Any], *, as_json: bool) -> None:
        if as_json:
            self._write_json_array(
                {
                    "session_id": s.session_id,
                    "owner": owner,
                    "title": s.title,
                    "messages": s.message_count,
                    "usage": {name: getattr(s, f"usage_{name}") for name in usage.COUNTERS},
                    "created_at": s.created_at.isoformat(),
                    "updated_at": s.updated_at.isoformat(),
                }
                for s, owner in owners.with_names(rows)
            )
            return
        count = 0
        for session, name in owners.with_names(rows):
            owner = display.printable(name or "-")
            if not count:
                self.stdout.write(
                    f"{'SESSION ID':<36}  {'MESSAGES':>8}  {'TOKENS':>10}  {'CREATED':<23}  "
                    f"{'LAST ACTIVITY':<23}  {'OWNER':<20}  TITLE"
                )
            self.stdout.write(
                f"{display.printable(session.session_id):<36}  {session.message_count:>8}  "
                f"{session.usage_total_tokens:>10,}  "
                f"{_when(session.created_at):<23}  {_when(session.updated_at):<23}  "
                f"{owner:<20}  {display.printable(session.title)}".rstrip()
            )
            count += 1
        self.stdout.write(f"{count} session(s)." if count else "No sessions.")

    def handle_show(
        self,
        aliases: list[str],
        *,
        session_id: str,
        as_json: bool,
        limit: int | None,
        **options: Any,
    ) -> None:
        [alias] = aliases
        rows_of = AgentSession.objects.using(alias)
        if alias == owners.users_database(alias):
            rows_of = rows_of.select_related("owner")
        session = rows_of.filter(session_id=session_id).first()
        if session is None:
            raise CommandError(f"No session {session_id!r} in database {alias!r}.")
        rows = AgentMessage.objects.using(alias).filter(session=session)
        total = rows.count()
        newest_first = rows.order_by("-pk").values_list("data", flat=True)
        items = list(newest_first[:limit] if limit is not None else newest_first)
        items.reverse()
        if as_json:
            self._write_json_array(items)
            return
        shown = f", showing the last {len(items)}" if len(items) < total else ""
        self.stdout.write(
            f"Session {display.printable(repr(session.session_id))}: {total} item(s){shown}; "
            f"created {_when(session.created_at)}, last activity {_when(session.updated_at)}"
        )
        [(_, owner)] = owners.with_names([session])
        self.stdout.write(f"Owner: {display.printable(owner or '(none)')}")
        self.stdout.write(f"Title: {display.printable(session.title or '(none)')}")
        metadata = json.dumps(session.metadata, ensure_ascii=False, sort_keys=True)
        self.stdout.write(f"Metadata: {display.printable(metadata)}")
        spent = usage.totals(AgentUsage.objects.using(alias).filter(session=session))
        self.stdout.write(f"Usage: {display.usage_line(dataclasses.asdict(spent))}")
        for position, item in enumerate(items, start=total - len(items) + 1):
            self.stdout.write("")
            self.stdout.write(_render(position, display.describe(item)))

    def handle_export(
        self,
        aliases: list[str],
        *,
        session_ids: list[str],
        owner: str | None,
        output: str | None,
        batch_size: int,
        **options: Any,
    ) -> None:
        chosen = session_ids or None
        if owner is not None:
            if chosen is not None:
                raise CommandError("Name sessions or pass --owner, not both.")
            _require_user(owner, aliases)
        alias = options["database"]  # None: every database, each session where it lives
        total = transfer.count_sessions(alias, chosen, owner=owner)
        progress = self._progress(total, options["verbosity"])
        export = partial(
            transfer.export_sessions,
            using=alias,
            session_ids=chosen,
            owner=owner,
            batch_size=batch_size,
            on_session=progress,
        )
        try:
            if output is None or output == "-":
                result = export(_Raw(self.stdout))
            else:
                with _replacing(Path(output)) as stream:
                    result = export(stream)
        except transfer.TransferError as exc:
            raise CommandError(str(exc)) from exc
        finally:
            progress.finish()
        if output and output != "-" and options["verbosity"] >= 1:
            self.stdout.write(
                f"Exported {result.sessions} session(s), {result.items} item(s) to {output}."
            )

    def handle_import(
        self,
        aliases: list[str],
        *,
        file: str | None,
        from_sqlite: str | None,
        sessions_table: str,
        messages_table: str,
        replace: bool,
        skip_existing: bool,
        drop_missing_owners: bool,
        batch_size: int,
        **options: Any,
    ) -> None:
        existing: transfer.Existing = (
            "replace" if replace else "skip" if skip_existing else "refuse"
        )
        spooled: IO[str] | None = None
        if from_sqlite is not None:
            path = from_sqlite

            def read() -> Iterable[transfer.Entry]:
                return transfer.read_sdk_sqlite(
                    from_sqlite, sessions_table=sessions_table, messages_table=messages_table
                )
        else:
            assert file is not None
            path = "standard input" if file == "-" else file
            if file == "-":
                # Read twice (check, then write), so standard input is kept aside first.
                # Undecodable bytes become surrogates, reported with their line number.
                spooled = tempfile.SpooledTemporaryFile(  # noqa: SIM115
                    max_size=16 * 2**20, mode="w+", encoding="utf-8", errors="surrogateescape"
                )
                binary = getattr(sys.stdin, "buffer", None)
                if binary is None:  # already text (a test's StringIO)
                    spooled.writelines(sys.stdin)
                else:
                    stdin = io.TextIOWrapper(binary, encoding="utf-8", errors="surrogateescape")
                    spooled.writelines(stdin)
                    stdin.detach()  # leave sys.stdin open

            def read() -> Iterable[transfer.Entry]:
                return transfer.read_jsonl(_lines(file, spooled))

        try:
            result = transfer.import_sessions(
                # Without --database each session goes where the routing rule places it.
                read,
                using=options["database"],
                existing=existing,
                missing_owners="drop" if drop_missing_owners else "refuse",
                batch_size=batch_size,
            )
        except transfer.MissingOwnersError as exc:
            raise CommandError(
                f"{exc} Create those users first, or pass --drop-missing-owners to import "
                "their sessions without owner."
            ) from exc
        except transfer.ExistingSessionsError as exc:
            raise CommandError(
                f"{exc} Pass --replace to overwrite them or --skip-existing to keep them."
            ) from exc
        except transfer.TransferError as exc:
            raise CommandError(str(exc)) from exc
        except OSError as exc:
            raise CommandError(f"Cannot read {path}: {exc.strerror or exc}.") from exc
        except UnicodeDecodeError as exc:
            raise CommandError(f"{path} is not UTF-8 text: {exc}.") from exc
        finally:
            if spooled is not None:
                spooled.close()
        if options["verbosity"] >= 1:
            notes = []
            if result.replaced:
                notes.append(f"{result.replaced} replaced")
            if result.skipped:
                notes.append(f"{result.skipped} skipped as already present")
            self.stdout.write(
                f"Imported {result.sessions} session(s), {result.items} item(s) from {path}"
                + (f" ({', '.join(notes)})." if notes else ".")
            )

    def handle_prune(
        self,
        aliases: list[str],
        *,
        inactive_for: timedelta | None,
        expired: bool,
        dry_run: bool,
        batch_size: int,
        **options: Any,
    ) -> None:
        verbosity = options["verbosity"]
        if dry_run and verbosity >= 1:  # what would go, one line each; the counts below
            with contextlib.closing(
                maintenance.sessions_of(aliases, inactive_for=inactive_for, expired=expired)
            ) as rows:
                for session in rows:
                    self.stdout.write(
                        f"{display.printable(session.session_id)}  "
                        f"{session.message_count} message(s), "
                        f"last activity {_when(session.updated_at)}"
                    )
        result = maintenance.PruneResult(sessions=0, messages=0)
        for alias in aliases:
            result += maintenance.prune(
                alias,
                inactive_for=inactive_for,
                expired=expired,
                batch_size=batch_size,
                dry_run=dry_run,
            )
        if dry_run:
            self.stdout.write(
                f"Would delete {result.sessions} session(s) and {result.messages} message(s)."
            )
            return
        if verbosity >= 1:
            self.stdout.write(
                f"Deleted {result.sessions} session(s) and {result.messages} message(s)."
            )

    def handle_index_text(self, aliases: list[str], *, batch_size: int, **options: Any) -> None:
        verbosity = options["verbosity"]

        def report(progress: backfill.Progress) -> None:
            if verbosity >= 1:
                self.stdout.write(
                    f"{progress.alias}: {progress.filled} of {progress.total} message(s) filled."
                )

        filled = 0
        for alias in aliases:
            filled += backfill.fill_text(alias, batch_size=batch_size, report=report)
            built_with = backfill.rebuild_index(alias)
            if built_with == "incomplete" and verbosity >= 1:
                self.stdout.write(f"{alias}: the search index was incomplete; rebuilt.")
            elif built_with is not None and verbosity >= 1:
                self.stdout.write(
                    f"{alias}: the search index was rebuilt with the text search "
                    f"configuration {conf.search_config()!r} (it had {built_with!r})."
                )
        if verbosity >= 1:
            self.stdout.write(f"Filled the search text of {filled} message(s).")

    def handle_rebalance(self, *, dry_run: bool, batch_size: int, **options: Any) -> None:
        if not conf.shards():
            raise CommandError(
                f"There is nothing to rebalance: {conf.SETTING_NAME}['SHARDS'] is not set."
            )
        verb = "to move" if dry_run else "moved"

        def report(progress: rebalance.Progress) -> None:
            if options["verbosity"] >= 1:
                self.stdout.write(
                    f"{progress.alias}: {progress.seen} session(s) looked at, "
                    f"{progress.moved} {verb}."
                )

        try:
            moved = rebalance.rebalance(dry_run=dry_run, batch_size=batch_size, report=report)
        except rebalance.MoveConflict as exc:
            raise CommandError(str(exc)) from exc
        if dry_run:
            self.stdout.write(f"Would move {moved} session(s) to their shard.")
        else:
            self.stdout.write(f"Moved {moved} session(s) to their shard.")
        if (not dry_run or not moved) and conf.previous_shards():
            self.stdout.write(
                "Every session is on its shard: PREVIOUS_SHARDS can be removed from "
                f"{conf.SETTING_NAME}."
            )

    def handle_erase(
        self, aliases: list[str], *, owner: str, dry_run: bool, interactive: bool, **options: Any
    ) -> None:
        # Asked first, as flush does: a script without --noinput stops before any query.
        if interactive and not dry_run and not sys.stdin.isatty():
            raise CommandError(
                "erase deletes without undo and asks for confirmation, but standard input is "
                "not a terminal: pass --noinput to erase without asking."
            )
        _require_user(owner, aliases)
        erase = partial(maintenance.erase_owner, owner, using=options["database"])
        if dry_run or interactive:
            counted = erase(dry_run=True)
            what = f"{counted.sessions} session(s) and {counted.messages} message(s) of {owner!r}"
        if dry_run:
            self.stdout.write(f"Would delete {what}.")
            return
        if interactive:
            answer = input(
                f"This deletes {what}, with their usage, on database {_quote(aliases)}; "
                "it cannot be undone.\nType 'yes' to continue, or 'no' to cancel: "
            )
            if answer != "yes":
                self.stdout.write("Erase cancelled.")
                return
        result = erase()
        if options["verbosity"] >= 1:
            self.stdout.write(
                f"Deleted {result.sessions} session(s) and {result.messages} message(s) "
                f"of {owner!r}."
            )

    def handle_convert_ids(
        self, aliases: list[str], *, sessions_table: str | None, **options: Any
    ) -> None:
        try:
            table = (
                conf.sessions_table()
                if sessions_table is None
                else conf.validate_table_name(sessions_table, "--sessions-table")
            )
        except ValueError as exc:
            raise CommandError(f"{exc}.") from exc
        for alias in aliases:
            try:
                was = tables.convert_ids(alias, table)
            except LookupError as exc:
                raise CommandError(str(exc)) from exc
            if was is None:
                self.stdout.write(
                    f"{table!r} on database {alias!r} already compares session ids exactly."
                )
            else:
                self.stdout.write(
                    f"Converted {table!r} on database {alias!r}: session ids compared as "
                    f"{was} now compare exactly."
                )

    # -- output --------------------------------------------------------------------

    def _write_json_array(self, values: Iterable[Any]) -> None:
        raw = _Raw(self.stdout)
        raw.write("[")
        written = False
        for index, value in enumerate(values):
            written = True
            raw.write(("," if index else "") + "\n  ")
            raw.write(json.dumps(value, ensure_ascii=False, indent=2).replace("\n", "\n  "))
        raw.write("\n]\n" if written else "]\n")

    def _progress(self, total: int, verbosity: int) -> _Progress:
        return _Progress(self.stderr, total, enabled=verbosity >= 1 and self.stderr.isatty())


class _Progress:
    """A one-line progress bar on a terminal's standard error; nothing when not a terminal."""

    WIDTH = 30

    def __init__(self, stream: OutputWrapper, total: int, *, enabled: bool) -> None:
        self.stream, self.total, self.enabled, self.done = stream, total, enabled, 0

    def __call__(self) -> None:
        self.done += 1
        if self.enabled:
            filled = self.WIDTH * self.done // max(self.total, 1)
            self.stream.write(
                f"\r[{'#' * filled}{' ' * (self.WIDTH - filled)}] "
                f"{self.done}/{self.total} sessions",
                ending="",
            )
            self.stream.flush()

    def finish(self) -> None:
        if self.enabled and self.done:
            self.stream.write("")


class _Raw:
    """``OutputWrapper`` without the newline it adds to every write."""

    def __init__(self, wrapper: OutputWrapper) -> None:
        self.wrapper = wrapper

    def write(self, text: str) -> int:
        self.wrapper.write(text, ending="")
        return len(text)


class _replacing:
    """Write to a temporary file beside ``path`` and move it into place on success.

    A failed export leaves any earlier file at ``path`` untouched rather than a
    truncated one that would later import as a silently shorter history.
    """

    def __init__(self, path: Path) -> None:
        self.path = path

    def __enter__(self) -> IO[str]:
        directory = self.path.resolve().parent
        if not directory.is_dir():
            raise CommandError(f"Cannot write {self.path}: {directory} is not a directory.")
        self.temp = tempfile.NamedTemporaryFile(
            "w",
            encoding="utf-8",
            newline="\n",
            dir=directory,
            prefix=f".{self.path.name}.",
            delete=False,
        )
        return self.temp

    def __exit__(self, exc_type: type[BaseException] | None, *rest: object) -> None:
        self.temp.close()
        if exc_type is None:
            os.replace(self.temp.name, self.path)
        else:
            os.unlink(self.temp.name)


# What a shell reports for a command that SIGPIPE ended (128 + 13).
CLOSED_PIPE_STATUS = 141


def _exit_on_closed_pipe() -> None:
    """Stop quietly, as Unix tools do, when the reader of our output went away.

    ``export | head`` closes the pipe early: that is not an error to report.
    Later writes (Python flushes standard output on exit) go to ``/dev/null``
    so that no second ``BrokenPipeError`` is printed.
    """
    devnull = os.open(os.devnull, os.O_WRONLY)
    os.dup2(devnull, sys.stdout.fileno())
    os.close(devnull)
    raise SystemExit(CLOSED_PIPE_STATUS)


def _lines(file: str, spooled: IO[str] | None) -> Iterator[str]:
    if spooled is not None:
        spooled.seek(0)
        yield from spooled
        return
    with open(file, encoding="utf-8", errors="surrogateescape") as stream:
        yield from stream


def _render(position: int, view: display.ItemView) -> str:
    """An item as ``show`` prints it: a head line, then its text indented, every
    control character escaped (the text keeps its line breaks, indented)."""
    head = f"#{position} {view.kind}"
    if view.tool:
        head += f"  {view.tool}({view.arguments})"
    if view.call_id:
        head += f"  [{view.call_id}]"
    body = "\n".join(part for part in (view.text, view.output and f"-> {view.output}") if part)
    body = display.printable(body, keep_newlines=True)
    return display.printable(head) + ("\n" + _indent(body) if body else "")


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


def _when(value: datetime) -> str:
    if settings.USE_TZ:
        value = timezone.localtime(value)
    return value.strftime("%Y-%m-%d %H:%M:%S %Z").strip()


# argparse turns ArgumentTypeError into a usage error: CommandError from
# call_command, the usage message and exit status 2 from the command line.


# A value that parses but cannot be used (a duration reaching before the year 1,
# a count no database takes) is refused by handle(): CommandError, status 1.

# The largest count (LIMIT, batch size) every database accepts.
MAX_COUNT = 2**63 - 1


def _duration(text: str) -> timedelta:
    try:
        return maintenance.parse_duration(text)
    except ValueError as exc:
        raise ArgumentTypeError(str(exc)) from exc


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise ArgumentTypeError(f"{text!r} must be 1 or more")
    return value


def _require_user(username: str, aliases: list[str]) -> None:
    if not owners.user_exists(username, aliases):
        where = _quote(owners.users_databases(aliases))
        raise CommandError(f"No user {username!r} in database {where}.")


def _text_argument(label: str, value: str) -> None:
    """``CommandError`` unless ``value`` is text every database can compare.

    Bytes that are not UTF-8 reach ``sys.argv`` as lone surrogates
    (``surrogateescape``); they are shown as the bytes that were typed.
    """
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise CommandError(f"{label} is not valid UTF-8 text: {os.fsencode(value)!r}.") from None
    if "\x00" in value:
        raise CommandError(f"{label} must not contain the character U+0000.")


def _quote(aliases: list[str]) -> str:
    return ", ".join(repr(alias) for alias in aliases)
