"""The ``OPENAI_DJANGO_SESSIONS`` setting, with its defaults.

```python
OPENAI_DJANGO_SESSIONS = {
    "SESSIONS_TABLE": "agent_sessions",  # read once, when models are imported
    "MESSAGES_TABLE": "agent_messages",  # read once, when models are imported
    "USAGE_TABLE": "agent_usage",  # read once, when models are imported
    "LEASES_TABLE": "agent_session_leases",  # read once, when models are imported
    "DATABASE": None,  # an alias from DATABASES; None lets routers decide
    "SHARDS": None,  # aliases for routers.ShardRouter to spread sessions over
    "PREVIOUS_SHARDS": None,  # SHARDS before the last change, while sessions move
    "MAX_ITEM_BYTES": None,  # None follows the database; see limits.max_item_bytes
    "EXPIRE_AFTER": None,  # a timedelta or seconds: conversations inactive that long expire
    "SEARCH_CONFIG": "simple",  # PostgreSQL's text search configuration for search
    "DRIVER_CURSOR": True,  # the hot statements on the driver's cursor when nothing observes
}
```
"""

from __future__ import annotations

import re
from datetime import timedelta
from typing import Any

from django.conf import settings

SETTING_NAME = "OPENAI_DJANGO_SESSIONS"
DEFAULTS: dict[str, Any] = {
    "SESSIONS_TABLE": "agent_sessions",
    "MESSAGES_TABLE": "agent_messages",
    "USAGE_TABLE": "agent_usage",
    "LEASES_TABLE": "agent_session_leases",
    "DATABASE": None,
    "SHARDS": None,
    "PREVIOUS_SHARDS": None,
    "MAX_ITEM_BYTES": None,
    "EXPIRE_AFTER": None,
    "SEARCH_CONFIG": "simple",
    "DRIVER_CURSOR": True,
}
# Plain SQL identifiers only: these names are written into DDL. 50 characters
# leaves room for the suffixes of index names within every backend's limit.
IDENTIFIER = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,49}")


def user_settings() -> Any:
    """The setting as the project wrote it (``{}`` when absent or ``None``).

    Whatever else it is comes back as it is, ``[]`` and ``""`` too: the
    system checks report a setting that is not a dict (E001).
    """
    value = getattr(settings, SETTING_NAME, None)
    return {} if value is None else value


def get(key: str) -> Any:
    """One setting's value, falling back to its default."""
    value = user_settings()
    if isinstance(value, dict) and key in value:
        return value[key]
    return DEFAULTS[key]


def validate_table_name(name: object, what: str) -> str:
    """Return ``name`` if it is a plain SQL identifier, else raise.

    Raises ``TypeError`` for a non-string and ``ValueError`` for anything that
    is not ``[A-Za-z_][A-Za-z0-9_]*`` of at most 50 characters.
    """
    if not isinstance(name, str):
        raise TypeError(f"{what} must be a str, not {type(name).__name__}")
    if not IDENTIFIER.fullmatch(name):
        raise ValueError(
            f"{what} {name!r} is not a plain SQL identifier "
            "(letters, digits and underscores, not starting with a digit, "
            "at most 50 characters)"
        )
    return name


def table_setting(key: str) -> str:
    """The table name the setting gives for ``key``, for the models and migrations.

    Read when the models are imported, before the system checks run, so this
    raises nothing: a value that is not a str (or a setting that is not a
    dict) gives the default name here and is reported by the checks (E001,
    E003); a str that is not a plain identifier is reported too (E004), and
    ``DjangoSession`` refuses to use it.
    """
    value = get(key)
    return value if isinstance(value, str) else str(DEFAULTS[key])


def sessions_table() -> str:
    return validate_table_name(get("SESSIONS_TABLE"), f"{SETTING_NAME}['SESSIONS_TABLE']")


def messages_table() -> str:
    return validate_table_name(get("MESSAGES_TABLE"), f"{SETTING_NAME}['MESSAGES_TABLE']")


def usage_table() -> str:
    return validate_table_name(get("USAGE_TABLE"), f"{SETTING_NAME}['USAGE_TABLE']")


def database() -> str | None:
    return get("DATABASE")


def shards() -> list[str]:
    """The ``SHARDS`` aliases, ``[]`` when unset (the system checks report bad values)."""
    value = get("SHARDS")
    return [str(alias) for alias in value] if isinstance(value, (list, tuple)) else []


def max_item_bytes() -> int | None:
    """``MAX_ITEM_BYTES`` if it is a positive int, else ``None`` (the database's default).

    Other values are reported by the system checks (``E003``, ``E008``).
    """
    value = get("MAX_ITEM_BYTES")
    if isinstance(value, int) and not isinstance(value, bool) and value > 0:
        return value
    return None


def previous_shards() -> list[str]:
    """The ``PREVIOUS_SHARDS`` aliases (``SHARDS`` before the last change), ``[]`` when unset."""
    value = get("PREVIOUS_SHARDS")
    return [str(alias) for alias in value] if isinstance(value, (list, tuple)) else []


def expire_after() -> timedelta | None:
    """``EXPIRE_AFTER`` as a ``timedelta``; ``None`` when unset or not a positive
    duration of at most 100 years (the system checks report bad values, ``E010``)."""
    from . import _retention as retention

    try:
        return retention.check_expires_after(get("EXPIRE_AFTER"), "EXPIRE_AFTER")
    except (TypeError, ValueError):
        return None


def search_config() -> str:
    """``SEARCH_CONFIG``, the PostgreSQL text search configuration (``"simple"``,
    ``"english"``...) that full-text search stems and drops stop words with.

    Raises ``TypeError``/``ValueError`` unless it is a plain SQL identifier: it
    is written into SQL (the index's expression and every search) as a literal.
    The system checks report it too (``E011``).
    """
    return validate_table_name(get("SEARCH_CONFIG"), f"{SETTING_NAME}['SEARCH_CONFIG']")
