"""``agent_sessions ... | head`` ends quietly (issue 10, item 12)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.db import connection

from openai_django_sessions.models import AgentMessage, AgentSession

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
COMMAND = (sys.executable, "-m", "django", "agent_sessions", "--settings=tests.settings")
COMMAND += ("--skip-checks",)


@pytest.fixture
def many_sessions() -> None:
    """More output than a pipe buffers, so the command is still writing when the reader leaves."""
    sessions = AgentSession.objects.bulk_create(
        [AgentSession(session_id=f"piped-{n:04d}") for n in range(600)]
    )
    AgentMessage.objects.bulk_create(
        [AgentMessage(session=s, data={"role": "user", "content": "x" * 400}) for s in sessions]
    )


def run_into_closed_pipe(*args: str) -> tuple[int, str]:
    """Run the command, read 100 bytes of its output, close the pipe; (status, stderr)."""
    # The subprocess uses this test's database under its own name.
    env = {**os.environ, "TEST_DB_NAME": connection.settings_dict["NAME"].removesuffix(".sqlite3")}
    process = subprocess.Popen(
        [*COMMAND, *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        cwd=ROOT,
        env=env,
    )
    assert process.stdout is not None and process.stderr is not None
    head = process.stdout.read(100)
    process.stdout.close()
    stderr = process.stderr.read().decode()
    status = process.wait(timeout=60)
    assert len(head) == 100, stderr
    return status, stderr


@pytest.mark.parametrize(
    "args",
    [("export",), ("list",), ("list", "--json"), ("show", "piped-0001", "--json")],
    ids=["export", "list", "list-json", "show-json"],
)
def test_a_reader_that_stops_early_ends_the_command_quietly(many_sessions, args):
    if args[0] == "show":
        session = AgentSession.objects.get(session_id="piped-0001")
        AgentMessage.objects.bulk_create(
            [AgentMessage(session=session, data={"n": n, "text": "y" * 200}) for n in range(800)]
        )
    status, stderr = run_into_closed_pipe(*args)
    assert stderr == ""
    assert status == 141
