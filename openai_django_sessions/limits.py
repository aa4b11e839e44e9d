"""How large an item may be on a database: the one rule every write path checks against.

``max_item_bytes(alias)`` is the largest item (as compact UTF-8 JSON) that
``DjangoSession``, compaction and import accept for ``alias``, and the most
item JSON one INSERT carries (``batches``):

- MySQL/MariaDB: what the server's ``max_allowed_packet`` allows. Its driver
  may double a JSON text while escaping quotes and backslashes, and the rest
  of the statement needs room too, so an item may be half the packet less
  1 MiB (7 MiB of MariaDB's default 16 MiB; 31 MiB of MySQL 8's 64 MiB). The
  packet size is read once per alias and kept.
- PostgreSQL and SQLite: ``DEFAULT_MAX_ITEM_BYTES`` (64 MiB; ``jsonb`` holds
  up to 255 MB, a SQLite value up to 1 GB).
- ``OPENAI_DJANGO_SESSIONS["MAX_ITEM_BYTES"]`` (a positive int) replaces that
  default on every database; on MySQL/MariaDB it can lower the limit, not
  raise it past what ``max_allowed_packet`` allows (raise that on the server).

Items are refused above the limit before anything is written, with a
``ValueError`` naming the limit and how to change it.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

from django.db import connections

from . import _conf as conf
from . import _transactions as transactions

__all__ = ["DEFAULT_MAX_ITEM_BYTES", "max_item_bytes"]

DEFAULT_MAX_ITEM_BYTES = 64 * 2**20
# Room for the statement around the items (and each row's other columns).
_STATEMENT_ROOM = 2**20
ROW_OVERHEAD = 128

_packets: dict[str, int] = {}
_lock = threading.Lock()


def max_item_bytes(alias: str) -> int:
    """The largest item, in bytes of compact UTF-8 JSON, that may be stored on ``alias``."""
    configured = conf.max_item_bytes()
    if connections[alias].vendor != "mysql":
        return configured or DEFAULT_MAX_ITEM_BYTES
    allowed = max(_packet_size(alias) // 2 - _STATEMENT_ROOM, 1)
    return min(configured, allowed) if configured else allowed


def describe(alias: str) -> str:
    """Where ``alias``'s limit comes from and how to change it, for error messages."""
    setting = f"{conf.SETTING_NAME}['MAX_ITEM_BYTES']"
    if connections[alias].vendor == "mysql":
        return (
            f"on database {alias!r}, half its max_allowed_packet "
            f"({_packet_size(alias):,} bytes) less 1 MiB, or {setting} if lower; "
            "raise max_allowed_packet on the server to store larger items"
        )
    return f"on database {alias!r}; {setting} changes it"


def too_large(name: str, size: int, max_bytes: int, where: str = "") -> ValueError:
    """The error for ``name``, ``size`` bytes as JSON, over ``max_bytes`` (``where``: whose)."""
    return ValueError(
        f"{name} is {size:,} bytes as JSON, more than the {max_bytes:,} it may be{where}"
    )


def _packet_size(alias: str) -> int:
    with _lock:
        if alias in _packets:
            return _packets[alias]

    def read() -> int:
        with connections[alias].cursor() as cursor:
            cursor.execute("SELECT @@max_allowed_packet")
            return int(cursor.fetchone()[0])

    # Through the retry/reconnect policy: a dropped connection is replaced here too.
    size = transactions.run(alias, read, atomic=False)
    with _lock:
        _packets[alias] = size
    return size


def batches(sizes: Sequence[int], *, max_bytes: int, max_rows: int) -> Iterator[range]:
    """Split rows of these JSON sizes into consecutive runs for one INSERT each.

    A run holds at most ``max_rows`` rows and ``max_bytes`` of JSON (each row
    counted ``ROW_OVERHEAD`` bytes more); a row larger than that goes alone.
    """
    start, total = 0, 0
    for index, size in enumerate(sizes):
        size += ROW_OVERHEAD
        if index > start and (total + size > max_bytes or index - start >= max_rows):
            yield range(start, index)
            start, total = index, 0
        total += size
    if start < len(sizes):
        yield range(start, len(sizes))
