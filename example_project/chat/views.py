"""The chat's pages. All async: a turn awaits the model without holding a thread.

A visitor reaches only the conversations listed in their session
(``chat.visitor``); any other id is a 404, whether or not it exists.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime

import openai
from agents.exceptions import AgentsException
from django.db.models import Count, Min
from django.http import Http404, HttpRequest, HttpResponse, JsonResponse
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.http import require_GET, require_POST
from openai_django_sessions.models import AgentMessage, AgentSession

from chat import agent, history, tasks, visitor
from chat.model_choice import model_label
from chat.transcript import build_transcript

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 4000


@dataclass
class ConversationSummary:
    """One row of the conversation list."""

    session_id: str
    title: str
    message_count: int
    last_activity: datetime | None


@require_GET
async def conversation_list(request: HttpRequest) -> HttpResponse:
    """The visitor's conversations, most recently active first; new empty ones on top."""
    ids = await visitor.conversation_ids(request)
    rows = [
        row
        async for row in AgentSession.objects.filter(session_id__in=ids)
        .annotate(message_count=Count("messages"), first_id=Min("messages__id"))
        .order_by("-updated_at")
    ]
    titles = {
        message.session_id: history.message_text(message.data)
        async for message in AgentMessage.objects.filter(id__in=[row.first_id for row in rows])
    }
    stored = {row.session_id for row in rows}
    empty = [
        ConversationSummary(session_id, "New conversation", 0, None)
        for session_id in reversed(ids)
        if session_id not in stored
    ]
    active = [
        ConversationSummary(
            row.session_id,
            titles.get(row.pk) or row.session_id,
            row.message_count,
            row.updated_at,
        )
        for row in rows
    ]
    context = {"conversations": empty + active, "model_label": model_label()}
    return TemplateResponse(request, "chat/list.html", context)


@require_POST
async def new_conversation(request: HttpRequest) -> HttpResponse:
    session_id = visitor.new_session_id()
    await visitor.add_conversation(request, session_id)
    return redirect("chat:conversation", session_id=session_id)


@require_GET
async def conversation(request: HttpRequest, session_id: str) -> HttpResponse:
    await _require_owned(request, session_id)
    return await _conversation_page(request, session_id)


@require_POST
async def send_message(request: HttpRequest, session_id: str) -> HttpResponse:
    """Run a turn with the posted ``message``; ``background`` runs it as a task.

    400 for an empty or too long message, 409 while a background turn of this
    conversation is still running, 502 when the model fails; the page is shown
    again with the error and the typed text.
    """
    await _require_owned(request, session_id)
    text = request.POST.get("message", "").strip()
    if not text:
        return await _conversation_page(
            request, session_id, error="Type a message first.", status=400
        )
    if len(text) > MAX_MESSAGE_LENGTH:
        error = f"Messages are limited to {MAX_MESSAGE_LENGTH} characters."
        return await _conversation_page(request, session_id, error=error, draft=text, status=400)
    if await visitor.pending_turn(request, session_id):
        error = "The previous message is still being answered; wait for its reply."
        return await _conversation_page(request, session_id, error=error, draft=text, status=409)

    try:
        if request.POST.get("background"):
            task_id = await tasks.start_turn(session_id, text)
            if task_id is not None:
                await visitor.set_pending_turn(request, session_id, task_id, text)
        else:
            await agent.run_turn(session_id, text)
    except (AgentsException, openai.OpenAIError) as exc:
        logger.warning("turn of %s failed: %r", session_id, exc)
        error = f"The model could not answer: {exc}"
        return await _conversation_page(request, session_id, error=error, draft=text, status=502)
    return redirect("chat:conversation", session_id=session_id)


@require_POST
async def undo(request: HttpRequest, session_id: str) -> HttpResponse:
    """Remove the last exchange: items back to, and including, the last user message."""
    return await _change_history(
        request, session_id, agent.undo_last_exchange, "Wait for the reply before undoing."
    )


@require_POST
async def clear(request: HttpRequest, session_id: str) -> HttpResponse:
    """Delete the whole history; the conversation stays in the visitor's list, empty."""
    return await _change_history(
        request, session_id, agent.clear_conversation, "Wait for the reply before clearing."
    )


async def _change_history(
    request: HttpRequest,
    session_id: str,
    change: Callable[[str], Awaitable[object]],
    refusal: str,
) -> HttpResponse:
    """Apply ``change`` to the visitor's conversation, unless a background turn is running."""
    await _require_owned(request, session_id)
    if await visitor.pending_turn(request, session_id):
        return await _conversation_page(request, session_id, error=refusal, status=409)
    await change(session_id)
    return redirect("chat:conversation", session_id=session_id)


@require_GET
async def status(request: HttpRequest, session_id: str) -> JsonResponse:
    """``{"pending": bool, "items": n}``, polled by the page while a background turn runs."""
    await _require_owned(request, session_id)
    pending = await _refresh_pending(request, session_id)
    items = await AgentMessage.objects.filter(session__session_id=session_id).acount()
    return JsonResponse({"pending": pending is not None, "items": items})


async def _require_owned(request: HttpRequest, session_id: str) -> None:
    if not await visitor.owns(request, session_id):
        raise Http404("No such conversation.")


async def _refresh_pending(request: HttpRequest, session_id: str) -> dict[str, str] | None:
    """The visitor's background turn for ``session_id`` if it still runs, else ``None``."""
    pending = await visitor.pending_turn(request, session_id)
    if pending is None:
        return None
    state, error = await tasks.turn_state(pending["task"])
    if state == "running":
        return pending
    await visitor.finish_pending_turn(request, session_id, error)
    return None


async def _conversation_page(
    request: HttpRequest,
    session_id: str,
    *,
    error: str | None = None,
    draft: str = "",
    status: int = 200,
) -> HttpResponse:
    pending = await _refresh_pending(request, session_id)
    items = await agent.session_for(session_id).get_items()
    last_activity = (
        await AgentSession.objects.filter(session_id=session_id)
        .values_list("updated_at", flat=True)
        .afirst()
    )
    entries = build_transcript(items)
    said = [entry.text for entry in entries if entry.kind == "user"]
    context = {
        "session_id": session_id,
        "entries": entries,
        "item_count": len(items),
        "last_activity": last_activity,
        "pending": pending,
        # The SDK stores the user message when the turn starts; until then the
        # page shows it from the visitor's session.
        "pending_shown": pending is not None and (not said or said[-1] != pending["text"]),
        "error": error or await visitor.take_error(request, session_id),
        "draft": draft,
        "model_label": model_label(),
        "background_available": tasks.background_available(),
        "max_length": MAX_MESSAGE_LENGTH,
    }
    return TemplateResponse(request, "chat/conversation.html", context, status=status)
