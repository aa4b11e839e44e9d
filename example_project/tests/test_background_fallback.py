"""'Run in background' on Django 5.2, which has no django.tasks: the turn runs at once.

Simulated here on any Django version by removing the task.
"""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse
from openai_django_sessions.models import AgentSession

from chat import tasks

pytestmark = pytest.mark.django_db


def test_without_django_tasks_the_turn_runs_at_once(
    client: Client, session_id: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Django 5.2 has no django.tasks: tasks.run_turn_task is None there.
    monkeypatch.setattr(tasks, "run_turn_task", None)
    url = reverse("chat:send", args=[session_id])
    response = client.post(url, {"message": "My name is Ada", "background": "1"})
    assert response.status_code == 302
    assert AgentSession.objects.get(session_id=session_id).messages.count() == 2
    assert client.get(reverse("chat:status", args=[session_id])).json()["pending"] is False
    assert (
        "runs at once on this Django version"
        in client.get(reverse("chat:conversation", args=[session_id])).content.decode()
    )
