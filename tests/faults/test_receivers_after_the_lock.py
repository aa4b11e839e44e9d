"""Signal receivers run after the write lock is released (issue 10, item 8).

On SQLite, DjangoSession holds a process-wide lock around each write; a
receiver run under it that writes through another session would wait for
itself forever, and every other writer of the process would wait for it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator

import pytest
from asgiref.sync import async_to_sync
from django.db import connections

from openai_django_sessions import DjangoSession
from openai_django_sessions.signals import session_items_added

pytestmark = pytest.mark.django_db(transaction=True)

DEADLOCK = 60  # seconds: far beyond any write here, so still running means stuck


def in_thread(work) -> threading.Thread:
    def run() -> None:
        try:
            work()
        finally:
            connections.close_all()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


@pytest.fixture
def receiver() -> Iterator[list]:
    connected: list = []
    yield connected
    for function in connected:
        session_items_added.disconnect(function, sender=DjangoSession)


def test_a_receiver_may_write_through_another_session(receiver):
    def audit(sender, session_id, items, **kwargs):
        if session_id == "main":
            async_to_sync(DjangoSession("audit").add_items)([{"saw": len(items)}])

    session_items_added.connect(audit, sender=DjangoSession)
    receiver.append(audit)
    thread = in_thread(lambda: async_to_sync(DjangoSession("main").add_items)([{"n": 1}]))
    thread.join(DEADLOCK)
    assert not thread.is_alive(), "add_items never returned: its receiver waited for its lock"
    assert async_to_sync(DjangoSession("audit").get_items)() == [{"saw": 1}]


def test_other_writers_do_not_wait_for_a_slow_receiver(receiver):
    entered, release = threading.Event(), threading.Event()

    def slow(sender, session_id, **kwargs):
        if session_id == "slow":
            entered.set()
            release.wait(DEADLOCK)

    session_items_added.connect(slow, sender=DjangoSession)
    receiver.append(slow)
    first = in_thread(lambda: async_to_sync(DjangoSession("slow").add_items)([{"n": 1}]))
    assert entered.wait(DEADLOCK)
    try:
        other = in_thread(lambda: async_to_sync(DjangoSession("other").add_items)([{"n": 2}]))
        other.join(DEADLOCK)
        assert not other.is_alive(), "another writer waited for the slow receiver"
    finally:
        release.set()
        first.join(DEADLOCK)
    assert async_to_sync(DjangoSession("other").get_items)() == [{"n": 2}]
