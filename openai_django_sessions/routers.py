"""``ShardRouter``: conversations spread over several databases, each on exactly one.

```python
DATABASE_ROUTERS = ["openai_django_sessions.routers.ShardRouter"]
OPENAI_DJANGO_SESSIONS = {"SHARDS": ["sessions_1", "sessions_2", "sessions_3"]}
```

Each session is placed by rendezvous (highest random weight) hashing of its id:
every shard scores the id with a stable hash (BLAKE2b, the same in every process
and Python version) and the highest score wins. Adding a shard moves only the
sessions the new shard wins (about 1/N of them with N shards after the change);
removing one moves only its own sessions. Reads and writes go to the shard
itself, the primary: the SDK reads the history right after writing it, and a
lagging replica would make the agent forget the last turn.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from typing import Any

from django.db.models import Model

from . import _conf as conf
from . import _routing as routing

__all__ = ["ShardRouter", "shard_for"]

APP_LABEL = "openai_django_sessions"


# BLAKE2b's key is at most 64 bytes: a longer alias is keyed by its own hash.
_MAX_KEY = 64
# ...and scored with another personalization, so that no short alias scores alike.
_LONG_ALIAS = b"ods-long-alias"


def shard_for(session_id: str, shards: Sequence[str]) -> str:
    """The alias among ``shards`` that ``session_id`` lives on (rendezvous hashing)."""
    if not shards:
        raise ValueError("no shards to place the session on")
    key = session_id.encode()

    def score(alias: str) -> bytes:
        # The alias is hashed with the id: the order of SHARDS does not matter.
        name = alias.encode()
        if len(name) <= _MAX_KEY:  # as placed since 0.3: keep every session where it is
            return hashlib.blake2b(key, digest_size=8, key=name).digest()
        whole = hashlib.blake2b(name, digest_size=_MAX_KEY).digest()
        return hashlib.blake2b(key, digest_size=8, key=whole, person=_LONG_ALIAS).digest()

    return max(shards, key=score)


class ShardRouter:
    """Routes this app's models to ``OPENAI_DJANGO_SESSIONS["SHARDS"]``; other apps untouched.

    - A session's queries go to ``shard_for(session_id, SHARDS)``: the routing
      rule (``routing.alias_for``) passes the ``session_id`` hint, and a model
      instance hint (``instance=``) is followed to the shard it was read from.
    - With no session meant (a listing, the admin's changelist) the first shard
      answers; ``session_databases()`` tells the commands and the admin every
      shard, so that they cover them all.
    - ``migrate`` creates this app's tables on every shard and nowhere else.
    - Rows on different shards never relate.
    """

    def session_databases(self) -> list[str]:
        # While sessions move (PREVIOUS_SHARDS), the shards they move from too.
        return list(dict.fromkeys([*conf.shards(), *conf.previous_shards()]))

    def _place(self, model: type[Model], hints: dict[str, Any]) -> str | None:
        if model._meta.app_label != APP_LABEL:
            return None
        shards = conf.shards()
        if not shards:
            return None
        session_id = hints.get(routing.SESSION_ID_HINT)
        if isinstance(session_id, str):
            return shard_for(session_id, shards)
        instance = hints.get("instance")
        if instance is not None and instance._state.db in shards:
            return str(instance._state.db)
        return shards[0]

    def db_for_read(self, model: type[Model], **hints: Any) -> str | None:
        return self._place(model, hints)

    def db_for_write(self, model: type[Model], **hints: Any) -> str | None:
        return self._place(model, hints)

    def allow_relation(self, obj1: Model, obj2: Model, **hints: Any) -> bool | None:
        if obj1._meta.app_label != APP_LABEL or obj2._meta.app_label != APP_LABEL:
            return None
        return obj1._state.db == obj2._state.db

    def allow_migrate(
        self, db: str, app_label: str, model_name: str | None = None, **hints: Any
    ) -> bool | None:
        if app_label != APP_LABEL or not conf.shards():
            return None
        return db in self.session_databases()
