"""Ownership under a custom user model (UUID keys, email as USERNAME_FIELD).

Not collected with the suite: ``tests/test_custom_user.py`` runs this file in a
process whose settings are ``tests.settings_custom_user``.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from django.core.exceptions import PermissionDenied
from django.core.management import call_command

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession
from tests.custom_user.models import Member

pytestmark = pytest.mark.django_db(transaction=True)


def msg(text: str) -> dict[str, str]:
    return {"role": "user", "content": text}


def test_the_owner_column_follows_the_custom_user_models_key() -> None:
    owner = AgentSession._meta.get_field("owner")
    assert owner.related_model is Member
    assert owner.target_field.get_internal_type() == "UUIDField"  # type: ignore[union-attr]


async def test_members_own_their_conversations() -> None:
    ann = await Member.objects.acreate(email="ann@example.com")
    ben = await Member.objects.acreate(email="ben@example.com")

    await DjangoSession("chat", owner=ann).add_items([msg("Hello there")])

    assert await DjangoSession("chat", owner=str(ann.pk)).get_items() == [msg("Hello there")]
    with pytest.raises(PermissionDenied):
        await DjangoSession("chat", owner=ben).get_items()
    with pytest.raises(ValueError, match="not a valid primary key"):
        DjangoSession("chat", owner="ann@example.com")
    listed = [(s.session_id, s.title) async for s in AgentSession.objects.conversations(ann)]
    assert listed == [("chat", "Hello there")]


async def test_a_member_is_named_by_their_uuid_or_its_text_and_nothing_else() -> None:
    ann = await Member.objects.acreate(email="ann@example.com")
    await DjangoSession("chat", owner=ann).add_items([msg("Hello there")])

    for key in (ann.pk, str(ann.pk), ann.pk.hex):
        assert await DjangoSession("chat", owner=key).get_items() == [msg("Hello there")]
    for value in (ann.pk.bytes, 1.5):
        with pytest.raises(TypeError, match="or its primary key"):
            DjangoSession("chat", owner=value)
        with pytest.raises(TypeError, match="or its primary key"):
            AgentSession.objects.owned_by(value)
    with pytest.raises(ValueError, match=r"not a valid primary key of custom_user\.Member"):
        DjangoSession("chat", owner=str(ann.pk)[:-1])


async def test_deleting_a_member_deletes_their_conversations() -> None:
    ann = await Member.objects.acreate(email="ann@example.com")
    await DjangoSession("chat", owner=ann).add_items([msg("1"), msg("2")])

    await ann.adelete()

    assert await AgentSession.objects.acount() == 0
    assert await AgentMessage.objects.acount() == 0


def test_export_and_import_name_owners_by_email(tmp_path: Path) -> None:
    ann = Member.objects.create(email="ann@example.com")
    session = AgentSession.objects.create(session_id="chat", owner=ann, title="Hi")
    AgentMessage.objects.create(session=session, data=msg("Hi"))
    export = tmp_path / "out.jsonl"
    call_command("agent_sessions", "export", "--output", str(export), stdout=io.StringIO())
    assert json.loads(export.read_text())["owner"] == "ann@example.com"
    AgentSession.objects.all().delete()
    ann.delete()
    again = Member.objects.create(email="ann@example.com")  # another primary key

    call_command("agent_sessions", "import", str(export), stdout=io.StringIO())

    assert AgentSession.objects.get().owner_id == again.pk
    out = io.StringIO()
    call_command("agent_sessions", "list", "--owner", "ann@example.com", stdout=out)
    assert "chat" in out.getvalue() and "ann@example.com" in out.getvalue()
