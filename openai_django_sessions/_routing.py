"""Which database a session lives on: the one rule every part of the app follows.

``DjangoSession``, the admin, ``manage.py agent_sessions``, the system checks,
export/import and prune all ask ``alias_for``. The rule, first match wins:

1. an explicit ``using=`` alias;
2. ``OPENAI_DJANGO_SESSIONS["DATABASE"]``;
3. Django's database routers, asked ``db_for_read`` or ``db_for_write`` with the
   hint ``session_id=...`` when one session is meant, so that a router can place
   each conversation on a database of its own (a shard router, for example).
   Routers that ignore the hint see the same call as before.
"""

from __future__ import annotations

from django.db import router
from django.db.models import Model

from . import _conf as conf

SESSION_ID_HINT = "session_id"


def alias_for(
    model: type[Model],
    *,
    write: bool,
    session_id: str | None = None,
    using: str | None = None,
) -> str:
    """The database alias for ``model`` (and the session ``session_id``, if given).

    ``write`` picks ``db_for_write`` over ``db_for_read``. Without a
    ``session_id`` the routers get no hint: the answer is where sessions
    live when no single one is meant (a listing, a system check).
    """
    if using:
        return using
    configured = conf.database()
    if configured:
        return str(configured)
    route = router.db_for_write if write else router.db_for_read
    if session_id is None:
        return route(model)
    return route(model, **{SESSION_ID_HINT: session_id})


def databases(model: type[Model], *, using: str | None = None) -> list[str]:
    """Every alias sessions of ``model`` may live on, for work over all of them.

    ``using``, else ``DATABASE``, else the aliases the first router that has a
    ``session_databases()`` method lists (``routers.ShardRouter`` lists its
    shards), else the one alias the routers give without a hint.
    """
    if using or conf.database():
        return [alias_for(model, write=False, using=using)]
    for candidate in router.routers:
        listed = getattr(candidate, "session_databases", None)
        if listed is not None:
            return list(listed())
    return [alias_for(model, write=False)]
