"""``manage.py demo_admin``: a staff login for the example's admin, in one step.

Creates the superuser ``admin`` with a random password and prints both, once;
later runs only say that the user exists (``manage.py changepassword admin``
sets a new password). ``scripts/run-example`` runs it before serving.
"""

from __future__ import annotations

from typing import Any

from django.core.management.base import BaseCommand, CommandParser

from chat.demo_users import create_once

USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the admin's demo superuser (printing its password) unless it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=USERNAME)

    def handle(self, *args: Any, **options: Any) -> None:
        self.stdout.write(create_once(options["username"], superuser=True, where="Admin: /admin/"))
