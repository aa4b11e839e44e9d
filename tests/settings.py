"""Test settings: ``TEST_DB`` picks the database (sqlite, postgres or mysql)."""

import os
from typing import Any

TEST_DB = os.environ.get("TEST_DB", "sqlite")
# Distinct names let several test runs share one server at once.
NAME = os.environ.get("TEST_DB_NAME", "openai_django_sessions")

_DATABASES: dict[str, dict[str, Any]] = {
    "sqlite": {
        "ENGINE": "django.db.backends.sqlite3",
        "NAME": f"{NAME}.sqlite3",
        # WAL, but Django's default (deferred) transactions and lock timeout: the
        # suite proves DjangoSession copes without the recommended IMMEDIATE mode.
        "OPTIONS": {"init_command": "PRAGMA journal_mode=WAL;"},
        "TEST": {"NAME": f"test_{NAME}.sqlite3"},
    },
    "postgres": {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": NAME,
        "USER": os.environ.get("PGUSER", "postgres"),
        "HOST": os.environ.get("PGHOST", "127.0.0.1"),
        "PORT": os.environ.get("PGPORT", "5432"),
    },
    "mysql": {
        "ENGINE": "django.db.backends.mysql",
        "NAME": NAME,
        "USER": os.environ.get("MYSQL_USER", "root"),
        "PASSWORD": os.environ.get("MYSQL_PASSWORD", ""),
        "HOST": os.environ.get("MYSQL_HOST", "127.0.0.1"),
        "PORT": os.environ.get("MYSQL_PORT", "3306"),
        "OPTIONS": {"charset": "utf8mb4"},
        "TEST": {"CHARSET": "utf8mb4", "COLLATION": "utf8mb4_unicode_ci"},
    },
}

# TEST_PREPARED_STATEMENTS=1 (PostgreSQL only): the settings docs/how-to/databases.md
# recommends, under which psycopg prepares a statement once it has run a few times on
# a connection. Django's default (no threshold) never prepares, as PgBouncer needs.
PREPARED_STATEMENTS = os.environ.get("TEST_PREPARED_STATEMENTS", "") == "1"
PREPARE_THRESHOLD = 2
if PREPARED_STATEMENTS:
    if TEST_DB != "postgres":
        raise ValueError("TEST_PREPARED_STATEMENTS=1 applies to TEST_DB=postgres only")
    _DATABASES["postgres"]["OPTIONS"] = {
        "server_side_binding": True,
        "prepare_threshold": PREPARE_THRESHOLD,
    }


# TEST_DRIVER_CURSOR=0: the hot statements on Django's cursor (DRIVER_CURSOR False), so
# the suite covers both paths; by default they run on the driver's cursor.
DRIVER_CURSOR = os.environ.get("TEST_DRIVER_CURSOR", "1") != "0"
OPENAI_DJANGO_SESSIONS = {"DRIVER_CURSOR": DRIVER_CURSOR}


def with_driver_cursor(value: dict[str, Any]) -> dict[str, Any]:
    """``OPENAI_DJANGO_SESSIONS`` as a test sets it, keeping this run's ``DRIVER_CURSOR``."""
    return {"DRIVER_CURSOR": DRIVER_CURSOR, **value}


def _second(config: dict, suffix: str = "other") -> dict:
    """The same server under another database name, for routing and shard tests."""
    other = {**config, "NAME": f"{config['NAME']}_{suffix}"}
    other["TEST"] = {
        **config.get("TEST", {}),
        "NAME": f"{config.get('TEST', {}).get('NAME', 'test_' + config['NAME'])}_{suffix}",
    }
    return other


# Three more databases as shards (tests/test_shards.py): PostgreSQL runs the shard
# tests, SQLite the placement ones; MariaDB needs none of them.
# A fourth one is the shard added in the rebalancing tests (tests/test_rebalance.py).
SHARDS = ["shard1", "shard2", "shard3"]
NEW_SHARD = "shard4"
DATABASES = {
    "default": _DATABASES[TEST_DB],
    "other": _second(_DATABASES[TEST_DB]),
    **{
        alias: _second(_DATABASES[TEST_DB], alias)
        for alias in [*SHARDS, NEW_SHARD]
        if TEST_DB in ("sqlite", "postgres")
    },
}
# A SQLite database beside the server under test, to move sessions between two
# vendors (tests/test_transfer.py): SQLite to PostgreSQL, SQLite to MariaDB.
OTHER_VENDOR = "sqlite_source"
if TEST_DB != "sqlite":
    DATABASES[OTHER_VENDOR] = {
        **_DATABASES["sqlite"],
        "NAME": f"{NAME}_{TEST_DB}_{OTHER_VENDOR}.sqlite3",
        "TEST": {"NAME": f"test_{NAME}_{TEST_DB}_{OTHER_VENDOR}.sqlite3"},
    }
SECRET_KEY = "tests-only"
USE_TZ = True
INSTALLED_APPS = [
    "django.contrib.admin",
    "django.contrib.auth",
    "django.contrib.contenttypes",
    "django.contrib.sessions",
    "django.contrib.messages",
    "openai_django_sessions",
]
MIDDLEWARE = [
    "django.contrib.sessions.middleware.SessionMiddleware",
    "django.contrib.auth.middleware.AuthenticationMiddleware",
    "django.contrib.messages.middleware.MessageMiddleware",
]
TEMPLATES = [
    {
        "BACKEND": "django.template.backends.django.DjangoTemplates",
        "APP_DIRS": True,
        "OPTIONS": {
            "context_processors": [
                "django.template.context_processors.request",
                "django.contrib.auth.context_processors.auth",
                "django.contrib.messages.context_processors.messages",
            ]
        },
    }
]
ROOT_URLCONF = "tests.urls"
DEFAULT_AUTO_FIELD = "django.db.models.BigAutoField"
