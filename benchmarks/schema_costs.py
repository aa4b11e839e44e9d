"""What three parts of the schema cost a ``turn`` on SQLite, each measured by leaving it out.

    python benchmarks/schema_costs.py [--turns N] [--rounds N]

The tables ``migrate`` creates are copied into SQLite files (WAL, the settings of
``bench.py``), each file leaving out one part:

- ``no owner index``: the ``(owner, updated_at)`` index, which every upsert
  rewrites since it changes ``updated_at``;
- ``no JSON_VALID``: the ``CHECK (JSON_VALID(...))`` constraints Django puts on
  ``JSONField`` columns on SQLite (and MariaDB);
- ``no foreign keys``: the ``REFERENCES`` clauses, which SQLite checks at ``COMMIT``
  (Django creates them ``DEFERRABLE INITIALLY DEFERRED``);
- ``none of them``: all three left out.

``DjangoSession`` then makes turns (``get_items(limit=20)``, then ``add_items`` of 5
items, as in ``bench.py``) on every file, the variants taking turns every 4 turns
(``bench.interleaved``). The table shows, per turn, the median over ``--rounds``
rounds of the wall time and the process's CPU time (SQLite runs in this process),
what each variant saves against the schema as migrated, and the WAL pages one
``add_items`` commit writes (counted once, untimed, after a checkpoint).
"""

from __future__ import annotations

import argparse
import asyncio
import re
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).parent))

import bench  # the benchmark's settings and items, from beside this file

TABLES = ("agent_usage", "agent_messages", "agent_sessions")  # dropped in this order
OWNER_INDEX = "agent_session_owner_idx"
JSON_CHECK = re.compile(r' CHECK \(\(JSON_VALID\("\w+"\) OR "\w+" IS NULL\)\)')
FOREIGN_KEY = re.compile(r' REFERENCES "\w+" \("\w+"\) DEFERRABLE INITIALLY DEFERRED')
VARIANTS = {
    "as migrated": (),
    "no owner index": ("index",),
    "no JSON_VALID": ("json",),
    "no foreign keys": ("fk",),
    "none of them": ("index", "json", "fk"),
}
WAL_HEADER, WAL_FRAME = 32, 24 + 4096  # bytes; Django's SQLite pages are 4 KiB


def alias(variant: str) -> str:
    return variant.replace(" ", "_").lower()


def setup(workdir: Path) -> None:
    """Configure Django with one SQLite database per variant and migrate each."""
    import django
    from django.conf import settings
    from django.core.management import call_command

    base = bench.django_database("sqlite", workdir)
    settings.configure(
        DEBUG=False,
        SECRET_KEY="benchmark",
        USE_TZ=True,
        INSTALLED_APPS=[
            "django.contrib.auth",
            "django.contrib.contenttypes",
            "openai_django_sessions",
        ],
        DATABASES={
            "default": base,
            **{alias(v): {**base, "NAME": str(workdir / f"{alias(v)}.sqlite3")} for v in VARIANTS},
        },
        DEFAULT_AUTO_FIELD="django.db.models.BigAutoField",
    )
    django.setup()
    for variant, leave_out in VARIANTS.items():
        call_command("migrate", database=alias(variant), verbosity=0)
        rebuild(workdir / f"{alias(variant)}.sqlite3", leave_out)


def rebuild(path: Path, leave_out: tuple[str, ...]) -> None:
    """Recreate the package's (empty) tables and indexes without the parts left out."""
    conn = sqlite3.connect(path, isolation_level=None)
    try:
        rows = conn.execute(
            "SELECT type, name, sql FROM sqlite_master WHERE tbl_name IN (?, ?, ?) "
            "AND sql IS NOT NULL",
            TABLES,
        ).fetchall()
        tables = {name: sql for kind, name, sql in rows if kind == "table"}
        indexes = [sql for kind, name, sql in rows if kind == "index"]
        if "index" in leave_out:
            indexes = [sql for sql in indexes if OWNER_INDEX not in sql]
        conn.execute("PRAGMA foreign_keys = OFF")
        conn.execute("BEGIN")
        for table in TABLES:
            conn.execute(f'DROP TABLE "{table}"')
        for table in reversed(TABLES):
            sql = tables[table]
            if "json" in leave_out:
                sql = JSON_CHECK.sub("", sql)
            if "fk" in leave_out:
                sql = FOREIGN_KEY.sub("", sql)
            conn.execute(sql)
        for sql in indexes:
            conn.execute(sql)
        conn.execute("COMMIT")
        left = conn.execute("SELECT group_concat(sql, ' ') FROM sqlite_master").fetchone()[0]
        if ("json" in leave_out) == ("JSON_VALID" in left) or (
            ("fk" in leave_out) == ('REFERENCES "agent_sessions"' in left)
        ):
            raise SystemExit(f"{path.name}: the schema was not rebuilt as intended")
    finally:
        conn.close()


async def wal_pages_per_commit(workdir: Path, variant: str, turns: int = 20) -> float:
    """WAL pages one ``add_items`` commit writes: the WAL's growth over a few, from empty."""
    from asgiref.sync import sync_to_async
    from django.db import connections

    from openai_django_sessions import DjangoSession

    def checkpoint() -> None:
        with connections[alias(variant)].cursor() as cursor:
            cursor.execute("PRAGMA wal_checkpoint(TRUNCATE)")

    session = DjangoSession("wal", using=alias(variant))
    await session.add_items(bench.batch(0))
    await sync_to_async(checkpoint)()
    wal = workdir / f"{alias(variant)}.sqlite3-wal"
    for n in range(turns):  # far below the automatic checkpoint (1,000 pages)
        await session.add_items(bench.batch(n))
    return (wal.stat().st_size - WAL_HEADER) / WAL_FRAME / turns


async def measure(args: argparse.Namespace, workdir: Path) -> list[str]:
    from openai_django_sessions import DjangoSession

    sessions = {v: DjangoSession("schema", using=alias(v)) for v in VARIANTS}
    steps: dict[str, bench.Step] = {
        v: (lambda n, s=s: bench.turn(s, n, 20))  # type: ignore[misc]
        for v, s in sessions.items()
    }
    await bench.interleaved(steps, args.turns // 4, per_slice=4)  # warm-up
    rounds = [
        await bench.interleaved(steps, args.turns, per_slice=4, shift=r) for r in range(args.rounds)
    ]
    pages = {v: await wal_pages_per_commit(workdir, v) for v in VARIANTS}

    def per_turn(variant: str, cpu: bool) -> float:
        return statistics.median(
            (r[variant].cpu if cpu else r[variant].wall) / r[variant].ops * 1e6 for r in rounds
        )

    def saved(variant: str, cpu: bool) -> float:
        # Per round, against the schema as migrated in the same round: load hits both alike.
        field = "cpu" if cpu else "wall"
        return statistics.median(
            (getattr(r["as migrated"], field) - getattr(r[variant], field)) / r[variant].ops * 1e6
            for r in rounds
        )

    lines = [
        "| schema | wall µs/turn | saved | CPU µs/turn | saved | WAL pages per commit |",
        "| --- | ---: | ---: | ---: | ---: | ---: |",
    ]
    for v in VARIANTS:
        lines.append(
            f"| {v} | {per_turn(v, False):,.0f} | {saved(v, False):,.0f} "
            f"| {per_turn(v, True):,.0f} | {saved(v, True):,.0f} | {pages[v]:.1f} |"
        )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--turns", type=int, default=200, help="turns per variant per round")
    parser.add_argument("--rounds", type=int, default=7)
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ods-schema-") as tmp:
        workdir = Path(tmp)
        setup(workdir)
        lines = asyncio.run(measure(args, workdir))
        server = sqlite3.sqlite_version
    print(f"SQLite {server}: {args.turns} turns per variant, median of {args.rounds} rounds")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
