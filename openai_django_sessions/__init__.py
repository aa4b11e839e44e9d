"""Django ORM storage for OpenAI Agents SDK sessions.

``DjangoSession`` is imported lazily so that Django can load this app (and run
``migrate`` or management commands) without importing the Agents SDK.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__version__ = "0.3.0"
__all__ = ["DjangoSession", "SessionBusy", "SessionDetails"]

from .exceptions import SessionBusy

if TYPE_CHECKING:
    from .details import SessionDetails
    from .session import DjangoSession


def __getattr__(name: str) -> Any:
    if name == "DjangoSession":
        from .session import DjangoSession

        return DjangoSession
    if name == "SessionDetails":
        from .details import SessionDetails

        return SessionDetails
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
