"""get_items(limit=N) reads N rows through the (session_id, id) index, on every database."""

from __future__ import annotations

import re

import pytest
from django.db import connection

from openai_django_sessions import DjangoSession, storage
from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)


def explain(sql: str, params: list[str]) -> str:
    prefix = {
        "postgresql": "EXPLAIN (ANALYZE, COSTS OFF)",
        "sqlite": "EXPLAIN QUERY PLAN",
        "mysql": "EXPLAIN",
    }[connection.vendor]
    with connection.cursor() as cursor:
        cursor.execute(f"{prefix} {sql}", params)
        return "\n".join(" ".join(str(col) for col in row) for row in cursor.fetchall())


def test_the_newest_items_are_read_from_the_index_without_sorting_the_session():
    for name in ("other", "long"):
        DjangoSession(name)._add_items([{"n": n} for n in range(600)])
    with connection.cursor() as cursor:  # planners decide on fresh statistics
        cursor.execute(
            {"postgresql": "ANALYZE", "sqlite": "ANALYZE", "mysql": "SELECT 1"}[connection.vendor]
        )
    sql = storage.storage_for(AgentSession, AgentMessage, "default").history_sql(limit=20)
    plan = explain(sql, ["long"])

    assert "agent_msg_session_id_idx" in plan, plan
    if connection.vendor == "postgresql":
        assert "Sort" not in plan, plan
        assert re.search(r"Index Scan Backward using agent_msg_session_id_idx .*rows=20 ", plan)
    elif connection.vendor == "sqlite":
        assert "TEMP B-TREE" not in plan, plan
    else:
        assert "filesort" not in plan.lower(), plan
