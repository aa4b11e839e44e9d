"""The chat's pages. All async: a turn awaits the model without holding a thread.

Every page needs a signed-in user (Django's auth views, at ``/accounts/``).
A user reaches only their own conversations: those stored with them as owner,
and the new ones they opened that hold nothing yet (listed in their session,
``chat.visitor``). Any other id is a 404, whether or not it exists; the
``DjangoSession`` each view uses has the user as ``owner``, so the library
refuses another user's conversation (``PermissionDenied``, a 403) even if this
check were bypassed.

Every POST answers with a redirect to a page (Post/Redirect/Get), errors
included: the error and the typed text travel in the session to that page, so
the address bar always shows a page's URL and Reload never posts again.
"""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import AsyncIterator, Awaitable, Callable
from contextlib import aclosing
from dataclasses import asdict, dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import openai
from agents.exceptions import AgentsException
from asgiref.sync import sync_to_async
from django.contrib import messages
from django.contrib.auth.decorators import login_required
from django.db.models import Count, IntegerField, OuterRef, Subquery
from django.db.models.functions import Coalesce
from django.http import (
    Http404,
    HttpRequest,
    HttpResponse,
    HttpResponseBase,
    JsonResponse,
    StreamingHttpResponse,
)
from django.shortcuts import redirect
from django.template.response import TemplateResponse
from django.views.decorators.cache import cache_control, never_cache
from django.views.decorators.http import require_GET, require_http_methods, require_POST
from openai_django_sessions import SessionBusy, search
from openai_django_sessions.details import TITLE_MAX_LENGTH
from openai_django_sessions.models import AgentMessage, AgentSession

from chat import agent, history, tasks, terminal, visitor
from chat.model_choice import model_label, uses_offline_model
from chat.transcript import build_transcript

logger = logging.getLogger(__name__)

MAX_MESSAGE_LENGTH = 4000
# What the page says when a turn fails; the reason goes to the log, not to the visitor.
MODEL_FAILED = (
    "The model could not answer just now. Your message was not added to the "
    "conversation: it is back in the box below, so you can send it again."
)
NOT_STORED = "This message could not be stored, so it was not sent. It is back in the box below."
INTERRUPTED = (
    "The reply was interrupted before it was complete (the page was closed or reloaded), "
    "so your message was not kept: it is back in the box below."
)
BUSY = (
    "A reply is still being written in this conversation (in another tab or window). "
    "Wait for it, then send your message again: it is back in the box below."
)
NUL_REMOVED = (
    "Your message contained an invisible null character, which cannot be stored. "
    "It has been taken out of the text below: check it and send again."
)
FAVICON = Path(__file__).resolve().parent / "static" / "chat" / "favicon.svg"


@dataclass
class ConversationSummary:
    """One row of the conversation list."""

    session_id: str
    title: str
    message_count: int
    last_activity: datetime | None
    tokens: int
    forked: bool


# A user's own pages: never kept by a cache, nor shown stale when Back returns to them.
@never_cache
@login_required
@require_GET
async def conversation_list(request: HttpRequest) -> HttpResponse:
    """The user's conversations that hold messages, most recently active first.

    One query (``AgentSession.objects.conversations``, counts and usage totals);
    each is titled after its first user message, as the library names a
    conversation created without a title, and shows the tokens its runs used.
    An empty conversation (new, cleared, or pruned by an operator) is not listed:
    "New conversation" brings the user back to it instead of making another.
    """
    user = await request.auser()
    rows = (
        AgentSession.objects.conversations(user)
        .filter(message_count__gt=0)
        .annotate(bubbles=_bubble_count())
    )
    conversations = [
        ConversationSummary(
            row.session_id,
            row.title or row.session_id,
            row.bubbles,
            row.updated_at,
            row.usage_total_tokens,
            bool(row.forked_from),
        )
        async for row in rows
    ]
    context = {
        "conversations": conversations,
        "max_query_length": search.MAX_QUERY_LENGTH,
        "model_label": model_label(),
        "offline": uses_offline_model(),
    }
    return TemplateResponse(request, "chat/list.html", context)


@dataclass
class SearchResult:
    """One conversation found by the search: where it said what was looked for."""

    session_id: str
    title: str
    snippet: str
    last_activity: datetime | None


SEARCH_RESULTS = 20


@never_cache
@login_required
@require_GET
async def search_conversations(request: HttpRequest) -> HttpResponse:
    """The user's conversations with a message holding every word of ``q``, best first.

    ``search.search(user, q)`` (one query per database; the library scopes it to
    the user, so another user's conversations never show), through
    ``sync_to_async`` as the library's search is synchronous. Each result shows
    its title and the snippet of the best matching message, with the searched
    words marked. No ``q`` (or only spaces) searches nothing and shows the box.
    """
    user = await request.auser()
    # No word holds a null character: it separates words, as a space does.
    query = " ".join(request.GET.get("q", "").replace("\x00", " ").split())
    results: list[SearchResult] = []
    error = None
    if len(query) > search.MAX_QUERY_LENGTH:
        error = (
            f"Searches are limited to {search.MAX_QUERY_LENGTH:,} characters; "
            f"this one has {len(query):,}."
        )
    elif query:
        found = await sync_to_async(search.search)(user, query, limit=SEARCH_RESULTS)
        results = [
            SearchResult(
                row.session_id, row.title or row.session_id, row.search_snippet, row.updated_at
            )
            for row in found
        ]
    context = {
        "query": query,
        "results": results,
        "error": error,
        "max_query_length": search.MAX_QUERY_LENGTH,
        "max_results": SEARCH_RESULTS,
        "model_label": model_label(),
    }
    return TemplateResponse(request, "chat/search.html", context)


def _bubble_count() -> Coalesce:
    """The user and assistant messages of a conversation: its bubbles, not its tool items."""
    shown = (
        AgentMessage.objects.filter(session=OuterRef("pk"), data__role__in=["user", "assistant"])
        .order_by()
        .values("session")
        .annotate(count=Count("pk"))
        .values("count")
    )
    return Coalesce(Subquery(shown, output_field=IntegerField()), 0)


@login_required
@require_POST
async def new_conversation(request: HttpRequest) -> HttpResponse:
    """Open the user's empty conversation if they have one, else a new one."""
    session_id = await _empty_conversation(request)
    if session_id is None:
        session_id = visitor.new_session_id()
        await visitor.add_conversation(request, session_id)
    return redirect("chat:conversation", session_id=session_id)


async def _empty_conversation(request: HttpRequest) -> str | None:
    """The newest of the visitor's conversations with no stored message and no turn running."""
    ids = await visitor.conversation_ids(request)
    stored = {
        session_id
        async for session_id in AgentSession.objects.filter(
            session_id__in=ids, messages__isnull=False
        ).values_list("session_id", flat=True)
    }
    for session_id in reversed(ids):
        if session_id not in stored and await visitor.pending_turn(request, session_id) is None:
            return session_id
    return None


@never_cache
@login_required
@require_GET
async def conversation(request: HttpRequest, session_id: str) -> HttpResponse:
    await _require_owned(request, session_id)
    return await _conversation_page(request, session_id)


def _posted_text(request: HttpRequest, field: str = "message") -> str:
    # Browsers send new lines as CRLF: count them as the page's counter does, once.
    return request.POST.get(field, "").replace("\r\n", "\n").strip()


def _kept(text: str) -> str:
    """``text`` as the box shows it again: HTML turns a null character into U+FFFD,
    so it is taken out (the error says so) rather than silently replaced."""
    return text.replace("\x00", "")


@login_required
@require_POST
async def send_message(request: HttpRequest, session_id: str) -> HttpResponse:
    """Run a turn with the posted ``message``; ``background`` runs it as a task.

    The form's own action, used without JavaScript (the page streams through
    ``stream_message`` otherwise): the reply is shown once the turn is over.
    An empty or too long message, one with a null character, a send while
    another turn of this conversation runs, a message the session refuses to
    store and a model failure all redirect back to the page, which shows why
    with the text kept in the box; a failed turn leaves nothing stored.
    """
    user = await _require_owned(request, session_id)
    text = _posted_text(request)
    background = bool(request.POST.get("background"))
    await visitor.set_prefers_background(request, background)
    error = await _refusal(request, session_id, text)
    if error is None and background:
        error = await _failure(_start_in_background(request, session_id, text, user), session_id)
    elif error is None:
        error = await _run_turn(session_id=session_id, text=text, user=user)
    if error is not None:
        await visitor.set_notice(request, session_id, error=error, draft=_kept(text))
    return redirect("chat:conversation", session_id=session_id)


@login_required
@require_POST
async def stream_message(request: HttpRequest, session_id: str) -> HttpResponseBase:
    """Run a turn with the posted ``message``, its reply sent as server-sent events.

    Events (each ``data`` a JSON object): ``text`` (the next piece of the reply),
    ``tool_call`` and ``tool_output``, then ``done``, or ``failed`` when the turn
    failed (the page then reloads and shows why, with the text in the box). A
    refused message answers a redirect to the page, as ``send_message`` does.
    If the page goes away mid-reply, the run is cancelled and what it stored is
    removed; the text waits in the box for the visitor's return.
    """
    user = await _require_owned(request, session_id)
    text = _posted_text(request)
    await visitor.set_prefers_background(request, False)
    error = await _refusal(request, session_id, text)
    if error is not None:
        await visitor.set_notice(request, session_id, error=error, draft=_kept(text))
        return redirect("chat:conversation", session_id=session_id)
    response = StreamingHttpResponse(
        _turn_events(request, session_id, text, user), content_type="text/event-stream"
    )
    response["Cache-Control"] = "no-cache"
    response["X-Accel-Buffering"] = "no"  # a proxy in front must not hold the events back
    return response


async def _turn_events(
    request: HttpRequest, session_id: str, text: str, user: Any
) -> AsyncIterator[str]:
    """The server-sent events of one turn (see ``stream_message``)."""
    # Sent at once: the page knows the turn has started before the model answers.
    yield _event("started", {})
    try:
        # Closed with this generator, so the run is cancelled and undone before it ends.
        async with aclosing(agent.stream_turn(session_id, text, user)) as turn:
            async for event in turn:
                yield _event(event.kind, asdict(event))
    except (asyncio.CancelledError, GeneratorExit):
        # The client went away: Django cancels the response, or closes it when
        # the cancellation came while it was sending. The response has started,
        # so the session middleware has already saved: the notice is saved here.
        await visitor.set_notice(request, session_id, error=INTERRUPTED, draft=_kept(text))
        await request.session.asave()
        raise
    except TURN_FAILURES as exc:
        error = _failure_message(exc, session_id)
        await visitor.set_notice(request, session_id, error=error, draft=_kept(text))
        await request.session.asave()
        yield _event("failed", {})
        return
    yield _event("done", {})


def _event(name: str, data: dict[str, Any]) -> str:
    return f"event: {name}\ndata: {json.dumps(data, ensure_ascii=False)}\n\n"


async def _start_in_background(request: HttpRequest, session_id: str, text: str, user: Any) -> None:
    task_id = await tasks.start_turn(session_id, text, user.pk)
    if task_id is not None:
        await visitor.set_pending_turn(request, session_id, task_id, text)


async def _run_turn(*, session_id: str, text: str, user: Any) -> str | None:
    """Run a turn of ``user``'s conversation now; why it failed, or ``None``."""
    return await _failure(agent.run_turn(session_id, text, user), session_id)


# What a turn may fail with and the page tells: another turn holding the
# conversation, a message the session refuses to store (``ValueError``/``TypeError``),
# a model or SDK failure. Anything else is a bug.
TURN_FAILURES = (SessionBusy, ValueError, TypeError, AgentsException, openai.OpenAIError)


async def _failure(turn: Awaitable[object], session_id: str) -> str | None:
    """Await ``turn``; the message for the user if it failed, else ``None``."""
    try:
        await turn
    except TURN_FAILURES as exc:
        return _failure_message(exc, session_id)
    return None


def _failure_message(exc: BaseException, session_id: str) -> str:
    """What the page says about a failed turn; the reason itself is logged."""
    if isinstance(exc, SessionBusy):
        return BUSY
    logger.warning("turn of %s failed: %r", session_id, exc)
    return NOT_STORED if isinstance(exc, (ValueError, TypeError)) else MODEL_FAILED


async def _refusal(request: HttpRequest, session_id: str, text: str) -> str | None:
    """Why ``text`` cannot be sent now, or ``None``."""
    if not _kept(text).strip():
        return "Type a message first."
    if "\x00" in text:
        return NUL_REMOVED
    if len(text) > MAX_MESSAGE_LENGTH:
        return (
            f"Messages are limited to {MAX_MESSAGE_LENGTH:,} characters; "
            f"this one has {len(text):,}. Shorten it and send again."
        )
    if await visitor.pending_turn(request, session_id):
        return "The previous message is still being answered; wait for its reply."
    return None


@login_required
@require_POST
async def rename(request: HttpRequest, session_id: str) -> HttpResponse:
    """Give the conversation the posted ``title`` (one line; the list and the page show it)."""
    user = await _require_owned(request, session_id)
    title = " ".join(_posted_text(request, "title").split())
    if not _kept(title):
        error = "Type a title first."
    elif "\x00" in title:
        error = "A title cannot contain the invisible null character."
    elif len(title) > TITLE_MAX_LENGTH:
        error = f"Titles are limited to {TITLE_MAX_LENGTH} characters; this one has {len(title):,}."
    else:
        await agent.session_for(session_id, user).aupdate_details(title=title)
        await visitor.set_notice(request, session_id, info="Conversation renamed.")
        return redirect("chat:conversation", session_id=session_id)
    await visitor.set_notice(request, session_id, error=error)
    return redirect("chat:conversation", session_id=session_id)


@login_required
@require_POST
async def undo(request: HttpRequest, session_id: str) -> HttpResponse:
    """Remove the last exchange: items back to, and including, the last user message."""
    await _change_history(
        request, session_id, agent.undo_last_exchange, "Wait for the reply before undoing."
    )
    return redirect("chat:conversation", session_id=session_id)


@login_required
@require_http_methods(["GET", "POST"])
async def clear(request: HttpRequest, session_id: str) -> HttpResponse:
    """GET asks to confirm; POST deletes the whole history and keeps the (empty) page."""
    if request.method == "GET":
        return await _confirmation(
            request,
            session_id,
            question="Clear this conversation?",
            consequence="Its {count} stored message{plural} will be deleted; "
            "the empty conversation stays open.",
            action="Clear",
        )
    await _change_history(
        request, session_id, agent.clear_conversation, "Wait for the reply before clearing."
    )
    return redirect("chat:conversation", session_id=session_id)


@login_required
@require_http_methods(["GET", "POST"])
async def delete(request: HttpRequest, session_id: str) -> HttpResponse:
    """GET asks to confirm; POST deletes the conversation and removes it from the list."""
    if request.method == "GET":
        return await _confirmation(
            request,
            session_id,
            question="Delete this conversation?",
            consequence="Its {count} stored message{plural} will be deleted "
            "and it leaves your list.",
            action="Delete",
        )
    if await _change_history(
        request, session_id, agent.clear_conversation, "Wait for the reply before deleting."
    ):
        await visitor.remove_conversation(request, session_id)
        messages.success(request, "Conversation deleted.")
        return redirect("chat:list")
    return redirect("chat:conversation", session_id=session_id)


async def _confirmation(
    request: HttpRequest, session_id: str, *, question: str, consequence: str, action: str
) -> HttpResponse:
    await _require_owned(request, session_id)
    count = await AgentMessage.objects.filter(session__session_id=session_id).acount()
    context = {
        "session_id": session_id,
        "question": question,
        "consequence": consequence.format(count=count, plural="" if count == 1 else "s"),
        "action": action,
        "model_label": model_label(),
    }
    return TemplateResponse(request, "chat/confirm.html", context)


async def _change_history(
    request: HttpRequest,
    session_id: str,
    change: Callable[[str, Any], Awaitable[object]],
    refusal: str,
) -> bool:
    """Apply ``change`` to the user's conversation; whether it was applied.

    Refused with the notice ``refusal`` while a turn is being written: a
    background turn of this visitor's, or any turn holding the conversation
    (a reply streaming in another tab, the terminal): ``change`` takes the
    conversation's lease as a turn does.
    """
    user = await _require_owned(request, session_id)
    if not await visitor.pending_turn(request, session_id):
        try:
            await change(session_id, user)
            return True
        except SessionBusy:
            pass
    await visitor.set_notice(request, session_id, error=refusal)
    return False


@login_required
@require_GET
async def status(request: HttpRequest, session_id: str) -> JsonResponse:
    """``{"pending": bool, "items": n}``, polled by the page while a background turn runs."""
    await _require_owned(request, session_id)
    pending = await _refresh_pending(request, session_id)
    items = await AgentMessage.objects.filter(session__session_id=session_id).acount()
    return JsonResponse({"pending": pending is not None, "items": items})


@require_GET
@cache_control(max_age=86400)
async def favicon(request: HttpRequest) -> HttpResponse:
    return HttpResponse(FAVICON.read_bytes(), content_type="image/svg+xml")


async def _require_owned(request: HttpRequest, session_id: str) -> Any:
    """The signed-in user, if ``session_id`` is theirs; else ``Http404``.

    Theirs: its stored row has them as owner, or it has no row yet and is one of
    the new conversations they opened (an id ``visitor.owns`` lists).
    """
    user = await request.auser()
    row = await AgentSession.objects.filter(session_id=session_id).values_list("owner_id").afirst()
    mine = row[0] == user.pk if row is not None else await visitor.owns(request, session_id)
    if not mine:
        raise Http404("No such conversation.")
    return user


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


async def _conversation_page(request: HttpRequest, session_id: str) -> HttpResponse:
    user = await request.auser()
    pending = await _refresh_pending(request, session_id)
    session = agent.session_for(session_id, user)
    items = await session.get_items()
    row = (
        await AgentSession.objects.filter(session_id=session_id)
        .values("updated_at", "forked_from", "title")
        .afirst()
    ) or {"updated_at": None, "forked_from": "", "title": ""}
    entries = build_transcript(items)
    said = [entry.text for entry in entries if entry.kind == "user"]
    notice = await visitor.take_notice(request, session_id)
    context = {
        "session_id": session_id,
        "title": row["title"],
        "title_max_length": TITLE_MAX_LENGTH,
        "entries": entries,
        # What the visitor sees: the bubbles, and the tool calls apart.
        "message_count": sum(entry.kind in ("user", "assistant") for entry in entries),
        "tool_count": sum(entry.kind == "tool" for entry in entries),
        "last_activity": row["updated_at"],
        "forked_from": row["forked_from"],
        "usage": await session.aget_usage(),
        "offline": uses_offline_model(),
        "pending": pending,
        # The SDK stores the user message when the turn starts; until then the
        # page shows it from the visitor's session.
        "pending_shown": pending is not None and (not said or said[-1] != pending["text"]),
        "error": notice["error"],
        "info": notice["info"],
        "draft": notice["draft"],
        "background_checked": await visitor.prefers_background(request),
        "model_label": model_label(),
        "background_available": tasks.background_available(),
        "max_length": MAX_MESSAGE_LENGTH,
        "terminal_command": terminal.chat_command(session_id, user.get_username()),
    }
    return TemplateResponse(request, "chat/conversation.html", context)


@login_required
@require_http_methods(["GET", "POST"])
async def edit(request: HttpRequest, session_id: str, index: int) -> HttpResponse:
    """Edit the user message at ``index`` and resend it, in a fork of the conversation.

    GET shows the message in a box. POST copies the items before it into a new
    conversation (``DjangoSession.afork``), runs the edited text there and shows
    it; the original stays as it was. ``index`` must still hold the message the
    page showed (``original``): if the history changed meanwhile (another tab, the
    terminal), nothing is forked and the page says so. The same edit sent again
    (Back, then Send) opens the copy it made, if it still exists: one edit, one copy.
    """
    user = await _require_owned(request, session_id)
    items = [
        history.as_dict(item) for item in await agent.session_for(session_id, user).get_items()
    ]
    if not (0 <= index < len(items) and history.is_user_message(items[index])):
        raise Http404("No such message.")
    original = history.message_text(items[index])
    edit_key = f"{session_id}/edit/{index}"
    if request.method == "GET":
        notice = await visitor.take_notice(request, edit_key)
        context = {
            "session_id": session_id,
            "index": index,
            "original": original,
            "draft": notice["draft"] or original,
            "error": notice["error"],
            "max_length": MAX_MESSAGE_LENGTH,
            "model_label": model_label(),
        }
        return TemplateResponse(request, "chat/edit.html", context)
    text = _posted_text(request)
    sent = await visitor.sent_edit(request, session_id, index, original, text)
    if sent is not None and await AgentSession.objects.filter(session_id=sent).aexists():
        await visitor.set_notice(
            request,
            sent,
            info="This edit was already sent: here is the copy it made. Nothing was sent twice.",
        )
        return redirect("chat:conversation", session_id=sent)
    error = await _refusal(request, session_id, text)
    if error is None and request.POST.get("original", "") != original:
        error = (
            "The conversation changed since this page was shown; check the message and send again."
        )
    if error is not None:
        await visitor.set_notice(request, edit_key, error=error, draft=_kept(text))
        return redirect("chat:edit", session_id=session_id, index=index)
    fork_id = visitor.new_session_id()
    await agent.fork_before(session_id, user, fork_id, index)
    await visitor.add_conversation(request, fork_id)
    await visitor.record_sent_edit(request, session_id, index, original, text, fork_id)
    error = await _run_turn(session_id=fork_id, text=text, user=user)
    if error is not None:
        await visitor.set_notice(request, fork_id, error=error, draft=_kept(text))
    else:
        await visitor.set_notice(
            request,
            fork_id,
            info="Your edited message was sent in this copy of the conversation; "
            "the original is unchanged.",
        )
    return redirect("chat:conversation", session_id=fork_id)
