"""Who a conversation belongs to: turning what callers pass as an owner into a key.

An owner is given as a user instance (of ``AUTH_USER_MODEL``) or as its primary
key. Everything that accepts one (``DjangoSession(owner=...)``,
``AgentSession.objects.owned_by(...)``) goes through ``owner_key``, so every
caller refuses the same things with the same messages, before any query runs.
"""

from __future__ import annotations

import itertools
import uuid
from collections.abc import Iterable, Iterator
from typing import Any, TypeVar, cast

from django.contrib.auth import get_user_model
from django.core.exceptions import ValidationError
from django.db import models, router

from . import _routing as routing

# What a primary key is given as: its text (from a URL, ``request.session``...),
# an int or a UUID. Anything else (1.5, Decimal("1.9"), b"1") would be converted
# by the key's field to some user's key: refused rather than guessed at.
KEY_TYPES = (str, int, uuid.UUID)

S = TypeVar("S")


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


def users_database(sessions_alias: str | None = None) -> str:
    """The alias the owners of conversations on ``sessions_alias`` are read from.

    For every database the routing sends conversations to (``routing.databases``:
    the shards with ``routers.ShardRouter``, ``DATABASE``), and for ``None``, the
    users' database (``router.db_for_read`` of the user model): a shard holds no
    users. A database outside them, named with ``using=`` (a copy being moved to
    another vendor), holds its own users. Every lookup of a user by name, and
    every owner's name shown, reads there, then filters conversations by
    ``owner_id``.
    """
    from .models import AgentSession  # the models import this module's helpers

    if sessions_alias is None or sessions_alias in routing.databases(AgentSession):
        return str(router.db_for_read(get_user_model()))
    return sessions_alias


def keys_of(usernames: Iterable[str], using: str, chunk: int = 500) -> dict[str, Any]:
    """``{username: primary key}`` of the users of ``using`` named (``USERNAME_FIELD``)
    in ``usernames``; a name no user has is left out."""
    users = get_user_model()._default_manager.db_manager(using)
    name = username_field()
    wanted = sorted(set(usernames))
    found: dict[str, Any] = {}
    for start in range(0, len(wanted), chunk):
        rows = users.filter(**{f"{name}__in": wanted[start : start + chunk]})
        found.update((str(username), pk) for username, pk in rows.values_list(name, "pk"))
    return found


def names_of(keys: Iterable[Any], using: str, chunk: int = 500) -> dict[Any, str]:
    """``{primary key: USERNAME_FIELD value}`` of the users of ``using`` with these keys
    (``None`` skipped), one query per ``chunk`` keys."""
    users = get_user_model()._default_manager.db_manager(using)
    name = username_field()
    wanted = list(dict.fromkeys(key for key in keys if key is not None))
    found: dict[Any, str] = {}
    for start in range(0, len(wanted), chunk):
        rows = users.filter(pk__in=wanted[start : start + chunk]).values_list("pk", name)
        found.update((pk, str(username)) for pk, username in rows)
    return found


def keys_containing(text: str, using: str) -> list[Any]:
    """Keys of the users of ``using`` whose ``USERNAME_FIELD`` contains ``text``
    (``icontains``, as the admin's search matches)."""
    users = get_user_model()._default_manager.db_manager(using)
    matching = users.filter(**{f"{username_field()}__icontains": text})
    return list(matching.values_list("pk", flat=True))


def username_of(user: models.Model | None) -> str | None:
    """``user``'s ``USERNAME_FIELD`` value; ``None`` for no user."""
    return None if user is None else str(getattr(user, username_field()))


def user_exists(username: str, aliases: Iterable[str]) -> bool:
    """Whether a user with this ``USERNAME_FIELD`` value owns, or could own,
    conversations on one of ``aliases`` (is on their ``users_database``)."""
    return any(keys_of([username], using) for using in users_databases(aliases))


def users_databases(aliases: Iterable[str]) -> list[str]:
    """The ``users_database`` of each of ``aliases``, each once."""
    return list(dict.fromkeys(users_database(alias) for alias in aliases))


def with_names(sessions: Iterable[S], chunk: int = 500) -> Iterator[tuple[S, str | None]]:
    """Each of ``sessions`` with its owner's ``USERNAME_FIELD`` value (``None``: no owner).

    An owner selected with its session (``select_related``, where the users
    are) is read from it; the others from the ``users_database`` of the
    sessions' database in one query per ``chunk`` sessions, never through the
    session's own database, which (a shard) holds no users.
    """
    rows = iter(sessions)
    while batch := list(itertools.islice(rows, chunk)):
        wanted: dict[str, list[Any]] = {}
        for row in batch:
            if not _owner_cached(row):
                wanted.setdefault(_users_of(row), []).append(cast(Any, row).owner_id)
        names = {
            (using, key): name
            for using, keys in wanted.items()
            for key, name in names_of(keys, using, chunk).items()
        }
        for row in batch:
            shown = cast(Any, row)
            if _owner_cached(row):
                yield row, username_of(shown.owner)
            else:
                yield row, names.get((_users_of(row), shown.owner_id))


def _users_of(row: Any) -> str:
    return users_database(row._state.db)


def _owner_cached(session: Any) -> bool:
    return session.owner_id is None or type(session).owner.is_cached(session)
