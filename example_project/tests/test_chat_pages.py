"""The conversation page as people use it: streamed replies, failed turns, titles, edits.

Through Django's test client; the browser tests (``test_browser``) show the same
in Chromium, closing a tab mid-reply included.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
from typing import Any

import pytest
from agents.exceptions import ModelBehaviorError
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.test import Client
from django.urls import reverse
from openai_django_sessions.models import AgentSession

from chat import history
from chat.offline_model import OfflineModel
from tests.serving import PROJECT_DIR

pytestmark = pytest.mark.django_db


def send(client: Client, session_id: str, text: str) -> None:
    assert (
        client.post(reverse("chat:send", args=[session_id]), {"message": text}).status_code == 302
    )


def page(client: Client, session_id: str) -> str:
    response = client.get(reverse("chat:conversation", args=[session_id]))
    assert response.status_code == 200
    return response.content.decode()


def stored_texts(session_id: str) -> list[str]:
    row = AgentSession.objects.get(session_id=session_id)
    items = row.messages.order_by("pk").values_list("data", flat=True)
    return [
        history.message_text(item)
        for item in items
        if history.is_user_message(item) or history.is_assistant_message(item)
    ]


def events(response) -> list[tuple[str, dict]]:
    """The server-sent events of a streamed response, as (name, data) pairs."""

    async def read() -> list[bytes]:
        return [chunk async for chunk in response.streaming_content]

    body = b"".join(async_to_sync(read)()).decode()
    found = []
    for block in body.strip().split("\n\n"):
        name = re.search(r"^event: (.*)$", block, re.M)
        data = re.search(r"^data: (.*)$", block, re.M)
        assert name is not None and data is not None, block
        found.append((name[1], json.loads(data[1])))
    return found


@pytest.fixture
def failing_model(monkeypatch: pytest.MonkeyPatch) -> None:
    """The offline model fails once, as a real model does when its server is unreachable."""
    calls = {"count": 0}
    respond = OfflineModel.get_response
    stream = OfflineModel.stream_response

    async def get_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["count"] += 1
        if calls["count"] == 1:
            raise ModelBehaviorError("Connection error.")
        return await respond(self, *args, **kwargs)

    async def stream_response(self, *args, **kwargs):  # type: ignore[no-untyped-def]
        calls["count"] += 1
        if calls["count"] == 1:
            raise ModelBehaviorError("Connection error.")
        async for event in stream(self, *args, **kwargs):
            yield event

    monkeypatch.setattr(OfflineModel, "get_response", get_response)
    monkeypatch.setattr(OfflineModel, "stream_response", stream_response)


# -- streamed replies -------------------------------------------------------------


def test_a_streamed_turn_sends_the_reply_in_pieces_and_stores_it_whole(
    client: Client, session_id: str
) -> None:
    response = client.post(
        reverse("chat:stream", args=[session_id]), {"message": "What is 12 * (3 + 4)?"}
    )
    assert response["Content-Type"] == "text/event-stream"
    sent = events(response)
    names = [name for name, _ in sent]
    assert names[0] == "started" and names[-1] == "done"
    assert names.index("tool_call") < names.index("tool_output") < names.index("text")
    call = dict(sent)["tool_call"]
    assert (call["name"], call["arguments"]) == ("calculate", 'expression="12 * (3 + 4)"')
    pieces = [data["text"] for name, data in sent if name == "text"]
    assert len(pieces) > 5  # word by word
    reply = "".join(pieces)
    assert reply == "Offline model: From calculate: 12 * (3 + 4) = 84"
    assert stored_texts(session_id) == ["What is 12 * (3 + 4)?", reply]


def test_a_refused_streamed_message_redirects_to_the_page_with_the_reason(
    client: Client, session_id: str
) -> None:
    response = client.post(reverse("chat:stream", args=[session_id]), {"message": " "})
    assert response.status_code == 302
    assert "Type a message first." in page(client, session_id)


def test_the_form_posts_to_the_plain_view_so_the_page_works_without_javascript(
    client: Client, session_id: str
) -> None:
    html = page(client, session_id)
    send_url = reverse("chat:send", args=[session_id])
    stream_url = reverse("chat:stream", args=[session_id])
    assert f'action="{send_url}" data-stream="{stream_url}"' in html
    send(client, session_id, "My name is Ada")
    assert "Nice to meet you, Ada." in page(client, session_id)


# -- a failed turn leaves no trace ------------------------------------------------


@pytest.mark.usefixtures("failing_model")
def test_a_failed_turn_stores_nothing_offers_the_text_back_and_a_retry_stores_it_once(
    client: Client, session_id: str
) -> None:
    send(client, session_id, "My name is Ada")
    html = page(client, session_id)
    assert "The model could not answer just now." in html
    assert ">My name is Ada</textarea>" in html
    assert 'data-role="user"' not in html
    assert not AgentSession.objects.get(session_id=session_id).messages.exists()

    send(client, session_id, "My name is Ada")
    assert stored_texts(session_id) == [
        "My name is Ada",
        "Offline model: Nice to meet you, Ada. I will remember your name.",
    ]


@pytest.mark.usefixtures("failing_model")
def test_a_failed_streamed_turn_says_failed_stores_nothing_and_a_retry_stores_it_once(
    client: Client, session_id: str
) -> None:
    url = reverse("chat:stream", args=[session_id])
    assert [name for name, _ in events(client.post(url, {"message": "hello"}))] == [
        "started",
        "failed",
    ]
    assert not AgentSession.objects.get(session_id=session_id).messages.exists()
    html = page(client, session_id)  # where the page goes on "failed"
    assert "The model could not answer just now." in html
    assert ">hello</textarea>" in html

    assert [name for name, _ in events(client.post(url, {"message": "hello"}))][-1] == "done"
    assert stored_texts(session_id)[:1] == ["hello"]
    assert len(stored_texts(session_id)) == 2


# -- the page -----------------------------------------------------------------------


def test_the_heading_and_the_tab_show_the_title_not_the_id(client: Client, session_id: str) -> None:
    assert "<title>New conversation · Chat that remembers</title>" in page(client, session_id)
    send(client, session_id, "My name is Ada")
    html = page(client, session_id)
    assert "<title>My name is Ada · Chat that remembers</title>" in html
    assert re.search(r'<h1 data-testid="title" dir="auto">My name is Ada</h1>', html)
    assert session_id not in html.partition("<h1")[2].partition("</h1>")[0]


def test_a_conversation_is_renamed_from_the_page(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    url = reverse("chat:rename", args=[session_id])
    assert client.post(url, {"title": "  Ada's\nintroduction  "}).status_code == 302
    html = page(client, session_id)
    assert "<title>Ada&#x27;s introduction · Chat that remembers</title>" in html
    assert "Conversation renamed." in html
    assert "Ada&#x27;s introduction" in client.get(reverse("chat:list")).content.decode()

    client.post(url, {"title": "x" * 256})
    assert "Titles are limited to 255 characters; this one has 256." in page(client, session_id)
    client.post(url, {"title": "  "})
    assert "Type a title first." in page(client, session_id)
    assert AgentSession.objects.get(session_id=session_id).title == "Ada's introduction"


def test_another_users_conversation_cannot_be_renamed(
    client: Client, session_id: str, stranger: Client
) -> None:
    send(client, session_id, "My name is Ada")
    response = stranger.post(reverse("chat:rename", args=[session_id]), {"title": "mine"})
    assert response.status_code == 404
    assert AgentSession.objects.get(session_id=session_id).title == "My name is Ada"


def test_the_count_is_of_the_bubbles_shown_with_tool_calls_apart(
    client: Client, session_id: str
) -> None:
    send(client, session_id, "My name is Ada")
    send(client, session_id, "What is 12 * (3 + 4)?")  # a tool call and its output: 6 items
    html = page(client, session_id)
    bubbles = len(re.findall(r'class="bubble (?:user|assistant)"', html))
    assert bubbles == 4
    assert "4 messages, 1 tool call, last activity" in html
    assert "4 messages" in client.get(reverse("chat:list")).content.decode()


def test_the_admin_link_is_shown_to_staff_only(client: Client, session_id: str) -> None:
    admin_link = f'href="{reverse("admin:index")}"'
    assert admin_link not in page(client, session_id)
    assert admin_link not in Client().get(reverse("login")).content.decode()
    staff = get_user_model().objects.create_user("staffer", is_staff=True)
    staff_client = Client()
    staff_client.force_login(staff)
    assert admin_link in staff_client.get(reverse("chat:list")).content.decode()


def test_the_terminal_command_is_folded_away_below_the_conversation(
    client: Client, session_id: str
) -> None:
    html = page(client, session_id)
    assert html.index('class="composer"') < html.index('<details class="terminal">')
    assert html.index('<details class="terminal">') < html.index('data-testid="terminal-command"')
    # No break inside a word: only between the command's words (a long path scrolls).
    assert "overflow-wrap: normal; word-break: normal; overflow-x: auto;" in html


def test_the_error_sits_next_to_the_box(client: Client, session_id: str) -> None:
    for text in ["My name is Ada", "What is my name?"]:
        send(client, session_id, text)
    send(client, session_id, "x" * 4001)
    html = page(client, session_id)
    assert html.rindex('data-role="assistant"') < html.index('data-testid="error"')
    assert html.index('data-testid="error"') < html.index('class="composer"')


# -- Edit and resend, sent twice ---------------------------------------------------


def test_the_same_edit_sent_twice_makes_one_copy(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    post = {"message": "My name is Grace", "original": "My name is Ada"}
    first = client.post(reverse("chat:edit", args=[session_id, 0]), post)
    again = client.post(reverse("chat:edit", args=[session_id, 0]), post)  # Back, then Send
    assert again.url == first.url
    assert AgentSession.objects.filter(forked_from=session_id).count() == 1
    fork = first.url.rstrip("/").rsplit("/", 1)[1]
    assert "This edit was already sent: here is the copy it made." in page(client, fork)

    changed = dict(post, message="My name is Hopper")  # Back, a new text, Send: a new copy
    client.post(reverse("chat:edit", args=[session_id, 0]), changed)
    assert AgentSession.objects.filter(forked_from=session_id).count() == 2


# -- settings and pages ----------------------------------------------------------------


def test_debug_is_off_unless_asked_for() -> None:
    env = {key: value for key, value in os.environ.items() if key != "DJANGO_DEBUG"}
    code = "import chatsite.settings as s; print(s.DEBUG)"
    off = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env=env,
        text=True,
        capture_output=True,
        check=True,
    )
    on = subprocess.run(
        [sys.executable, "-c", code],
        cwd=PROJECT_DIR,
        env=dict(env, DJANGO_DEBUG="1"),
        text=True,
        capture_output=True,
        check=True,
    )
    assert (off.stdout.strip(), on.stdout.strip()) == ("False", "True")


def test_a_post_too_large_to_read_gets_a_page_for_people_even_with_debug_on(
    client: Client, session_id: str, settings
) -> None:
    settings.DEBUG = True
    response = client.post(reverse("chat:send", args=[session_id]), {"message": "x" * 3_000_000})
    assert response.status_code == 400
    html = response.content.decode()
    assert 'data-testid="bad-request"' in html
    assert "RequestDataTooBig" not in html and "Traceback" not in html


# -- one turn at a time --------------------------------------------------------------


async def ada_told_her_name() -> tuple[Any, Any, str]:
    """Ada signed in (an ``AsyncClient``), in a new conversation where she gave her name."""
    from asgiref.sync import sync_to_async
    from django.test import AsyncClient

    user = await sync_to_async(get_user_model().objects.create)(username="ada")
    client = AsyncClient()
    await client.aforce_login(user)
    session_id = (await client.post(reverse("chat:new"))).url.rstrip("/").rsplit("/", 1)[1]
    await client.post(reverse("chat:send", args=[session_id]), {"message": "My name is Ada"})
    return user, client, session_id


@pytest.mark.django_db(transaction=True)
async def test_a_send_while_another_turn_holds_the_conversation_is_refused_and_kept() -> None:
    """Another tab, process or the terminal holds the conversation's lease: the send
    and the streamed send store nothing and say so, the text back in the box."""
    from asgiref.sync import sync_to_async

    from chat import agent

    user, client, session_id = await ada_told_her_name()
    conversation = reverse("chat:conversation", args=[session_id])

    async with agent.session_for(session_id, user).exclusive(timeout=0.0):
        await client.post(reverse("chat:send", args=[session_id]), {"message": "first tab"})
        html = (await client.get(conversation)).content.decode()
        assert "A reply is still being written in this conversation" in html
        assert ">first tab</textarea>" in html
        streamed = await client.post(
            reverse("chat:stream", args=[session_id]), {"message": "second tab"}
        )
        sent = b"".join([chunk async for chunk in streamed.streaming_content]).decode()
        assert "event: failed" in sent
        html = (await client.get(conversation)).content.decode()
        assert "A reply is still being written in this conversation" in html
        assert ">second tab</textarea>" in html

    count = (
        await AgentSession.objects.filter(session_id=session_id).values_list("session_id").acount()
    )
    assert count == 1
    texts = await sync_to_async(stored_texts)(session_id)
    assert texts == [
        "My name is Ada",
        "Offline model: Nice to meet you, Ada. I will remember your name.",
    ]
    await client.post(reverse("chat:send", args=[session_id]), {"message": "first tab"})
    assert (await sync_to_async(stored_texts)(session_id))[2] == "first tab"  # free again


@pytest.mark.django_db(transaction=True)
async def test_undo_clear_and_delete_wait_while_another_turn_holds_the_conversation() -> None:
    """A reply streaming in another tab holds the conversation: undoing, clearing or
    deleting it then changes nothing and says why; once the reply ends they work."""
    from asgiref.sync import sync_to_async

    from chat import agent

    user, client, session_id = await ada_told_her_name()
    conversation = reverse("chat:conversation", args=[session_id])
    refusals = {
        "chat:undo": "Wait for the reply before undoing.",
        "chat:clear": "Wait for the reply before clearing.",
        "chat:delete": "Wait for the reply before deleting.",
    }

    async with agent.session_for(session_id, user).exclusive(timeout=0.0):
        for name, refusal in refusals.items():
            response = await client.post(reverse(name, args=[session_id]))
            assert response.url == conversation, name
            html = (await client.get(conversation)).content.decode()
            assert refusal in html, name
            assert await sync_to_async(stored_texts)(session_id) == [
                "My name is Ada",
                "Offline model: Nice to meet you, Ada. I will remember your name.",
            ], name
    listed = (await client.get(reverse("chat:list"))).content.decode()
    assert session_id in listed

    await client.post(reverse("chat:undo", args=[session_id]))
    assert await sync_to_async(stored_texts)(session_id) == []
