"""The command that continues a conversation in a terminal, as the page shows it."""

from __future__ import annotations

import os
import shlex
import sys
from urllib.parse import urlsplit, urlunsplit

from django.conf import settings

HIDDEN_PASSWORD = "PASSWORD"


def chat_command(session_id: str, username: str) -> str:
    """A shell command that opens ``session_id`` as ``username`` in ``manage.py chat``.

    It names this server's Python (the virtualenv's, where Django is installed),
    this project's ``manage.py`` by absolute path, and the database the server
    uses, so it works from any directory and never opens another database. A
    password in ``DATABASE_URL`` is not shown: ``PASSWORD`` stands in its place.
    """
    manage_py = settings.BASE_DIR / "manage.py"
    words = [
        f"DATABASE_URL={shlex.quote(shown_database_url())}",
        shlex.quote(sys.executable),
        shlex.quote(str(manage_py)),
        "chat",
        "--user",
        shlex.quote(username),
        shlex.quote(session_id),
    ]
    return " ".join(words)


def shown_database_url() -> str:
    """The server's ``DATABASE_URL`` (the default SQLite file's when unset), password hidden."""
    url = os.environ.get("DATABASE_URL", "").strip()
    if not url:
        return f"sqlite:///{settings.DATABASES['default']['NAME']}"
    parts = urlsplit(url)
    if parts.password is None:
        return url
    user = parts.username or ""
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return urlunsplit(parts._replace(netloc=f"{user}:{HIDDEN_PASSWORD}@{host}{port}"))
