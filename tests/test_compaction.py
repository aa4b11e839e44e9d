"""Compaction through the SDK's backend hooks: atomic, and the session row is kept.

Offline: the SDK's ``OpenAIResponsesCompactionSession`` talks to a fake Responses
client. Needs openai-agents 0.24 or newer (``agents.testing``, both hooks): the
0.23.1 leg leaves out the manual compaction test (no ``_atomic_replace_items``), the
legs of older SDKs (0.8.0, 0.22.3) the module.
"""

from __future__ import annotations

import asyncio
import json
import logging
from types import SimpleNamespace
from typing import Any

import pytest
from agents import Agent, RunContextWrapper, Runner
from agents.extensions.memory import EncryptedSession
from agents.memory import OpenAIResponsesCompactionSession
from agents.testing import ScriptedModel, assistant_message
from agents.usage import Usage
from openai.types.responses.response_usage import (
    InputTokensDetails,
    OutputTokensDetails,
    ResponseUsage,
)

from openai_django_sessions import DjangoSession, usage
from openai_django_sessions.compaction import CompactionSession
from openai_django_sessions.models import AgentMessage, AgentSession
from openai_django_sessions.signals import (
    session_cleared,
    session_compacted,
    session_items_added,
)
from tests.conftest import in_requests
from tests.test_runner import texts

pytestmark = pytest.mark.django_db(transaction=True)


def summary(text: str) -> dict[str, Any]:
    return {"type": "message", "role": "user", "content": [{"type": "input_text", "text": text}]}


class FakeResponses:
    """``client.responses.compact``: returns one summary item per call, with usage."""

    def __init__(self) -> None:
        self.calls: list[dict[str, Any]] = []

    async def compact(self, **kwargs: Any) -> Any:
        self.calls.append(kwargs)
        n = len(self.calls)
        usage = ResponseUsage(
            input_tokens=50 * n,
            output_tokens=5,
            total_tokens=50 * n + 5,
            input_tokens_details=InputTokensDetails.model_validate(
                {"cached_tokens": 7, "cache_write_tokens": 2}
            ),
            output_tokens_details=OutputTokensDetails(reasoning_tokens=3),
        )
        return SimpleNamespace(output=[summary(f"summary {n}")], usage=usage)


class FakeClient:
    def __init__(self) -> None:
        self.responses = FakeResponses()


def canonical(item: dict[str, Any]) -> str:
    return json.dumps(item, sort_keys=True)


def always(context: dict[str, Any]) -> bool:
    return True


@pytest.fixture
def received():
    calls: dict[str, list[dict[str, Any]]] = {"compacted": [], "cleared": [], "added": []}

    def on(name: str):
        def receiver(**kwargs: Any) -> None:
            calls[name].append(kwargs)

        return receiver

    receivers = {
        session_compacted: on("compacted"),
        session_cleared: on("cleared"),
        session_items_added: on("added"),
    }
    for signal, receiver in receivers.items():
        signal.connect(receiver, weak=False)
    yield calls
    for signal, receiver in receivers.items():
        signal.disconnect(receiver)


@pytest.mark.parametrize("wrapper_class", [OpenAIResponsesCompactionSession, CompactionSession])
@pytest.mark.parametrize("limit", [None, 2])
async def test_automatic_compaction_replaces_the_tail_and_keeps_the_row(
    wrapper_class, limit, received, caplog, django_user_model
):
    client = FakeClient()
    inner = DjangoSession("c", session_settings={"limit": limit})
    session = wrapper_class(
        session_id="c", underlying_session=inner, client=client, should_trigger_compaction=always
    )
    model = ScriptedModel([[assistant_message("first answer")], [assistant_message("second")]])
    agent = Agent(name="assistant", model=model)

    with caplog.at_level(logging.WARNING):
        await Runner.run(agent, "first question", session=session)
    row = await AgentSession.objects.aget(session_id="c")

    assert "Skipped automatic compaction" not in caplog.text
    assert len(client.responses.calls) == 1
    assert texts(await inner.get_items(limit=100)) == ["summary 1"]
    assert received["cleared"] == []
    [compacted] = received["compacted"]
    assert texts(compacted["removed"]) == ["first question", "first answer"]
    assert texts(compacted["items"]) == ["summary 1"]

    owner = await django_user_model.objects.acreate(username="ada")
    await AgentSession.objects.filter(pk=row.pk).aupdate(owner=owner, metadata={"k": "v"})
    await Runner.run(agent, "second question", session=session)
    after = await AgentSession.objects.aget(session_id="c")
    assert (after.pk, after.created_at) == (row.pk, row.created_at)
    assert (after.owner_id, after.metadata) == (owner.pk, {"k": "v"})
    assert texts(model.calls[1].input)[-1] == "second question"
    stored = texts(await inner.get_items(limit=100))
    assert stored[-1] == "summary 2"
    assert len(client.responses.calls) == 2
    assert received["cleared"] == []


async def test_a_replacement_refuses_when_a_writer_appended_after_the_snapshot(received):
    inner = DjangoSession("race")
    await inner.add_items([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    snapshot = await inner._get_compaction_snapshot(2)
    assert (snapshot.items, snapshot.complete) == (
        [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}],
        True,
    )
    await DjangoSession("race").add_items([{"role": "user", "content": "late"}])

    assert await snapshot.replace_suffix(0, [summary("s")]) is False
    assert texts(await inner.get_items()) == ["a", "b", "late"]
    assert received["compacted"] == []


async def test_a_replacement_refuses_after_a_pop_or_a_clear():
    inner = DjangoSession("gone")
    await inner.add_items([{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}])
    snapshot = await inner._get_compaction_snapshot(5)
    await inner.pop_item()
    assert await snapshot.replace_suffix(0, [summary("s")]) is False
    assert texts(await inner.get_items()) == ["a"]

    snapshot = await inner._get_compaction_snapshot(5)
    await inner.clear_session()
    assert await snapshot.replace_suffix(0, [summary("s")]) is False
    assert await inner.get_items() == []
    assert not await AgentSession.objects.filter(session_id="gone").aexists()


async def test_a_partial_snapshot_replaces_only_its_suffix():
    inner = DjangoSession("partial")
    await inner.add_items([{"role": "user", "content": str(n)} for n in range(5)])
    snapshot = await inner._get_compaction_snapshot(3)
    assert texts(snapshot.items) == ["2", "3", "4"]
    assert snapshot.complete is False

    assert await snapshot.replace_suffix(1, [summary("s")]) is True
    assert texts(await inner.get_items()) == ["0", "1", "2", "s"]


async def test_a_snapshot_of_an_exact_length_history_is_complete():
    inner = DjangoSession("exact")
    await inner.add_items([{"role": "user", "content": str(n)} for n in range(3)])
    assert (await inner._get_compaction_snapshot(3)).complete is True
    assert (await inner._get_compaction_snapshot(2)).complete is False


async def test_manual_compaction_replaces_the_whole_history_atomically_and_keeps_the_row(
    received,
):
    client = FakeClient()
    inner = DjangoSession("manual")
    await inner.add_items([{"role": "user", "content": str(n)} for n in range(4)])
    row = await AgentSession.objects.aget(session_id="manual")
    received["added"].clear()
    session = OpenAIResponsesCompactionSession(
        session_id="manual", underlying_session=inner, client=client
    )

    await session.run_compaction({"force": True, "compaction_mode": "input"})

    assert texts(await inner.get_items()) == ["summary 1"]
    after = await AgentSession.objects.aget(session_id="manual")
    assert (after.pk, after.created_at) == (row.pk, row.created_at)
    assert received["cleared"] == [] and received["added"] == []
    [compacted] = received["compacted"]
    assert texts(compacted["removed"]) == ["0", "1", "2", "3"]


async def test_encrypted_session_over_compaction_still_compacts():
    client = FakeClient()
    inner = DjangoSession("enc")
    compacting = CompactionSession(
        session_id="enc", underlying_session=inner, client=client, should_trigger_compaction=always
    )
    session = EncryptedSession("enc", underlying_session=compacting, encryption_key="k" * 32)
    model = ScriptedModel([[assistant_message("secret answer")]])

    await Runner.run(Agent(name="a", model=model), "secret question", session=session)

    assert len(client.responses.calls) == 1
    assert texts(await session.get_items()) == ["summary 1"]
    raw = [data async for data in AgentMessage.objects.values_list("data", flat=True)]
    assert len(raw) == 1 and "__enc__" in raw[0]  # the summary is stored encrypted


async def test_expired_encrypted_items_before_the_suffix_are_pruned_in_the_same_transaction():
    inner = DjangoSession("ttl")
    await inner.add_items([{"old": n} for n in range(3)] + [{"role": "user", "content": "new"}])
    snapshot = await inner._get_compaction_snapshot(1, prune_prefix=lambda item: "old" in item)

    assert await snapshot.replace_suffix(0, [summary("s")]) is True
    assert await inner.get_items() == [summary("s")]


async def test_subclasses_that_transform_items_get_no_hooks():
    class Upper(DjangoSession):
        async def add_items(self, items, *, wrapper=None):
            await super().add_items([{**i, "content": i["content"].upper()} for i in items])

    session = Upper("upper")
    assert await session._get_compaction_snapshot(3) is None
    assert await session._atomic_replace_items([]) is False


async def test_writers_racing_compactions_never_lose_or_duplicate_items(received):
    session_id = "raced"
    await DjangoSession(session_id).add_items([{"seed": n} for n in range(3)])
    outcomes: list[bool] = []
    writers, batches = 4, 6

    async def write(writer: int) -> None:
        session = DjangoSession(session_id)
        for batch in range(batches):
            await session.add_items([{"w": writer, "b": batch, "n": n} for n in range(2)])

    async def compact() -> None:
        session = DjangoSession(session_id)
        for round_number in range(16):
            snapshot = await session._get_compaction_snapshot(3)
            await asyncio.sleep(0)  # let writers in between the read and the swap
            outcomes.append(await snapshot.replace_suffix(0, [{"summary": round_number}]))

    await in_requests(compact, *(lambda w=w: write(w) for w in range(writers)))

    final = await DjangoSession(session_id).get_items()
    removed = [item for call in received["compacted"] for item in call["removed"]]
    summaries = [{"summary": n} for n, done in enumerate(outcomes) if done]
    written = (
        [{"seed": n} for n in range(3)]
        + [
            {"w": w, "b": b, "n": n}
            for w in range(writers)
            for b in range(batches)
            for n in range(2)
        ]
        + summaries
    )
    seen = final + removed
    # Every item ever written is in the history or was replaced by exactly one
    # compaction, and once only; a refused compaction left no summary.
    assert sorted(map(canonical, seen)) == sorted(map(canonical, written))
    assert len(received["compacted"]) == outcomes.count(True)
    for writer in range(writers):  # each writer's own items stay in order
        mine = [(i["b"], i["n"]) for i in final if i.get("w") == writer]
        assert mine == sorted(mine)


async def test_compaction_over_an_encrypted_session_compacts_too():
    client = FakeClient()
    inner = DjangoSession("enc-inside")
    encrypted = EncryptedSession("enc-inside", underlying_session=inner, encryption_key="k" * 32)
    session = CompactionSession(
        session_id="enc-inside",
        underlying_session=encrypted,
        client=client,
        should_trigger_compaction=always,
    )
    model = ScriptedModel([[assistant_message("secret answer")]])

    await Runner.run(Agent(name="a", model=model), "secret question", session=session)

    assert len(client.responses.calls) == 1
    assert texts(await encrypted.get_items()) == ["summary 1"]
    raw = [data async for data in AgentMessage.objects.values_list("data", flat=True)]
    assert len(raw) == 1 and "__enc__" in raw[0]


async def test_a_refused_replacement_still_records_the_compaction_usage_once():
    inner = DjangoSession("refused-usage")
    wrapper = RunContextWrapper(context=None)
    await inner.get_items(wrapper=wrapper)
    await inner.add_items([{"role": "user", "content": "a"}], wrapper=wrapper)
    snapshot = await inner._get_compaction_snapshot(1)
    await DjangoSession("refused-usage").add_items([{"role": "user", "content": "late"}])
    wrapper.usage.add(Usage(requests=1, input_tokens=40, output_tokens=2, total_tokens=42))

    token = usage.current_wrapper.set(wrapper)  # as CompactionSession does during a run
    try:
        assert await snapshot.replace_suffix(0, [summary("s")]) is False
    finally:
        usage.current_wrapper.reset(token)
    assert (await inner.aget_usage()).total_tokens == 42  # the request was spent
    await inner.add_items([{"role": "assistant", "content": "b"}], wrapper=wrapper)

    assert (await inner.aget_usage()).total_tokens == 42
    assert texts(await inner.get_items()) == ["a", "late", "b"]


async def test_compaction_works_on_custom_tables():
    inner = DjangoSession(
        "custom", sessions_table="my_sessions", messages_table="my_messages", create_tables=True
    )
    await inner.add_items([{"role": "user", "content": str(n)} for n in range(3)])
    snapshot = await inner._get_compaction_snapshot(2)
    assert await snapshot.replace_suffix(0, [summary("s")]) is True
    assert texts(await inner.get_items()) == ["0", "s"]
    assert await inner._atomic_replace_items([summary("t")]) is True
    assert texts(await inner.get_items()) == ["t"]
