"""``manage.py chat [--user USERNAME] SESSION_ID``: the same conversations, in a terminal.

Prints the stored history, then reads one message per line and answers it
through the same agent and ``DjangoSession`` the web page uses, so a
conversation started in the browser continues here and the other way round.
With ``--user`` the conversation is that user's, as on the page: another
user's is refused, a new one is stored as theirs and shows in their list.
Without it nothing is scoped (an operator's view of any conversation), and a
new conversation is stored without an owner, so it is in no user's list.
Lines starting with ``/`` are commands: ``/undo``, ``/clear``, ``/history``,
``/quit``. In a terminal, lines are edited with ``readline`` (arrow keys,
history); Ctrl+D or Ctrl+C ends the chat.
"""

from __future__ import annotations

import signal
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any, TextIO

from asgiref.sync import async_to_sync
from django.contrib.auth import get_user_model
from django.core.exceptions import PermissionDenied
from django.core.management.base import BaseCommand, CommandError, CommandParser
from openai_django_sessions import SessionBusy

from chat import agent
from chat.model_choice import model_label
from chat.transcript import as_terminal_lines, build_transcript

HELP_LINE = "Commands: /undo (remove the last exchange), /clear, /history, /quit."
PROMPT = "you> "
WAKE_SECONDS = 0.2
BUSY_ELSEWHERE = (
    "(a reply is still being written in this conversation elsewhere: try again in a moment)"
)


@contextmanager
def interrupts_seen_at_the_prompt() -> Iterator[None]:
    """While reading a line, let a Ctrl+C that came just before the prompt end the chat.

    CPython's readline loop raises ``KeyboardInterrupt`` only when a signal
    interrupts its ``select()``: a Ctrl+C that lands while the prompt is being
    set up (the previous answer just printed) is recorded but not raised until
    the line is entered or another Ctrl+C comes. A no-op ``SIGALRM`` every
    ``WAKE_SECONDS`` interrupts that ``select()``, and the recorded Ctrl+C is
    raised then.
    """
    previous = signal.signal(signal.SIGALRM, lambda signum, frame: None)
    signal.setitimer(signal.ITIMER_REAL, WAKE_SECONDS, WAKE_SECONDS)
    try:
        yield
    finally:
        signal.setitimer(signal.ITIMER_REAL, 0)
        signal.signal(signal.SIGALRM, previous)


def plural(count: int, noun: str) -> str:
    return f"{count} {noun}{'' if count == 1 else 's'}"


class Command(BaseCommand):
    help = "Chat in the terminal on a stored conversation (history printed on start)."
    # call_command(..., stdin=io.StringIO(...)) feeds the conversation in tests.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "session_id", help='conversation id, e.g. one from the page ("web-...")'
        )
        parser.add_argument(
            "--user",
            metavar="USERNAME",
            help="chat as this user: their conversation, refused if it is someone else's",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        session_id: str = options["session_id"]
        stdin: TextIO = options.get("stdin") or sys.stdin
        self.owner = self._owner(options["user"])
        try:
            async_to_sync(agent.session_for(session_id, self.owner).get_items)(limit=1)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        except PermissionDenied as exc:
            raise CommandError(
                f"conversation {session_id} belongs to another user than {options['user']!r}"
            ) from exc
        interactive = stdin is sys.stdin and stdin.isatty() and sys.stdout.isatty()
        if interactive:
            import readline  # noqa: F401  # line editing and history for input()

            # Started with Ctrl+C ignored (nohup, "&", a harness), the chat would
            # inherit that and never end on Ctrl+C: a person at the prompt expects it to.
            signal.signal(signal.SIGINT, signal.default_int_handler)
        self.stdout.write(f"Conversation {session_id} (model: {model_label()})")
        self._print_history(session_id)
        self.stdout.write(HELP_LINE)
        try:
            self._converse(session_id, stdin, interactive)
        except (KeyboardInterrupt, EOFError):
            # Ctrl+C or Ctrl+D at the prompt: end its line, then leave quietly.
            self.stdout.write("")
        if interactive:
            self.stdout.write("Bye. The conversation stays stored.")

    @staticmethod
    def _owner(username: str | None) -> Any:
        if username is None:
            return None
        users = get_user_model()
        try:
            return users._default_manager.get_by_natural_key(username)
        except users.DoesNotExist:
            raise CommandError(
                f"no user {username!r}: create one with `manage.py demo_user --username "
                f"{username}` or `manage.py createsuperuser`"
            ) from None

    def _converse(self, session_id: str, stdin: TextIO, interactive: bool) -> None:
        """Read and answer lines until /quit or end of input (raised as ``EOFError``)."""
        while True:
            if interactive:
                with interrupts_seen_at_the_prompt():
                    line = input(PROMPT)
            else:
                line = stdin.readline()
                if not line:
                    return
            text = line.strip()
            if not text:
                continue
            if not interactive:
                self.stdout.write(f"{PROMPT}{text}")
            if text == "/quit":
                return
            if text == "/history":
                self._print_history(session_id)
            elif text == "/undo":
                try:
                    removed = async_to_sync(agent.undo_last_exchange)(session_id, self.owner)
                except SessionBusy:
                    self.stderr.write(BUSY_ELSEWHERE)
                else:
                    self.stdout.write(f"(removed {plural(removed, 'item')})")
            elif text == "/clear":
                try:
                    async_to_sync(agent.clear_conversation)(session_id, self.owner)
                except SessionBusy:
                    self.stderr.write(BUSY_ELSEWHERE)
                else:
                    self.stdout.write("(conversation cleared)")
            elif text.startswith("/"):
                self.stdout.write(f"(unknown command {text}) {HELP_LINE}")
            else:
                self._answer(session_id, text)

    def _items(self, session_id: str) -> list[Any]:
        return list(async_to_sync(agent.session_for(session_id, self.owner).get_items)())

    def _print_history(self, session_id: str) -> None:
        items = self._items(session_id)
        self.stdout.write(f"--- history: {plural(len(items), 'stored message')}")
        for line in as_terminal_lines(build_transcript(items)):
            self.stdout.write(line)
        self.stdout.write("---")

    def _answer(self, session_id: str, text: str) -> None:
        before = len(self._items(session_id))
        try:
            async_to_sync(agent.run_turn)(session_id, text, self.owner)
        except SessionBusy:
            self.stderr.write(BUSY_ELSEWHERE)
            return
        except (ValueError, TypeError) as exc:
            self.stderr.write(f"(this message could not be stored: {exc})")
            return
        except Exception as exc:  # the conversation goes on after a failed turn
            self.stderr.write(f"(the model could not answer: {exc})")
            return
        items = self._items(session_id)
        # The user's line is already on screen: print what the turn added after it.
        for line in as_terminal_lines(build_transcript(items[before:]))[1:]:
            self.stdout.write(line)
