"""Serve the example with uvicorn in a subprocess, as the run script does."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

PROJECT_DIR = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def server_env(database_url: str) -> dict[str, str]:
    """The environment of the server: the given database, no API key (offline model)."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("OPENAI_")}
    env.update(
        DATABASE_URL=database_url,
        DJANGO_SETTINGS_MODULE="chatsite.settings",
        PYTHONUNBUFFERED="1",
    )
    return env


def migrate(database_url: str) -> None:
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--no-input", "-v", "0"],
        cwd=PROJECT_DIR,
        env=server_env(database_url),
        check=True,
        timeout=120,
    )


@contextmanager
def uvicorn_server(
    database_url: str, log: Path, *, app: str = "chatsite.asgi:application"
) -> Iterator[str]:
    """Migrate ``database_url``, serve ``app`` on it on a free port, yield the base URL.

    The server's output goes to ``log``, quoted in the error if it does not start.
    """
    migrate(database_url)
    port = free_port()
    with log.open("wb") as output:
        process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "uvicorn",
                app,
                "--host",
                "127.0.0.1",
                "--port",
                str(port),
                "--lifespan",
                "off",  # as scripts/run-example: Django has no lifespan handler
            ],
            cwd=PROJECT_DIR,
            env=server_env(database_url),
            stdout=output,
            stderr=subprocess.STDOUT,
        )
        base_url = f"http://127.0.0.1:{port}"
        try:
            _wait_for(base_url, process, log)
            yield base_url
        finally:
            process.terminate()
            try:
                process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


def _wait_for(base_url: str, process: subprocess.Popen[bytes], log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"uvicorn exited with {process.returncode}:\n{log.read_text()}")
        try:
            # The first request imports the views and the SDK: allow it time.
            with urllib.request.urlopen(base_url + "/", timeout=20) as response:
                if response.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            time.sleep(0.1)
    raise RuntimeError(f"uvicorn did not answer on {base_url} within 60 s:\n{log.read_text()}")


def manage(database_url: str, *command: str, input: str | None = None) -> str:
    """What ``manage.py`` with ``command`` prints, run on ``database_url``; fails if it fails."""
    result = subprocess.run(
        [sys.executable, "manage.py", *command],
        input=input,
        cwd=PROJECT_DIR,
        env=server_env(database_url),
        capture_output=True,
        text=True,
        timeout=120,
        check=True,
    )
    return result.stdout


def stored_history(database_url: str, session_id: str) -> str:
    """The conversation's stored items as ``manage.py chat`` prints them, before its prompt."""
    return manage(database_url, "chat", session_id, input="/quit\n").partition("Commands:")[0]
