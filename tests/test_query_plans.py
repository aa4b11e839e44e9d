"""get_items(limit=N) reads N rows through the (session_id, id) index, on every database."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.db import connection

from openai_django_sessions import DjangoSession
from openai_django_sessions import _storage as storage
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)


def explain(sql: str, params: list[Any]) -> str:
    prefix = {
        "postgresql": "EXPLAIN (ANALYZE, COSTS OFF)",
        "sqlite": "EXPLAIN QUERY PLAN",
        "mysql": "EXPLAIN",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix} {sql}", params)
        return "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())


@pytest.mark.parametrize("owned", [False, True], ids=["unscoped", "owner-scoped"])
def test_the_newest_items_are_read_from_the_index_without_sorting_the_session(
    owned: bool, django_user_model: Any
) -> None:
    owner = django_user_model.objects.create_user("owner")
    for name in ("other", "long"):
        DjangoSession(name, owner=owner)._add_items([{"n": n} for n in range(600)])
    with connection.cursor() as cursor:  # planners decide on fresh statistics
        cursor.execute(
            {"postgresql": "ANALYZE", "sqlite": "ANALYZE", "mysql": "SELECT 1"}[connection.vendor]
        )
    store = storage.storage_for(AgentSession, AgentMessage, "default")
    sql = store.history_sql(limit=20, owned=owned)
    plan = explain(sql, ["long", owner.pk] if owned else ["long"])

    assert "agent_msg_session_id_idx" in plan, plan
    if connection.vendor == "postgresql":
        assert "Sort" not in plan, plan
        assert re.search(r"Index Scan Backward using agent_msg_session_id_idx .*rows=20 ", plan)
    elif connection.vendor == "sqlite":
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "filesort" not in plan.lower(), plan
