"""A row lock held by another thread, for tests of what waits behind it."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager

from django.db import connection, transaction


@contextmanager
def held_elsewhere(lock: Callable[[], object]) -> Iterator[None]:
    """Run ``lock`` (an UPDATE of the rows to lock) in a transaction on another
    thread's connection, and keep that transaction open until the block ends.

    On SQLite the UPDATE takes the database's write lock instead of a row lock.
    """
    ready, release = threading.Event(), threading.Event()

    def hold() -> None:
        try:
            with transaction.atomic():
                lock()
                ready.set()
                release.wait(20)
        finally:
            connection.close()

    thread = threading.Thread(target=hold)
    thread.start()
    assert ready.wait(10)
    try:
        yield
    finally:
        release.set()
        thread.join(20)
