"""The public API: what each public module declares in ``__all__``, and that it exists."""

from __future__ import annotations

import importlib
import pkgutil

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


def test_every_module_that_declares_all_is_a_public_module() -> None:
    # A module that declares ``__all__`` says its names are public: it belongs in
    # PUBLIC (and in docs/reference/api.md), or it must drop ``__all__``.
    package = importlib.import_module("openai_django_sessions")
    declaring = set()
    for info in pkgutil.iter_modules(package.__path__, "openai_django_sessions."):
        if hasattr(importlib.import_module(info.name), "__all__"):
            declaring.add(info.name)

    assert declaring - set(PUBLIC) == set()
