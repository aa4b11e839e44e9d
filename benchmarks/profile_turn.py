"""Where the time of a ``turn`` goes in ``DjangoSession``, layer by layer.

    python benchmarks/profile_turn.py [--db sqlite|postgres|mysql] [--turns N] [--rounds N]

Runs ``--turns`` turns (``get_items(limit=20)``, then ``add_items`` of 5 items, as in
``bench.py``) on one conversation and splits the wall time of each into:

- ``statements``: the driver executing SQL (``BEGIN`` included), timed around
  the driver's ``execute`` on both cursors the package uses (Django's, and the
  driver's own for the hot statements); not with an execute wrapper, which
  would send every statement through Django's cursor;
- ``commit``: the driver's ``COMMIT`` (on SQLite, the WAL write and its ``fdatasync``);
- ``python``: the rest of the time inside the worker thread's functions: the
  package's checks and routing, preparing parameters, Django's cursor and
  transaction bookkeeping;
- ``hop``: everything outside them: ``sync_to_async`` handing the call to the
  worker thread and the result back, and the event loop.

On SQLite the SDK's ``SQLiteSession`` runs the same turns on its own file, so its
total stands beside them. Last, what one hop costs by itself: a call of a function
that does nothing through ``sync_to_async`` (as ``DjangoSession`` reads), through
``run_to_completion`` (as it writes) and through ``asyncio.to_thread`` (as
``SQLiteSession`` does), taking turns, wall time and the process's CPU time.
Each figure is the median over ``--rounds`` rounds, in microseconds per turn (per
call for the hops).
Databases are set up as ``bench.py`` does (same settings and scratch database).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

sys.path.insert(0, str(Path(__file__).parent))

import bench  # the benchmark's set-up and items, from beside this file

T = TypeVar("T")

LAYERS = ("hop", "python", "statements", "commit")


class Clock:
    """Seconds spent in each layer, added up while the turns run."""

    def __init__(self) -> None:
        self.spent = dict.fromkeys(("sync", "statements", "commit"), 0.0)

    def timed(self, layer: str, func: Callable[..., T]) -> Callable[..., T]:
        def timed_call(*args: Any, **kwargs: Any) -> T:
            start = time.perf_counter()
            try:
                return func(*args, **kwargs)
            finally:
                self.spent[layer] += time.perf_counter() - start

        return timed_call


_ORIGINALS: dict[tuple[type, str], Callable[..., Any]] = {}


def instrument(clock: Clock, session: Any) -> None:
    """Time ``session``'s work in its worker thread, and that thread's connection."""
    from django.db import connections
    from django.db.backends.utils import CursorWrapper

    from openai_django_sessions._driver import DriverCursor

    session._get_items = clock.timed("sync", session._get_items)
    session._add_items = clock.timed("sync", session._add_items)
    connection = connections["default"]
    connection.ensure_connection()
    # The innermost step of each cursor, where it calls the driver: nothing that
    # makes the package fall back to Django's cursor (see _driver.observed). Each
    # round wraps the methods as they were before the first round.
    for cls, name in ((CursorWrapper, "_execute"), (DriverCursor, "execute")):
        method = _ORIGINALS.setdefault((cls, name), getattr(cls, name))
        setattr(cls, name, clock.timed("statements", method))
    connection._commit = clock.timed("commit", connection._commit)


async def django_round(turns: int, round_no: int, driver_cursor: bool = True) -> dict[str, float]:
    from asgiref.sync import sync_to_async

    from openai_django_sessions import DjangoSession, _driver

    # DRIVER_CURSOR as the setting would give it, without override_settings in the way.
    _driver._enabled = driver_cursor
    session = DjangoSession(f"profile-{round_no}-{driver_cursor}")
    await session.add_items(bench.batch(0))
    clock = Clock()
    # The session's calls run in one worker thread (no request context): this one.
    await sync_to_async(instrument)(clock, session)
    start = time.perf_counter()
    for n in range(turns):
        await bench.turn(session, n, 20)
    total = time.perf_counter() - start
    spent = clock.spent
    per_turn = {
        "total": total,
        "hop": total - spent["sync"],
        "python": spent["sync"] - spent["statements"] - spent["commit"],
        "statements": spent["statements"],
        "commit": spent["commit"],
    }
    return {layer: seconds / turns * 1e6 for layer, seconds in per_turn.items()}


async def sdk_round(path: Path, turns: int, round_no: int) -> float:
    from agents import SQLiteSession

    session = SQLiteSession(f"profile-{round_no}", str(path))
    try:
        await session.add_items(bench.batch(0))
        start = time.perf_counter()
        for n in range(turns):
            await bench.turn(session, n, 20)
        return (time.perf_counter() - start) / turns * 1e6
    finally:
        session.close()


HOPS = ("sync_to_async", "run_to_completion", "asyncio.to_thread")


def nothing() -> None:
    return None


async def hop_round(calls: int) -> dict[str, bench.Spent]:
    """Calls of a no-op through each hop, taking turns every 20 calls (``bench.interleaved``).

    ``run_to_completion`` is how ``DjangoSession`` makes its writes: ``sync_to_async``
    plus what it takes to survive cancellation; the difference between the two is
    that price while nothing is cancelled.
    """
    from asgiref.sync import sync_to_async

    from openai_django_sessions._completion import run_to_completion

    steps: dict[str, bench.Step] = {
        "sync_to_async": lambda _: sync_to_async(nothing)(),
        "run_to_completion": lambda _: run_to_completion(nothing),
        "asyncio.to_thread": lambda _: asyncio.to_thread(nothing),
    }
    return await bench.interleaved(steps, calls, per_slice=20)


async def profile(args: argparse.Namespace, workdir: Path) -> list[str]:
    rounds: list[dict[str, float]] = []
    cursor_rounds: list[dict[str, float]] = []
    sdk: list[float] = []
    hops: list[dict[str, bench.Spent]] = []
    for round_no in range(args.rounds):
        if args.django_cursor and round_no % 2:  # the two settings take turns going first
            cursor_rounds.append(await django_round(args.turns, round_no, driver_cursor=False))
        rounds.append(await django_round(args.turns, round_no))
        if args.django_cursor and not round_no % 2:
            cursor_rounds.append(await django_round(args.turns, round_no, driver_cursor=False))
        if args.db == "sqlite":
            sdk.append(await sdk_round(workdir / "sdk.sqlite3", args.turns, round_no))
        hops.append(await hop_round(args.turns * 2))
    median = {layer: statistics.median(r[layer] for r in rounds) for layer in rounds[0]}
    parts = ", ".join(f"{layer} {median[layer]:,.0f}" for layer in LAYERS)
    lines = [f"DjangoSession: {median['total']:,.0f} us per turn ({parts})"]
    if cursor_rounds:
        off = {layer: statistics.median(r[layer] for r in cursor_rounds) for layer in rounds[0]}
        parts = ", ".join(f"{layer} {off[layer]:,.0f}" for layer in LAYERS)
        lines.append(f"DRIVER_CURSOR off: {off['total']:,.0f} us per turn ({parts})")
    if sdk:
        lines.append(f"SQLiteSession: {statistics.median(sdk):,.0f} us per turn")
    lines.append(
        "one hop, wall (CPU) us per call: "
        + ", ".join(
            f"{name} {statistics.median(h[name].wall / h[name].ops * 1e6 for h in hops):,.1f}"
            f" ({statistics.median(h[name].cpu_us for h in hops):,.1f})"
            for name in HOPS
        )
    )
    return lines


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--db", choices=("sqlite", "postgres", "mysql"), default="sqlite")
    parser.add_argument("--turns", type=int, default=300)
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument(
        "--django-cursor",
        action="store_true",
        help="also DjangoSession with DRIVER_CURSOR off, taking turns round by round",
    )
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="ods-profile-") as tmp:
        workdir = Path(tmp)
        server = bench.setup_django(args.db, workdir)
        lines = asyncio.run(profile(args, workdir))
    print(f"{args.db}, {args.turns} turns, median of {args.rounds} rounds; {bench.machine(server)}")
    print("\n".join(lines))


if __name__ == "__main__":
    main()
