"""'Run in background': the turn is a django.tasks task, run by ThreadBackend after the response."""

from __future__ import annotations

import threading
import time

import pytest
from django.test import Client
from django.urls import reverse

from chat import tasks

# The task runs in another thread, on its own connection: it must see committed rows.
pytestmark = pytest.mark.django_db(transaction=True)


def send_in_background(client: Client, session_id: str, text: str):
    url = reverse("chat:send", args=[session_id])
    return client.post(url, {"message": text, "background": "1"})


def wait_until_done(client: Client, session_id: str, timeout: float = 20.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        state = client.get(reverse("chat:status", args=[session_id])).json()
        if not state["pending"]:
            return state
        time.sleep(0.05)
    raise AssertionError(f"background turn of {session_id} still pending after {timeout} s")


def test_background_turn_lands_and_uses_the_history(
    client: Client, session_id: str, thread_backend: object
) -> None:
    client.post(reverse("chat:send", args=[session_id]), {"message": "My name is Ada"})
    response = send_in_background(client, session_id, "What is my name?")
    assert response.status_code == 302
    assert wait_until_done(client, session_id) == {"pending": False, "items": 4}
    html = client.get(reverse("chat:conversation", args=[session_id])).content.decode()
    assert "Your name is Ada" in html
    assert "Answering in the background" not in html


def test_the_response_returns_before_the_turn_runs(
    client: Client, session_id: str, thread_backend: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = threading.Event()
    real_run_turn = tasks.run_turn

    async def held_turn(session_id: str, text: str, owner: object = None):
        # Blocks the worker thread only; the request has long returned by then.
        await _wait(release)
        return await real_run_turn(session_id, text, owner)

    monkeypatch.setattr(tasks, "run_turn", held_turn)
    response = send_in_background(client, session_id, "what is 6 * 7?")
    assert response.status_code == 302

    html = client.get(reverse("chat:conversation", args=[session_id])).content.decode()
    assert "Answering in the background" in html
    assert 'class="bubble user pending"' in html  # the message shows before the SDK stores it
    assert "what is 6 * 7?" in html
    assert client.get(reverse("chat:status", args=[session_id])).json()["pending"] is True
    # A second message waits for the first answer, and so do undo, clear and delete.
    url = reverse("chat:conversation", args=[session_id])
    refusals = {
        "The previous message is still being answered": lambda: send_in_background(
            client, session_id, "hello"
        ),
        "Wait for the reply before undoing.": lambda: client.post(
            reverse("chat:undo", args=[session_id])
        ),
        "Wait for the reply before clearing.": lambda: client.post(
            reverse("chat:clear", args=[session_id])
        ),
        "Wait for the reply before deleting.": lambda: client.post(
            reverse("chat:delete", args=[session_id])
        ),
    }
    for refusal, post in refusals.items():
        response = post()
        assert response.status_code == 302 and response.url == url
        assert refusal in client.get(url).content.decode()

    release.set()
    assert wait_until_done(client, session_id)["items"] == 4
    assert (
        "6 * 7 = 42" in client.get(reverse("chat:conversation", args=[session_id])).content.decode()
    )


def test_a_failed_background_turn_is_reported_once(
    client: Client, session_id: str, thread_backend: object, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def failing_turn(session_id: str, text: str, owner: object = None):
        raise RuntimeError("model exploded")

    monkeypatch.setattr(tasks, "run_turn", failing_turn)
    send_in_background(client, session_id, "hello")
    wait_until_done(client, session_id)
    url = reverse("chat:conversation", args=[session_id])
    html = client.get(url).content.decode()
    assert "The reply could not be written in the background." in html
    assert "model exploded" not in html  # the reason goes to the log
    assert ">hello</textarea>" in html  # the message is given back, to send again
    assert "could not be written" not in client.get(url).content.decode()


def test_thread_backend_reports_results(thread_backend: object) -> None:
    result = tasks.run_turn_task.enqueue("bg-direct", "what is 2 + 2?")
    thread_backend.wait_idle()  # type: ignore[attr-defined]
    assert tasks.run_turn_task.get_result(result.id).return_value.endswith("2 + 2 = 4")


def test_results_are_found_from_any_request(thread_backend: object) -> None:
    # Each request (async context) gets its own backend instance from django.tasks.
    from django.conf import settings

    from chat.task_backends import ThreadBackend

    result = tasks.run_turn_task.enqueue("bg-other", "hello")
    other = ThreadBackend("default", settings.TASKS["default"])
    assert other is not thread_backend
    assert other.get_result(result.id) is result
    other.wait_idle()
    assert result.status == "SUCCESSFUL"


async def _wait(event: threading.Event) -> None:
    import asyncio

    while not event.is_set():
        await asyncio.sleep(0.01)
