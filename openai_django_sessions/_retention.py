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

# The longest retention: 100 years, "keep it". The last activity plus it must stay
# a date every database (and Python) can compute: past year 9999 SQLite's date
# arithmetic fails, and one such row would fail every search and purge.
MAX_EXPIRES_AFTER = datetime.timedelta(days=36525)


def check_expires_after(value: object, what: str = "expires_after") -> datetime.timedelta | None:
    """``value`` (a ``timedelta`` or number of seconds from one microsecond to
    ``MAX_EXPIRES_AFTER``, or ``None``) as a ``timedelta``; ``TypeError`` for
    another type, ``ValueError`` for a value out of that range."""
    seconds = leases.check_seconds(value, what, allow_none=True, allow_zero=False)
    if seconds is None:
        return None
    if seconds > MAX_EXPIRES_AFTER.total_seconds():
        raise ValueError(
            f"{what} must be at most {MAX_EXPIRES_AFTER.days} days (100 years), not {value!r}"
        )
    duration = datetime.timedelta(seconds=seconds)
    if duration <= datetime.timedelta(0):  # below a microsecond, which durations count in
        raise ValueError(f"{what} must be at least one microsecond, not {value!r}")
    return duration


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
