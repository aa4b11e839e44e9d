"""The exceptions this app raises beyond Django's and Python's own.

Importing this module imports nothing else, so that the package can export
them without loading Django's models or the Agents SDK.
"""

from __future__ import annotations


class SessionBusy(Exception):
    """Another run holds this conversation's lease (see ``DjangoSession.exclusive``).

    Raised when the lease was not free within the ``timeout`` given; nothing
    was read or written. ``session_id`` is the conversation's id.
    """

    def __init__(self, session_id: str) -> None:
        self.session_id = session_id
        super().__init__(f"another run holds this conversation ({session_id!r}); try again later")
