"""Signals sent after a change to a session is committed.

Each is sent with ``sender`` the ``DjangoSession`` class and keyword arguments
``session_id`` and ``using`` (the database alias), plus:

- ``session_items_added``: ``items``, the list of items that were stored.
- ``session_item_popped``: ``item``, the item that was removed.
- ``session_cleared``: nothing more.
- ``session_compacted``: ``removed``, the items taken out (oldest first), and
  ``items``, the items stored in their place (the compaction's summary). A
  compaction keeps the session: it sends neither ``session_cleared`` nor
  ``session_items_added``. For a whole-history replacement, ``removed`` is read
  only when a receiver is connected.

Receivers run after the commit, in the thread that did the write, through
``send_robust``: a receiver that raises is logged and never undoes the write.
"""

from django.dispatch import Signal

__all__ = ["session_cleared", "session_compacted", "session_item_popped", "session_items_added"]

session_items_added = Signal()
session_item_popped = Signal()
session_cleared = Signal()
session_compacted = Signal()
