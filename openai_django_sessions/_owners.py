"""Who a conversation belongs to: turning what callers pass as an owner into a key.

An owner is given as a user instance (of ``AUTH_USER_MODEL``) or as its primary
key. Everything that accepts one (``DjangoSession(owner=...)``,
``AgentSession.objects.owned_by(...)``) goes through ``owner_key``, so every
caller refuses the same things with the same messages, before any query runs.
"""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from typing import Any

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models

# What a primary key is given as: its text (from a URL, ``request.session``...),
# an int or a UUID. Anything else (1.5, Decimal("1.9"), b"1") would be converted
# by the key's field to some user's key: refused rather than guessed at.
KEY_TYPES = (str, int, uuid.UUID)


def owner_key(owner: object, what: str = "owner") -> Any:
    """The primary key of ``owner``: a saved user instance, or a primary key value.

    A primary key value is a ``str``, an ``int`` (not a ``bool``) or a
    ``uuid.UUID`` that the user model's primary key field converts to a value
    it can hold (its validators pass: an integer key's range, a string key's
    length). Raises ``ValueError`` for an anonymous user, an unsaved user or a
    value the key cannot hold, and ``TypeError`` for ``None``, a bool, an
    instance of another model or a value of any other type (a float, a
    ``Decimal``, bytes). Does no I/O: a key of a user that does not exist passes
    here (and owns nothing).
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
    if isinstance(owner, bool) or not isinstance(owner, KEY_TYPES):
        raise TypeError(
            f"{what} must be a {user_model._meta.label} instance or its primary key "
            f"(a str, an int or a UUID), not {type(owner).__name__}"
        )
    key_field = user_model._meta.pk
    assert key_field is not None  # every concrete model has one
    try:
        key = key_field.to_python(owner)
        key_field.run_validators(key)
    except (ValidationError, TypeError, ValueError, OverflowError):
        raise ValueError(
            f"{what}={owner!r:.80} is not a valid primary key of {user_model._meta.label}"
        ) from None
    return key


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
