"""The exceptions this app raises beyond Django's and Python's own.

Importing this module imports nothing else (but Django's own exceptions), so
that the package can export them without loading Django's models or the
Agents SDK.
"""

from __future__ import annotations

from django.core.exceptions import ImproperlyConfigured

__all__ = ["LooseSessionIds", "SessionBusy"]


class SessionBusy(Exception):
    """Another run holds this conversation's lease (see ``DjangoSession.exclusive``).

    Raised when the lease was not free within the ``timeout`` given; nothing
    was read or written. ``session_id`` is the conversation's id.
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"another run holds this conversation ({session_id!r}); try again later")


class LooseSessionIds(ImproperlyConfigured):
    """A sessions table whose ``session_id`` ignores case, accents or trailing spaces.

    Raised by ``DjangoSession`` on MySQL/MariaDB for a table created by 0.1/0.2
    whose ``session_id`` compares loosely, before anything is read or written;
    the message names the command that converts the table.
    """
