"""The public API: what each public module declares in ``__all__``, and that it exists."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import django
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
    "openai_django_sessions.search": [
        "MAX_QUERY_LENGTH",
        "MAX_TEXT_LENGTH",
        "message_text",
        "search",
    ],
    "openai_django_sessions.admin": ["AgentSessionAdmin", "AgentSessionForm"],
    "openai_django_sessions.apps": ["OpenAIDjangoSessionsConfig"],
    "openai_django_sessions.exceptions": ["LooseSessionIds", "SessionBusy"],
    "openai_django_sessions.limits": ["DEFAULT_MAX_ITEM_BYTES", "max_item_bytes"],
    # The task exists where Django has its tasks framework (6.0 and later).
    "openai_django_sessions.tasks": ["purge_expired"]
    + (["purge_expired_conversations"] if django.VERSION >= (6, 0) else []),
    # Migrations (ours, and those of projects with their own tables) name these paths.
    "openai_django_sessions.items": ["ItemEncoder"],
    "openai_django_sessions.deletion": ["cascade"],
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


def test_every_module_of_the_package_is_public_or_named_internal() -> None:
    # The rule that keeps the public API readable from the file names: a module
    # is in PUBLIC (with its ``__all__``) or its name starts with an underscore.
    # Django finds migrations and management commands by path, so those
    # packages are exempt.
    package = importlib.import_module("openai_django_sessions")
    unnamed = []
    for info in pkgutil.walk_packages(package.__path__, "openai_django_sessions."):
        if info.name.split(".")[1] in ("migrations", "management"):
            continue
        if info.name not in PUBLIC and not info.name.rsplit(".", 1)[1].startswith("_"):
            unnamed.append(info.name)

    assert unnamed == []


def test_the_reference_documents_every_public_module() -> None:
    # ``session`` and ``details`` hold the classes the package itself exports,
    # documented at ``openai_django_sessions.<name>``; every other public module
    # has its section in docs/reference/api.md (whose names tests/test_docs.py
    # compares with ``__all__``).
    api = (Path(__file__).parent.parent / "docs" / "reference" / "api.md").read_text()
    documented = {
        name
        for name in PUBLIC
        if f"::: {name}\n" in api
        or name in ("openai_django_sessions.session", "openai_django_sessions.details")
    }
    documented.add("openai_django_sessions")

    assert set(PUBLIC) - documented == set()
