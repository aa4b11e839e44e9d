"""Finding, listing and pruning stored sessions: the work behind ``agent_sessions``.

Everything here works on the migrated models (``AgentSession``/``AgentMessage``)
on one database alias, and writes through ``transactions.run`` so that lock
contention is waited out as it is for ``DjangoSession``.
"""

from __future__ import annotations

import heapq
import re
from collections.abc import Callable, Generator, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, TypedDict, cast

from django.db.models import QuerySet
from django.utils import timezone

from . import _owners as owners
from . import _retention as retention
from . import _routing as routing
from . import _transactions as transactions
from . import signals
from .models import AgentMessage, AgentSession, session_id_contains

if TYPE_CHECKING:
    from django_stubs_ext import WithAnnotations

__all__ = [
    "MessageCount",
    "PruneResult",
    "erase_owner",
    "parse_duration",
    "prune",
    "sessions",
    "sessions_of",
]

_DURATION_PART = re.compile(r"(\d+)([smhdw])")
_UNITS = {"s": "seconds", "m": "minutes", "h": "hours", "d": "days", "w": "weeks"}
# Far beyond any session's age, and far from the dates a datetime cannot hold.
MAX_DURATION = timedelta(days=365_000)


def parse_duration(text: str) -> timedelta:
    """``"30d"``, ``"12h"``, ``"1w2d"``… as a ``timedelta``.

    Units: ``s`` seconds, ``m`` minutes, ``h`` hours, ``d`` days, ``w`` weeks.
    Raises ``ValueError`` with a readable message for anything else, and for a
    zero duration (which would select every session). A duration too long for
    ``timedelta`` is ``timedelta.max``: ``check_inactive_for`` refuses it.
    """
    compact = text.strip().lower().replace(" ", "")
    parts = _DURATION_PART.findall(compact)
    if not compact or "".join(n + u for n, u in parts) != compact:
        raise ValueError(
            f"{text!r} is not a duration: use a number and a unit, such as 30d, 12h or 1w2d "
            "(units: s, m, h, d, w)"
        )
    duration = timedelta()
    try:
        for number, unit in parts:
            duration += timedelta(**{_UNITS[unit]: int(number)})
    except OverflowError:
        duration = timedelta.max
    if duration <= timedelta(0):
        raise ValueError(f"{text!r} is zero; give a duration longer than that")
    return duration


def check_inactive_for(duration: timedelta) -> timedelta:
    """``duration`` unless it is longer than ``MAX_DURATION`` (``ValueError``): its
    cutoff would be a date before the year 1, which no datetime holds."""
    if duration > MAX_DURATION:
        raise ValueError("is too long: give a duration of at most 1,000 years")
    return duration


class MessageCount(TypedDict):
    """What ``sessions`` annotates each session with (and ``usage_<counter>`` totals)."""

    message_count: int
    usage_total_tokens: int


def sessions(
    using: str,
    *,
    inactive_for: timedelta | None = None,
    search: str | None = None,
    owner: str | None = None,
    expired: bool = False,
) -> QuerySet[WithAnnotations[AgentSession, MessageCount]]:
    """Sessions on ``using``, most recent activity first, each annotated with
    ``message_count`` and its usage totals (``usage_total_tokens``...).

    ``inactive_for`` keeps those whose last activity is older than that;
    ``search`` those whose id contains the text (see ``models.session_id_contains``);
    ``owner`` those of the user with that ``USERNAME_FIELD`` value;
    ``expired`` those whose retention ran out (see ``retention``). Owners are
    selected with the sessions where the users are on ``using`` (else see
    ``owners.with_names``).
    """
    queryset = AgentSession.objects.using(using).with_counts()
    if using == owners.users_database(using):
        queryset = queryset.select_related("owner")
    if owner is not None:
        queryset = queryset.owned_by_username(owner)
    if inactive_for is not None:
        queryset = queryset.filter(updated_at__lt=timezone.now() - check_inactive_for(inactive_for))
    if search:
        queryset = queryset.filter(session_id_contains(search))
    if expired:
        queryset = retention.expired(queryset)
    ordered = queryset.order_by("-updated_at", "-pk")
    return cast("QuerySet[WithAnnotations[AgentSession, MessageCount]]", ordered)


def sessions_of(
    aliases: Sequence[str],
    *,
    inactive_for: timedelta | None = None,
    search: str | None = None,
    owner: str | None = None,
    expired: bool = False,
) -> Generator[WithAnnotations[AgentSession, MessageCount]]:
    """``sessions`` of every alias in ``aliases`` (every shard), merged in the same order.

    Closing the generator closes every alias's cursor at once, not when
    garbage collection gets to them (possibly after their connection closed).
    """
    per_alias = [
        cast(
            "Generator[WithAnnotations[AgentSession, MessageCount]]",  # the stubs say Iterator
            sessions(
                alias, inactive_for=inactive_for, search=search, owner=owner, expired=expired
            ).iterator(),
        )
        for alias in aliases
    ]
    try:
        if len(per_alias) == 1:
            yield from per_alias[0]
        else:
            yield from heapq.merge(*per_alias, key=lambda s: (s.updated_at, s.pk), reverse=True)
    finally:
        for rows in per_alias:
            rows.close()


@dataclass(frozen=True)
class PruneResult:
    sessions: int
    messages: int

    def __add__(self, other: PruneResult) -> PruneResult:
        return PruneResult(
            sessions=self.sessions + other.sessions, messages=self.messages + other.messages
        )


def erase_owner(username: str, *, using: str | None = None, dry_run: bool = False) -> PruneResult:
    """Delete every session of the user whose ``USERNAME_FIELD`` is ``username``.

    On ``using``, else on every database sessions live on (``routing.databases``:
    every shard with ``routers.ShardRouter``). Each session goes the way
    ``DjangoSession.clear_session`` takes: in a transaction of its own under its
    row's lock, with its messages and usage rows, ``session_cleared`` sent once
    it is committed. A failure stops the erasure with the sessions before it
    deleted: running it again finishes the job. The result counts the sessions
    and their messages as they were when listed. With ``dry_run`` nothing is
    deleted and the counts say what would have been.
    """
    from .session import DjangoSession  # the session module imports the models' helpers

    total = PruneResult(sessions=0, messages=0)
    for alias in routing.databases(AgentSession, using=using):
        for session in list(sessions(alias, owner=username)):
            if not dry_run:
                DjangoSession(session.session_id, using=alias)._clear_session()
            total += PruneResult(sessions=1, messages=session.message_count)
    return total


def prune(
    using: str,
    *,
    inactive_for: timedelta | None = None,
    expired: bool = False,
    batch_size: int = 500,
    dry_run: bool = False,
) -> PruneResult:
    """Delete the sessions (and their messages and usage) with no activity for
    ``inactive_for``, or (``expired``) those whose retention ran out (see
    ``retention``); one of the two.

    Works ``batch_size`` sessions per transaction, so a large prune never holds
    locks for long. A session written to while the prune runs is kept: each
    batch locks its rows and checks them again before deleting. Each deleted
    session sends ``session_cleared`` once committed, as ``clear_session`` does.
    With ``dry_run`` nothing is deleted and the counts say what would have been.
    """
    if (inactive_for is None) == (not expired):
        raise TypeError("prune() takes inactive_for or expired=True, one of the two")
    stale = _stale(inactive_for, timezone.now())
    rows = stale(AgentSession.objects.using(using))
    if dry_run:
        return PruneResult(
            sessions=rows.count(),
            messages=AgentMessage.objects.using(using).filter(session__in=rows).count(),
        )
    total = PruneResult(sessions=0, messages=0)
    while True:
        batch = list(rows.order_by("pk").values_list("pk", flat=True)[:batch_size])
        if not batch:
            return total
        total += transactions.run(using, partial(_delete_batch, using, batch, stale))


Stale = Callable[["QuerySet[AgentSession]"], "QuerySet[AgentSession]"]


def _stale(inactive_for: timedelta | None, now: datetime) -> Stale:
    """What selects the sessions to prune, the same when picking and when re-checking."""
    if inactive_for is not None:
        cutoff = now - check_inactive_for(inactive_for)
        return lambda rows: rows.filter(updated_at__lt=cutoff)
    return lambda rows: retention.expired(rows, now=now)


def _delete_batch(using: str, pks: list[int], stale: Stale) -> PruneResult:
    rows = AgentSession.objects.using(using)
    locked = list(
        stale(rows.select_for_update().filter(pk__in=pks)).values_list("pk", "session_id")
    )
    if not locked:
        return PruneResult(sessions=0, messages=0)
    _, per_model = rows.filter(pk__in=[pk for pk, _ in locked]).delete()
    if signals.session_cleared.has_listeners():
        from .session import DjangoSession  # the signals' sender; needs the SDK

        for _, session_id in locked:
            transactions.on_commit(
                using,
                partial(
                    signals.session_cleared.send_robust,
                    sender=DjangoSession,
                    session_id=session_id,
                    using=using,
                ),
            )
    return PruneResult(
        sessions=per_model.get(AgentSession._meta.label, 0),
        messages=per_model.get(AgentMessage._meta.label, 0),
    )
