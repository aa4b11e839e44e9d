"""What the site remembers about a signed-in user's visit, in Django's session.

- the ids of the conversations they opened with "New conversation" (newest
  last): until its first message a conversation has no stored row, so no owner
  yet; once stored, the row's owner decides who may open it (``chat.views``).
  The conversations themselves are in ``DjangoSession``'s tables, shared with
  the ``chat`` command;
- the background turns still running, per conversation;
- what the next page of a conversation shows once: an error with the text the
  visitor had typed (after a refused send, the browser is redirected to the
  page, so Reload never sends again), or a note that a background turn ended;
- whether the visitor last chose "Run in background";
- the edits already sent ("Edit and resend"): the same edit sent again (Back,
  then Send) opens the copy it made instead of making an identical one.

Every function uses the session's async API, for the async views.
"""

from __future__ import annotations

import hashlib
import json
import re
from typing import Any

from django.http import HttpRequest
from django.utils.crypto import get_random_string

CONVERSATIONS = "chat_conversations"
PENDING = "chat_pending"
NOTICES = "chat_notices"
BACKGROUND = "chat_background"
SENT_EDITS = "chat_sent_edits"
MAX_SENT_EDITS = 20
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


async def remove_conversation(request: HttpRequest, session_id: str) -> None:
    ids = [existing for existing in await conversation_ids(request) if existing != session_id]
    await request.session.aset(CONVERSATIONS, ids)


async def finish_pending_turn(request: HttpRequest, session_id: str, error: str | None) -> None:
    """Forget the background turn; the next page says how it ended.

    A failed turn gives its message back as the draft, so nothing typed is lost.
    """
    pending = dict(await request.session.aget(PENDING, {}))
    turn = pending.pop(session_id, None)
    await request.session.aset(PENDING, pending)
    if error:
        await set_notice(request, session_id, error=error, draft=turn["text"] if turn else "")
    else:
        await set_notice(request, session_id, info="The last reply was computed in the background.")


async def set_notice(
    request: HttpRequest, session_id: str, *, error: str = "", draft: str = "", info: str = ""
) -> None:
    """Keep what the next page of ``session_id`` shows once (see ``take_notice``)."""
    notices = dict(await request.session.aget(NOTICES, {}))
    notices[session_id] = {"error": error, "draft": draft, "info": info}
    await request.session.aset(NOTICES, notices)


async def take_notice(request: HttpRequest, session_id: str) -> dict[str, str]:
    """``{"error", "draft", "info"}`` kept for ``session_id`` (empty strings if none), removed."""
    notices = dict(await request.session.aget(NOTICES, {}))
    notice = notices.pop(session_id, None)
    if notice is None:
        return {"error": "", "draft": "", "info": ""}
    await request.session.aset(NOTICES, notices)
    return dict(notice)


async def prefers_background(request: HttpRequest) -> bool:
    """Whether "Run in background" was ticked on the visitor's last send."""
    return bool(await request.session.aget(BACKGROUND, False))


async def set_prefers_background(request: HttpRequest, choice: bool) -> None:
    await request.session.aset(BACKGROUND, choice)


def _edit_key(session_id: str, index: int, original: str, text: str) -> str:
    """One edit: ``text`` in place of ``original`` at ``index`` of ``session_id``."""
    return hashlib.sha256(json.dumps([session_id, index, original, text]).encode()).hexdigest()


async def sent_edit(
    request: HttpRequest, session_id: str, index: int, original: str, text: str
) -> str | None:
    """The copy this very edit was sent in, if the visitor sent it already."""
    sent = await request.session.aget(SENT_EDITS, {})
    return sent.get(_edit_key(session_id, index, original, text))


async def record_sent_edit(
    request: HttpRequest, session_id: str, index: int, original: str, text: str, fork: str
) -> None:
    sent = dict(await request.session.aget(SENT_EDITS, {}))
    sent[_edit_key(session_id, index, original, text)] = fork
    # Dicts keep insertion order: the oldest edits are forgotten first.
    await request.session.aset(SENT_EDITS, dict(list(sent.items())[-MAX_SENT_EDITS:]))
