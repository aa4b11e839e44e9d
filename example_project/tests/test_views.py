"""Every view through Django's test client, bad input included."""

from __future__ import annotations

import io
import re

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse
from openai_django_sessions.models import AgentSession

from chat import visitor

pytestmark = pytest.mark.django_db


def send(client: Client, session_id: str, text: str, **extra: str):
    return client.post(reverse("chat:send", args=[session_id]), {"message": text, **extra})


def page(client: Client, session_id: str) -> str:
    response = client.get(reverse("chat:conversation", args=[session_id]))
    assert response.status_code == 200
    return response.content.decode()


def refused(client: Client, response, session_id: str) -> str:
    """The page a refused POST redirects to (never a page at the POST's URL)."""
    assert response.status_code == 302
    assert response.url == reverse("chat:conversation", args=[session_id])
    return page(client, session_id)


# -- conversation list and new conversation ----------------------------------


def test_empty_list_offers_a_new_conversation(client: Client) -> None:
    response = client.get(reverse("chat:list"))
    assert response.status_code == 200
    assert "No conversations yet" in response.content.decode()
    assert "New conversation" in response.content.decode()


def test_new_conversation_gets_a_web_id_and_redirects_to_it(client: Client) -> None:
    response = client.post(reverse("chat:new"))
    assert response.status_code == 302
    session_id = response.url.rstrip("/").rsplit("/", 1)[1]
    assert visitor.SESSION_ID.fullmatch(session_id)
    assert session_id in client.session[visitor.CONVERSATIONS]


def test_new_conversation_needs_post(client: Client) -> None:
    assert client.get(reverse("chat:new")).status_code == 405


def test_list_shows_own_conversations_newest_activity_first_with_counts(client: Client) -> None:
    second = client.post(reverse("chat:new")).url.rstrip("/").rsplit("/", 1)[1]
    send(client, second, "my name is Second")
    first = client.post(reverse("chat:new")).url.rstrip("/").rsplit("/", 1)[1]
    send(client, first, "my name is First")
    send(client, first, "what is 1 + 1?")
    empty = client.post(reverse("chat:new")).url.rstrip("/").rsplit("/", 1)[1]
    html = client.get(reverse("chat:list")).content.decode()
    assert html.index(first) < html.index(second)
    assert empty not in html
    assert "my name is First" in html  # titled by its first message
    assert "4 messages" in html  # 2 exchanges; the tool call and its output are no bubbles
    assert "2 messages" in html


def test_list_hides_other_users_conversations(
    client: Client, session_id: str, stranger: Client
) -> None:
    send(client, session_id, "secret plans")
    html = stranger.get(reverse("chat:list")).content.decode()
    assert session_id not in html
    assert "secret plans" not in html


def test_the_list_shows_the_stored_title(client: Client, session_id: str) -> None:
    send(client, session_id, "Plan a trip to Lisbon\nwith three stops")
    assert AgentSession.objects.get(session_id=session_id).title == "Plan a trip to Lisbon"
    AgentSession.objects.filter(session_id=session_id).update(title="Lisbon, renamed")
    assert "Lisbon, renamed" in client.get(reverse("chat:list")).content.decode()


def test_stored_conversations_belong_to_the_signed_in_user(client: Client, session_id: str) -> None:
    send(client, session_id, "hello")
    assert AgentSession.objects.get(session_id=session_id).owner.username == "ada"


def test_a_conversation_started_elsewhere_by_the_user_is_listed_and_opens(
    client: Client, db: None
) -> None:
    from django.contrib.auth import get_user_model

    from chat import agent

    ada = get_user_model().objects.get(username="ada")
    async_to_sync(agent.run_turn)("terminal-1", "My name is Ada", ada)
    assert "terminal-1" in client.get(reverse("chat:list")).content.decode()
    assert "My name is Ada" in page(client, "terminal-1")


# -- signing in -----------------------------------------------------------------


def test_a_users_pages_are_never_cached(client: Client, session_id: str) -> None:
    for url in [reverse("chat:list"), reverse("chat:conversation", args=[session_id])]:
        assert "no-store" in client.get(url)["Cache-Control"], url


@pytest.mark.parametrize("name", ["chat:list", "chat:new"])
def test_pages_need_a_signed_in_user(name: str, db: None) -> None:
    response = Client().post(reverse(name)) if name == "chat:new" else Client().get(reverse(name))
    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


def test_conversation_urls_need_a_signed_in_user(client: Client, session_id: str) -> None:
    send(client, session_id, "hello")
    anonymous = Client()
    for name in ["chat:conversation", "chat:status", "chat:clear"]:
        response = anonymous.get(reverse(name, args=[session_id]))
        assert response.status_code == 302, name
        assert response.url.startswith(reverse("login")), name
    assert send(anonymous, session_id, "hi").status_code == 302
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2


def test_sign_in_with_the_demo_user_then_sign_out(db: None) -> None:
    out = io.StringIO()
    call_command("demo_user", stdout=out)
    password = re.search(r"Sign in as 'demo', password (\S+) \(shown once\)", out.getvalue())
    assert password is not None, out.getvalue()
    browser = Client()
    form = browser.get(reverse("login")).content.decode()
    assert 'name="username"' in form and "demo_user --username" in form
    wrong = browser.post(reverse("login"), {"username": "demo", "password": "nope"})
    assert "didn't match" in wrong.content.decode()
    response = browser.post(
        reverse("login"), {"username": "demo", "password": password[1]}, follow=True
    )
    html = response.content.decode()
    assert 'data-testid="signed-in">demo<' in html
    assert "Your conversations" in html
    response = browser.post(reverse("logout"))
    assert response.status_code == 302 and response.url == reverse("login")
    assert browser.get(reverse("chat:list")).status_code == 302


def test_demo_user_is_created_once_and_not_staff(db: None) -> None:
    call_command("demo_user", "--username", "carol", stdout=io.StringIO())
    carol = get_user_model().objects.get(username="carol")
    assert not carol.is_staff and carol.has_usable_password()
    out = io.StringIO()
    call_command("demo_user", "--username", "carol", stdout=out)
    assert "password printed when it was created" in out.getvalue()


# -- conversation page --------------------------------------------------------


def test_new_conversation_page_is_empty_with_a_message_box(client: Client, session_id: str) -> None:
    html = page(client, session_id)
    assert "No messages yet" in html
    assert 'name="message"' in html
    assert f"manage.py chat --user ada {session_id}" in html


def test_unknown_conversation_is_404(client: Client, db: None) -> None:
    assert (
        client.get(reverse("chat:conversation", args=["web-0000000000000000"])).status_code == 404
    )
    assert client.get(reverse("chat:conversation", args=["not-an-id"])).status_code == 404


def test_someone_elses_conversation_is_404_even_if_it_exists(
    client: Client, session_id: str, stranger: Client
) -> None:
    send(client, session_id, "hello")
    assert stranger.get(reverse("chat:conversation", args=[session_id])).status_code == 404
    assert send(stranger, session_id, "hi").status_code == 404
    assert stranger.post(reverse("chat:clear", args=[session_id])).status_code == 404
    assert stranger.post(reverse("chat:undo", args=[session_id])).status_code == 404
    assert stranger.get(reverse("chat:status", args=[session_id])).status_code == 404
    assert stranger.post(reverse("chat:delete", args=[session_id])).status_code == 404
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2
    html = stranger.get(reverse("chat:conversation", args=[session_id])).content.decode()
    assert 'data-testid="not-found"' in html and "hello" not in html


def test_someone_elses_new_conversation_is_404_too(
    client: Client, session_id: str, stranger: Client
) -> None:
    # Not stored yet, so no owner: it is in the first user's session only.
    assert stranger.get(reverse("chat:conversation", args=[session_id])).status_code == 404


def test_the_library_refuses_what_the_views_check_missed(
    client: Client, session_id: str, stranger: Client, monkeypatch, settings
) -> None:
    """The views' ``DjangoSession`` has the user as owner: a missed check is a 403 page."""
    settings.DEBUG = True
    send(client, session_id, "hello")

    async def owned(request, session_id: str) -> object:
        return await request.auser()

    monkeypatch.setattr("chat.views._require_owned", owned)
    response = stranger.get(reverse("chat:conversation", args=[session_id]))
    assert response.status_code == 403
    html = response.content.decode()
    assert 'data-testid="forbidden"' in html and "hello" not in html
    assert send(stranger, session_id, "hi").status_code == 403
    assert stranger.post(reverse("chat:clear", args=[session_id])).status_code == 403
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2


# -- sending --------------------------------------------------------------------


def test_sending_runs_the_agent_and_shows_both_messages(client: Client, session_id: str) -> None:
    response = send(client, session_id, "My name is Ada")
    assert response.status_code == 302
    assert response.url == reverse("chat:conversation", args=[session_id])
    html = page(client, session_id)
    assert 'data-role="user" dir="auto">My name is Ada<' in html
    assert "Offline model: Nice to meet you, Ada." in html


def test_second_reply_depends_on_the_first_message(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    send(client, session_id, "What is my name?")
    assert "Your name is Ada. You told me earlier." in page(client, session_id)


def test_tool_calls_are_shown_collapsed_with_arguments_and_output(
    client: Client, session_id: str
) -> None:
    send(client, session_id, "What time is it in Tokyo?")
    html = page(client, session_id)
    assert '<details class="tool" data-role="tool">' in html  # no "open": collapsed
    assert "Tool call: current_time(city=&quot;Tokyo&quot;)" in html
    assert "Tokyo (Asia/Tokyo): " in html
    assert (
        html.index('data-role="user"')
        < html.index('<details class="tool"')
        < html.index('data-role="assistant"')
    )


def test_empty_message_is_refused(client: Client, session_id: str) -> None:
    html = refused(client, send(client, session_id, "   "), session_id)
    assert "Type a message first." in html
    assert not AgentSession.objects.filter(session_id=session_id).exists()


def test_missing_message_field_is_refused(client: Client, session_id: str) -> None:
    response = client.post(reverse("chat:send", args=[session_id]), {})
    assert "Type a message first." in refused(client, response, session_id)


def test_too_long_message_is_refused_and_kept_in_the_box(client: Client, session_id: str) -> None:
    html = refused(client, send(client, session_id, "x" * 4001), session_id)
    assert "Messages are limited to 4,000 characters; this one has 4,001." in html
    assert ">" + "x" * 4001 + "</textarea>" in html
    assert not AgentSession.objects.filter(session_id=session_id).exists()


def test_the_limit_counts_a_new_line_once(client: Client, session_id: str) -> None:
    # Browsers post new lines as CRLF; the page's counter counts one character each.
    assert send(client, session_id, "x\r\n" * 1999 + "x").status_code == 302
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2


def test_an_error_is_shown_once_and_reload_does_not_send_again(
    client: Client, session_id: str
) -> None:
    assert "Type a message first." in refused(client, send(client, session_id, ""), session_id)
    assert "Type a message first." not in page(client, session_id)
    assert not AgentSession.objects.filter(session_id=session_id).exists()


def test_the_box_has_no_length_cut_but_shows_the_limit(client: Client, session_id: str) -> None:
    html = page(client, session_id)
    box = re.search(r"<textarea[^>]*>", html)
    assert box is not None and "maxlength" not in box[0]  # a long paste is not cut mid-word
    assert 'data-max-length="4000"' in html
    assert "up to 4000 characters" in html


def test_a_message_the_session_refuses_is_shown_and_kept(
    client: Client, session_id: str, monkeypatch
) -> None:
    """What ``DjangoSession`` refuses (``ValueError``/``TypeError``) is the visitor's to fix.

    On PostgreSQL it refuses U+0000: the browser test sends one to a real server.
    """

    async def refusing(session_id: str, text: str, owner: object = None) -> None:
        raise ValueError("items[0] is nested 31 levels deep")

    monkeypatch.setattr("chat.agent.run_turn", refusing)
    html = refused(client, send(client, session_id, "hello"), session_id)
    assert "This message could not be stored, so it was not sent." in html
    assert "items[0]" not in html  # the library's reason is for the log
    assert ">hello</textarea>" in html


def test_a_null_character_is_refused_on_every_database_and_taken_out_of_the_box(
    client: Client, session_id: str
) -> None:
    """HTML shows U+0000 in a box as U+FFFD: the box gets the text without it, and says so."""
    html = refused(client, send(client, session_id, "nul \x00 here"), session_id)
    assert "Your message contained an invisible null character" in html
    assert ">nul  here</textarea>" in html
    assert "\x00" not in html and "\ufffd" not in html
    assert not AgentSession.objects.filter(session_id=session_id).exists()


def test_sending_needs_post(client: Client, session_id: str) -> None:
    assert client.get(reverse("chat:send", args=[session_id])).status_code == 405


def test_model_failure_is_shown_not_raised(client: Client, session_id: str, monkeypatch) -> None:
    from agents.exceptions import ModelBehaviorError

    async def broken(session_id: str, text: str, owner: object = None) -> None:
        raise ModelBehaviorError("boom")

    monkeypatch.setattr("chat.agent.run_turn", broken)
    html = refused(client, send(client, session_id, "hello"), session_id)
    assert "The model could not answer just now." in html
    assert "boom" not in html.partition("<textarea")[0]  # the reason is for the log
    assert ">hello</textarea>" in html


# -- CSRF -----------------------------------------------------------------------


def test_posts_without_csrf_token_are_forbidden(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("eve"))
    assert client.post(reverse("chat:new")).status_code == 403
    # A visitor with a conversation, but a forged form:
    session_id = visitor.new_session_id()
    session = client.session
    session[visitor.CONVERSATIONS] = [session_id]
    session.save()
    for name in ["chat:send", "chat:undo", "chat:clear"]:
        response = client.post(reverse(name, args=[session_id]), {"message": "hi"})
        assert response.status_code == 403, name
    assert not AgentSession.objects.filter(session_id=session_id).exists()


def test_posts_with_the_pages_csrf_token_pass(db: None) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(get_user_model().objects.create_user("eve"))
    client.get(reverse("chat:list"))
    token = client.cookies["csrftoken"].value
    response = client.post(reverse("chat:new"), {"csrfmiddlewaretoken": token})
    assert response.status_code == 302
    session_id = response.url.rstrip("/").rsplit("/", 1)[1]
    response = send(client, session_id, "hello", csrfmiddlewaretoken=token)
    assert response.status_code == 302


# -- undo and clear -------------------------------------------------------------


def test_undo_removes_the_last_exchange_only(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    send(client, session_id, "what is 6 * 7?")
    response = client.post(reverse("chat:undo", args=[session_id]))
    assert response.status_code == 302
    html = page(client, session_id)
    assert "My name is Ada" in html
    assert "6 * 7" not in html
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2


def test_undo_on_empty_conversation_is_harmless(client: Client, session_id: str) -> None:
    assert client.post(reverse("chat:undo", args=[session_id])).status_code == 302


def test_clear_asks_first_then_empties_the_conversation(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    question = client.get(reverse("chat:clear", args=[session_id])).content.decode()
    assert "Clear this conversation?" in question
    assert "Its 2 stored messages will be deleted" in question
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2
    assert client.post(reverse("chat:clear", args=[session_id])).status_code == 302
    assert "No messages yet" in page(client, session_id)
    assert not AgentSession.objects.filter(session_id=session_id).exists()


def test_delete_asks_first_then_removes_the_conversation(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    question = client.get(reverse("chat:delete", args=[session_id])).content.decode()
    assert "Delete this conversation?" in question
    assert AgentSession.objects.filter(session_id=session_id).exists()
    response = client.post(reverse("chat:delete", args=[session_id]), follow=True)
    assert response.redirect_chain == [(reverse("chat:list"), 302)]
    assert "Conversation deleted." in response.content.decode()
    assert session_id not in response.content.decode()
    assert not AgentSession.objects.filter(session_id=session_id).exists()
    assert client.get(reverse("chat:conversation", args=[session_id])).status_code == 404


def test_new_conversation_reuses_an_empty_one(client: Client, session_id: str) -> None:
    assert client.post(reverse("chat:new")).url == reverse("chat:conversation", args=[session_id])
    send(client, session_id, "hello")
    other = client.post(reverse("chat:new")).url
    assert other != reverse("chat:conversation", args=[session_id])
    assert client.post(reverse("chat:new")).url == other
    assert len(client.session[visitor.CONVERSATIONS]) == 2


def test_empty_conversations_are_not_listed(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    assert session_id in client.get(reverse("chat:list")).content.decode()
    client.post(reverse("chat:clear", args=[session_id]))  # or pruned by an operator
    html = client.get(reverse("chat:list")).content.decode()
    assert session_id not in html
    assert "No conversations yet" in html
    # "New conversation" brings the visitor back to it rather than adding another.
    assert client.post(reverse("chat:new")).url == reverse("chat:conversation", args=[session_id])


def test_undo_needs_post(client: Client, session_id: str) -> None:
    assert client.get(reverse("chat:undo", args=[session_id])).status_code == 405


# -- status ---------------------------------------------------------------------


def test_status_reports_no_pending_turn_and_the_item_count(client: Client, session_id: str) -> None:
    send(client, session_id, "hello")
    response = client.get(reverse("chat:status", args=[session_id]))
    assert response.json() == {"pending": False, "items": 2}


def test_recent_activity_reads_just_now(client: Client, session_id: str) -> None:
    send(client, session_id, "hello")
    assert "last activity just now" in page(client, session_id)
    assert "just now" in client.get(reverse("chat:list")).content.decode()


def test_older_activity_reads_as_time_ago() -> None:
    from datetime import timedelta

    from django.utils import timezone

    from chat.templatetags.chat_format import ago

    assert ago(timezone.now() - timedelta(minutes=5, seconds=3)) == "5\xa0minutes ago"
    assert ago(None) == ""


# -- what the page shows --------------------------------------------------------


def test_the_terminal_command_names_this_python_and_this_database(
    client: Client, session_id: str, monkeypatch
) -> None:
    import sys

    from django.conf import settings

    html = page(client, session_id)
    database = settings.DATABASES["default"]["NAME"]
    assert f"DATABASE_URL=sqlite:///{database} {sys.executable} " in html
    assert f"{settings.BASE_DIR / 'manage.py'} chat --user ada {session_id}" in html
    monkeypatch.setenv("DATABASE_URL", "postgres://chat:s3cret@db.example:5432/chat")
    html = page(client, session_id)
    assert "DATABASE_URL=postgres://chat:PASSWORD@db.example:5432/chat " in html
    assert "s3cret" not in html


def test_bubbles_and_the_box_follow_the_texts_direction(client: Client, session_id: str) -> None:
    send(client, session_id, "שלום")
    html = page(client, session_id)
    assert 'data-role="user" dir="auto">שלום<' in html
    assert 'data-role="assistant" dir="auto">' in html
    assert '<textarea name="message" dir="auto"' in html


def test_run_in_background_stays_ticked_once_chosen(client: Client, session_id: str) -> None:
    assert 'value="1"> Run in background' in page(client, session_id)
    send(client, session_id, "  ", background="1")  # refused, but the choice is kept
    assert 'value="1" checked> Run in background' in page(client, session_id)
    send(client, session_id, "hello")
    assert 'value="1"> Run in background' in page(client, session_id)


def test_unknown_pages_are_friendly_even_with_debug_on(client: Client, settings) -> None:
    settings.DEBUG = True
    for url in ["/c/web-0000000000000000/", "/no/such/page/"]:
        response = client.get(url)
        assert response.status_code == 404
        html = response.content.decode()
        assert 'data-testid="not-found"' in html
        assert "URLconf" not in html  # not Django's technical page with the URL patterns
        assert "Your conversations" in html


def test_the_status_of_an_unknown_conversation_is_404(client: Client, db: None) -> None:
    response = client.get(reverse("chat:status", args=["web-0000000000000000"]))
    assert response.status_code == 404


def test_favicon(client: Client) -> None:
    response = client.get("/favicon.ico")
    assert response.status_code == 200
    assert response["Content-Type"] == "image/svg+xml"
    assert b"<svg" in response.content


# -- tokens -----------------------------------------------------------------------


def usage_of(session_id: str):
    from chat import agent

    return async_to_sync(agent.session_for(session_id).aget_usage)()


def test_the_page_and_the_list_show_the_tokens_the_runs_used(
    client: Client, session_id: str
) -> None:
    send(client, session_id, "My name is Ada")
    first = usage_of(session_id)
    assert first.total_tokens > 0 and first.requests == 1
    send(client, session_id, "what is 6 * 7?")  # a tool call: two model requests
    totals = usage_of(session_id)
    assert totals.requests == 3 and totals.total_tokens > first.total_tokens
    html = page(client, session_id)
    assert (
        f"{totals.total_tokens:,} tokens (words, offline model): {totals.input_tokens:,} in, "
        f"{totals.output_tokens:,} out, over 3 model requests." in html
    )
    listed = client.get(reverse("chat:list")).content.decode()
    assert f"{totals.total_tokens:,} tokens (words, offline model)" in listed
    assert "counts words as tokens" in listed


def test_a_conversation_without_recorded_usage_says_so(client: Client, db: None) -> None:
    from chat import agent

    ada = get_user_model().objects.get(username="ada")
    # Stored without the run context (as before usage recording): no usage row.
    async_to_sync(agent.session_for("web-nousage0000000", ada).add_items)(
        [{"role": "user", "content": "hello"}]
    )
    assert "no token usage recorded." in page(client, "web-nousage0000000")
    assert "no token usage recorded" in client.get(reverse("chat:list")).content.decode()


# -- edit and resend ----------------------------------------------------------------


def edit_url(session_id: str, index: int) -> str:
    return reverse("chat:edit", args=[session_id, index])


def user_says(session_id: str) -> list[str]:
    from chat import agent, history

    return history.user_texts(
        history.as_dict(item) for item in async_to_sync(agent.session_for(session_id).get_items)()
    )


def test_each_user_message_offers_edit_and_resend(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    send(client, session_id, "What is my name?")
    html = page(client, session_id)
    assert f'href="{edit_url(session_id, 0)}"' in html
    assert f'href="{edit_url(session_id, 2)}"' in html
    form = client.get(edit_url(session_id, 2)).content.decode()
    assert ">What is my name?</textarea>" in form
    assert 'name="original" value="What is my name?"' in form


def test_edit_and_resend_runs_the_edit_on_a_fork_and_keeps_the_original(
    client: Client, session_id: str
) -> None:
    send(client, session_id, "My name is Ada")
    send(client, session_id, "what is 6 * 7?")
    before = list(AgentSession.objects.get(session_id=session_id).messages.values("id", "data"))
    response = client.post(
        edit_url(session_id, 2), {"message": "What is my name?", "original": "what is 6 * 7?"}
    )
    assert response.status_code == 302
    fork_id = response.url.rstrip("/").rsplit("/", 1)[1]
    assert fork_id != session_id and visitor.SESSION_ID.fullmatch(fork_id)
    fork = AgentSession.objects.get(session_id=fork_id)
    assert fork.owner.username == "ada" and fork.forked_from == session_id
    assert fork.title == "My name is Ada"
    assert user_says(fork_id) == ["My name is Ada", "What is my name?"]
    html = page(client, fork_id)
    assert "Your name is Ada. You told me earlier." in html
    assert "the original is unchanged" in html
    assert f'href="{reverse("chat:conversation", args=[session_id])}"' in html  # forked from
    after = list(AgentSession.objects.get(session_id=session_id).messages.values("id", "data"))
    assert after == before
    listed = client.get(reverse("chat:list")).content.decode()
    assert fork_id in listed and session_id in listed and "(edited copy)" in listed
    assert usage_of(fork_id).requests == 1  # the fork's own run only


def test_editing_the_first_message_renames_the_copy(client: Client, session_id: str) -> None:
    send(client, session_id, "My name is Ada")
    response = client.post(
        edit_url(session_id, 0), {"message": "My name is Grace", "original": "My name is Ada"}
    )
    fork_id = response.url.rstrip("/").rsplit("/", 1)[1]
    assert user_says(fork_id) == ["My name is Grace"]
    assert AgentSession.objects.get(session_id=fork_id).title == "My name is Grace"
    assert AgentSession.objects.get(session_id=session_id).title == "My name is Ada"


def test_an_edit_is_refused_when_the_history_changed_meanwhile(
    client: Client, session_id: str
) -> None:
    send(client, session_id, "My name is Ada")
    send(client, session_id, "What is my name?")
    client.post(reverse("chat:undo", args=[session_id]))
    send(client, session_id, "What time is it?")
    response = client.post(
        edit_url(session_id, 2), {"message": "Who am I?", "original": "What is my name?"}
    )
    assert response.status_code == 302 and response.url == edit_url(session_id, 2)
    html = client.get(response.url).content.decode()
    assert "The conversation changed since this page was shown" in html
    assert ">Who am I?</textarea>" in html
    assert AgentSession.objects.count() == 1


@pytest.mark.parametrize("text", ["", "x" * 4001])
def test_an_empty_or_too_long_edit_is_refused(client: Client, session_id: str, text: str) -> None:
    send(client, session_id, "My name is Ada")
    response = client.post(edit_url(session_id, 0), {"message": text, "original": "My name is Ada"})
    assert response.url == edit_url(session_id, 0)
    assert 'data-testid="error"' in client.get(response.url).content.decode()
    assert AgentSession.objects.count() == 1


def test_only_the_owners_user_messages_can_be_edited(
    client: Client, session_id: str, stranger: Client
) -> None:
    send(client, session_id, "My name is Ada")
    assert client.get(edit_url(session_id, 1)).status_code == 404  # the reply
    assert client.get(edit_url(session_id, 9)).status_code == 404
    assert stranger.get(edit_url(session_id, 0)).status_code == 404
    response = stranger.post(
        edit_url(session_id, 0), {"message": "x", "original": "My name is Ada"}
    )
    assert response.status_code == 404
    assert AgentSession.objects.count() == 1
