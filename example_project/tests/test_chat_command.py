"""``manage.py chat [--user USERNAME] SESSION_ID``: the web page's memory, in a terminal."""

from __future__ import annotations

import io

import pytest
from django.core.management import CommandError, call_command
from django.test import Client
from django.urls import reverse
from openai_django_sessions.models import AgentSession

pytestmark = pytest.mark.django_db


def chat(session_id: str, *lines: str, user: str | None = None) -> str:
    out = io.StringIO()
    options = ["--user", user] if user else []
    stdin = io.StringIO("\n".join(lines) + "\n")
    call_command("chat", *options, session_id, stdin=stdin, stdout=out)
    return out.getvalue()


def test_a_conversation_in_the_terminal_remembers() -> None:
    out = chat("term-1", "My name is Ada", "What is my name?")
    assert "you> My name is Ada\nassistant> Offline model: Nice to meet you, Ada." in out
    assert "assistant> Offline model: Your name is Ada." in out


def test_history_is_printed_on_start_and_kept_between_runs() -> None:
    chat("term-2", "My name is Ada")
    out = chat("term-2", "What did I say before?")
    history, _, rest = out.partition("Commands:")
    assert "--- history: 2 stored messages" in history
    assert "you> My name is Ada" in history
    assert "Before this you said: “My name is Ada”" in rest


def test_the_terminal_continues_a_conversation_started_on_the_page(
    client: Client, session_id: str
) -> None:
    client.post(reverse("chat:send", args=[session_id]), {"message": "My name is Ada"})
    out = chat(session_id, "What is my name?", user="ada")
    assert "you> My name is Ada" in out.partition("Commands:")[0]
    assert "Your name is Ada" in out
    page = client.get(reverse("chat:conversation", args=[session_id])).content.decode()
    assert "Your name is Ada. You told me earlier." in page  # and the page sees the terminal's turn


def test_tool_calls_are_printed_with_arguments_and_output() -> None:
    out = chat("term-3", "what is 6 * 7?")
    assert '  [tool] calculate(expression="6 * 7") -> 6 * 7 = 42' in out


def test_undo_and_clear_commands() -> None:
    out = chat("term-4", "My name is Ada", "what is 1+1", "/undo", "/history")
    assert "(removed 4 items)" in out
    history = out.rpartition("--- history:")[2]
    assert history.splitlines()[1:] == [
        "you> My name is Ada",
        "assistant> Offline model: Nice to meet you, Ada. I will remember your name.",
        "---",
    ]
    out = chat("term-4", "/clear", "What is my name?")
    assert "(conversation cleared)" in out
    assert "You have not told me your name yet." in out


def test_quit_stops_reading_and_unknown_commands_are_explained() -> None:
    out = chat("term-5", "/nope", "/quit", "My name is Ada")
    assert "(unknown command /nope)" in out
    assert "Ada" not in out


def test_invalid_session_id_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="session_id"):
        call_command("chat", "x" * 300, stdin=io.StringIO(""), stdout=io.StringIO())


def test_with_user_a_new_conversation_is_theirs_and_listed_on_their_page(client: Client) -> None:
    chat("term-6", "My name is Ada", user="ada")
    assert AgentSession.objects.get(session_id="term-6").owner.username == "ada"
    assert "term-6" in client.get(reverse("chat:list")).content.decode()


def test_with_user_another_users_conversation_is_refused_and_unchanged(
    client: Client, session_id: str, stranger: Client
) -> None:
    client.post(reverse("chat:send", args=[session_id]), {"message": "secret plans"})
    with pytest.raises(CommandError, match=f"conversation {session_id} belongs to another user"):
        chat(session_id, "what did I say?", user="bob")
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2


def test_without_user_any_conversation_opens_and_a_new_one_has_no_owner(
    client: Client, session_id: str
) -> None:
    client.post(reverse("chat:send", args=[session_id]), {"message": "My name is Ada"})
    assert "you> My name is Ada" in chat(session_id, "/quit")
    chat("term-7", "hello")
    assert AgentSession.objects.get(session_id="term-7").owner is None


def test_an_unknown_user_is_a_command_error_saying_how_to_create_one() -> None:
    with pytest.raises(CommandError, match=r"no user 'zed'.*demo_user --username zed"):
        chat("term-8", "hello", user="zed")


@pytest.mark.django_db(transaction=True)
async def test_a_line_sent_while_another_turn_holds_the_conversation_is_refused() -> None:
    """The page (or another terminal) is writing a reply: the line is not stored."""
    from asgiref.sync import sync_to_async

    from chat import agent

    await sync_to_async(chat)("term-busy", "My name is Ada")
    err = io.StringIO()

    def send_line() -> None:
        stdin = io.StringIO("What is my name?\n")
        call_command("chat", "term-busy", stdin=stdin, stdout=io.StringIO(), stderr=err)

    async with agent.session_for("term-busy").exclusive(timeout=0.0):
        await sync_to_async(send_line, thread_sensitive=False)()

    assert "a reply is still being written in this conversation elsewhere" in err.getvalue()
    items = await agent.session_for("term-busy").get_items()
    assert len(items) == 2  # the first exchange only


@pytest.mark.django_db(transaction=True)
async def test_undo_and_clear_wait_while_another_turn_holds_the_conversation() -> None:
    from asgiref.sync import sync_to_async

    from chat import agent

    await sync_to_async(chat)("term-held", "My name is Ada")
    err = io.StringIO()

    def send_lines() -> None:
        stdin = io.StringIO("/undo\n/clear\n")
        call_command("chat", "term-held", stdin=stdin, stdout=io.StringIO(), stderr=err)

    async with agent.session_for("term-held").exclusive(timeout=0.0):
        await sync_to_async(send_lines, thread_sensitive=False)()

    assert err.getvalue().count("still being written in this conversation elsewhere") == 2
    assert len(await agent.session_for("term-held").get_items()) == 2
