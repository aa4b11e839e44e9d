"""Token usage per run, recorded with the items the run stores.

The SDK hands a session the run's ``RunContextWrapper`` (``wrapper=``), whose
``usage`` is the run's total so far. A run writes several times (its input,
then the items of each model response), and a run interrupted for approval and
resumed from a serialized ``RunState`` continues with the total restored. So
what a write records is the part of that total not recorded yet: the wrapper
carries, per session, the total already recorded (``_MARKS``). The first time a
session sees a wrapper (the ``Runner`` reads the history before it calls the
model, and a resumed run reads it before anything else), whatever the total is
then was spent before: zero for a new run, and for a resumed run what its first
part already recorded.

So what is stored for a run is its total as of its last committed write. What
it spent after that (a run cancelled between a model response and the write of
its items) is recorded by ``DjangoSession.arecord_usage``, with the same marks:
nothing is recorded twice.
"""

from __future__ import annotations

import contextvars
import dataclasses
from collections.abc import Iterable, Mapping
from typing import TYPE_CHECKING, Any

from django.db.models import OuterRef, QuerySet, Subquery, Sum, Value
from django.db.models.functions import Coalesce

if TYPE_CHECKING:
    from agents.run_context import RunContextWrapper

    from .models import AgentUsage

__all__ = ["COUNTERS", "UsageTotals", "atotals", "session_annotations", "totals"]

# The largest count a 64-bit column holds, and the largest sum SQLite can compute:
# its SUM() raises "integer overflow" beyond it (listing and showing sessions would fail).
MAX_COUNT = 2**63 - 1

# The run context of the call in progress, for sessions called without ``wrapper``
# by a session that wraps them (``compaction.CompactionSession``).
current_wrapper: contextvars.ContextVar[RunContextWrapper[Any] | None] = contextvars.ContextVar(
    "openai_django_sessions_wrapper", default=None
)

_MARKS = "_openai_django_sessions_recorded_usage"
COUNTERS = (
    "requests",
    "input_tokens",
    "output_tokens",
    "total_tokens",
    "cached_tokens",
    "reasoning_tokens",
)


def check_counters(rows: Iterable[tuple[str, Mapping[str, Any]]]) -> None:
    """``ValueError`` unless the usage rows can be stored and summed on every database.

    ``rows`` are ``(label, values)`` pairs, ``values`` by ``AgentUsage`` counter
    (missing ones count as 0). Each counter must be 0 to ``MAX_COUNT``, and so
    must the sum of each counter over ``rows`` (one session's rows): what the
    session list, ``show`` and the admin compute. The error names the row.
    """
    summed = dict.fromkeys(COUNTERS, 0)
    for label, values in rows:
        for name in COUNTERS:
            value = values.get(name) or 0
            if value < 0:
                raise ValueError(f"{label}.{name} must not be negative, got {value}")
            if value > MAX_COUNT:
                raise ValueError(f"{label}.{name} must be at most {MAX_COUNT:,}, got {value:,}")
            summed[name] += value
    for name, total in summed.items():
        if total > MAX_COUNT:
            raise ValueError(
                f"the usage rows' {name} add up to {total:,}, more than the {MAX_COUNT:,} "
                "a database can sum"
            )


@dataclasses.dataclass(frozen=True)
class UsageTotals:
    """Token usage summed over recordings (a session's, an owner's...)."""

    requests: int = 0
    input_tokens: int = 0
    output_tokens: int = 0
    total_tokens: int = 0
    cached_tokens: int = 0
    reasoning_tokens: int = 0


def sums(path: str = "") -> dict[str, Any]:
    """``aggregate()`` arguments summing ``AgentUsage`` rows into ``UsageTotals`` fields.

    ``path`` leads from the queried model to the usage rows: ``"usage__"`` sums
    an ``AgentSession``'s recordings in an ``annotate()``.
    """
    return {name: Coalesce(Sum(f"{path}{name}"), Value(0)) for name in COUNTERS}


async def atotals(rows: QuerySet[AgentUsage]) -> UsageTotals:
    """The totals of ``rows`` in one query, e.g. an owner's:
    ``await atotals(AgentUsage.objects.filter(session__owner=user))``."""
    return UsageTotals(**await rows.aaggregate(**sums()))


def totals(rows: QuerySet[AgentUsage]) -> UsageTotals:
    """``atotals`` for sync code."""
    return UsageTotals(**rows.aggregate(**sums()))


def session_annotations(prefix: str = "usage_") -> dict[str, Any]:
    """``annotate()`` arguments giving each ``AgentSession`` its usage totals.

    ``AgentSession.objects.annotate(**session_annotations())`` adds
    ``usage_total_tokens`` and the other counters, each a correlated subquery: it
    combines with other annotations (a message ``Count``) without multiplying rows.
    """
    from .models import AgentUsage

    annotations = {}
    for name in COUNTERS:
        per_session = (
            AgentUsage.objects.filter(session=OuterRef("pk"))
            .order_by()
            .values("session")
            .annotate(total=Sum(name))
            .values("total")
        )
        annotations[f"{prefix}{name}"] = Coalesce(Subquery(per_session), Value(0))
    return annotations


@dataclasses.dataclass(frozen=True)
class Totals(UsageTotals):
    """A run's usage as recorded: the columns of ``AgentUsage``, plus what has no column."""

    cache_write_tokens: int = 0
    request_entries: int = 0

    def columns(self) -> dict[str, int]:
        return {name: getattr(self, name) for name in COUNTERS}


@dataclasses.dataclass(frozen=True)
class Recording:
    """What one write records: the run's usage since the last recording."""

    delta: Totals
    details: dict[str, Any]
    total: Totals  # the run's total once this is recorded
    # Where the run's marks live: ``recorded`` sets this session's mark there.
    wrapper: Any = dataclasses.field(default=None, repr=False, compare=False)
    key: str = ""


def _detail(details: object, name: str) -> int:
    return int(getattr(details, name, 0) or 0)


def _totals(usage: Any) -> Totals:
    return Totals(
        requests=int(usage.requests or 0),
        input_tokens=int(usage.input_tokens or 0),
        output_tokens=int(usage.output_tokens or 0),
        total_tokens=int(usage.total_tokens or 0),
        cached_tokens=_detail(getattr(usage, "input_tokens_details", None), "cached_tokens"),
        reasoning_tokens=_detail(getattr(usage, "output_tokens_details", None), "reasoning_tokens"),
        cache_write_tokens=_detail(
            getattr(usage, "input_tokens_details", None), "cache_write_tokens"
        ),
        request_entries=len(getattr(usage, "request_usage_entries", None) or ()),
    )


def _request_entry(entry: Any) -> dict[str, int]:
    return {
        "input_tokens": int(entry.input_tokens or 0),
        "output_tokens": int(entry.output_tokens or 0),
        "total_tokens": int(entry.total_tokens or 0),
        "cached_tokens": _detail(entry.input_tokens_details, "cached_tokens"),
        "reasoning_tokens": _detail(entry.output_tokens_details, "reasoning_tokens"),
    }


def resolve(wrapper: RunContextWrapper[Any] | None) -> RunContextWrapper[Any] | None:
    """``wrapper``, else the one a wrapping session handed over for this call."""
    return wrapper if wrapper is not None else current_wrapper.get()


def _marks(wrapper: Any) -> dict[str, Totals]:
    marks = getattr(wrapper, _MARKS, None)
    if not isinstance(marks, dict):
        marks = {}
        setattr(wrapper, _MARKS, marks)
    return marks


def observe(wrapper: RunContextWrapper[Any] | None, key: str) -> None:
    """Note the run's total when ``key``'s session first sees ``wrapper``."""
    if wrapper is not None and getattr(wrapper, "usage", None) is not None:
        _marks(wrapper).setdefault(key, _totals(wrapper.usage))


def pending(wrapper: RunContextWrapper[Any] | None, key: str) -> Recording | None:
    """The run's usage not yet recorded on ``key``'s session, or ``None`` if there is none."""
    if wrapper is None or getattr(wrapper, "usage", None) is None:
        return None
    marks = _marks(wrapper)
    total = _totals(wrapper.usage)
    recorded = marks.setdefault(key, total)
    delta = Totals(
        **{
            field.name: getattr(total, field.name) - getattr(recorded, field.name)
            for field in dataclasses.fields(Totals)
        }
    )
    if not any(delta.columns().values()) and not delta.cache_write_tokens:
        return None
    # Refused before the write, as an import refuses it: a negative count or one past
    # 64 bits would be stored, or break every sum of the session's usage on SQLite.
    check_counters([("usage", delta.columns())])
    details: dict[str, Any] = {}
    if delta.cache_write_tokens:
        details["cache_write_tokens"] = delta.cache_write_tokens
    entries = getattr(wrapper.usage, "request_usage_entries", None) or []
    if delta.request_entries > 0:
        details["requests"] = [_request_entry(e) for e in entries[recorded.request_entries :]]
    return Recording(delta=delta, details=details, total=total, wrapper=wrapper, key=key)


def recorded(recording: Recording | None) -> None:
    """Remember that ``recording`` is committed, so the next write records only what follows.

    Called by the write itself, in its worker thread, as soon as its transaction
    committed: a caller cancelled meanwhile (``run_to_completion`` raises
    ``CancelledError`` once the work is done) must not leave the mark behind,
    or the next recording would count this one again.
    """
    if recording is not None and recording.wrapper is not None:
        _marks(recording.wrapper)[recording.key] = recording.total
