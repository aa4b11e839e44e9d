"""``manage.py chat SESSION_ID``: the same conversations, in a terminal.

Prints the stored history, then reads one message per line and answers it
through the same agent and ``DjangoSession`` the web page uses, so a
conversation started in the browser continues here and the other way round.
Lines starting with ``/`` are commands: ``/undo``, ``/clear``, ``/history``,
``/quit`` (end of input quits too).
"""

from __future__ import annotations

import sys
from typing import Any, TextIO

from asgiref.sync import async_to_sync
from django.core.management.base import BaseCommand, CommandError, CommandParser

from chat import agent
from chat.model_choice import model_label
from chat.transcript import as_terminal_lines, build_transcript

HELP_LINE = "Commands: /undo (remove the last exchange), /clear, /history, /quit."


class Command(BaseCommand):
    help = "Chat in the terminal on a stored conversation (history printed on start)."
    # call_command(..., stdin=io.StringIO(...)) feeds the conversation in tests.
    stealth_options = ("stdin",)

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "session_id", help='conversation id, e.g. one from the page ("web-...")'
        )

    def handle(self, *args: Any, **options: Any) -> None:
        session_id: str = options["session_id"]
        stdin: TextIO = options.get("stdin") or sys.stdin
        try:
            agent.session_for(session_id)
        except ValueError as exc:
            raise CommandError(str(exc)) from exc
        # One event loop for the whole conversation; async_to_sync (not
        # asyncio.run) keeps the ORM on this thread and its connection.
        async_to_sync(self._converse)(session_id, stdin)

    async def _converse(self, session_id: str, stdin: TextIO) -> None:
        interactive = stdin.isatty()
        self.stdout.write(f"Conversation {session_id} (model: {model_label()})")
        await self._print_history(session_id)
        self.stdout.write(HELP_LINE)
        while True:
            if interactive:
                self.stdout.write("you> ", ending="")
                self.stdout.flush()
            line = stdin.readline()
            if not line:
                break
            text = line.strip()
            if not text:
                continue
            if not interactive:
                self.stdout.write(f"you> {text}")
            if text == "/quit":
                break
            if text == "/history":
                await self._print_history(session_id)
            elif text == "/undo":
                removed = await agent.undo_last_exchange(session_id)
                self.stdout.write(f"(removed {removed} item{'s' if removed != 1 else ''})")
            elif text == "/clear":
                await agent.clear_conversation(session_id)
                self.stdout.write("(conversation cleared)")
            elif text.startswith("/"):
                self.stdout.write(f"(unknown command {text}) {HELP_LINE}")
            else:
                await self._answer(session_id, text)

    async def _print_history(self, session_id: str) -> None:
        items = await agent.session_for(session_id).get_items()
        lines = as_terminal_lines(build_transcript(items))
        self.stdout.write(f"--- history: {len(items)} stored item{'s' if len(items) != 1 else ''}")
        for line in lines:
            self.stdout.write(line)
        self.stdout.write("---")

    async def _answer(self, session_id: str, text: str) -> None:
        before = len(await agent.session_for(session_id).get_items())
        try:
            await agent.run_turn(session_id, text)
        except Exception as exc:  # the conversation goes on after a failed turn
            self.stderr.write(f"(the model could not answer: {exc})")
            return
        items = await agent.session_for(session_id).get_items()
        # The user's line is already on screen: print what the turn added after it.
        for line in as_terminal_lines(build_transcript(items[before:]))[1:]:
            self.stdout.write(line)
