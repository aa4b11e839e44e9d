"""Usage per run, recorded with the items: the stored sums equal what the runs report.

End to end with the real ``Runner`` and ``agents.testing.ScriptedModel``, whose
steps report usage. Needs openai-agents 0.22 or newer (0.23.1 for the compaction
test); the oldest leg leaves this module out, the 0.22.3 leg that test.
"""

from __future__ import annotations

import asyncio
from typing import Any

import pytest
from agents import Agent, RunContextWrapper, Runner, RunState, function_tool
from agents.extensions.memory import EncryptedSession
from agents.testing import ModelStep, ScriptedModel, assistant_message, function_call
from agents.usage import Usage
from django.db import DatabaseError
from openai.types.responses.response_usage import InputTokensDetails, OutputTokensDetails

from openai_django_sessions import DjangoSession
from openai_django_sessions import _storage as storage
from openai_django_sessions.compaction import CompactionSession
from openai_django_sessions.models import AgentSession, AgentUsage
from openai_django_sessions.usage import UsageTotals, atotals, session_annotations
from tests.test_compaction import FakeClient, always
from tests.test_concurrency import run_cancelled_while_locked

pytestmark = pytest.mark.django_db(transaction=True)


def spent(n: int) -> Usage:
    """One request's usage, distinct per ``n`` so sums cannot match by accident."""
    return Usage(
        requests=1,
        input_tokens=100 * n,
        output_tokens=10 * n,
        total_tokens=110 * n,
        input_tokens_details=InputTokensDetails.model_validate(
            {"cached_tokens": n, "cache_write_tokens": 0}
        ),
        output_tokens_details=OutputTokensDetails(reasoning_tokens=2 * n),
    )


def reported(*results: Any) -> UsageTotals:
    """The sum of ``result.context_wrapper.usage`` over runs, as ``UsageTotals``."""
    usages = [result.context_wrapper.usage for result in results]
    return UsageTotals(
        requests=sum(u.requests for u in usages),
        input_tokens=sum(u.input_tokens for u in usages),
        output_tokens=sum(u.output_tokens for u in usages),
        total_tokens=sum(u.total_tokens for u in usages),
        cached_tokens=sum(u.input_tokens_details.cached_tokens for u in usages),
        reasoning_tokens=sum(u.output_tokens_details.reasoning_tokens for u in usages),
    )


@function_tool
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b


@function_tool(needs_approval=True)
def refund(order: str) -> str:
    """Refund an order."""
    return f"refunded {order}"


def tool_turn(n: int, call_id: str) -> list[ModelStep]:
    return [
        ModelStep(output=[function_call("add", {"a": n, "b": 1}, call_id=call_id)], usage=spent(n)),
        ModelStep(output=[assistant_message(f"answer {n}")], usage=spent(n + 10)),
    ]


async def test_multi_turn_runs_with_tool_calls_record_exactly_their_usage():
    model = ScriptedModel([*tool_turn(1, "c1"), *tool_turn(2, "c2")])
    agent = Agent(name="calc", model=model, tools=[add])
    session = DjangoSession("multi")

    first = await Runner.run(agent, "first", session=session)
    second = await Runner.run(agent, "second", session=DjangoSession("multi"))

    assert await session.aget_usage() == reported(first, second)
    assert (await session.aget_usage()).requests == 4
    # Each recording went with a write that stored model output.
    assert await AgentUsage.objects.acount() == 4


async def test_streamed_runs_record_exactly_their_usage():
    model = ScriptedModel([*tool_turn(3, "c3"), *tool_turn(4, "c4")])
    agent = Agent(name="calc", model=model, tools=[add])
    session = DjangoSession("streamed")
    results = []
    for text in ("first", "second"):
        result = Runner.run_streamed(agent, text, session=session)
        async for _ in result.stream_events():
            pass
        results.append(result)

    assert await session.aget_usage() == reported(*results)


async def test_a_run_resumed_from_a_serialized_state_is_not_counted_twice():
    model = ScriptedModel(
        [
            ModelStep(
                output=[function_call("refund", {"order": "A1"}, call_id="r1")], usage=spent(5)
            ),
            ModelStep(output=[assistant_message("refunded")], usage=spent(6)),
        ]
    )
    agent = Agent(name="support", model=model, tools=[refund])

    interrupted = await Runner.run(agent, "refund A1", session=DjangoSession("approval"))
    assert interrupted.interruptions
    assert await DjangoSession("approval").aget_usage() == reported(interrupted)

    # Later, in another request: the state comes back from JSON, usage included.
    state = await RunState.from_json(agent, interrupted.to_state().to_json())
    for approval in state.get_interruptions():
        state.approve(approval)
    resumed = await Runner.run(agent, state, session=DjangoSession("approval"))

    # The resumed run's usage includes the interrupted part: that is the run's total.
    assert resumed.context_wrapper.usage.requests == 2
    assert await DjangoSession("approval").aget_usage() == reported(resumed)


async def test_runs_with_compaction_record_the_compaction_request_too():
    client = FakeClient()
    inner = DjangoSession("compacted")
    session = CompactionSession(
        session_id="compacted",
        underlying_session=inner,
        client=client,
        should_trigger_compaction=always,
    )
    model = ScriptedModel(
        [*tool_turn(7, "c7"), ModelStep(output=[assistant_message("b")], usage=spent(9))]
    )
    agent = Agent(name="calc", model=model, tools=[add])

    first = await Runner.run(agent, "first", session=session)
    second = await Runner.run(agent, "second", session=session)

    assert len(client.responses.calls) >= 2
    totals = await inner.aget_usage()
    assert totals == reported(first, second)
    assert totals.requests == 3 + len(client.responses.calls)
    details = [d async for d in AgentUsage.objects.values_list("details", flat=True)]
    assert sum(d.get("cache_write_tokens", 0) for d in details) == 2 * len(client.responses.calls)


async def test_encrypted_sessions_record_usage_too():
    model = ScriptedModel(tool_turn(8, "c8"))
    inner = DjangoSession("enc-usage")
    session = EncryptedSession("enc-usage", underlying_session=inner, encryption_key="k" * 32)

    result = await Runner.run(Agent(name="calc", model=model, tools=[add]), "hi", session=session)

    assert await inner.aget_usage() == reported(result)


async def test_nothing_is_recorded_without_a_wrapper():
    session = DjangoSession("direct")
    await session.add_items([{"role": "user", "content": "hi"}])
    assert await session.aget_usage() == UsageTotals()
    assert await AgentUsage.objects.acount() == 0


async def test_a_write_that_rolls_back_records_nothing_and_the_next_write_records_it(monkeypatch):
    session = DjangoSession("rollback")
    wrapper: RunContextWrapper[None] = RunContextWrapper(context=None)
    await session.get_items(wrapper=wrapper)  # the run starts
    wrapper.usage.add(spent(1))

    def fail(*args: Any, **kwargs: Any) -> None:
        raise DatabaseError("disk full")

    with monkeypatch.context() as patch:
        patch.setattr(storage.Storage, "insert_messages", fail)
        with pytest.raises(DatabaseError):
            await session.add_items([{"role": "assistant", "content": "lost"}], wrapper=wrapper)
    assert await session.aget_usage() == UsageTotals()

    wrapper.usage.add(spent(2))
    await session.add_items([{"role": "assistant", "content": "kept"}], wrapper=wrapper)
    assert (await session.aget_usage()).input_tokens == 300


async def test_totals_per_session_and_per_owner_are_one_query_each(
    django_user_model, django_assert_num_queries
):
    ada = await django_user_model.objects.acreate(username="ada")
    for name, n in (("ada-1", 1), ("ada-2", 2), ("bob-1", 4)):
        session = DjangoSession(name)
        wrapper: RunContextWrapper[None] = RunContextWrapper(context=None)
        await session.get_items(wrapper=wrapper)
        wrapper.usage.add(spent(n))
        await session.add_items([{"role": "assistant", "content": name}], wrapper=wrapper)
    await AgentSession.objects.filter(session_id__startswith="ada").aupdate(owner=ada)

    rows = AgentSession.objects.annotate(**session_annotations()).order_by("session_id")
    listed = [(s.session_id, s.usage_input_tokens) async for s in rows]
    assert listed == [("ada-1", 100), ("ada-2", 200), ("bob-1", 400)]
    owner_totals = await atotals(AgentUsage.objects.filter(session__owner=ada))
    assert (owner_totals.requests, owner_totals.input_tokens) == (2, 300)


# -- runs that end without a last write ------------------------------------------------


class Blocker:
    """A tool that starts, says so, and waits: the run is cancelled while it runs."""

    def __init__(self) -> None:
        self.started = asyncio.Event()

        @function_tool
        async def wait_forever() -> str:
            """Wait."""
            self.started.set()
            await asyncio.Event().wait()
            return "never"

        self.tool = wait_forever


def cancelled_after_a_turn(blocker: Blocker) -> Agent:
    """An agent whose first turn is stored, whose second model response is not."""
    model = ScriptedModel(
        [
            *tool_turn(1, "c1")[:1],
            ModelStep(output=[function_call("wait_forever", {}, call_id="c2")], usage=spent(2)),
            ModelStep(output=[assistant_message("never")], usage=spent(3)),
        ]
    )
    return Agent(name="cancelled", model=model, tools=[add, blocker.tool])


def spent_totals(*ns: int) -> UsageTotals:
    return UsageTotals(
        requests=len(ns),
        input_tokens=sum(100 * n for n in ns),
        output_tokens=sum(10 * n for n in ns),
        total_tokens=sum(110 * n for n in ns),
        cached_tokens=sum(ns),
        reasoning_tokens=sum(2 * n for n in ns),
    )


async def test_a_cancelled_run_task_records_its_usage_up_to_its_last_write():
    blocker = Blocker()
    session = DjangoSession("cancelled-task")
    task = asyncio.create_task(Runner.run(cancelled_after_a_turn(blocker), "hi", session=session))
    await blocker.started.wait()

    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task

    # The first turn's request was recorded with its items; the second's items
    # were never stored, and neither was its usage.
    assert await session.aget_usage() == spent_totals(1)


async def test_arecord_usage_records_what_a_cancelled_streamed_run_spent_after_its_last_write():
    blocker = Blocker()
    session = DjangoSession("cancelled-stream")
    result = Runner.run_streamed(cancelled_after_a_turn(blocker), "hi", session=session)
    events = asyncio.create_task(asyncio.wait_for(_drain(result), timeout=60))
    await blocker.started.wait()

    result.cancel()
    await events
    assert await session.aget_usage() == spent_totals(1)
    assert reported(result) == spent_totals(1, 2)

    await session.arecord_usage(result.context_wrapper)
    assert await session.aget_usage() == reported(result)
    await session.arecord_usage(result.context_wrapper)  # nothing is missing any more
    await session.add_items([{"role": "user", "content": "next"}], wrapper=result.context_wrapper)
    assert await session.aget_usage() == reported(result)
    assert await AgentUsage.objects.acount() == 2


async def _drain(result: Any) -> None:
    async for _ in result.stream_events():
        pass


async def test_arecord_usage_records_nothing_for_a_run_whose_writes_recorded_everything():
    session = DjangoSession("complete")
    model = ScriptedModel(tool_turn(1, "c1"))
    result = await Runner.run(Agent(name="a", model=model, tools=[add]), "hi", session=session)
    rows = await AgentUsage.objects.acount()

    await session.arecord_usage(result.context_wrapper)
    await DjangoSession("never-saw-it").arecord_usage(result.context_wrapper)

    assert await AgentUsage.objects.acount() == rows
    assert await session.aget_usage() == reported(result)
    assert not await AgentSession.objects.filter(session_id="never-saw-it").aexists()


async def test_a_write_cancelled_while_it_runs_counts_its_usage_once():
    session = DjangoSession("cancelled-write")
    wrapper: RunContextWrapper[None] = RunContextWrapper(context=None)
    await session.get_items(wrapper=wrapper)
    await session.add_items([{"n": 0}])  # the row, without usage
    wrapper.usage.add(spent(3))

    await run_cancelled_while_locked(
        "cancelled-write", lambda: session.add_items([{"n": 1}], wrapper=wrapper)
    )
    await session.add_items([{"n": 2}], wrapper=wrapper)

    assert await session.aget_usage() == spent_totals(3)
    assert await AgentUsage.objects.acount() == 1


@pytest.mark.parametrize(
    ("reported_usage", "problem"),
    [
        (Usage(requests=1, input_tokens=-5), "usage.input_tokens must not be negative, got -5"),
        (Usage(requests=1, total_tokens=2**63), "usage.total_tokens must be at most"),
    ],
)
async def test_a_run_reporting_a_count_no_database_can_sum_is_refused_before_its_write(
    reported_usage: Usage, problem: str
):
    model = ScriptedModel([[assistant_message("hello")]], default_usage=reported_usage)
    session = DjangoSession("bad-usage")

    with pytest.raises(ValueError, match=problem):
        await Runner.run(Agent(name="a", model=model), "hi", session=session)

    # The model's reply was not stored, nor its usage; the session still sums.
    assert [item.get("role") for item in await session.get_items()] == ["user"]
    assert await session.aget_usage() == UsageTotals()
    assert await AgentUsage.objects.acount() == 0
