"""The public API: what each public module declares in ``__all__``, and that it exists."""

from __future__ import annotations

import importlib

import pytest

# The modules whose names are public and stable; the others are internal.
PUBLIC = {
    "openai_django_sessions": ["DjangoSession", "SessionBusy", "SessionDetails"],
    "openai_django_sessions.session": ["DjangoSession"],
    "openai_django_sessions.details": ["SessionDetails"],
    "openai_django_sessions.models": [
        "AbstractAgentMessage",
        "AbstractAgentSession",
        "AgentMessage",
        "AgentSession",
        "AgentSessionQuerySet",
        "AgentUsage",
        "SessionIdField",
    ],
    "openai_django_sessions.signals": [
        "session_cleared",
        "session_compacted",
        "session_item_popped",
        "session_items_added",
    ],
    "openai_django_sessions.routers": ["ShardRouter", "shard_for"],
    "openai_django_sessions.compaction": ["CompactionSession"],
    "openai_django_sessions.usage": [
        "COUNTERS",
        "UsageTotals",
        "atotals",
        "session_annotations",
        "totals",
    ],
    "openai_django_sessions.maintenance": [
        "MessageCount",
        "PruneResult",
        "erase_owner",
        "parse_duration",
        "prune",
        "sessions",
        "sessions_of",
    ],
    "openai_django_sessions.turns": ["undo_since", "undone_on_failure"],
    "openai_django_sessions.admin": ["AgentSessionAdmin", "AgentSessionForm"],
    "openai_django_sessions.apps": ["OpenAIDjangoSessionsConfig"],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_each_public_module_declares_exactly_its_public_names(module_name: str) -> None:
    module = importlib.import_module(module_name)

    assert sorted(module.__all__) == sorted(PUBLIC[module_name])
    for name in module.__all__:
        assert getattr(module, name) is not None, name
