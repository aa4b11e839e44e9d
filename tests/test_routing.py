"""Which database a session uses: using=, the DATABASE setting, then routers."""

from __future__ import annotations

import pytest
from django.test import override_settings

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentSession
from tests.settings import with_driver_cursor

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
    with override_settings(OPENAI_DJANGO_SESSIONS=with_driver_cursor({"DATABASE": "other"})):
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
    with override_settings(OPENAI_DJANGO_SESSIONS=with_driver_cursor({"DATABASE": "other"})):
        await DjangoSession("explicit-wins", using="default").add_items([{"n": 1}])
    assert await where_stored("explicit-wins") == ["default"]


class RecordsHints:
    """Sends sessions whose id starts with "o-" to "other" and remembers what it was asked."""

    asked: list[tuple[str, str | None]] = []

    def _route(self, kind, model, hints):
        if model._meta.app_label != "openai_django_sessions":
            return None
        session_id = hints.get("session_id")
        self.asked.append((kind, session_id))
        return "other" if session_id and session_id.startswith("o-") else "default"

    def db_for_read(self, model, **hints):
        return self._route("read", model, hints)

    def db_for_write(self, model, **hints):
        return self._route("write", model, hints)


async def test_routers_are_told_which_session_each_operation_is_for():
    RecordsHints.asked = []
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.RecordsHints"]):
        placed, home = DjangoSession("o-1"), DjangoSession("d-1")
        for session in (placed, home):
            await session.add_items([{"n": 1}, {"n": 2}])
            assert await session.get_items() == [{"n": 1}, {"n": 2}]
            assert await session.pop_item() == {"n": 2}
        await placed.clear_session()
    assert await where_stored("o-1") == []
    assert await where_stored("d-1") == ["default"]
    assert ("write", "o-1") in RecordsHints.asked and ("read", "o-1") in RecordsHints.asked
    assert {kind for kind, session_id in RecordsHints.asked if session_id is None} == set()


def test_the_command_tells_the_router_the_session_it_shows():
    from io import StringIO

    from django.core.management import call_command

    RecordsHints.asked = []
    with override_settings(DATABASE_ROUTERS=[f"{__name__}.RecordsHints"]):
        DjangoSession("o-shown")._add_items([{"role": "user", "content": "hi"}])
        out = StringIO()
        call_command("agent_sessions", "show", "o-shown", stdout=out)
        call_command("agent_sessions", "list", stdout=StringIO())
    assert "hi" in out.getvalue()
    assert ("read", "o-shown") in RecordsHints.asked
    assert ("read", None) in RecordsHints.asked  # a listing means no single session
