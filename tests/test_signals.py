"""Signals: sent once the change is committed, with the session id and what changed."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.db import connections, transaction
from django.dispatch import Signal

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession
from openai_django_sessions.signals import (
    session_cleared,
    session_item_popped,
    session_items_added,
)

pytestmark = pytest.mark.django_db(transaction=True)

HELLO = {"role": "user", "content": "hello"}
REPLY = {"role": "assistant", "content": "hi"}


def committed_messages(session_id: str) -> int:
    """The count another connection sees, so only what is committed."""
    seen: list[int] = []

    def count() -> None:
        try:
            seen.append(AgentMessage.objects.filter(session__session_id=session_id).count())
        finally:
            connections.close_all()

    worker = threading.Thread(target=count)
    worker.start()
    worker.join()
    return seen[0]


@pytest.fixture
def listen() -> Iterator[Callable[..., list[dict[str, Any]]]]:
    """Connect a recording receiver to a signal; ``on_receive`` runs inside it."""
    connected: list[tuple[Signal, Callable[..., None]]] = []

    def connect(signal: Signal, on_receive: Callable[..., Any] | None = None) -> list[dict]:
        calls: list[dict[str, Any]] = []

        def receiver(**kwargs: Any) -> None:
            calls.append(kwargs)
            if on_receive is not None:
                on_receive(**kwargs)

        signal.connect(receiver, weak=False)
        connected.append((signal, receiver))
        return calls

    yield connect
    for signal, receiver in connected:
        signal.disconnect(receiver)


async def test_items_added_is_sent_after_commit_with_the_session_id_and_the_items(
    listen: Callable[..., list[dict[str, Any]]],
) -> None:
    seen_committed: list[int] = []
    calls = listen(
        session_items_added,
        on_receive=lambda session_id, **_: seen_committed.append(committed_messages(session_id)),
    )

    await DjangoSession("chat").add_items([HELLO, REPLY])

    [call] = calls
    assert call["sender"] is DjangoSession
    assert call["session_id"] == "chat"
    assert call["items"] == [HELLO, REPLY]
    assert call["using"] == "default"
    assert seen_committed == [2]


async def test_item_popped_is_sent_with_the_removed_item(
    listen: Callable[..., list[dict[str, Any]]],
) -> None:
    session = DjangoSession("chat")
    await session.add_items([HELLO, REPLY])
    seen_committed: list[int] = []
    calls = listen(
        session_item_popped,
        on_receive=lambda session_id, **_: seen_committed.append(committed_messages(session_id)),
    )

    assert await session.pop_item() == REPLY

    assert [(c["session_id"], c["item"]) for c in calls] == [("chat", REPLY)]
    assert seen_committed == [1]


async def test_cleared_is_sent_with_the_session_id(
    listen: Callable[..., list[dict[str, Any]]],
) -> None:
    session = DjangoSession("chat")
    await session.add_items([HELLO])
    seen_committed: list[int] = []
    calls = listen(
        session_cleared,
        on_receive=lambda session_id, **_: seen_committed.append(committed_messages(session_id)),
    )

    await session.clear_session()

    assert [(c["session_id"], c["using"]) for c in calls] == [("chat", "default")]
    assert seen_committed == [0]


async def test_nothing_is_sent_when_nothing_changed(
    listen: Callable[..., list[dict[str, Any]]],
) -> None:
    calls = [listen(s) for s in (session_items_added, session_item_popped, session_cleared)]
    session = DjangoSession("empty")

    await session.add_items([])
    assert await session.pop_item() is None
    await session.clear_session()

    assert calls == [[], [], []]


def test_nothing_is_sent_when_the_enclosing_transaction_rolls_back(
    listen: Callable[..., list[dict[str, Any]]],
) -> None:
    calls = listen(session_items_added)

    with pytest.raises(RuntimeError), transaction.atomic():
        async_to_sync(DjangoSession("chat").add_items)([HELLO])
        raise RuntimeError("abort")

    assert calls == []
    assert AgentSession.objects.count() == 0


def test_signal_waits_for_the_enclosing_transaction_to_commit(
    listen: Callable[..., list[dict[str, Any]]],
) -> None:
    calls = listen(session_items_added)

    with transaction.atomic():
        async_to_sync(DjangoSession("chat").add_items)([HELLO])
        assert calls == []

    assert [c["items"] for c in calls] == [[HELLO]]


async def test_a_receiver_that_raises_does_not_undo_the_write_or_reach_the_caller(
    listen: Callable[..., list[dict[str, Any]]], caplog: pytest.LogCaptureFixture
) -> None:
    def broken(**kwargs: Any) -> None:
        raise ValueError("analytics is down")

    listen(session_items_added, on_receive=broken)
    later = listen(session_items_added)

    with caplog.at_level(logging.ERROR, logger="django.dispatch"):
        await DjangoSession("chat").add_items([HELLO])

    assert await DjangoSession("chat").get_items() == [HELLO]
    assert len(later) == 1
    assert "analytics is down" in caplog.text


async def test_documented_moderation_receiver_example() -> None:
    flagged: list[str] = []

    def flag_for_review(sender: Any, session_id: str, items: list[dict], **kwargs: Any) -> None:
        if any("refund" in str(item.get("content", "")) for item in items):
            flagged.append(session_id)

    session_items_added.connect(flag_for_review, weak=False)
    try:
        await DjangoSession("calm").add_items([HELLO])
        await DjangoSession("angry").add_items([{"role": "user", "content": "I want a refund"}])
    finally:
        session_items_added.disconnect(flag_for_review)

    assert flagged == ["angry"]
