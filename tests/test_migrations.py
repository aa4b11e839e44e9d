"""Migrations: clean under any table-name setting, and adopting the tables of 0.1/0.2."""

from __future__ import annotations

import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.db import connection

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentMessage, AgentSession, AgentUsage

ROOT = Path(__file__).resolve().parent.parent

# The tables as projects on 0.1/0.2 have them (its README's SQL, per database).
RELEASE_0_1_SQL = {
    "postgresql": [
        """CREATE TABLE agent_sessions (
            id BIGSERIAL PRIMARY KEY,
            session_id VARCHAR(255) UNIQUE NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW(),
            updated_at TIMESTAMP WITH TIME ZONE DEFAULT NOW())""",
        "CREATE INDEX idx_agent_sessions_session_id ON agent_sessions(session_id)",
        """CREATE TABLE agent_messages (
            id BIGSERIAL PRIMARY KEY,
            session_id BIGINT NOT NULL REFERENCES agent_sessions(id) ON DELETE CASCADE,
            data JSONB NOT NULL,
            created_at TIMESTAMP WITH TIME ZONE DEFAULT NOW())""",
        "CREATE INDEX idx_agent_messages_session_id ON agent_messages(session_id)",
    ],
    "sqlite": [
        """CREATE TABLE agent_sessions (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id VARCHAR(255) UNIQUE NOT NULL,
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP,
            updated_at DATETIME DEFAULT CURRENT_TIMESTAMP)""",
        "CREATE INDEX idx_agent_sessions_session_id ON agent_sessions(session_id)",
        """CREATE TABLE agent_messages (
            id INTEGER PRIMARY KEY AUTOINCREMENT,
            session_id BIGINT NOT NULL REFERENCES agent_sessions(id) ON DELETE CASCADE,
            data TEXT NOT NULL CHECK (JSON_VALID(data)),
            created_at DATETIME DEFAULT CURRENT_TIMESTAMP)""",
        "CREATE INDEX idx_agent_messages_session_id ON agent_messages(session_id)",
    ],
    "mysql": [
        """CREATE TABLE agent_sessions (
            id BIGINT AUTO_INCREMENT PRIMARY KEY,
            session_id VARCHAR(255) NOT NULL UNIQUE,
            created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
            updated_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6))""",
        "CREATE INDEX idx_agent_sessions_session_id ON agent_sessions(session_id)",
        """CREATE TABLE agent_messages (
            id BIGINT AUTO_INCREMENT PRIMARY KEY,
            session_id BIGINT NOT NULL,
            data JSON NOT NULL,
            created_at DATETIME(6) DEFAULT CURRENT_TIMESTAMP(6),
            FOREIGN KEY (session_id) REFERENCES agent_sessions(id) ON DELETE CASCADE)""",
        "CREATE INDEX idx_agent_messages_session_id ON agent_messages(session_id)",
    ],
}


def run_manage(*args: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "django", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.mark.django_db
def test_makemigrations_is_clean_with_default_table_names():
    call_command("makemigrations", "openai_django_sessions", check=True, dry_run=True, verbosity=0)


def test_custom_table_names_name_the_tables_and_makemigrations_stays_clean(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings_custom_tables",
        "CUSTOM_TABLES_DB": str(tmp_path / "custom.sqlite3"),
    }
    check = run_manage("makemigrations", "openai_django_sessions", "--check", "--dry-run", env=env)
    assert check.returncode == 0, check.stdout + check.stderr
    migrate = run_manage("migrate", "openai_django_sessions", env=env)
    assert migrate.returncode == 0, migrate.stdout + migrate.stderr
    with sqlite3.connect(tmp_path / "custom.sqlite3") as db:
        names = {row[0] for row in db.execute("SELECT name FROM sqlite_master WHERE type='table'")}
    assert {"chat_threads", "chat_items", "chat_usage"} <= names
    assert not {"agent_sessions", "agent_messages", "agent_usage"} & names


def test_an_invalid_table_name_is_reported_by_the_checks_before_migrate(tmp_path):
    env = {
        "DJANGO_SETTINGS_MODULE": "tests.settings_custom_tables",
        "CUSTOM_TABLES_DB": str(tmp_path / "bad.sqlite3"),
        "CUSTOM_SESSIONS_TABLE": "agent-sessions; DROP TABLE x",
    }
    migrate = run_manage("migrate", "openai_django_sessions", env=env)
    assert migrate.returncode != 0
    assert "openai_django_sessions.E004" in migrate.stderr
    assert not (tmp_path / "bad.sqlite3").exists() or "agent-sessions" not in (
        tmp_path / "bad.sqlite3"
    ).read_bytes().decode("latin-1")


def indexes(table: str) -> list[list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, table)
    return [c["columns"] for c in found.values() if c["index"] and not c["primary_key"]]


def session_id_indexes() -> list[list[str]]:
    return indexes(AgentMessage._meta.db_table)


def columns(table: str) -> set[str]:
    with connection.cursor() as cursor:
        return {c.name for c in connection.introspection.get_table_description(cursor, table)}


OWNER_COLUMNS = {"owner_id", "title", "metadata", "forked_from", "forked_from_position"}
USAGE_COLUMNS = {
    "id",
    "session_id",
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
    "details",
    "created_at",
}


def assert_owner_usage_forks_schema() -> None:
    assert columns(AgentSession._meta.db_table) >= OWNER_COLUMNS
    assert columns(AgentUsage._meta.db_table) == USAGE_COLUMNS
    assert ["owner_id", "updated_at"] in indexes(AgentSession._meta.db_table)
    assert ["owner_id"] not in indexes(AgentSession._meta.db_table)  # the composite one serves
    assert ["session_id", "id"] in indexes(AgentUsage._meta.db_table)
    # The (session, id) index serves the foreign key: no second one on session_id.
    assert ["session_id"] not in indexes(AgentUsage._meta.db_table)


@pytest.mark.django_db
def test_migrations_add_owner_title_metadata_forks_and_the_usage_table():
    assert_owner_usage_forks_schema()


@pytest.mark.django_db(transaction=True)
def test_owner_usage_forks_migration_reverses_and_reapplies():
    call_command("migrate", "openai_django_sessions", "0002", verbosity=0)
    try:
        assert not OWNER_COLUMNS & columns(AgentSession._meta.db_table)
        assert AgentUsage._meta.db_table not in connection.introspection.table_names()
    finally:
        call_command("migrate", "openai_django_sessions", verbosity=0)
    assert_owner_usage_forks_schema()


@pytest.mark.django_db
def test_messages_have_one_index_on_the_session_ordered_by_id():
    # c[:1]: the full-text index on an expression (PostgreSQL) has no columns listed.
    assert [c for c in session_id_indexes() if c[:1] == ["session_id"]] == [["session_id", "id"]]


@pytest.mark.django_db(transaction=True)
def test_fake_initial_adopts_the_tables_of_0_1_then_migrate_adds_the_rest():
    call_command("migrate", "openai_django_sessions", "zero", verbosity=0)
    try:
        with connection.cursor() as cursor:
            for statement in RELEASE_0_1_SQL[connection.vendor]:
                cursor.execute(statement)
            cursor.execute("INSERT INTO agent_sessions (session_id) VALUES ('legacy')")
            cursor.execute(
                "INSERT INTO agent_messages (session_id, data) "
                "SELECT id, %s FROM agent_sessions WHERE session_id = 'legacy'",
                ['{"role": "user", "content": "from 0.1"}'],
            )
        assert ["session_id", "id"] not in session_id_indexes()

        call_command("migrate", "openai_django_sessions", fake_initial=True, verbosity=0)

        assert ["session_id", "id"] in session_id_indexes()
        assert ["session_id"] not in session_id_indexes()  # the composite one serves
        assert_owner_usage_forks_schema()
        legacy = AgentSession.objects.get(session_id="legacy")
        assert (legacy.owner, legacy.title, legacy.metadata) == (None, "", {})
        assert (legacy.forked_from, legacy.forked_from_position) == ("", None)
        session = DjangoSession("legacy")
        assert session._get_items(None) == [{"role": "user", "content": "from 0.1"}]
        session._add_items([{"role": "assistant", "content": "from 0.3"}])
        assert [i["content"] for i in session._get_items(None)] == ["from 0.1", "from 0.3"]
    finally:
        call_command("migrate", "openai_django_sessions", "zero", verbosity=0)
        with connection.cursor() as cursor:  # in case the adoption failed half-way
            for table in ("agent_messages", "agent_sessions"):
                if table in connection.introspection.table_names(cursor):
                    cursor.execute(f"DROP TABLE {table}")
        call_command("migrate", "openai_django_sessions", verbosity=0)
