"""The conversation lease across processes: two racing never interleave their
turns, and the lease of a process that was killed expires (issue 19, part 3)."""

from __future__ import annotations

import datetime
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
from django.db import connection
from django.utils import timezone

from openai_django_sessions import DjangoSession, SessionBusy
from openai_django_sessions.models import AgentSessionLease

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
HOLDS = 100  # per process: 200 turns in all

RACER = """
import asyncio, random, sys, time
from pathlib import Path
import django
django.setup()
from asgiref.sync import async_to_sync
from openai_django_sessions import DjangoSession

go, name, holds = Path(sys.argv[1]), sys.argv[2], int(sys.argv[3])
Path(f"{go}.{name}").touch()
while not go.exists():
    time.sleep(0.01)

async def race() -> None:
    session = DjangoSession("raced")
    for n in range(holds):
        async with session.exclusive(timeout=None):
            await session.add_items([{"role": "user", "content": f"start {name} {n}"}])
            await asyncio.sleep(0.002)  # the other process runs meanwhile, if it can
            await session.add_items([{"role": "assistant", "content": f"end {name} {n}"}])
        await asyncio.sleep(random.uniform(0, 0.003))

async_to_sync(race)()
print("ok")
"""

HOLDER = """
import sys, time
from pathlib import Path
import django
django.setup()
from asgiref.sync import async_to_sync
from openai_django_sessions import DjangoSession

async def hold() -> None:
    await DjangoSession("killed").exclusive(lease=30).__aenter__()
    Path(sys.argv[1]).touch()
    time.sleep(600)  # killed long before

async_to_sync(hold)()
"""


def child(script: str, *args: str) -> subprocess.Popen[str]:
    """A Python process on this test's database."""
    env = {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "tests.settings",
        "TEST_DB_NAME": connection.settings_dict["NAME"].removesuffix(".sqlite3"),
        "PYTHONPATH": str(ROOT),
    }
    return subprocess.Popen(
        [sys.executable, "-c", script, *args],
        cwd=ROOT,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(path: Path, process: subprocess.Popen[str]) -> None:
    while not path.exists():
        if process.poll() is not None:
            raise AssertionError(process.communicate()[1])
        time.sleep(0.01)


def turns(contents: list[str]) -> list[tuple[str, str]]:
    """``(process, n)`` of each turn, checking that each start is followed by its end."""
    found = []
    for start, end in zip(contents[::2], contents[1::2], strict=True):
        assert start.startswith("start "), start
        assert end == start.replace("start ", "end ", 1), (start, end)
        name, n = start.split()[1:]
        found.append((name, n))
    return found


def test_two_processes_racing_for_one_conversation_never_interleave_their_turns(tmp_path):
    go = tmp_path / "go"
    racers = [child(RACER, str(go), name, str(HOLDS)) for name in ("a", "b")]
    for name, racer in zip(("a", "b"), racers, strict=True):
        wait_for(Path(f"{go}.{name}"), racer)
    go.touch()
    for racer in racers:
        out, err = racer.communicate(timeout=600)
        assert racer.returncode == 0, err
        assert out.strip() == "ok"

    from asgiref.sync import async_to_sync

    items = async_to_sync(DjangoSession("raced").get_items)()
    found = turns([item["content"] for item in items])
    assert sorted(found) == sorted((name, str(n)) for name in "ab" for n in range(HOLDS))
    assert AgentSessionLease.objects.count() == 0


def test_the_lease_of_a_killed_process_expires_and_is_taken_then(tmp_path, monkeypatch):
    from asgiref.sync import async_to_sync

    ready = tmp_path / "held"
    holder = child(HOLDER, str(ready))
    try:
        wait_for(ready, holder)
    finally:
        holder.send_signal(signal.SIGKILL)
        holder.wait(timeout=60)
    assert holder.returncode == -signal.SIGKILL

    async def take() -> None:
        async with DjangoSession("killed").exclusive(timeout=0):
            pass

    with pytest.raises(SessionBusy):  # 30 s have not passed
        async_to_sync(take)()
    later = timezone.now() + datetime.timedelta(seconds=31)
    monkeypatch.setattr(timezone, "now", lambda: later)
    async_to_sync(take)()
    assert AgentSessionLease.objects.count() == 0
