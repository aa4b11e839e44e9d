"""The admin: changelist with counts, read-only paginated conversation, permissions."""

from __future__ import annotations

import re
import subprocess
import sys
from datetime import timedelta
from html import unescape
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import Permission
from django.db import connection, connections
from django.test import Client
from django.test.utils import CaptureQueriesContext
from django.urls import reverse
from django.utils import timezone
from model_bakery import baker

from openai_django_sessions import admin as ods_admin
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage
from tests.settings import with_driver_cursor

pytestmark = pytest.mark.django_db

CHANGELIST = reverse("admin:openai_django_sessions_agentsession_changelist")
ITEM = re.compile(r'<li class="ods-item" id="item-(\d+)">')


def change_url(session: AgentSession) -> str:
    return reverse("admin:openai_django_sessions_agentsession_change", args=[session.pk])


def make_session(session_id: str, count: int = 0, *, using: str = "default") -> AgentSession:
    session = baker.make(AgentSession, session_id=session_id, _using=using)
    AgentMessage.objects.using(using).bulk_create(
        [
            AgentMessage(session=session, data={"role": "user", "content": f"m{i}"})
            for i in range(count)
        ],
        batch_size=1000,
    )
    return session


@pytest.fixture
def staff_client(django_user_model: Any) -> Client:
    """A logged-in staff user with no permissions at all."""
    user = django_user_model.objects.create_user("staff", password="pw", is_staff=True)
    client = Client()
    client.force_login(user)
    return client


def grant(client: Client, django_user_model: Any, *codenames: str) -> None:
    user = django_user_model.objects.get(username="staff")
    user.user_permissions.add(*Permission.objects.filter(codename__in=codenames))


# -- changelist ------------------------------------------------------------------


def test_changelist_shows_session_id_message_count_and_last_activity(
    admin_client: Client,
) -> None:
    make_session("chat-with-three", 3)
    make_session("chat-with-none")

    response = admin_client.get(CHANGELIST)

    assert response.status_code == 200
    rows = {s.session_id: s.message_count for s in response.context["cl"].result_list}
    assert rows == {"chat-with-three": 3, "chat-with-none": 0}
    html = response.content.decode()
    for header in ("Session id", "Messages", "Last activity"):
        assert f">{header}</a>" in html
    assert ">Created at</a>" not in html  # on each session's page: the list keeps room for titles


def test_changelist_and_change_page_show_usage_totals(admin_client: Client) -> None:
    spent = make_session("spent", 2)
    make_session("idle", 1)
    for total in (1000, 234):
        AgentUsage.objects.create(
            session=spent, requests=1, input_tokens=total - 10, output_tokens=10, total_tokens=total
        )

    response = admin_client.get(CHANGELIST + "?o=3")  # sorted by tokens
    rows = [(s.session_id, s.usage_total_tokens) for s in response.context["cl"].result_list]
    assert rows == [("idle", 0), ("spent", 1234)]
    assert ">Tokens</a>" in response.content.decode()

    page = admin_client.get(change_url(spent)).content.decode()
    assert "1,234 tokens (1,214 in, 0 cached; 20 out, 0 reasoning) in 2 requests" in page


def test_changelist_query_count_does_not_grow_with_the_number_of_sessions(
    admin_client: Client, django_assert_max_num_queries: Any
) -> None:
    def queries_for_changelist() -> int:
        with CaptureQueriesContext(connection) as captured:
            assert admin_client.get(CHANGELIST).status_code == 200
        return len(captured)

    for n in range(3):
        make_session(f"few-{n}", 2)
        AgentUsage.objects.create(session=AgentSession.objects.get(session_id=f"few-{n}"))
    few = queries_for_changelist()
    for n in range(40):
        make_session(f"many-{n}", 2)
    with django_assert_max_num_queries(few):
        response = admin_client.get(CHANGELIST)

    assert len(response.context["cl"].result_list) == 43


def test_changelist_searches_by_session_id(admin_client: Client) -> None:
    make_session("customer-123")
    make_session("customer-456")

    response = admin_client.get(CHANGELIST, {"q": "123"})

    assert [s.session_id for s in response.context["cl"].result_list] == ["customer-123"]


def test_changelist_filters_on_last_activity(admin_client: Client) -> None:
    recent = make_session("recent")
    old = make_session("old")
    AgentSession.objects.filter(pk=old.pk).update(updated_at=timezone.now() - timedelta(days=60))

    page = admin_client.get(CHANGELIST)
    last_week = admin_client.get(
        CHANGELIST, {"updated_at__gte": (timezone.now() - timedelta(days=7)).isoformat()}
    )

    assert 'id="changelist-filter"' in page.content.decode()
    assert "By last activity" in page.content.decode()
    assert [s.pk for s in last_week.context["cl"].result_list] == [recent.pk]


def test_changelist_has_a_date_hierarchy_on_last_activity(
    admin_client: Client, settings: Any
) -> None:
    settings.TIME_ZONE = "UTC"  # every backend can draw it without time zone tables
    session = make_session("dated")
    year = timezone.localtime(session.updated_at).year

    page = admin_client.get(CHANGELIST)
    by_year = admin_client.get(CHANGELIST, {"updated_at__year": str(year)})
    other_year = admin_client.get(CHANGELIST, {"updated_at__year": str(year - 1)})

    assert '<nav class="toplinks"' in page.content.decode()
    # Labelled as the column is, not by the field's name ("updated at").
    assert "Filter by last activity" in page.content.decode()
    assert "updated at" not in page.content.decode()
    assert [s.pk for s in by_year.context["cl"].result_list] == [session.pk]
    assert list(other_year.context["cl"].result_list) == []


def test_changelist_leaves_out_the_date_hierarchy_when_the_database_cannot_draw_it(
    admin_client: Client, monkeypatch: pytest.MonkeyPatch
) -> None:
    make_session("dated")
    monkeypatch.setattr(ods_admin, "local_dates_supported", lambda alias: False)

    page = admin_client.get(CHANGELIST)

    assert page.status_code == 200
    assert '<nav class="toplinks"' not in page.content.decode()
    assert len(page.context["cl"].result_list) == 1


def test_changelist_sorts_by_message_count(admin_client: Client) -> None:
    make_session("two", 2)
    make_session("five", 5)
    make_session("one", 1)

    column = admin_client.get(CHANGELIST).context["cl"].list_display.index("message_count")
    response = admin_client.get(CHANGELIST, {"o": f"-{column}"})

    assert [s.session_id for s in response.context["cl"].result_list] == ["five", "two", "one"]


# -- change page -----------------------------------------------------------------


def test_change_page_shows_the_conversation_in_order_and_readable(admin_client: Client) -> None:
    session = make_session("chat")
    AgentMessage.objects.bulk_create(
        AgentMessage(session=session, data=item)
        for item in [
            {"role": "user", "content": "Weather in <Paris>?"},
            {
                "type": "function_call",
                "name": "get_weather",
                "arguments": '{"city": "Paris"}',
                "call_id": "call_9",
            },
            {"type": "function_call_output", "call_id": "call_9", "output": "18 degrees"},
            {
                "role": "assistant",
                "type": "message",
                "content": [{"type": "output_text", "text": "It is 18 degrees."}],
            },
        ]
    )

    response = admin_client.get(change_url(session))

    html = response.content.decode()
    assert response.status_code == 200
    assert [int(n) for n in ITEM.findall(html)] == [1, 2, 3, 4]
    order = [
        html.index(text)
        for text in (
            "Weather in &lt;Paris&gt;?",
            "get_weather({&quot;city&quot;: &quot;Paris&quot;})",
            '<div class="ods-output">18 degrees</div>',
            "It is 18 degrees.",
        )
    ]
    assert order == sorted(order)
    assert '<span class="ods-kind">function_call_output</span>' in html
    assert "<details><summary>JSON</summary><pre>{\n  &quot;role&quot;: &quot;user&quot;" in html
    assert "Items 1 to 4 of 4." in html


def test_change_page_reads_the_session_row_once(admin_client: Client) -> None:
    session = make_session("once", 3)
    baker.make(AgentUsage, session=session, total_tokens=5)

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(change_url(session))

    assert response.status_code == 200 and "once" in response.content.decode()
    table = re.compile(r"FROM [`\"]?agent_sessions[`\"]?\s")
    reads = [q["sql"] for q in captured.captured_queries if table.search(q["sql"])]
    assert len(reads) == 1, reads


def test_change_page_of_20000_messages_loads_and_shows_one_page(admin_client: Client) -> None:
    session = make_session("huge", 20_000)

    with CaptureQueriesContext(connection) as captured:
        response = admin_client.get(change_url(session))
    queries = [q["sql"] for q in captured.captured_queries]
    last = admin_client.get(change_url(session), {"page": "400"})

    html = response.content.decode()
    assert [int(n) for n in ITEM.findall(html)] == list(range(1, 51))
    assert "Items 1 to 50 of 20000." in html
    assert 'href="?page=400"' in html
    assert [int(n) for n in ITEM.findall(last.content.decode())] == list(range(19951, 20001))
    assert "m19999" in last.content.decode() and "m0<" not in last.content.decode()
    on_messages = [sql for sql in queries if "agent_messages" in sql]
    item_reads = [sql for sql in on_messages if "COUNT(" not in sql.upper()]
    assert len(item_reads) == 1 and "LIMIT 50" in item_reads[0]
    assert len(on_messages) <= 3, on_messages


def test_change_page_edits_title_and_metadata_only_and_sessions_cannot_be_added(
    admin_client: Client,
) -> None:
    session = make_session("chat", 1)
    before = AgentSession.objects.get()
    add_url = reverse("admin:openai_django_sessions_agentsession_add")

    page = admin_client.get(change_url(session)).content.decode()
    post = admin_client.post(
        change_url(session),
        {"session_id": "renamed", "title": "Renamed", "metadata": '{"agent": "planner"}'},
    )

    assert 'name="_save"' in page
    assert '<input type="text" name="title"' in page
    assert 'name="metadata"' in page
    assert 'name="session_id"' not in page and 'name="owner"' not in page
    assert post.status_code == 302
    assert admin_client.get(add_url).status_code == 403
    after = AgentSession.objects.get()
    assert (after.session_id, after.title, after.metadata) == (
        "chat",
        "Renamed",
        {"agent": "planner"},
    )
    assert after.updated_at == before.updated_at  # editing details is not conversation activity
    assert AgentMessage.objects.get().data == {"role": "user", "content": "m0"}


def test_metadata_that_is_not_an_object_is_refused(admin_client: Client) -> None:
    session = make_session("chat")

    response = admin_client.post(change_url(session), {"title": "", "metadata": "[1, 2]"})

    assert response.status_code == 200
    assert "Metadata must be a JSON object" in response.content.decode()
    assert AgentSession.objects.get().metadata == {}


@pytest.mark.parametrize(
    ("metadata", "reason"),
    [
        ('{"n": 1e400}', "cannot be stored as JSON"),
        ('{"note": "a\\u0000b"}', "U+0000"),
        ('{"a": ' * 40 + "1" + "}" * 40, "nested more than 30 levels"),
        ('{"note": "\\ud800"}', "lone surrogate"),
    ],
    ids=["infinity", "nul", "40-levels", "lone-surrogate"],
)
def test_metadata_the_library_refuses_is_refused_by_the_form_with_its_reason(
    admin_client: Client, metadata: str, reason: str
) -> None:
    session = make_session("chat")

    response = admin_client.post(change_url(session), {"title": "", "metadata": metadata})

    assert response.status_code == 200
    assert reason in response.content.decode()
    assert AgentSession.objects.get().metadata == {}


def test_title_the_library_refuses_is_refused_by_the_form(admin_client: Client) -> None:
    session = make_session("chat")

    response = admin_client.post(change_url(session), {"title": "x" * 256, "metadata": "{}"})

    assert response.status_code == 200
    assert AgentSession.objects.get().title == ""


def test_staff_change_a_conversations_retention_without_touching_its_activity(
    admin_client: Client,
) -> None:
    session = make_session("chat")
    before = AgentSession.objects.get()

    post = admin_client.post(
        change_url(session), {"title": "", "metadata": "{}", "expires_after": "7 00:00:00"}
    )

    after = AgentSession.objects.get()
    assert post.status_code == 302
    assert after.expires_after == timedelta(days=7)
    assert after.updated_at == before.updated_at


@pytest.mark.parametrize("value", ["0", "-1 00:00:00", "36526 00:00:00", "999999999 00:00:00"])
def test_a_retention_the_library_refuses_is_refused_by_the_form(
    admin_client: Client, value: str
) -> None:
    session = make_session("chat")

    response = admin_client.post(
        change_url(session), {"title": "", "metadata": "{}", "expires_after": value}
    )

    assert response.status_code == 200
    assert "expires_after must be" in response.content.decode()
    assert AgentSession.objects.get().expires_after is None


def test_an_expired_conversations_retention_cannot_be_changed(admin_client: Client) -> None:
    session = make_session("chat")
    AgentSession.objects.filter(pk=session.pk).update(
        expires_after=timedelta(days=1),
        updated_at=timezone.now() - timedelta(days=2),
    )

    response = admin_client.post(
        change_url(session), {"title": "", "metadata": "{}", "expires_after": "30 00:00:00"}
    )

    assert response.status_code == 200
    assert "This conversation has expired" in response.content.decode()
    assert AgentSession.objects.get().expires_after == timedelta(days=1)


def test_view_only_staff_cannot_change_title_or_metadata(
    staff_client: Client, django_user_model: Any
) -> None:
    grant(staff_client, django_user_model, "view_agentsession")
    session = make_session("chat")

    page = staff_client.get(change_url(session)).content.decode()
    post = staff_client.post(change_url(session), {"title": "Mine", "metadata": "{}"})

    assert 'name="_save"' not in page and 'name="title"' not in page
    assert post.status_code == 403
    assert AgentSession.objects.get().title == ""


def test_change_permission_lets_staff_edit_title(
    staff_client: Client, django_user_model: Any
) -> None:
    grant(staff_client, django_user_model, "view_agentsession", "change_agentsession")
    session = make_session("chat")

    post = staff_client.post(change_url(session), {"title": "Trip", "metadata": "{}"})

    assert post.status_code == 302
    assert AgentSession.objects.get().title == "Trip"


def test_changelist_shows_owner_and_title_and_filters_and_searches_by_owner(
    admin_client: Client, django_user_model: Any
) -> None:
    alice = django_user_model.objects.create_user("alice")
    bob = django_user_model.objects.create_user("bob")
    baker.make(AgentSession, session_id="a1", owner=alice, title="Lisbon trip")
    baker.make(AgentSession, session_id="b1", owner=bob, title="Taxes")
    make_session("nobody")

    page = admin_client.get(CHANGELIST)
    filtered = admin_client.get(CHANGELIST, {"owner__id__exact": str(alice.pk)})
    searched = admin_client.get(CHANGELIST, {"q": "bob"})

    html = page.content.decode()
    assert "Lisbon trip" in html and "Taxes" in html
    assert ">alice<" in html and ">bob<" in html
    assert [s.session_id for s in filtered.context["cl"].result_list] == ["a1"]
    assert [s.session_id for s in searched.context["cl"].result_list] == ["b1"]


def test_changelist_search_finds_titles_and_ids_together_with_counts(
    admin_client: Client,
) -> None:
    make_session("trip-a1", 2)
    titled = make_session("x9", 3)
    AgentSession.objects.filter(pk=titled.pk).update(title="Lisbon TRIP")
    make_session("taxes")

    by_title_or_id = admin_client.get(CHANGELIST, {"q": "Trip"})
    by_title = admin_client.get(CHANGELIST, {"q": "lisbon"})

    found = {s.session_id: s.message_count for s in by_title_or_id.context["cl"].result_list}
    assert found == {"trip-a1": 2, "x9": 3}
    assert [s.session_id for s in by_title.context["cl"].result_list] == ["x9"]


def test_messages_have_no_admin_pages(admin_client: Client) -> None:
    assert admin_client.get("/admin/openai_django_sessions/agentmessage/").status_code == 404


# -- deleting ------------------------------------------------------------------------


def test_deleting_a_session_deletes_its_messages_without_listing_each_one(
    admin_client: Client,
) -> None:
    session = make_session("doomed", 300)
    kept = make_session("kept", 2)
    delete_url = reverse("admin:openai_django_sessions_agentsession_delete", args=[session.pk])

    confirm = admin_client.get(delete_url)
    done = admin_client.post(delete_url, {"post": "yes"})

    assert "Agent session: doomed (300 messages)" in confirm.content.decode()
    assert confirm.content.decode().count("m299") == 0
    assert done.status_code == 302
    assert list(AgentSession.objects.all()) == [kept]
    assert AgentMessage.objects.count() == 2


def test_delete_selected_action_deletes_sessions_and_their_messages(admin_client: Client) -> None:
    first, second, kept = make_session("a", 3), make_session("b", 4), make_session("c", 1)

    response = admin_client.post(
        CHANGELIST,
        {"action": "delete_selected", "_selected_action": [first.pk, second.pk], "post": "yes"},
    )

    assert response.status_code == 302
    assert list(AgentSession.objects.all()) == [kept]
    assert AgentMessage.objects.count() == 1


# -- permissions ---------------------------------------------------------------------


def test_staff_without_view_permission_sees_nothing(staff_client: Client) -> None:
    session = make_session("secret", 1)

    index = staff_client.get(reverse("admin:index"))

    assert "Agent sessions" not in index.content.decode()
    assert staff_client.get(CHANGELIST).status_code == 403
    response = staff_client.get(change_url(session))
    assert response.status_code == 403
    assert b"m0" not in response.content


def test_staff_with_view_permission_reads_but_cannot_delete(
    staff_client: Client, django_user_model: Any
) -> None:
    session = make_session("visible", 2)
    grant(staff_client, django_user_model, "view_agentsession")
    delete_url = reverse("admin:openai_django_sessions_agentsession_delete", args=[session.pk])

    page = staff_client.get(change_url(session))

    assert page.status_code == 200
    assert ITEM.findall(page.content.decode()) == ["1", "2"]
    assert 'class="deletelink"' not in page.content.decode()
    assert staff_client.post(delete_url, {"post": "yes"}).status_code == 403
    assert AgentSession.objects.count() == 1


def test_staff_with_delete_permission_deletes_the_messages_too(
    staff_client: Client, django_user_model: Any
) -> None:
    session = make_session("gone", 2)
    grant(staff_client, django_user_model, "view_agentsession", "delete_agentsession")
    delete_url = reverse("admin:openai_django_sessions_agentsession_delete", args=[session.pk])

    response = staff_client.post(delete_url, {"post": "yes"})

    assert response.status_code == 302
    assert AgentSession.objects.count() == 0 and AgentMessage.objects.count() == 0


# -- configuration ---------------------------------------------------------------------


@pytest.mark.django_db(databases=["default", "other"])
def test_admin_reads_the_database_named_in_the_setting(admin_client: Client, settings: Any) -> None:
    make_session("on-default", 1)
    elsewhere = make_session("on-other", 3, using="other")
    settings.OPENAI_DJANGO_SESSIONS = with_driver_cursor({"DATABASE": "other"})

    listing = admin_client.get(CHANGELIST)
    page = admin_client.get(change_url(elsewhere))

    assert [s.session_id for s in listing.context["cl"].result_list] == ["on-other"]
    assert ITEM.findall(page.content.decode()) == ["1", "2", "3"]
    assert connections["other"].vendor == connection.vendor


def test_admin_checks_and_command_load_without_importing_the_agents_sdk() -> None:
    code = (
        "import sys, django; django.setup();"
        "import openai_django_sessions.admin, openai_django_sessions._checks;"
        "import openai_django_sessions.management.commands.agent_sessions;"
        "from openai_django_sessions._checks import check_settings; check_settings();"
        "print(sorted(m for m in sys.modules if m == 'agents' or m.startswith('agents.')))"
    )
    result = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        cwd=Path(__file__).resolve().parent.parent,
        env={**__import__("os").environ, "DJANGO_SETTINGS_MODULE": "tests.settings"},
        check=True,
    )

    assert result.stdout.strip() == "[]"


# -- reading the changelist ------------------------------------------------------------


def test_forks_are_marked_in_the_changelist(admin_client: Client) -> None:
    make_session("original", 2)
    fork = make_session("copy", 1)
    AgentSession.objects.filter(pk=fork.pk).update(forked_from="original")

    response = admin_client.get(CHANGELIST)

    marks = {
        s.session_id: ods_admin.AgentSessionAdmin.fork(None, s)
        for s in response.context["cl"].result_list
    }  # type: ignore[arg-type]
    assert marks == {"original": False, "copy": True}
    html = response.content.decode()
    assert ">Fork</a>" in html
    assert html.count('<td class="field-fork"><img src="admin/img/icon-yes.svg" alt="True">') == 1


def test_the_breadcrumb_names_the_app_and_the_model_differently(admin_client: Client) -> None:
    html = admin_client.get(CHANGELIST).content.decode()
    # Django 6 lists the crumbs in an <ol>, 5.2 in a <div> with "&rsaquo;" between them.
    crumbs = re.search(r'<(ol|div) class="breadcrumbs">(.*?)</\1>', html, re.S)
    assert crumbs is not None
    text = unescape(re.sub(r"<[^>]+>", "\n", crumbs[2]))
    assert [part.strip() for part in re.split("[\n\u203a]", text) if part.strip()] == [
        "Home",
        "Agent memory",
        "Agent sessions",
    ]


def test_a_long_unbroken_title_breaks_instead_of_widening_the_list(admin_client: Client) -> None:
    session = make_session("long-title", 1)
    AgentSession.objects.filter(pk=session.pk).update(title="x" * 200)

    html = admin_client.get(CHANGELIST).content.decode()

    assert "x" * 200 in html
    style = re.search(r"#result_list \.field-title \{([^}]*)\}", html)
    assert style is not None
    assert "overflow-wrap: anywhere" in style[1] and "max-width" in style[1]
    assert "min-width" in style[1]  # and a short one is never a word per line
