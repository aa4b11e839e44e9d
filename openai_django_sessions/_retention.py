"""How long a conversation lives: expiry after inactivity, and purging the expired.

A conversation of the migrated tables expires when its last activity
(``updated_at``, bumped by every write) is older than its own
``expires_after`` (stored on the row) or, when that is empty, the
``EXPIRE_AFTER`` setting. ``None`` for both: it never expires.

- ``DjangoSession`` reads an expired conversation as empty, and a write to
  it starts afresh: the expired history is deleted first (as
  ``clear_session`` deletes it, ``session_cleared`` sent), in the write's
  transaction. It checks only when expiry can apply to it (the setting is
  set, or the instance was given ``expires_after``): one more statement on
  the session row per call then, none otherwise.
- ``maintenance.prune(alias, expired=True)`` (``agent_sessions prune
  --expired``, the task ``tasks.purge_expired_conversations``) deletes
  expired conversations in batches.
"""

from __future__ import annotations

import datetime
from typing import Any, TypeVar

from django.db.models import DateTimeField, ExpressionWrapper, F, Q, QuerySet
from django.utils import timezone

from . import _conf as conf
from . import _leases as leases


def check_expires_after(value: object) -> datetime.timedelta | None:
    """``value`` (a positive ``timedelta`` or number of seconds, or ``None``) as a
    ``timedelta``; ``TypeError``/``ValueError`` otherwise."""
    seconds = leases.check_seconds(value, "expires_after", allow_none=True, allow_zero=False)
    return None if seconds is None else datetime.timedelta(seconds=seconds)


Rows = TypeVar("Rows", bound=QuerySet[Any])


def expired(rows: Rows, *, now: datetime.datetime | None = None) -> Rows:
    """The conversations among ``rows`` (of ``AgentSession``) that have expired ``now``
    (default: the current time)."""
    return _expiry(rows, now=now, keep_expired=True)


def unexpired(rows: Rows, *, now: datetime.datetime | None = None) -> Rows:
    """The conversations among ``rows`` that have not expired ``now``: a condition on
    each row itself (no subquery), for reads that leave the expired out."""
    return _expiry(rows, now=now, keep_expired=False)


def _expiry(rows: Rows, *, now: datetime.datetime | None, keep_expired: bool) -> Rows:
    now = timezone.now() if now is None else now
    ends = ExpressionWrapper(F("updated_at") + F("expires_after"), output_field=DateTimeField())
    condition = Q(expires_after__isnull=False, ends_at__lt=now)
    default = conf.expire_after()
    if default is not None:
        condition |= Q(expires_after__isnull=True, updated_at__lt=now - default)
    rows = rows.alias(ends_at=ends)
    return rows.filter(condition) if keep_expired else rows.exclude(condition)
