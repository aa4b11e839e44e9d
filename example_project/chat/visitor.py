"""What the site remembers about an anonymous visitor, in Django's session.

- the ids of the conversations they started (newest last), so each visitor
  sees only their own; the conversations themselves are in ``DjangoSession``'s
  tables, shared with the ``chat`` command;
- the background turns still running, per conversation;
- an error from a background turn, shown once.

Every function uses the session's async API, for the async views.
"""

from __future__ import annotations

import re
from typing import Any

from django.http import HttpRequest
from django.utils.crypto import get_random_string

CONVERSATIONS = "chat_conversations"
PENDING = "chat_pending"
ERRORS = "chat_errors"
# A cookie-backed session could not hold more; a database one need not grow forever.
MAX_CONVERSATIONS = 100
SESSION_ID = re.compile(r"web-[a-z0-9]{16}")


def new_session_id() -> str:
    """A fresh conversation id: ``web-`` and 16 random lowercase letters and digits."""
    return "web-" + get_random_string(16, "abcdefghijklmnopqrstuvwxyz0123456789")


async def conversation_ids(request: HttpRequest) -> list[str]:
    """The visitor's conversation ids, oldest first."""
    return list(await request.session.aget(CONVERSATIONS, []))


async def add_conversation(request: HttpRequest, session_id: str) -> None:
    ids = [existing for existing in await conversation_ids(request) if existing != session_id]
    ids.append(session_id)
    await request.session.aset(CONVERSATIONS, ids[-MAX_CONVERSATIONS:])


async def owns(request: HttpRequest, session_id: str) -> bool:
    """True if ``session_id`` is one of the visitor's conversations."""
    return bool(SESSION_ID.fullmatch(session_id)) and session_id in await conversation_ids(request)


async def pending_turn(request: HttpRequest, session_id: str) -> dict[str, Any] | None:
    """``{"task": result id, "text": message}`` of the turn running in the background."""
    pending = await request.session.aget(PENDING, {})
    return pending.get(session_id)


async def set_pending_turn(request: HttpRequest, session_id: str, task_id: str, text: str) -> None:
    pending = dict(await request.session.aget(PENDING, {}))
    pending[session_id] = {"task": task_id, "text": text}
    await request.session.aset(PENDING, pending)


async def finish_pending_turn(request: HttpRequest, session_id: str, error: str | None) -> None:
    """Forget the background turn; keep ``error`` (if any) to show on the next page."""
    pending = dict(await request.session.aget(PENDING, {}))
    pending.pop(session_id, None)
    await request.session.aset(PENDING, pending)
    if error:
        errors = dict(await request.session.aget(ERRORS, {}))
        errors[session_id] = error
        await request.session.aset(ERRORS, errors)


async def take_error(request: HttpRequest, session_id: str) -> str | None:
    """The stored error of a background turn, removed once read."""
    errors = dict(await request.session.aget(ERRORS, {}))
    error = errors.pop(session_id, None)
    if error is not None:
        await request.session.aset(ERRORS, errors)
    return error
