"""Full-text search's SQL, per database: the index, the match, the ranking, the snippet.

The text searched is ``AgentMessage.text`` (see ``search.message_text``):
NULL for rows stored before migration ``0009`` until ``agent_sessions
index-text`` fills it, ``""`` for items with nothing to search.

- PostgreSQL: a stored generated column ``search_vector``, ``tsvector
  GENERATED ALWAYS AS (to_tsvector('<SEARCH_CONFIG>'::regconfig,
  COALESCE(text, ''))) STORED``, and a GIN index on it. The column is not on
  the model: the ORM never reads or writes it, the database derives it from
  ``text`` on every insert and update. Words are matched by
  ``plainto_tsquery`` (all of them) against the column and ranked by
  ``ts_rank`` on it: ranking reads the stored vector instead of parsing each
  matching message's text again (an expression index stores no vector: with
  it, ranking the matches of a word in 1 % of a million messages took ~0.8 s).
- MariaDB/MySQL: a ``FULLTEXT`` index, searched in boolean mode with each word
  required (``+"word"``). InnoDB indexes no word shorter than
  ``innodb_ft_min_token_size`` (3) or longer than ``innodb_ft_max_token_size``,
  nor its stop words: a required word the index cannot hold would match
  nothing, so such words are left out of the query (a query of nothing else
  finds nothing). InnoDB sees committed rows only.
- SQLite: an FTS5 table ``<messages table>_fts`` on the messages table's
  ``text`` (external content, its rowid the message id), kept in step by
  triggers; each word is an FTS5 string (``"word"``), all required; ranked by
  ``bm25``. A migration that rebuilds the messages table (SQLite's way of
  altering some columns) drops the triggers: ``agent_sessions index-text``
  builds the FTS5 table and its triggers again when one is missing.
"""

from __future__ import annotations

import functools
import re
import threading
import unicodedata
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from django.db import connections
from django.db.backends.base.base import BaseDatabaseWrapper
from django.db.models import QuerySet

from . import _conf as conf
from .search import MAX_QUERY_LENGTH

if TYPE_CHECKING:
    from .models import AgentSession

# Words as every database's tokenizer sees them, near enough: runs of letters,
# digits and underscores. Everything else in a query (quotes, operators,
# parentheses) separates words and is never sent as syntax.
_WORD = re.compile(r"\w+")
SNIPPET_LENGTH = 160
# InnoDB's default stop words (INFORMATION_SCHEMA.INNODB_FT_DEFAULT_STOPWORD).
INNODB_STOPWORDS = frozenset(
    """a about an are as at be by com de en for from how i in is it la of on or that the
    this to was what when where who will with und www""".split()  # noqa: SIM905
)


def words(query: object) -> list[str]:
    """The words of ``query``, in order, without repeats (lowercased).

    ``TypeError`` unless ``query`` is a str; ``ValueError`` if it is longer
    than ``MAX_QUERY_LENGTH`` characters.
    """
    if not isinstance(query, str):
        raise TypeError(f"query must be a str, not {type(query).__name__}")
    if len(query) > MAX_QUERY_LENGTH:
        raise ValueError(
            f"query is {len(query)} characters long; at most {MAX_QUERY_LENGTH} are searched"
        )
    # lower(), not casefold(): the indexes lowercase ("ß" stays "ß"); casefold()
    # would search "strasse" for "Straße" and never find it.
    return list(dict.fromkeys(word.lower() for word in _WORD.findall(query)))


def check_limit(limit: object) -> int:
    if not isinstance(limit, int) or isinstance(limit, bool):
        raise TypeError(f"limit must be an int, not {type(limit).__name__}")
    if limit < 1:
        raise ValueError(f"limit must be at least 1, not {limit}")
    return limit


# -- the index -----------------------------------------------------------------------


def index_name(table: str) -> str:
    """The name of the full-text index of the messages table ``table`` (PostgreSQL, MariaDB)."""
    return f"{table}_text_idx"


VECTOR_COLUMN = "search_vector"


def fts_table(table: str) -> str:
    """The name of SQLite's FTS5 table over the messages table ``table``."""
    return f"{table}_fts"


def _tsvector(config: str, column: str) -> str:
    # The generated column's expression; the configuration a literal, as a
    # generated column's expression must be immutable.
    return f"to_tsvector('{config}'::regconfig, COALESCE({column}, ''))"


def create_index(connection: BaseDatabaseWrapper, table: str, pk: str = "id") -> None:
    """Create the full-text index of the messages table ``table`` on ``connection``."""
    quote = connection.ops.quote_name
    index, on = quote(index_name(table)), quote(table)
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            expression = _tsvector(conf.search_config(), quote("text"))
            vector = quote(VECTOR_COLUMN)
            # Adding a stored generated column rewrites the table (an ACCESS
            # EXCLUSIVE lock while it does).
            cursor.execute(
                f"ALTER TABLE {on} ADD COLUMN {vector} tsvector "
                f"GENERATED ALWAYS AS ({expression}) STORED"
            )
            cursor.execute(f"CREATE INDEX {index} ON {on} USING GIN ({vector})")
        elif connection.vendor == "mysql":
            cursor.execute(f"CREATE FULLTEXT INDEX {index} ON {on} ({quote('text')})")
        elif connection.vendor == "sqlite":
            for statement in _sqlite_index(quote, table, pk):
                cursor.execute(statement)


def drop_index(connection: BaseDatabaseWrapper, table: str) -> None:
    """Drop what ``create_index`` created (nothing that is not there)."""
    quote = connection.ops.quote_name
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            cursor.execute(f"DROP INDEX IF EXISTS {quote(index_name(table))}")
            cursor.execute(
                f"ALTER TABLE {quote(table)} DROP COLUMN IF EXISTS {quote(VECTOR_COLUMN)}"
            )
        elif connection.vendor == "mysql":
            cursor.execute(f"DROP INDEX {quote(index_name(table))} ON {quote(table)}")
        elif connection.vendor == "sqlite":
            for suffix in ("ai", "ad", "au"):
                cursor.execute(f"DROP TRIGGER IF EXISTS {quote(f'{fts_table(table)}_{suffix}')}")
            cursor.execute(f"DROP TABLE IF EXISTS {quote(fts_table(table))}")


def _sqlite_index(quote: Any, table: str, pk: str) -> list[str]:
    fts, text, rowid = quote(fts_table(table)), quote("text"), quote(pk)
    messages = quote(table)
    # The 'delete' command must be given exactly what was indexed: a row never
    # indexed (text NULL) is never deleted from the index, or the index breaks.
    return [
        f"CREATE VIRTUAL TABLE {fts} USING fts5(text, content={_literal(table)}, "
        f"content_rowid={_literal(pk)}, tokenize='unicode61 remove_diacritics 2')",
        f"INSERT INTO {fts}(rowid, text) SELECT {rowid}, {text} FROM {messages} "
        f"WHERE {text} IS NOT NULL",
        f"CREATE TRIGGER {quote(fts_table(table) + '_ai')} AFTER INSERT ON {messages} "
        f"WHEN new.{text} IS NOT NULL BEGIN "
        f"INSERT INTO {fts}(rowid, text) VALUES (new.{rowid}, new.{text}); END",
        f"CREATE TRIGGER {quote(fts_table(table) + '_ad')} AFTER DELETE ON {messages} "
        f"WHEN old.{text} IS NOT NULL BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, text) VALUES ('delete', old.{rowid}, old.{text}); END",
        f"CREATE TRIGGER {quote(fts_table(table) + '_au')} AFTER UPDATE OF {text} ON {messages} "
        f"BEGIN "
        f"INSERT INTO {fts}({fts}, rowid, text) SELECT 'delete', old.{rowid}, old.{text} "
        f"WHERE old.{text} IS NOT NULL; "
        f"INSERT INTO {fts}(rowid, text) SELECT new.{rowid}, new.{text} "
        f"WHERE new.{text} IS NOT NULL; END",
    ]


def _literal(name: str) -> str:
    # Table and column names are plain identifiers (conf.IDENTIFIER): no quote to escape.
    return f"'{name}'"


def sqlite_index_complete(connection: BaseDatabaseWrapper, table: str) -> bool:
    """Whether SQLite's FTS5 table over ``table`` and its three triggers all exist."""
    names = {fts_table(table)} | {f"{fts_table(table)}_{suffix}" for suffix in ("ai", "ad", "au")}
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT name FROM sqlite_master WHERE name IN (%s, %s, %s, %s)", sorted(names)
        )
        return {name for (name,) in cursor.fetchall()} == names


_CONFIG = re.compile(r"to_tsvector\('([^']+)'::regconfig")


def index_config(connection: BaseDatabaseWrapper, table: str) -> str | None:
    """The text search configuration PostgreSQL's ``search_vector`` column of ``table``
    is generated with; ``None`` if there is no such column (or another database)."""
    if connection.vendor != "postgresql":
        return None
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pg_get_expr(d.adbin, d.adrelid) FROM pg_attrdef d "
            "JOIN pg_attribute a ON a.attrelid = d.adrelid AND a.attnum = d.adnum "
            "WHERE d.adrelid = to_regclass(%s) AND a.attname = %s AND NOT a.attisdropped",
            [connection.ops.quote_name(table), VECTOR_COLUMN],
        )
        row = cursor.fetchone()
    found = _CONFIG.search(row[0]) if row else None
    return found.group(1) if found else None


# -- matching ------------------------------------------------------------------------

_innodb: dict[str, tuple[int, int, frozenset[str]]] = {}
_innodb_lock = threading.Lock()


def _innodb_limits(alias: str) -> tuple[int, int, frozenset[str]]:
    """The shortest and longest word InnoDB indexes on ``alias`` and its stop words:
    read once per alias and process."""
    with _innodb_lock:
        if alias not in _innodb:
            with connections[alias].cursor() as cursor:
                cursor.execute(
                    "SELECT @@innodb_ft_min_token_size, @@innodb_ft_max_token_size, "
                    "@@innodb_ft_enable_stopword, @@innodb_ft_server_stopword_table"
                )
                shortest, longest, enabled, table = cursor.fetchone()
                stopwords: frozenset[str] = frozenset()
                if enabled and table:
                    database, _, name = str(table).partition("/")
                    quote = connections[alias].ops.quote_name
                    cursor.execute(f"SELECT value FROM {quote(database)}.{quote(name)}")
                    stopwords = frozenset(str(value).casefold() for (value,) in cursor.fetchall())
                elif enabled:
                    stopwords = INNODB_STOPWORDS
            _innodb[alias] = (int(shortest), int(longest), stopwords)
        return _innodb[alias]


def searchable(alias: str, found: list[str]) -> list[str]:
    """The words of ``found`` the index on ``alias`` can hold (all, but on MariaDB/MySQL)."""
    if connections[alias].vendor != "mysql" or not found:
        return found
    shortest, longest, stopwords = _innodb_limits(alias)
    return [w for w in found if shortest <= len(w) <= longest and w not in stopwords]


def _hits_sql(alias: str, found: Sequence[str], where: str) -> tuple[str, list[Any]]:
    """``SELECT mid, sid, search_rank`` of the messages matching every word of
    ``found``, and ``where`` (SQL on the messages' alias ``m``)."""
    from .models import AgentMessage

    connection = connections[alias]
    quote = connection.ops.quote_name
    table = quote(AgentMessage._meta.db_table)
    text = f"m.{quote('text')}"
    select = f"m.{quote('id')} AS mid, m.{quote('session_id')} AS sid"
    if connection.vendor == "postgresql":
        config = conf.search_config()
        vector = f"m.{quote(VECTOR_COLUMN)}"
        tsquery = f"plainto_tsquery('{config}'::regconfig, %s)"
        terms = " ".join(found)
        return (
            f"SELECT {select}, ts_rank({vector}, {tsquery}) AS search_rank FROM {table} m "
            f"WHERE {vector} @@ {tsquery}{where}",
            [terms, terms],
        )
    if connection.vendor == "mysql":
        terms = " ".join(f'+"{word}"' for word in found)
        against = f"MATCH ({text}) AGAINST (%s IN BOOLEAN MODE)"
        return (
            f"SELECT {select}, {against} AS search_rank FROM {table} m WHERE {against}{where}",
            [terms, terms],
        )
    if connection.vendor == "sqlite":
        fts = quote(fts_table(AgentMessage._meta.db_table))
        terms = " ".join('"' + word.replace('"', '""') + '"' for word in found)
        # bm25: lower is better; search_rank: higher is.
        return (
            f"SELECT {select}, -{fts}.rank AS search_rank FROM {fts} "
            f"JOIN {table} m ON m.{quote('id')} = {fts}.rowid WHERE {fts} MATCH %s{where}",
            [terms],
        )
    raise NotImplementedError(f"full-text search is not available on {connection.vendor}")


def matching_sessions(alias: str, query: str) -> tuple[str, list[Any]] | None:
    """SQL selecting the ids of the sessions with a message matching ``query``, and its
    parameters; ``None`` when ``query`` has no word to search."""
    found = searchable(alias, words(query))
    if not found:
        return None
    sql, params = _hits_sql(alias, found, "")
    return f"SELECT hit.sid FROM ({sql}) hit", params


def search(rows: QuerySet[AgentSession], query: str, limit: int) -> list[AgentSession]:
    """The sessions of ``rows`` matching ``query``, best first: one query on ``rows.db``.

    Expired conversations are left out, as every read leaves them out.
    """
    from . import _retention as retention
    from .models import AgentMessage

    check_limit(limit)
    alias = rows.db
    found = searchable(alias, words(query))
    if not found:
        return []
    model = rows.model
    live = retention.unexpired(rows)
    sessions_sql, sessions_params = live.values("pk").query.get_compiler(using=alias).as_sql()
    connection = connections[alias]
    quote = connection.ops.quote_name
    hits, params = _hits_sql(alias, found, f" AND m.{quote('session_id')} IN ({sessions_sql})")
    sessions = quote(model._meta.db_table)
    messages = quote(AgentMessage._meta.db_table)
    pk, updated_at, text = quote("id"), quote("updated_at"), quote("text")
    # Each session's best message (by rank, then the newest), then the best sessions;
    # the text of the messages shown read last, for those only: carried through the
    # sorts, every match's text made them spill to disk (a word in 10,000 messages).
    sql = (
        f"SELECT best.*, (SELECT t.{text} FROM {messages} t WHERE t.{pk} = best.search_mid) "
        f"AS search_text FROM ("
        f"SELECT s.*, h.search_rank, h.mid AS search_mid FROM ("
        f"SELECT hit.sid, hit.mid, hit.search_rank, ROW_NUMBER() OVER ("
        f"PARTITION BY hit.sid ORDER BY hit.search_rank DESC, hit.mid DESC) AS search_row "
        f"FROM ({hits}) hit) h JOIN {sessions} s ON s.{pk} = h.sid "
        f"WHERE h.search_row = 1 ORDER BY h.search_rank DESC, s.{updated_at} DESC, s.{pk} DESC "
        f"LIMIT %s) best "
        f"ORDER BY best.search_rank DESC, best.{updated_at} DESC, best.{pk} DESC"
    )
    results = list(
        model._default_manager.db_manager(alias).raw(sql, [*params, *sessions_params, limit])
    )
    for session in results:
        session.search_rank = float(session.search_rank)  # type: ignore[attr-defined]
        session.search_snippet = snippet(session.search_text or "", found)  # type: ignore[attr-defined]
        del session.search_text, session.search_mid  # type: ignore[attr-defined]
    return results


def best_first(sessions: Iterable[AgentSession]) -> list[AgentSession]:
    """``sessions`` (of several databases) by rank, then newest activity."""
    return sorted(
        sessions,
        key=lambda s: (getattr(s, "search_rank", 0.0), s.updated_at),
        reverse=True,
    )


# -- the snippet ---------------------------------------------------------------------


def _first_word(text: str, found: Sequence[str]) -> int:
    """Where the first of the words ``found`` starts in ``text``; 0 if none is there."""
    positions = [
        match.start()
        for word in found
        if (match := re.search(r"(?<!\w)" + re.escape(word), text, re.IGNORECASE))
    ]
    if not positions and not text.isascii():  # accents, or letters case folding changes
        haystack = _folded(text)
        positions = [
            match.start()
            for word in found
            if (match := re.search(r"(?<!\w)" + re.escape(_folded(word)), haystack))
        ]
    return min(positions, default=0)


def _folded(text: str) -> str:
    """``text`` case- and accent-folded one character for one, so positions stay put."""
    return "".join(_fold(char) for char in text)


@functools.lru_cache(maxsize=4096)
def _fold(char: str) -> str:
    return unicodedata.normalize("NFKD", char.casefold())[:1] or char


def snippet(text: str, found: Sequence[str], length: int = SNIPPET_LENGTH) -> str:
    """About ``length`` characters of ``text`` around the first of the words ``found``
    it holds, whitespace collapsed, with ``…`` where it was cut."""
    text = " ".join(text.split())
    if not text:
        return ""
    at = _first_word(text, found)
    start = max(0, min(at - length // 3, len(text) - length))
    if start > 0:  # begin at a word
        space = text.find(" ", start, at)
        start = space + 1 if space != -1 else start
    end = min(len(text), start + length)
    if end < len(text):  # end at a word
        space = text.rfind(" ", at, end)
        end = space if space > at else end
    return ("…" if start > 0 else "") + text[start:end].strip() + ("…" if end < len(text) else "")
