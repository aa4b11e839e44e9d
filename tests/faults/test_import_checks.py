"""import checks the whole input before writing anything: every problem is a
CommandError naming its line (issue 10, item 11)."""

from __future__ import annotations

import io
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import connection

from openai_django_sessions.models import AgentSession

pytestmark = pytest.mark.django_db(transaction=True)

ROOT = Path(__file__).resolve().parents[2]
COMMAND = (sys.executable, "-m", "django", "agent_sessions", "--settings=tests.settings")
COMMAND += ("--skip-checks",)
GOOD = json.dumps({"session_id": "first", "items": [{"data": {"n": 1}}]})


def deep(levels: int) -> str:
    return "[" * levels + "]" * levels


def nested_line(levels: int) -> str:
    return '{"session_id": "b", "items": [{"data": {"t": ' + deep(levels) + "}}]}"


BAD_SECOND_LINES = {
    "lone surrogate in an item": '{"session_id": "b", "items": [{"data": {"t": "\\ud800"}}]}',
    "nesting beyond the limit": nested_line(40),
    "nesting of 10,000 levels": nested_line(10_000),
    "created_at at the edge of the range": json.dumps(
        {"session_id": "b", "created_at": "0001-01-01T00:30:00+01:00", "items": []}
    ),
    "item created_at at the edge": json.dumps(
        {
            "session_id": "b",
            "items": [{"data": {}, "created_at": "9999-12-31T23:30:00-01:00"}],
        }
    ),
    "session id with a lone surrogate": '{"session_id": "b\\udc80", "items": []}',
    "session id with NUL": '{"session_id": "b\\u0000", "items": []}',
}


@pytest.mark.parametrize(
    "second",
    [v for v in BAD_SECOND_LINES.values() if v],
    ids=[k for k, v in BAD_SECOND_LINES.items() if v],
)
def test_a_bad_line_is_reported_with_its_number_and_nothing_is_imported(tmp_path, second):
    path = tmp_path / "in.jsonl"
    path.write_text(f"{GOOD}\n{second}\n", encoding="utf-8")
    with pytest.raises(CommandError, match=r"line 2: "):
        call_command("agent_sessions", "import", str(path), stdout=io.StringIO())
    assert AgentSession.objects.count() == 0


def test_invalid_utf8_on_standard_input_is_reported_with_its_line_number():
    env = {**os.environ, "TEST_DB_NAME": connection.settings_dict["NAME"].removesuffix(".sqlite3")}
    done = subprocess.run(
        [*COMMAND, "import", "-"],
        input=GOOD.encode() + b"\n" + b'{"session_id": "b\xff", "items": []}\n',
        capture_output=True,
        cwd=ROOT,
        env=env,
        check=False,
    )
    assert done.returncode == 1
    assert "line 2: not valid UTF-8" in done.stderr.decode()
    assert "Traceback" not in done.stderr.decode()
    assert AgentSession.objects.count() == 0
