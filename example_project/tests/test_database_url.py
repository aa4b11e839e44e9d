from pathlib import Path

import pytest

from chatsite.database_url import parse_database_url, sqlite_database


def test_relative_sqlite_path_is_taken_from_the_base_dir() -> None:
    config = parse_database_url("sqlite:///chat.sqlite3", base_dir=Path("/srv/app"))
    assert config["ENGINE"] == "django.db.backends.sqlite3"
    assert config["NAME"] == "/srv/app/chat.sqlite3"


def test_absolute_sqlite_path_takes_four_slashes() -> None:
    assert parse_database_url("sqlite:////tmp/chat.sqlite3")["NAME"] == "/tmp/chat.sqlite3"


def test_sqlite_gets_wal_and_immediate_transactions() -> None:
    options = sqlite_database("x.sqlite3")["OPTIONS"]
    assert options["init_command"] == "PRAGMA journal_mode=WAL;"
    assert options["transaction_mode"] == "IMMEDIATE"


def test_postgres_url_gives_every_connection_field() -> None:
    config = parse_database_url("postgres://ada:p%40ss@db.example:6543/chat?sslmode=require")
    assert config == {
        "ENGINE": "django.db.backends.postgresql",
        "NAME": "chat",
        "USER": "ada",
        "PASSWORD": "p@ss",
        "HOST": "db.example",
        "PORT": "6543",
        "OPTIONS": {"sslmode": "require"},
    }


def test_postgresql_scheme_is_an_alias_and_port_is_optional() -> None:
    config = parse_database_url("postgresql://postgres@127.0.0.1/chat")
    assert config["ENGINE"] == "django.db.backends.postgresql"
    assert config["PORT"] == ""
    assert config["PASSWORD"] == ""


def test_mysql_url_uses_utf8mb4() -> None:
    config = parse_database_url("mysql://root@127.0.0.1:3306/chat")
    assert config["ENGINE"] == "django.db.backends.mysql"
    assert config["OPTIONS"]["charset"] == "utf8mb4"
    assert config["TEST"]["CHARSET"] == "utf8mb4"


def test_unknown_scheme_is_refused_with_the_known_ones() -> None:
    with pytest.raises(ValueError, match=r"oracle.*mysql.*postgres"):
        parse_database_url("oracle://x@y/z")


def test_server_url_without_database_name_is_refused() -> None:
    with pytest.raises(ValueError, match="database name"):
        parse_database_url("postgres://postgres@127.0.0.1:5432/")


def test_sqlite_url_without_path_is_refused() -> None:
    with pytest.raises(ValueError, match="file path"):
        parse_database_url("sqlite://")
