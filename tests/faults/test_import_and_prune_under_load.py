"""prune and import --replace while others write (issue 10, items 3 and 4)."""

from __future__ import annotations

import io
import json
import sqlite3
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from datetime import timedelta

import pytest
from asgiref.sync import async_to_sync
from django.core.management import call_command
from django.db import connection, connections
from django.db.models.signals import pre_delete
from django.utils import timezone

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)


@contextmanager
def another_process_writing() -> Iterator[None]:
    """A plain sqlite3 connection (as another process would be) taking the write lock
    again and again, holding it three quarters of the time, until the block ends."""
    other = sqlite3.connect(
        connection.settings_dict["NAME"], isolation_level=None, check_same_thread=False
    )
    other.execute("CREATE TABLE IF NOT EXISTS busy (n INTEGER)")
    stop, started = threading.Event(), threading.Event()

    def write() -> None:
        while not stop.is_set():
            other.execute("BEGIN IMMEDIATE")
            other.execute("INSERT INTO busy VALUES (1)")
            started.set()
            stop.wait(0.15)
            other.execute("COMMIT")
            stop.wait(0.05)

    thread = threading.Thread(target=write)
    thread.start()
    assert started.wait(10)
    try:
        yield
    finally:
        stop.set()
        thread.join(10)
        other.close()


def stale_sessions(count: int) -> None:
    sessions = AgentSession.objects.bulk_create(
        [AgentSession(session_id=f"stale-{n}") for n in range(count)]
    )
    AgentMessage.objects.bulk_create([AgentMessage(session=s, data={"n": 1}) for s in sessions])
    AgentSession.objects.update(updated_at=timezone.now() - timedelta(days=100))


@pytest.mark.vendor("sqlite")
def test_prune_waits_for_the_write_lock_held_by_another_process():
    stale_sessions(20)
    out = io.StringIO()
    with another_process_writing():
        call_command(
            "agent_sessions", "prune", "--inactive-for", "30d", "--batch-size", "2", stdout=out
        )
    assert "Deleted 20 session(s) and 20 message(s)." in out.getvalue()
    assert AgentSession.objects.count() == 0


@pytest.mark.vendor("sqlite")
def test_import_replace_waits_for_the_write_lock_held_by_another_process(tmp_path):
    stale_sessions(20)
    lines = [
        json.dumps({"session_id": f"stale-{n}", "items": [{"data": {"new": n}}]}) for n in range(20)
    ]
    path = tmp_path / "in.jsonl"
    path.write_text("\n".join(lines) + "\n")
    with another_process_writing():
        call_command("agent_sessions", "import", str(path), "--replace", stdout=io.StringIO())
    assert sorted(AgentMessage.objects.values_list("data__new", flat=True)) == list(range(20))


@pytest.mark.server_db
def test_import_replace_of_a_session_written_to_meanwhile_succeeds(tmp_path):
    """A writer adds to the session right while the import deletes it: it must wait
    for the import's lock, not slip a message in between."""
    async_to_sync(DjangoSession("live").add_items)([{"old": 1}])
    writer_done = threading.Event()

    def add_meanwhile() -> None:
        try:
            async_to_sync(DjangoSession("live").add_items)([{"meanwhile": 1}])
        finally:
            connections.close_all()
            writer_done.set()

    def during_delete(sender, instance, **kwargs):
        if instance.session_id == "live" and not writer_done.is_set():
            threading.Thread(target=add_meanwhile).start()
            writer_done.wait(2)  # done at once unless it waits for the import's lock

    pre_delete.connect(during_delete, sender=AgentSession)
    try:
        path = tmp_path / "in.jsonl"
        path.write_text(json.dumps({"session_id": "live", "items": [{"data": {"new": 1}}]}))
        call_command("agent_sessions", "import", str(path), "--replace", stdout=io.StringIO())
    finally:
        pre_delete.disconnect(during_delete, sender=AgentSession)
    assert writer_done.wait(30)
    items = async_to_sync(DjangoSession("live").get_items)()
    assert items == [{"new": 1}, {"meanwhile": 1}]
