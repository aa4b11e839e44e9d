"""Compaction of a ``DjangoSession``'s history, atomically, through the SDK's backend hooks.

The SDK's ``OpenAIResponsesCompactionSession`` replaces history in two ways:

- automatic compaction reads a bounded snapshot of the newest rows through
  ``_get_compaction_snapshot`` and later swaps the part it summarized (a suffix)
  for the summary with the snapshot's ``replace_suffix``;
- manual ``run_compaction()`` replaces the whole history through
  ``_atomic_replace_items``.

Both are underscore names of the SDK (the snapshot since openai-agents 0.23.1,
the replacement since 0.24.0): ``DjangoSession`` defines them, the SDK looks them
up at run time, and an SDK that does not know one never calls it (it falls back
to ``clear_session`` then ``add_items``). Each replacement is one transaction
under the session row's lock; the session row (primary key, ``created_at``,
owner, metadata) is kept.

``CompactionSession`` is the SDK's class with one addition: it hands the run
context (``wrapper``) to the session it wraps, which the SDK's class does not,
so that a ``DjangoSession`` under it records each run's usage.
"""

from __future__ import annotations

import contextlib
import inspect
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

from agents.items import TResponseInputItem
from agents.memory import session as sdk_session

from . import usage

if TYPE_CHECKING:
    from agents.run_context import RunContextWrapper

    from .session import DjangoSession

__all__ = ["CompactionSession"]

# ``None`` on SDKs without atomic suffix replacement (before 0.23.1, such as 0.8 and 0.22.3).
Snapshot: Any = getattr(sdk_session, "_CompactionSnapshot", None)
SNAPSHOTS_SUPPORTED = Snapshot is not None

# (row id, item) of a stored message, oldest first.
Row = tuple[int, Any]
PrunePrefix = Callable[[TResponseInputItem], bool]


async def snapshot(
    session: DjangoSession, limit: int, prune_prefix: PrunePrefix | None
) -> Any | None:
    """The newest ``limit`` items of ``session`` and a way to replace a suffix of them.

    ``replace_suffix(start, output)`` swaps ``items[start:]`` for ``output`` in one
    transaction under the session lock, only if those rows are still the newest
    ones, unchanged (else it changes nothing and returns ``False``). With
    ``prune_prefix`` (``EncryptedSession`` passes one), the contiguous run of
    oldest items it approves (expired envelopes) is deleted in the same
    transaction.
    """
    if Snapshot is None or limit <= 0:
        return None
    rows, complete = await session._tail(limit)

    async def replace_suffix(start: int, output: list[TResponseInputItem]) -> bool:
        expected = rows[start:]
        if not expected:
            return False
        return await session._replace(
            expected, list(output), prune_prefix=prune_prefix, batch=limit
        )

    return Snapshot([item for _, item in rows], complete, replace_suffix)


@contextlib.contextmanager
def _handing_over(wrapper: RunContextWrapper[Any] | None) -> Iterator[None]:
    token = usage.current_wrapper.set(wrapper) if wrapper is not None else None
    try:
        yield
    finally:
        if token is not None:
            usage.current_wrapper.reset(token)


try:
    from agents.memory.openai_responses_compaction_session import (
        OpenAIResponsesCompactionSession,
    )
except ImportError:  # pragma: no cover - every supported SDK has it
    OpenAIResponsesCompactionSession = None  # type: ignore[assignment,misc]


if OpenAIResponsesCompactionSession is not None:

    class CompactionSession(OpenAIResponsesCompactionSession):  # type: ignore[misc]
        """``OpenAIResponsesCompactionSession`` that passes the run context on.

        Same arguments and behaviour as the SDK's class. Its session methods accept
        ``wrapper`` like ``DjangoSession``'s, so the ``Runner`` hands the run
        context over, and the session it wraps receives it during every call,
        compaction included: the usage of the run, and of the compaction request,
        is recorded with the items.
        """

        async def get_items(
            self, limit: int | None = None, *, wrapper: RunContextWrapper[Any] | None = None
        ) -> list[TResponseInputItem]:
            with _handing_over(wrapper):
                return await super().get_items(limit)

        async def add_items(
            self,
            items: list[TResponseInputItem],
            *,
            wrapper: RunContextWrapper[Any] | None = None,
        ) -> None:
            with _handing_over(wrapper):
                await super().add_items(items)

        async def pop_item(
            self, *, wrapper: RunContextWrapper[Any] | None = None
        ) -> TResponseInputItem | None:
            with _handing_over(wrapper):
                return await super().pop_item()

        async def clear_session(self, *, wrapper: RunContextWrapper[Any] | None = None) -> None:
            with _handing_over(wrapper):
                await super().clear_session()

        async def run_compaction(
            self, args: Any = None, *, wrapper: RunContextWrapper[Any] | None = None
        ) -> None:
            with _handing_over(wrapper):
                if _RUN_COMPACTION_TAKES_WRAPPER:
                    await super().run_compaction(args, wrapper=wrapper)
                else:
                    await super().run_compaction(args)

        if hasattr(OpenAIResponsesCompactionSession, "_run_compaction"):
            # EncryptedSession compacts through this private entry point.
            async def _run_compaction(self, *args: Any, **kwargs: Any) -> None:
                with _handing_over(kwargs.get("wrapper")):
                    await super()._run_compaction(*args, **kwargs)  # type: ignore[misc]

    # 0.8's run_compaction takes no wrapper (nor does its Runner pass one).
    _RUN_COMPACTION_TAKES_WRAPPER = (
        "wrapper" in inspect.signature(OpenAIResponsesCompactionSession.run_compaction).parameters
    )
