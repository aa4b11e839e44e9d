"""Which database a session uses: using=, the DATABASE setting, then routers."""

from __future__ import annotations

import pytest
from django.test import override_settings

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentSession

pytestmark = pytest.mark.django_db(transaction=True, databases=["default", "other"])


class SessionsToOther:
    """Sends this app's reads and writes to the "other" database."""

    def db_for_read(self, model, **hints):
        return "other" if model._meta.app_label == "openai_django_sessions" else None

    db_for_write = db_for_read

    def allow_migrate(self, db, app_label, **hints):
        return None


async def where_stored(session_id: str) -> list[str]:
    return [
        alias
        for alias in ("default", "other")
        if await AgentSession.objects.using(alias).filter(session_id=session_id).aexists()
    ]


async def test_using_selects_the_database():
    session = DjangoSession("explicit", using="other")
    await session.add_items([{"n": 1}])
    assert await where_stored("explicit") == ["other"]
    assert await session.get_items() == [{"n": 1}]
    assert await DjangoSession("explicit").get_items() == []
    assert await session.pop_item() == {"n": 1}
    await session.clear_session()
    assert await where_stored("explicit") == []


async def test_database_setting_is_the_default():
    with override_settings(OPENAI_DJANGO_SESSIONS={"DATABASE": "other"}):
        session = DjangoSession("configured")
        await session.add_items([{"n": 1}])
        assert await session.get_items() == [{"n": 1}]
    assert await where_stored("configured") == ["other"]


async def test_routers_decide_when_nothing_is_configured():
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.SessionsToOther"]):
        session = DjangoSession("routed")
        await session.add_items([{"n": 1}])
        assert await session.get_items() == [{"n": 1}]
        assert await where_stored("routed") == ["other"]


async def test_using_wins_over_the_setting():
    with override_settings(OPENAI_DJANGO_SESSIONS={"DATABASE": "other"}):
        await DjangoSession("explicit-wins", using="default").add_items([{"n": 1}])
    assert await where_stored("explicit-wins") == ["default"]
