"""``agent_sessions`` refuses arguments it cannot use with a ``CommandError`` sentence
(exit status 1), before touching the database, the same on every database."""

from __future__ import annotations

import pytest
from django.core.management.base import CommandError

from openai_django_sessions import DjangoSession
from openai_django_sessions.models import AgentSession
from tests.test_command import _manage, run

pytestmark = pytest.mark.django_db

# What Python makes of the byte 0xFF in a command-line argument (surrogateescape).
NOT_UTF8 = b"chat-\xff".decode("utf-8", "surrogateescape")


@pytest.mark.parametrize(
    ("args", "label"),
    [
        (["show", NOT_UTF8], "SESSION_ID"),
        (["export", "fine", NOT_UTF8], "SESSION_ID"),
        (["list", "--owner", NOT_UTF8], "--owner"),
        (["list", "--search", NOT_UTF8], "--search"),
    ],
    ids=["show", "export", "list-owner", "list-search"],
)
def test_an_argument_that_is_not_utf8_is_a_command_error_naming_it_and_its_bytes(
    args: list[str], label: str
) -> None:
    with pytest.raises(CommandError) as refused:
        run(*args)

    assert str(refused.value) == f"{label} is not valid UTF-8 text: b'chat-\\xff'."


@pytest.mark.parametrize(
    "args",
    [
        ["show", "a\x00b"],
        ["export", "a\x00b"],
        ["list", "--owner", "a\x00b"],
        ["list", "--search", "a\x00b"],
    ],
    ids=["show", "export", "list-owner", "list-search"],
)
def test_an_argument_with_the_character_nul_is_a_command_error(args: list[str]) -> None:
    with pytest.raises(CommandError, match=r"must not contain the character U\+0000"):
        run(*args)


def test_a_session_id_longer_than_any_stored_one_is_a_command_error() -> None:
    with pytest.raises(CommandError, match="at most 255 characters"):
        run("show", "x" * 256)


@pytest.mark.parametrize("subcommand", ["list", "prune"])
def test_a_duration_beyond_any_date_is_a_command_error(subcommand: str) -> None:
    DjangoSession("kept")  # nothing stored: the refusal comes first
    with pytest.raises(CommandError, match=r"--inactive-for is too long.*at most 1,000 years"):
        run(subcommand, "--inactive-for", "1000000w")
    with pytest.raises(CommandError, match="too long"):
        run(subcommand, "--inactive-for", "99999999999999999999d")


@pytest.mark.parametrize(
    "args",
    [
        ["show", "chat", "--limit", str(10**20)],
        ["export", "--batch-size", str(10**20)],
        ["import", "-", "--batch-size", str(10**20)],
        ["prune", "--inactive-for", "1d", "--batch-size", str(10**20)],
    ],
    ids=["show-limit", "export-batch-size", "import-batch-size", "prune-batch-size"],
)
def test_a_count_beyond_64_bits_is_a_command_error(args: list[str]) -> None:
    with pytest.raises(CommandError, match=r"must be at most 9,223,372,036,854,775,807"):
        run(*args)


def test_the_largest_count_is_accepted() -> None:
    AgentSession.objects.create(session_id="chat")

    assert "Session 'chat': 0 item(s)" in run("show", "chat", "--limit", str(2**63 - 1))
    assert "Deleted 0 session(s)" in run(
        "prune", "--inactive-for", "1d", "--batch-size", str(2**63 - 1)
    )


@pytest.mark.parametrize(
    "args",
    [
        ["show", NOT_UTF8],
        ["list", "--search", NOT_UTF8],
        ["list", "--inactive-for", "1000000w"],
        ["export", "--batch-size", str(10**20)],
    ],
    ids=["show-not-utf8", "search-not-utf8", "duration", "batch-size"],
)
def test_from_the_command_line_these_exit_with_status_1_and_one_sentence(args: list[str]) -> None:
    finished = _manage(*args)

    assert finished.returncode == 1
    assert finished.stderr.startswith("CommandError: ")
    assert "Traceback" not in finished.stderr
