"""``manage.py chat`` in a real terminal (a pseudo-terminal): line editing, Ctrl+C, Ctrl+D.

The command runs in a child process whose controlling terminal is the pty, as in
a shell, on a SQLite database of its own; keys are written to the pty as a
terminal sends them (an arrow key is an escape sequence, Ctrl+C is ``\\x03``).
"""

from __future__ import annotations

import os
import pty
import select
import subprocess
import sys
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from tests.serving import PROJECT_DIR, migrate, server_env, stored_history

LEFT_ARROW = "\x1b[D"
CTRL_C = "\x03"
CTRL_D = "\x04"


class Terminal:
    """The terminal side of a pty: keys in, everything printed out."""

    def __init__(self, process: subprocess.Popen[bytes], fd: int) -> None:
        self.process, self.fd, self.output = process, fd, ""
        self.seen = 0  # where the last text waited for ends

    def type(self, keys: str) -> None:
        os.write(self.fd, keys.encode())

    def wait_for(self, text: str, timeout: float = 60) -> None:
        """Read until ``text`` has been printed after the text waited for last."""
        while text not in self.output[self.seen :]:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:
                raise AssertionError(f"{text!r} not printed; the terminal shows:\n{self.output}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:  # the child has exited and closed the pty
                chunk = b""
            if not chunk:
                raise AssertionError(f"exited before {text!r}; the terminal shows:\n{self.output}")
            self.output += chunk.decode(errors="replace")
        self.seen = self.output.index(text, self.seen) + len(text)

    def exit_status(self, timeout: float = 60) -> int:
        """Read what is left, then the child's exit status; fail if it does not end."""
        while True:
            ready, _, _ = select.select([self.fd], [], [], timeout)
            if not ready:  # still running: fail rather than wait forever
                raise AssertionError(f"the chat did not exit; the terminal shows:\n{self.output}")
            try:
                chunk = os.read(self.fd, 4096)
            except OSError:
                break
            if not chunk:
                break
            self.output += chunk.decode(errors="replace")
        return self.process.wait(timeout=timeout)


# Makes the pty (its stdin) the controlling terminal of the new session, then runs the
# command: Ctrl+C becomes SIGINT as in a shell. (pty.fork would fork this threaded process.)
LAUNCHER = (
    "import fcntl, os, sys, termios; fcntl.ioctl(0, termios.TIOCSCTTY, 0); "
    "os.execv(sys.executable, [sys.executable, *sys.argv[1:]])"
)


# As nohup, "cmd &" in a script, or a test harness start it: SIGINT ignored, which
# the child inherits through exec.
IGNORING_SIGINT = "import signal; signal.signal(signal.SIGINT, signal.SIG_IGN); " + LAUNCHER


@contextmanager
def chat_in_terminal(
    database_url: str, session_id: str, *, launcher: str = LAUNCHER
) -> Iterator[Terminal]:
    env = dict(server_env(database_url), TERM="xterm")
    controller, tty = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-c", launcher, "manage.py", "chat", session_id],
        stdin=tty,
        stdout=tty,
        stderr=tty,
        cwd=PROJECT_DIR,
        env=env,
        start_new_session=True,
    )
    os.close(tty)
    terminal = Terminal(process, controller)
    try:
        yield terminal
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        os.close(controller)


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    url = f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    migrate(url)
    return url


def test_arrow_keys_edit_the_line_and_ctrl_c_at_the_prompt_exits_cleanly(
    database_url: str,
) -> None:
    with chat_in_terminal(database_url, "pty-1") as terminal:
        terminal.wait_for("you> ")
        terminal.type("My name is Aa" + LEFT_ARROW + "d\r")  # fixed before Enter
        terminal.wait_for("Nice to meet you, Ada.")
        terminal.wait_for("you> ")
        # As a person would, once the prompt is up: readline is then reading the line.
        time.sleep(0.5)
        terminal.type(CTRL_C)
        status = terminal.exit_status()
    assert status == 0, terminal.output
    assert "Traceback" not in terminal.output
    assert "KeyboardInterrupt" not in terminal.output
    assert "Bye. The conversation stays stored." in terminal.output
    history = stored_history(database_url, "pty-1")
    assert "you> My name is Ada\n" in history  # no escape sequence stored
    assert "\x1b" not in history


def test_ctrl_c_ends_the_chat_when_it_was_started_with_sigint_ignored(database_url: str) -> None:
    with chat_in_terminal(database_url, "pty-3", launcher=IGNORING_SIGINT) as terminal:
        terminal.wait_for("you> ")
        time.sleep(0.5)  # as a person would, once the prompt is up
        terminal.type(CTRL_C)
        status = terminal.exit_status()
    assert status == 0, terminal.output
    assert "Bye. The conversation stays stored." in terminal.output


def test_ctrl_d_at_the_prompt_exits_cleanly(database_url: str) -> None:
    with chat_in_terminal(database_url, "pty-2") as terminal:
        terminal.wait_for("you> ")
        time.sleep(0.5)
        terminal.type(CTRL_D)
        status = terminal.exit_status()
    assert status == 0, terminal.output
    assert "Traceback" not in terminal.output
    assert "Bye. The conversation stays stored." in terminal.output
