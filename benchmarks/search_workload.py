"""The search workload of ``bench.py``: many conversations, then their searches timed.

    python benchmarks/bench.py --search --db sqlite|postgres|mysql
        [--conversations 20000] [--messages 1000000] [--heavy-user 2000] [--rounds N] [--quick]

It loads ``--conversations`` conversations holding ``--messages`` items in all
straight into the migrated tables (``COPY`` on PostgreSQL, multi-row ``INSERT``
elsewhere), with the ``text`` column filled by ``search.message_text``, as the
write path fills it. One user owns ``--heavy-user`` of them, the others belong
to users of 20 conversations each. Then it times, for a rare, a medium and a
frequent word (in about 0.01 %, 0.1 % and 1 % of the messages):

- that user's search, ``AgentSession.objects.search(user, word)``;
- the search over everyone's, ``AgentSession.objects.search_all(word)``;
- the admin's changelist searching for the word (``?q=word``): Django's
  ``ChangeList`` built by the session admin, its count queries and its first
  page of 100 read, without the template rendering.

Each cell is the median over the rounds of the wall and of the process's CPU
time per search; the CPU is this process's (Django, the driver, and SQLite
itself), not a database server's. See ``benchmarks/README.md``.
"""

from __future__ import annotations

import argparse
import bisect
import itertools
import json
import random
import statistics
import time
from collections import Counter
from collections.abc import Callable, Iterator, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from tables import render_markdown, render_text

Item = dict[str, Any]

# (name, share of all stored items that hold the word)
SHARES = (("rare", 0.0001), ("medium", 0.001), ("frequent", 0.01))
CONVERSATIONS_PER_USER = 20  # for every user but the one searched
QUICK = {"conversations": 400, "messages": 20_000, "heavy_user": 40}
VOCABULARY = 50_000
SEARCH_LIMIT = 20
BATCH_ROWS = 2_000
# The most frequent words of chat text, most frequent first; the rest of the
# vocabulary is made-up words, so that every word of a given rank is as rare
# as its rank says (Zipf: the word of rank r is used in proportion to 1/r).
_COMMON_WORDS = (
    "the to and you a of it is that for in this i be can your with on are what not do "
    "have if or as at but we so my will an me how about just like from they one there "
    "all would use any more when which also some then here should could out time get "
    "make need know see other want only new first way good work file code data check "
    "question answer help thanks please sure yes right example next look still try well "
    "because into after before over most much many since than them these those where why "
    "who each both again very really think going through while between same find give "
    "change run test error value list page user model report week today tomorrow trip "
    "flight hotel price email meeting project plan budget team order account"
)
COMMON = tuple(_COMMON_WORDS.split())


@dataclass(frozen=True)
class Size:
    conversations: int
    messages: int
    heavy_user: int  # conversations of the user whose search is timed


@dataclass
class Loaded:
    """What the load made: the searched user, the words and their measured shares."""

    heavy_user: Any
    admin_user: Any
    words: dict[str, tuple[str, float]]  # name -> (word, share of all items)
    seconds: float


def add_arguments(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("search workload (--search)")
    group.add_argument(
        "--search", action="store_true", help="run the search workload instead of the sessions'"
    )
    group.add_argument("--conversations", type=int, default=None, help="default 20,000")
    group.add_argument("--messages", type=int, default=None, help="stored items, default 1,000,000")
    group.add_argument(
        "--heavy-user", type=int, default=None, help="the searched user's conversations (2,000)"
    )


def size(args: argparse.Namespace) -> Size:
    defaults = (
        QUICK
        if args.quick
        else {"conversations": 20_000, "messages": 1_000_000, "heavy_user": 2_000}
    )
    chosen = Size(
        args.conversations or defaults["conversations"],
        args.messages or defaults["messages"],
        args.heavy_user or defaults["heavy_user"],
    )
    if not 0 < chosen.heavy_user <= chosen.conversations <= chosen.messages:
        raise SystemExit("need 0 < --heavy-user <= --conversations <= --messages")
    return chosen


# -- realistic text -------------------------------------------------------------------


def vocabulary(rng: random.Random) -> tuple[list[str], list[float]]:
    """``VOCABULARY`` words, most frequent first, and their cumulative Zipf weights."""
    syllables = [c + v for c in "bdfgklmnprstvz" for v in "aeiou"] + ["ch", "th", "sh"]
    words = list(COMMON)
    seen = set(words)
    while len(words) < VOCABULARY:
        word = "".join(rng.choices(syllables, k=rng.randint(2, 4)))
        if len(word) >= 4 and word not in seen:
            seen.add(word)
            words.append(word)
    return words, list(itertools.accumulate(1 / rank for rank in range(1, VOCABULARY + 1)))


class Writer:
    """Chat text: sentences of Zipf-distributed words; the words each message used."""

    def __init__(self, rng: random.Random) -> None:
        self.rng = rng
        self.words, self.cumulative = vocabulary(rng)
        self.total = self.cumulative[-1]

    def text(self, mean_words: int) -> tuple[str, set[str]]:
        rng = self.rng
        count = max(2, int(rng.expovariate(1 / mean_words)) + 2)
        # choices() with cum_weights bisects once per word: fast enough for 1M items.
        words = rng.choices(self.words, cum_weights=self.cumulative, k=count)
        sentences = []
        for start in range(0, count, 12):
            sentence = words[start : start + 12]
            sentences.append(" ".join([sentence[0].capitalize(), *sentence[1:]]) + ".")
        return " ".join(sentences), set(words)


def conversation_items(writer: Writer, number: int, count: int) -> Iterator[tuple[Item, set[str]]]:
    """``count`` items of conversation ``number``: turns of a user message, sometimes a
    tool call and its output (no searchable text), and the assistant's answer."""
    rng = writer.rng
    made = 0
    turn = 0
    while made < count:
        text, used = writer.text(18)
        yield {"role": "user", "content": text}, used
        made += 1
        if made < count and rng.random() < 0.3:
            call_id = f"call_{number:06d}_{turn:04d}"
            arguments = {"query": " ".join(sorted(used)[:3]), "limit": 5}
            yield (
                {
                    "type": "function_call",
                    "call_id": call_id,
                    "name": "lookup",
                    "arguments": json.dumps(arguments),
                    "status": "completed",
                },
                set(),
            )
            made += 1
            if made < count:
                output = {"results": [rng.randint(1, 10**6) for _ in range(5)]}
                yield (
                    {
                        "type": "function_call_output",
                        "call_id": call_id,
                        "output": json.dumps(output),
                    },
                    set(),
                )
                made += 1
        if made < count:
            text, used = writer.text(60)
            yield (
                {
                    "id": f"msg_{number:06d}_{turn:04d}",
                    "type": "message",
                    "role": "assistant",
                    "status": "completed",
                    "content": [{"type": "output_text", "annotations": [], "text": text}],
                },
                used,
            )
            made += 1
        turn += 1


# -- loading ----------------------------------------------------------------------------


def owners(chosen: Size) -> tuple[list[int], int]:
    """For each conversation, the index of its owner (0: the searched user), and how many
    users there are. The searched user's conversations are spread evenly among the others'."""
    others = chosen.conversations - chosen.heavy_user
    users = 1 + -(-others // CONVERSATIONS_PER_USER)
    step = chosen.conversations / chosen.heavy_user
    heavy = {int(i * step) for i in range(chosen.heavy_user)}
    owner_of: list[int] = []
    other = 0
    for number in range(chosen.conversations):
        if number in heavy:
            owner_of.append(0)
        else:
            owner_of.append(1 + other // CONVERSATIONS_PER_USER)
            other += 1
    return owner_of, users


def load(chosen: Size, analyze: Callable[[], None]) -> Loaded:
    """Users, conversations and items straight into the tables, then ``ANALYZE``."""
    from django.contrib.auth import get_user_model
    from django.core.management.color import no_style
    from django.db import connection, transaction

    from openai_django_sessions.models import AgentMessage, AgentSession
    from openai_django_sessions.search import message_text

    started = time.perf_counter()
    rng = random.Random(19)
    writer = Writer(rng)
    owner_of, user_count = owners(chosen)
    User = get_user_model()
    users = User.objects.bulk_create(
        [User(username="heavy")] + [User(username=f"user{i:05d}") for i in range(1, user_count)]
    )
    user_pks = [user.pk for user in users]
    if any(pk is None for pk in user_pks):  # MariaDB's bulk_create sets no keys
        by_name = dict(User.objects.values_list("username", "pk"))
        user_pks = [by_name[user.username] for user in users]

    per_conversation, extra = divmod(chosen.messages, chosen.conversations)
    base = datetime.now(UTC) - timedelta(days=90)
    spacing = timedelta(days=89) / chosen.conversations
    sessions: list[tuple[Any, ...]] = []
    found: Counter[str] = Counter()

    def message_rows() -> Iterator[tuple[Any, ...]]:
        for number in range(chosen.conversations):
            start = base + number * spacing
            count = per_conversation + (number < extra)
            title = ""
            stamp = start
            for index, (item, used) in enumerate(conversation_items(writer, number, count)):
                stamp = start + timedelta(minutes=index)
                found.update(used)
                if not title and item.get("role") == "user":
                    title = str(item["content"])[:60]
                yield (number + 1, json.dumps(item), stamp, message_text(item))
            sessions.append(
                (
                    number + 1,
                    f"bench-{number:06d}",
                    start,
                    stamp,
                    user_pks[owner_of[number]],
                    title,
                    "{}",
                    "",
                )
            )

    session_columns = (
        "id",
        "session_id",
        "created_at",
        "updated_at",
        AgentSession._meta.get_field("owner").column,
        "title",
        "metadata",
        "forked_from",
    )
    message_columns = (AgentMessage._meta.get_field("session").column, "data", "created_at", "text")
    sessions_table = AgentSession._meta.db_table
    messages_table = AgentMessage._meta.db_table
    # Created again once the rows are committed (pending foreign key checks would
    # refuse CREATE INDEX inside the loading transaction).
    with full_text_indexes_rebuilt(messages_table), transaction.atomic():
        if connection.vendor == "postgresql":
            # Messages first (their session rows are only known once generated):
            # the foreign key is checked at COMMIT (deferred), as Django declares it.
            copy_rows(messages_table, message_columns, message_rows())
            copy_rows(sessions_table, session_columns, iter(sessions))
        else:
            insert_rows(messages_table, message_columns, message_rows(), defer_foreign_keys=True)
            insert_rows(sessions_table, session_columns, iter(sessions))
        with connection.cursor() as cursor:
            for statement in connection.ops.sequence_reset_sql(no_style(), [AgentSession]):
                cursor.execute(statement)
    analyze()
    words = chosen_words(writer.words, found, chosen.messages)
    heavy_user = User.objects.get(pk=user_pks[0])
    admin_user = User(username="admin", is_staff=True, is_superuser=True, is_active=True)
    return Loaded(heavy_user, admin_user, words, time.perf_counter() - started)


@contextmanager
def full_text_indexes_rebuilt(table: str) -> Iterator[None]:
    """PostgreSQL: drop the GIN indexes of ``table`` for the load, then create them again
    as they were: building an index once is much faster than updating it row by row.

    Elsewhere the indexes stay and follow the rows (SQLite's FTS5 table through its
    triggers). On MariaDB 10.11 a ``FULLTEXT`` index dropped, then created again over
    rows inserted in between, found none of them: it is kept.
    """
    from django.db import connection

    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(
                "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema() "
                "AND tablename = %s AND indexdef LIKE %s",
                [table, "%USING gin%"],
            )
            indexes = cursor.fetchall()
            drops = [f"DROP INDEX {quote(name)}" for name, _ in indexes]
            created = [definition for _, definition in indexes]
        else:
            drops, created = [], []
        for statement in drops:
            cursor.execute(statement)
    yield
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute("SET maintenance_work_mem = '256MB'")
        for statement in created:
            cursor.execute(statement)
        if connection.vendor == "postgresql":
            cursor.execute("RESET maintenance_work_mem")


def copy_rows(table: str, columns: Sequence[str], rows: Iterator[tuple[Any, ...]]) -> None:
    """PostgreSQL: ``COPY ... FROM STDIN`` on Django's connection (psycopg 3)."""
    from django.db import connection

    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    with connection.cursor() as cursor:
        raw = cursor.cursor  # psycopg's own cursor, for copy()
        with raw.copy(f"COPY {connection.ops.quote_name(table)} ({quoted}) FROM STDIN") as copy:
            for row in rows:
                copy.write_row(row)


def insert_rows(
    table: str,
    columns: Sequence[str],
    rows: Iterator[tuple[Any, ...]],
    *,
    defer_foreign_keys: bool = False,
) -> None:
    """SQLite and MariaDB/MySQL: multi-row ``INSERT`` in batches of ``BATCH_ROWS``."""
    from django.db import connection

    quoted = ", ".join(connection.ops.quote_name(c) for c in columns)
    one = "(" + ", ".join(["%s"] * len(columns)) + ")"
    with connection.cursor() as cursor:
        if defer_foreign_keys and connection.vendor == "mysql":
            cursor.execute("SET foreign_key_checks = 0")
        elif defer_foreign_keys and connection.vendor == "sqlite":
            cursor.execute("PRAGMA defer_foreign_keys = ON")
        try:
            while chunk := list(itertools.islice(rows, BATCH_ROWS)):
                values = [
                    connection.ops.adapt_datetimefield_value(v) if isinstance(v, datetime) else v
                    for row in chunk
                    for v in row
                ]
                sql = (
                    f"INSERT INTO {connection.ops.quote_name(table)} ({quoted}) VALUES "
                    + ", ".join([one] * len(chunk))
                )
                cursor.execute(sql, values)
        finally:
            if defer_foreign_keys and connection.vendor == "mysql":
                cursor.execute("SET foreign_key_checks = 1")


def chosen_words(
    words: list[str], found: Counter[str], messages: int
) -> dict[str, tuple[str, float]]:
    """For each of ``SHARES``, the made-up word whose share of items is nearest to it."""
    common = set(COMMON)
    candidates = [
        (found[word] / messages, word) for word in words if word not in common and found[word]
    ]
    candidates.sort()
    shares = [share for share, _ in candidates]
    chosen: dict[str, tuple[str, float]] = {}
    for name, target in SHARES:
        at = min(bisect.bisect_left(shares, target), len(candidates) - 1)
        nearest = min(candidates[max(0, at - 1) : at + 1], key=lambda pair: abs(pair[0] - target))
        chosen[name] = (nearest[1], nearest[0])
    return chosen


# -- timing ------------------------------------------------------------------------------


@dataclass
class Timed:
    wall: list[float]  # seconds per search, one value per round
    cpu: list[float]
    statements: int = 0
    found: str = ""


def searches(loaded: Loaded) -> dict[tuple[str, str], Callable[[], str]]:
    """Each (kind, word name) search: a call that runs it and says what it found."""
    from django.contrib import admin
    from django.test import RequestFactory

    from openai_django_sessions.models import AgentSession

    model_admin = admin.site._registry[AgentSession]
    factory = RequestFactory()

    def user_search(word: str) -> Callable[[], str]:
        def run() -> str:
            found = AgentSession.objects.search(loaded.heavy_user, word, limit=SEARCH_LIMIT)
            return f"{len(found)} shown"

        return run

    def everyone_search(word: str) -> Callable[[], str]:
        def run() -> str:
            found = AgentSession.objects.search_all(word, limit=SEARCH_LIMIT)
            return f"{len(found)} shown"

        return run

    def admin_search(word: str) -> Callable[[], str]:
        def run() -> str:
            request = factory.get("/admin/openai_django_sessions/agentsession/", {"q": word})
            request.user = loaded.admin_user
            changelist = model_admin.get_changelist_instance(request)
            shown = list(changelist.result_list)
            return f"{len(shown)} shown of {changelist.result_count}"

        return run

    kinds = {"user": user_search, "all": everyone_search, "admin": admin_search}
    return {
        (kind, name): make(word)
        for kind, make in kinds.items()
        for name, (word, _) in loaded.words.items()
    }


def time_searches(
    calls: dict[tuple[str, str], Callable[[], str]], rounds: int, per_round: int
) -> dict[tuple[str, str], Timed]:
    """Run every search ``per_round`` times a round, taking turns, after a warm-up round."""
    from django.db import connection
    from django.test.utils import CaptureQueriesContext

    timed = {key: Timed([], []) for key in calls}
    for key, call in calls.items():  # warm-up: caches, plans; and what each one sends
        with CaptureQueriesContext(connection) as queries:
            timed[key].found = call()
        timed[key].statements = len(queries.captured_queries)
    keys = list(calls)
    for round_no in range(rounds):
        spent = {key: [0.0, 0.0] for key in keys}
        for repeat in range(per_round):
            shift = (round_no + repeat) % len(keys)
            for key in keys[shift:] + keys[:shift]:
                wall, cpu = time.perf_counter(), time.process_time()
                calls[key]()
                spent[key][1] += time.process_time() - cpu
                spent[key][0] += time.perf_counter() - wall
        for key in keys:
            timed[key].wall.append(spent[key][0] / per_round)
            timed[key].cpu.append(spent[key][1] / per_round)
    return timed


KIND_NAMES = {
    "user": "one user's search",
    "all": "search_all",
    "admin": "admin changelist ?q=",
}


def render(timed: dict[tuple[str, str], Timed], loaded: Loaded, markdown: bool) -> str:
    header = [
        "search",
        *(f"{name}: {loaded.words[name][0]} ({loaded.words[name][1]:.3%})" for name, _ in SHARES),
    ]
    rows = [header]
    for kind, title in KIND_NAMES.items():
        cells = [f"{title}, ms wall / CPU"]
        for name, _ in SHARES:
            one = timed[(kind, name)]
            cells.append(
                f"{statistics.median(one.wall) * 1e3:.1f} / {statistics.median(one.cpu) * 1e3:.1f}"
            )
        rows.append(cells)
    for kind, title in KIND_NAMES.items():
        cells = [f"{title}: found, statements"]
        for name, _ in SHARES:
            one = timed[(kind, name)]
            cells.append(f"{one.found}, {one.statements}")
        rows.append(cells)
    return render_markdown(rows) if markdown else render_text(rows)


def run(args: argparse.Namespace, analyze: Callable[[], None], describe: Callable[[], str]) -> str:
    """Load, time, and return the report (``describe``: the machine and server line)."""
    chosen = size(args)
    loaded = load(chosen, analyze)
    per_round = 2 if args.quick else 5
    timed = time_searches(searches(loaded), args.rounds, per_round)
    # Every word is in at least one stored message: a search that finds nothing
    # measured an index that misses rows, not a search.
    missed = [
        word for name, (word, _) in loaded.words.items() if timed[("all", name)].found[0] == "0"
    ]
    if missed:
        raise SystemExit(f"search_all found no conversation for {missed}: the index misses rows")
    title = (
        f"{args.db} search: {chosen.conversations:,} conversations, {chosen.messages:,} items, "
        f"the searched user's {chosen.heavy_user:,}; median of {args.rounds} rounds of "
        f"{per_round} searches each{' (quick)' if args.quick else ''}; "
        f"loaded in {loaded.seconds:.0f} s"
    )
    table = render(timed, loaded, args.markdown)
    head = f"**{title}** — {describe()}" if args.markdown else f"{title}\n{describe()}\n"
    return f"{head}\n\n{table}" if args.markdown else f"{head}\n{table}"
