"""Demo logins, created once with a random password printed that one time.

``manage.py demo_admin`` (the admin's superuser) and ``manage.py demo_user``
(a user of the chat) both use ``create_once``; ``scripts/run-example`` runs both.
"""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.utils.crypto import get_random_string


def create_once(username: str, *, superuser: bool, where: str) -> str:
    """Create ``username`` unless it exists; the line telling how to sign in at ``where``.

    A new user's password is in that line, once; for an existing one the line
    says how to set a new password instead.
    """
    users = get_user_model()
    if users._default_manager.filter(**{users.USERNAME_FIELD: username}).exists():
        return (
            f"==> {where} as {username!r} (password printed when it was created; "
            f"`manage.py changepassword {username}` sets a new one)"
        )
    password = get_random_string(16)
    create = (
        users._default_manager.create_superuser if superuser else users._default_manager.create_user
    )
    create(username=username, email="", password=password)
    return f"==> {where} as {username!r}, password {password} (shown once)"
