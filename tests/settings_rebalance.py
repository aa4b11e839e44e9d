"""Test settings after a fourth shard was added: ``manage.py agent_sessions rebalance``
runs with these in a process of its own (tests/test_rebalance.py)."""

from tests.settings import *  # noqa: F403
from tests.settings import NEW_SHARD, SHARDS, with_driver_cursor

DATABASE_ROUTERS = ["openai_django_sessions.routers.ShardRouter"]
OPENAI_DJANGO_SESSIONS = with_driver_cursor(
    {"SHARDS": [*SHARDS, NEW_SHARD], "PREVIOUS_SHARDS": SHARDS}
)
