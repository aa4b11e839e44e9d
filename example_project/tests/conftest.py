"""Fixtures of the example's tests.

The tests run on the database ``DATABASE_URL`` names (pytest-django makes a
test database from it); without it, SQLite. The offline model always answers:
an ``OPENAI_API_KEY`` in the environment is removed for every test.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Iterator

import pytest
from django.test import Client
from django.urls import reverse


@pytest.fixture(autouse=True)
def _offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("OPENAI_MODEL", raising=False)


def signed_in(username: str) -> Client:
    """A test client signed in as ``username`` (created if needed)."""
    from django.contrib.auth import get_user_model

    user, _ = get_user_model().objects.get_or_create(username=username)
    client = Client()
    client.force_login(user)
    return client


@pytest.fixture
def client(db: None) -> Client:
    """pytest-django's ``client``, signed in as the user ``ada``."""
    return signed_in("ada")


@pytest.fixture
def stranger(db: None) -> Client:
    """Another signed-in user, ``bob``."""
    return signed_in("bob")


@pytest.fixture
def conversation_url(client: Client, db: None) -> str:
    """The URL of a new conversation of ``client``'s user."""
    response = client.post(reverse("chat:new"))
    assert response.status_code == 302
    return str(response.url)


@pytest.fixture
def session_id(conversation_url: str) -> str:
    return conversation_url.rstrip("/").rsplit("/", 1)[1]


@pytest.fixture
def thread_backend() -> Iterator[object]:
    """The ``ThreadBackend`` of ``TASKS``; every task it runs has finished afterwards."""
    from django.tasks import task_backends

    backend = task_backends["default"]
    yield backend
    backend.wait_idle()  # type: ignore[attr-defined]


# Django 5.2 has no django.tasks: its background turns run at once, which
# test_background_fallback covers; the task backend's own tests need 6.0+.
collect_ignore = [] if importlib.util.find_spec("django.tasks") else ["test_background_tasks.py"]
