"""Migrations: clean under any table-name setting, and adopting the seed's tables."""

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
from openai_django_sessions.models import AgentMessage

ROOT = Path(__file__).resolve().parent.parent

# The seed's tables as projects on 0.1/0.2 have them (its README's SQL, per database).
SEED_SQL = {
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
    assert {"chat_threads", "chat_items"} <= names
    assert "agent_sessions" not in names


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


def session_id_indexes() -> list[list[str]]:
    with connection.cursor() as cursor:
        found = connection.introspection.get_constraints(cursor, AgentMessage._meta.db_table)
    return [c["columns"] for c in found.values() if c["index"] and not c["primary_key"]]


@pytest.mark.django_db
def test_messages_have_one_index_on_the_session_ordered_by_id():
    assert [c for c in session_id_indexes() if c[0] == "session_id"] == [["session_id", "id"]]


@pytest.mark.django_db(transaction=True)
def test_fake_initial_adopts_the_seed_tables_and_adds_the_index():
    call_command("migrate", "openai_django_sessions", "zero", verbosity=0)
    try:
        with connection.cursor() as cursor:
            for statement in SEED_SQL[connection.vendor]:
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
