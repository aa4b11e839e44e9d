"""``manage.py demo_user [--username NAME]``: a user who can sign in to the chat.

Creates the user (``demo`` by default, not staff) with a random password and
prints both, once; later runs only say that the user exists. Each user sees
only their own conversations. ``scripts/run-example`` runs it before serving.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chat.demo_users import create_once

USERNAME = "demo"


class Command(BaseCommand):
    help = "Create a chat user (printing its password) unless it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=USERNAME)

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(create_once(options["username"], superuser=False, where="Sign in"))
