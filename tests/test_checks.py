"""System checks: the OPENAI_DJANGO_SESSIONS setting, and SQLite's journal mode."""

from __future__ import annotations

import io
import os
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.core.checks import run_checks
from django.core.management import call_command
from django.db import connection
from django.db.utils import ConnectionHandler

from openai_django_sessions import _checks as checks
from openai_django_sessions import _conf as conf

pytestmark = pytest.mark.django_db


def ids(messages: list[Any]) -> list[str]:
    return [m.id for m in messages]


def test_absent_or_valid_setting_passes(settings: Any) -> None:
    del settings.OPENAI_DJANGO_SESSIONS
    assert checks.check_settings() == []
    settings.OPENAI_DJANGO_SESSIONS = {
        "SESSIONS_TABLE": "agent_sessions",
        "MESSAGES_TABLE": "agent_messages",
        "USAGE_TABLE": "agent_usage",
        "DATABASE": "other",
    }
    assert checks.check_settings() == []
    settings.OPENAI_DJANGO_SESSIONS = {"DATABASE": None}
    assert checks.check_settings() == []


@pytest.mark.parametrize(
    ("value", "kind"), [([("DATABASE", "default")], "list"), ([], "list"), ("", "str"), (0, "int")]
)
def test_setting_that_is_not_a_dict_is_E001(settings: Any, value: Any, kind: str) -> None:
    settings.OPENAI_DJANGO_SESSIONS = value

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E001"
    assert f"must be a dict, not {kind}" in error.msg
    assert error.hint


@pytest.mark.parametrize(
    ("setting", "expected"),
    [
        ("{'SESSIONS_TABLE': 5}", "['SESSIONS_TABLE'] must be str, not int"),
        ("{'USAGE_TABLE': None}", "['USAGE_TABLE'] must be str, not NoneType"),
        ("{'MESSAGES_TABLE': b'agent_messages'}", "['MESSAGES_TABLE'] must be str, not bytes"),
        ("[]", "must be a dict, not list"),
        ("''", "must be a dict, not str"),
    ],
)
def test_table_names_of_the_wrong_type_are_reported_by_the_checks_not_at_model_import(
    tmp_path: Path, setting: str, expected: str
) -> None:
    # The table names are read when the models are imported, before any check runs.
    # No database is involved: an in-memory one keeps the backends' own checks quiet.
    (tmp_path / "bad_settings.py").write_text(
        "from tests.settings import *\n"
        "DATABASES = {'default': {'ENGINE': 'django.db.backends.sqlite3', 'NAME': ':memory:'}}\n"
        f"OPENAI_DJANGO_SESSIONS = {setting}\n"
    )
    root = Path(__file__).resolve().parent.parent
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(tmp_path), str(root)])}

    done = subprocess.run(
        [sys.executable, "-m", "django", "check", "--settings=bad_settings"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )

    assert done.returncode == 1
    assert "Traceback" not in done.stderr
    assert "openai_django_sessions.E00" in done.stderr
    assert expected in done.stderr


def test_unknown_key_is_E002_and_suggests_the_closest_one(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"DATABSE": "default", "COLOUR": "blue"}

    errors = checks.check_settings()

    assert ids(errors) == ["openai_django_sessions.E002"] * 2
    assert "unknown key 'DATABSE'" in errors[0].msg
    assert errors[0].hint.startswith("Did you mean 'DATABASE'?")
    assert (
        "Valid keys: SESSIONS_TABLE, MESSAGES_TABLE, USAGE_TABLE, LEASES_TABLE, DATABASE, "
        "SHARDS, PREVIOUS_SHARDS, MAX_ITEM_BYTES, EXPIRE_AFTER, SEARCH_CONFIG, "
        "DRIVER_CURSOR." in errors[1].hint
    )


def test_values_of_the_wrong_type_are_E003(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {
        "SESSIONS_TABLE": 5,
        "USAGE_TABLE": None,
        "DATABASE": ["default"],
        "DRIVER_CURSOR": "no",
    }

    errors = checks.check_settings()

    assert ids(errors) == ["openai_django_sessions.E003"] * 4
    assert "['SESSIONS_TABLE'] must be str, not int" in errors[0].msg
    assert "['USAGE_TABLE'] must be str, not NoneType" in errors[1].msg
    assert "['DATABASE'] must be str or None, not list" in errors[2].msg
    assert "['DRIVER_CURSOR'] must be bool, not str" in errors[3].msg


@pytest.mark.parametrize("limit", [0, -1, True])
def test_an_item_limit_that_is_not_a_positive_number_of_bytes_is_E008(
    settings: Any, limit: int
) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"MAX_ITEM_BYTES": limit}

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E008"
    assert f"['MAX_ITEM_BYTES'] is {limit!r}" in error.msg


def test_an_item_limit_that_is_not_an_int_is_E003_and_a_positive_one_passes(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"MAX_ITEM_BYTES": "32M"}
    [error] = checks.check_settings()
    assert error.id == "openai_django_sessions.E003"
    assert "['MAX_ITEM_BYTES'] must be int or None, not str" in error.msg

    settings.OPENAI_DJANGO_SESSIONS = {"MAX_ITEM_BYTES": 32 * 2**20}
    assert checks.check_settings() == []


@pytest.mark.parametrize(
    "name", ["agent-sessions", "1sessions", "sessions; DROP TABLE x", "s" * 51, "séances", ""]
)
@pytest.mark.parametrize("key", ["SESSIONS_TABLE", "MESSAGES_TABLE", "USAGE_TABLE"])
def test_table_name_that_is_not_a_plain_identifier_is_E004(
    settings: Any, name: str, key: str
) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {key: name}

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E004"
    assert f"[{key!r}] = {name!r} is not a valid table name" in error.msg
    assert "letters, digits and underscores" in error.hint


@pytest.mark.parametrize(
    ("setting", "pair"),
    [
        ({"MESSAGES_TABLE": "agent_sessions"}, "['SESSIONS_TABLE'] and ['MESSAGES_TABLE']"),
        ({"USAGE_TABLE": "agent_sessions"}, "['SESSIONS_TABLE'] and ['USAGE_TABLE']"),
        ({"USAGE_TABLE": "agent_messages"}, "['MESSAGES_TABLE'] and ['USAGE_TABLE']"),
    ],
)
def test_same_name_for_two_tables_is_E006(settings: Any, setting: dict, pair: str) -> None:
    settings.OPENAI_DJANGO_SESSIONS = setting

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E006"
    assert pair in error.msg


def test_database_alias_missing_from_DATABASES_is_E005(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"DATABASE": "sessions"}

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E005"
    assert "'sessions', which is not an alias in DATABASES" in error.msg
    assert "'default', 'other'" in error.hint


@pytest.mark.parametrize(
    "shards",
    [["default", "nowhere"], ["default", "default"], [], ["default", 3]],
    ids=["unknown alias", "repeated", "empty", "not a str"],
)
def test_shards_must_be_distinct_aliases_from_DATABASES_E007(settings: Any, shards: list) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"SHARDS": shards}

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E007"
    assert "must list distinct aliases from DATABASES" in error.msg


def test_shards_naming_aliases_from_DATABASES_pass(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"SHARDS": ["default", "other"]}

    assert checks.check_settings() == []


@pytest.mark.django_db(databases="__all__")  # Django's own checks visit every database
def test_settings_checks_run_with_djangos_check_framework(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"DATABASE": "nowhere", "EXTRA": 1}

    found = [m.id for m in run_checks() if m.id.startswith("openai_django_sessions.")]

    assert sorted(found) == ["openai_django_sessions.E002", "openai_django_sessions.E005"]


# -- W001: SQLite without WAL ----------------------------------------------------


@pytest.fixture
def sqlite_handler(tmp_path: Path) -> Iterator[ConnectionHandler]:
    """Connections whose "default" is a fresh SQLite file, in the default journal mode."""
    handler = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": str(tmp_path / "s.db")}}
    )
    yield handler
    handler.close_all()


def test_sqlite_file_without_wal_is_W001_explaining_the_lock_errors(
    sqlite_handler: ConnectionHandler, tmp_path: Path
) -> None:
    [warning] = checks.sqlite_wal_warnings(sqlite_handler["default"])

    assert warning.id == "openai_django_sessions.W001"
    assert "uses journal_mode=delete, not WAL" in warning.msg
    # Sessions wait and retry (transactions.run): the locks slow them, other writes fail.
    assert "sessions wait for the lock and retry" in warning.hint
    assert "the project's other writes can fail with 'database is locked'" in warning.hint
    assert "PRAGMA journal_mode=WAL;" in warning.hint


def test_sqlite_file_in_wal_mode_passes(sqlite_handler: ConnectionHandler, tmp_path: Path) -> None:
    db = sqlite3.connect(tmp_path / "s.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()

    assert checks.sqlite_wal_warnings(sqlite_handler["default"]) == []


def test_in_memory_sqlite_and_other_backends_are_not_warned() -> None:
    memory = ConnectionHandler(
        {"default": {"ENGINE": "django.db.backends.sqlite3", "NAME": ":memory:"}}
    )
    try:
        assert checks.sqlite_wal_warnings(memory["default"]) == []
    finally:
        memory.close_all()
    # The test database: WAL on SQLite (tests/settings.py), not SQLite elsewhere.
    assert checks.sqlite_wal_warnings(connection) == []


def test_W001_is_a_database_check_run_by_check_database(
    sqlite_handler: ConnectionHandler, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(checks, "connections", sqlite_handler)
    stderr = io.StringIO()

    assert checks.check_sqlite_wal(None) == []  # without databases, nothing is connected to
    assert ids(checks.check_sqlite_wal(None, databases=["other"])) == []
    call_command("check", "--database", "default", stderr=stderr, stdout=io.StringIO())

    assert "openai_django_sessions.W001" in stderr.getvalue()


def test_W001_looks_at_the_database_named_in_the_setting(
    sqlite_handler: ConnectionHandler, monkeypatch: pytest.MonkeyPatch, settings: Any
) -> None:
    monkeypatch.setattr(checks, "connections", sqlite_handler)

    settings.OPENAI_DJANGO_SESSIONS = {"DATABASE": "default"}
    assert ids(checks.check_sqlite_wal(None, databases=["default"])) == [
        "openai_django_sessions.W001"
    ]
    settings.OPENAI_DJANGO_SESSIONS = {"DATABASE": "elsewhere"}
    assert checks.check_sqlite_wal(None, databases=["default"]) == []


def test_previous_shards_must_be_distinct_aliases_from_DATABASES_E007(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"SHARDS": ["default"], "PREVIOUS_SHARDS": ["nowhere"]}

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E007"
    assert "PREVIOUS_SHARDS" in error.msg and "'nowhere' is not one" in error.msg


@pytest.mark.parametrize("config", ["", "english'; --", "pg_catalog.english", "1simple", "a b"])
def test_a_search_config_that_is_not_a_plain_name_is_E011(settings: Any, config: str) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"SEARCH_CONFIG": config}

    [error] = checks.check_settings()

    assert error.id == "openai_django_sessions.E011"
    assert f"['SEARCH_CONFIG'] = {config!r}" in error.msg
    with pytest.raises(ValueError, match="SEARCH_CONFIG"):
        conf.search_config()


def test_a_search_config_of_another_type_is_E003_and_a_name_passes(settings: Any) -> None:
    settings.OPENAI_DJANGO_SESSIONS = {"SEARCH_CONFIG": None}
    assert ids(checks.check_settings()) == ["openai_django_sessions.E003"]
    with pytest.raises(TypeError, match="SEARCH_CONFIG"):
        conf.search_config()

    settings.OPENAI_DJANGO_SESSIONS = {"SEARCH_CONFIG": "english"}
    assert checks.check_settings() == []
    assert conf.search_config() == "english"
