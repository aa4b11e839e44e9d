"""The admin of the example: one command gives a staff login; it shows the conversations."""

from __future__ import annotations

import io
import re

import pytest
from django.contrib.auth import get_user_model
from django.core.management import call_command
from django.test import Client
from django.urls import reverse

pytestmark = pytest.mark.django_db
# Django's DATETIME_FORMAT in English, "Nov. 26, 2026, 1:02 p.m.", not str(datetime).
FORMATTED = re.compile(r"[A-Z][a-z]+\.? \d{1,2}, \d{4}, \S+( [ap]\.m\.)?")


def demo_admin() -> str:
    out = io.StringIO()
    call_command("demo_admin", stdout=out)
    return out.getvalue()


def test_demo_admin_creates_a_superuser_once_and_prints_its_password() -> None:
    password = re.search(r"as 'admin', password (\S+) \(shown once\)", demo_admin())
    assert password is not None
    user = get_user_model().objects.get(username="admin")
    assert user.is_staff and user.is_superuser and user.check_password(password[1])
    again = demo_admin()
    assert "password printed when it was created" in again
    assert password[1] not in again
    user.refresh_from_db()
    assert user.check_password(password[1])  # not reset by a second run


def test_the_admin_lists_the_stored_conversations(client: Client, session_id: str) -> None:
    client.post(reverse("chat:send", args=[session_id]), {"message": "My name is Ada"})
    password = re.search(r"password (\S+) ", demo_admin())
    assert password is not None
    staff = Client()
    assert staff.login(username="admin", password=password[1])
    assert staff.get("/admin/").status_code == 200
    changelist = staff.get(reverse("admin:openai_django_sessions_agentsession_changelist"))
    assert session_id in changelist.content.decode()


def test_the_admin_needs_a_staff_login(client: Client) -> None:
    response = client.get("/admin/")
    assert response.status_code == 302
    assert response.url.startswith("/admin/login/")


def test_the_conversation_page_formats_both_dates_alike(client: Client, session_id: str) -> None:
    from openai_django_sessions.models import AgentSession

    client.post(reverse("chat:send", args=[session_id]), {"message": "My name is Ada"})
    get_user_model().objects.create_superuser("staff", "", "pw")
    staff = Client()
    staff.login(username="staff", password="pw")
    pk = AgentSession.objects.get(session_id=session_id).pk
    url = reverse("admin:openai_django_sessions_agentsession_change", args=[pk])
    html = staff.get(url).content.decode()
    # Values holding a year; the session id ("web-" and random letters and digits) may too.
    dates = re.findall(r'<div class="readonly">((?!web-)[^<]*\d{4}[^<]*)</div>', html)
    assert len(dates) == 2  # created at, last activity
    assert all(FORMATTED.fullmatch(date) for date in dates), dates
    assert "+00:00" not in html
