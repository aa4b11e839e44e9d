"""``manage.py demo_admin``: a staff login for the example's admin, in one step.

Creates the superuser ``admin`` with a random password and prints both, once;
later runs only say that the user exists (``manage.py changepassword admin``
sets a new password). ``scripts/run-example`` runs it before serving.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand, CommandParser
from django.utils.crypto import get_random_string

USERNAME = "admin"


class Command(BaseCommand):
    help = "Create the admin's demo superuser (printing its password) unless it exists."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--username", default=USERNAME)

    def handle(self, *args: Any, **options: Any) -> None:
        username: str = options["username"]
        users = get_user_model()
        if users._default_manager.filter(username=username).exists():
            self.stdout.write(
                f"==> Admin: /admin/ as {username!r} (password printed when it was created; "
                f"`manage.py changepassword {username}` sets a new one)"
            )
            return
        password = get_random_string(16)
        users._default_manager.create_superuser(username=username, email="", password=password)
        self.stdout.write(f"==> Admin: /admin/ as {username!r}, password {password} (shown once)")
