"""Export/import carry every field of both models, whatever fields the models have."""

from __future__ import annotations

import io
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from django.db import models
from model_bakery import baker

from openai_django_sessions import _transfer as transfer
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db


def concrete_fields(model: type[models.Model]) -> list[models.Field[Any, Any]]:
    """Every concrete field but the primary key, the link from a message to its session and
    the message's derived fields (computed from ``data`` when written)."""
    derived = transfer.DERIVED_ITEM_FIELDS if model is AgentMessage else frozenset()
    return [
        field
        for field in model._meta.concrete_fields
        if not field.primary_key
        and field.related_model is not AgentSession
        and field.name not in derived
    ]


def snapshot() -> list[tuple[dict[str, Any], list[dict[str, Any]]]]:
    """Every session and its messages, as the value of each of their fields."""
    session_fields = concrete_fields(AgentSession)
    message_fields = concrete_fields(AgentMessage)
    return [
        (
            {f.attname: getattr(session, f.attname) for f in session_fields},
            [
                {f.attname: getattr(message, f.attname) for f in message_fields}
                for message in AgentMessage.objects.filter(session=session).order_by("pk")
            ],
        )
        for session in AgentSession.objects.order_by("session_id")
    ]


def distinct_timestamps(model: type[models.Model], pk: int, start: datetime) -> None:
    """Give each DateTimeField of the row its own past value (auto_now would make them equal)."""
    stamps = {
        field.name: start + timedelta(minutes=n, microseconds=n + 1)
        for n, field in enumerate(concrete_fields(model))
        if isinstance(field, models.DateTimeField)
    }
    model._default_manager.filter(pk=pk).update(**stamps)


def test_every_field_of_both_models_survives_an_export_import_round_trip() -> None:
    for n in range(2):
        # _fill_optional: every field gets a value, including ones added to the models later.
        session = baker.make(AgentSession, session_id=f"s-{n}", _fill_optional=True)
        distinct_timestamps(AgentSession, session.pk, datetime(2024, 5, 1 + n, tzinfo=UTC))
        for i in range(3):
            message = baker.make(
                AgentMessage,
                session=session,
                data={"role": "user", "content": f"{n}.{i}", "nested": [1, 2.5, None, True]},
                _fill_optional=True,
            )
            distinct_timestamps(AgentMessage, message.pk, datetime(2024, 6, 1 + i, tzinfo=UTC))
    before = snapshot()
    walked = {f.name for f in concrete_fields(AgentSession)} | {
        f.name for f in concrete_fields(AgentMessage)
    }
    assert {"session_id", "created_at", "updated_at", "data"} <= walked

    exported = io.StringIO()
    transfer.export_sessions(exported, using="default")
    AgentSession.objects.all().delete()
    lines = exported.getvalue().splitlines()
    result = transfer.import_sessions(lambda: transfer.read_jsonl(lines), using="default")

    assert (result.sessions, result.items) == (2, 6)
    assert snapshot() == before
    # The search text (random above) is not exported: the import computed it from data.
    assert '"text"' not in exported.getvalue()
    assert sorted(AgentMessage.objects.values_list("text", flat=True)) == [
        f"{n}.{i}" for n in range(2) for i in range(3)
    ]
