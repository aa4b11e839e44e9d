"""Migration 0005: forks record a position in their source, not a message's primary key."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import connection
from django.db.migrations.executor import MigrationExecutor

APP = "openai_django_sessions"
BEFORE = [(APP, "0004_exact_session_id")]
AFTER = [(APP, "0005_fork_position")]
T0 = datetime(2025, 1, 1, tzinfo=UTC)


def migrate(target: list[tuple[str, str]]) -> Any:
    """Migrate the app to ``target``; the models as they are there."""
    executor = MigrationExecutor(connection)
    executor.loader.build_graph()
    executor.migrate(target)
    return executor.loader.project_state(target).apps


def at(minutes: int) -> datetime:
    return T0 + timedelta(minutes=minutes)


@pytest.mark.django_db(transaction=True)
def test_existing_forks_get_the_position_of_the_message_they_recorded_and_back() -> None:
    apps = migrate(BEFORE)
    try:
        sessions = apps.get_model(APP, "AgentSession")
        messages = apps.get_model(APP, "AgentMessage")

        def stored(session_id: str, created: datetime, texts: list[tuple[str, int]], **fork: Any):
            row = sessions.objects.create(session_id=session_id, **fork)
            sessions.objects.filter(pk=row.pk).update(created_at=created)
            made = [messages.objects.create(session=row, data={"c": t}) for t, _ in texts]
            for message, (_, minute) in zip(made, texts, strict=True):
                messages.objects.filter(pk=message.pk).update(created_at=at(minute))
            return [m.pk for m in made]

        source = stored("source", at(0), [(f"s{n}", n) for n in range(5)])
        # Copied the first three, then grew on its own.
        stored("three", at(10), [("s0", 0), ("s1", 1), ("s2", 2), ("own", 11)],
               forked_from="source", forked_from_item=source[2])  # fmt: skip
        stored("empty", at(10), [], forked_from="source", forked_from_item=None)
        # Its source is gone: its copies are older than the fork, its own turn newer.
        stored("orphan", at(20), [("g0", 1), ("g1", 2), ("own", 21)],
               forked_from="gone", forked_from_item=999_999)  # fmt: skip
        stored("plain", at(0), [("p", 0)])

        apps = migrate(AFTER)
        sessions = apps.get_model(APP, "AgentSession")
        positions = dict(sessions.objects.values_list("session_id", "forked_from_position"))
        assert positions == {"source": None, "three": 3, "empty": 0, "orphan": 2, "plain": None}

        apps = migrate(BEFORE)
        sessions = apps.get_model(APP, "AgentSession")
        items = dict(sessions.objects.values_list("session_id", "forked_from_item"))
        assert items == {
            "source": None,
            "three": source[2],
            "empty": None,
            "orphan": None,  # its source is not there to point into
            "plain": None,
        }
    finally:
        migrate(MigrationExecutor(connection).loader.graph.leaf_nodes(APP))
