"""Turn a ``DATABASE_URL`` into one entry of Django's ``DATABASES``.

A few lines instead of a dependency: the example understands exactly three
schemes, and says so when given anything else.

- ``sqlite:///relative/path.sqlite3`` or ``sqlite:////absolute/path.sqlite3``
- ``postgres://user:password@host:port/name`` (also ``postgresql://``)
- ``mysql://user:password@host:port/name`` (MariaDB too; also ``mariadb://``)

Query parameters (``?sslmode=require``) become ``OPTIONS``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

# journal_mode=WAL lets the page read while a turn (maybe in a background
# thread) writes; IMMEDIATE takes the write lock up front, so two writers wait
# for each other instead of failing with "database is locked" mid-transaction.
SQLITE_OPTIONS: dict[str, Any] = {
    "init_command": "PRAGMA journal_mode=WAL;",
    "transaction_mode": "IMMEDIATE",
    "timeout": 20,
}

ENGINES = {
    "sqlite": "django.db.backends.sqlite3",
    "postgres": "django.db.backends.postgresql",
    "postgresql": "django.db.backends.postgresql",
    "mysql": "django.db.backends.mysql",
    "mariadb": "django.db.backends.mysql",
}


def sqlite_database(path: Path | str) -> dict[str, Any]:
    """The ``DATABASES`` entry for a SQLite file at ``path``, WAL enabled.

    The test database is a file too (``test_`` + the name, alongside): an
    in-memory one would lock whole tables against the threads that run
    background turns.
    """
    path = Path(path)
    return {
        "ENGINE": ENGINES["sqlite"],
        "NAME": str(path),
        "OPTIONS": dict(SQLITE_OPTIONS),
        "TEST": {"NAME": str(path.with_name(f"test_{path.name}"))},
    }


def parse_database_url(url: str, *, base_dir: Path | None = None) -> dict[str, Any]:
    """The ``DATABASES`` entry that ``url`` describes.

    A relative SQLite path is taken relative to ``base_dir`` (the current
    directory when ``None``). Raises ``ValueError`` for an unknown scheme or a
    server URL without a database name.
    """
    parts = urlsplit(url.strip())
    scheme = parts.scheme.lower()
    if scheme not in ENGINES:
        known = ", ".join(sorted(ENGINES))
        raise ValueError(f"DATABASE_URL scheme {scheme!r} is not one of: {known}")

    if scheme == "sqlite":
        # sqlite:///db.sqlite3 -> "/db.sqlite3" -> relative; sqlite:////tmp/x -> absolute.
        raw = unquote(parts.path)[1:] if parts.path.startswith("/") else unquote(parts.path)
        if not raw:
            raise ValueError("a sqlite DATABASE_URL needs a file path: sqlite:///db.sqlite3")
        path = Path(raw)
        if not path.is_absolute() and base_dir is not None:
            path = base_dir / path
        return sqlite_database(path)

    name = unquote(parts.path.lstrip("/"))
    if not name:
        raise ValueError(f"DATABASE_URL {scheme}://... needs a database name after the host")
    config: dict[str, Any] = {
        "ENGINE": ENGINES[scheme],
        "NAME": name,
        "USER": unquote(parts.username or ""),
        "PASSWORD": unquote(parts.password or ""),
        "HOST": parts.hostname or "",
        "PORT": str(parts.port or ""),
        "OPTIONS": dict(parse_qsl(parts.query)),
    }
    if config["ENGINE"] == ENGINES["mysql"]:
        # Stored items may hold any Unicode text, emoji included.
        config["OPTIONS"].setdefault("charset", "utf8mb4")
        config["TEST"] = {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"}
    return config
