"""Who a conversation belongs to: turning what callers pass as an owner into a key.

An owner is given as a user instance (of ``AUTH_USER_MODEL``) or as its primary
key. Everything that accepts one (``DjangoSession(owner=...)``,
``AgentSession.objects.owned_by(...)``) goes through ``owner_key``, so every
caller refuses the same things with the same messages, before any query runs.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models


def owner_key(owner: object, what: str = "owner") -> Any:
    """The primary key of ``owner``: a saved user instance, or a primary key value.

    Raises ``ValueError`` for an anonymous user, an unsaved user or a value the
    user model's primary key cannot hold, and ``TypeError`` for ``None``, a bool
    or an instance of another model. Does no I/O: a key of a user that does not
    exist passes here (and owns nothing).
    """
    user_model = get_user_model()
    if getattr(owner, "is_anonymous", False) is True and not isinstance(owner, user_model):
        raise ValueError(
            f"{what} is an anonymous user; conversations belong to signed-in users "
            "(check request.user.is_authenticated first)"
        )
    if isinstance(owner, user_model):
        if owner.pk is None:
            raise ValueError(f"{what} is an unsaved {user_model.__name__}: save it first")
        return owner.pk
    if owner is None or isinstance(owner, (bool, models.Model)):
        raise TypeError(
            f"{what} must be a {user_model._meta.label} instance or its primary key, "
            f"not {type(owner).__name__}"
        )
    try:
        return user_model._meta.pk.to_python(owner)  # type: ignore[union-attr]
    except ValidationError:
        raise ValueError(
            f"{what}={owner!r:.80} is not a valid primary key of {user_model._meta.label}"
        ) from None


def username_field() -> str:
    """The user model's ``USERNAME_FIELD``: how exports and the command name owners."""
    return str(get_user_model().USERNAME_FIELD)


def username_of(user: models.Model | None) -> str | None:
    """``user``'s ``USERNAME_FIELD`` value; ``None`` for no user."""
    return None if user is None else str(getattr(user, username_field()))


def user_exists(username: str, aliases: Sequence[str]) -> bool:
    """Whether a user with this ``USERNAME_FIELD`` value is on one of ``aliases``."""
    users = get_user_model()._default_manager
    name = username_field()
    return any(users.db_manager(a).filter(**{name: username}).exists() for a in aliases)
