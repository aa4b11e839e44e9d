"""What the SDK finds on DjangoSession at run time, on every supported SDK version.

The oldest leg (openai-agents 0.8) runs this module too: there the compaction
hooks are detected as absent and everything else works as before.
"""

from __future__ import annotations

import inspect

import pytest
from agents.memory import session as sdk_session

from openai_django_sessions import DjangoSession, compaction

pytestmark = pytest.mark.django_db(transaction=True)

PROTOCOL = ("get_items", "add_items", "pop_item", "clear_session")
HELLO = {"role": "user", "content": "hello"}
REPLY = {"role": "assistant", "content": "hi"}


@pytest.mark.parametrize("name", PROTOCOL)
def test_each_protocol_method_takes_a_keyword_only_wrapper_defaulting_to_none(name):
    parameter = inspect.signature(getattr(DjangoSession, name)).parameters["wrapper"]
    assert parameter.kind is inspect.Parameter.KEYWORD_ONLY
    assert parameter.default is None


def test_the_sdk_hands_the_run_context_over_where_it_can():
    accepts = getattr(sdk_session, "_session_accepts_wrapper", None)
    if accepts is not None:  # SDKs that pass wrapper= (0.2x); 0.8 passes none
        assert accepts(DjangoSession("any")) is True


async def test_calls_with_a_wrapper_work_like_calls_without():
    class Wrapper:  # what the methods use of the SDK's RunContextWrapper: nothing but usage
        usage = None

    session = DjangoSession("wrapped")
    await session.add_items([HELLO, REPLY], wrapper=Wrapper())
    assert await session.get_items(wrapper=Wrapper()) == [HELLO, REPLY]
    assert await session.pop_item(wrapper=Wrapper()) == REPLY
    await session.clear_session(wrapper=Wrapper())
    assert await session.get_items() == []


async def test_compaction_hooks_are_offered_exactly_when_the_sdk_has_them():
    session = DjangoSession("hooks")
    await session.add_items([HELLO, REPLY])
    has_snapshots = hasattr(sdk_session, "_CompactionSnapshot")

    snapshot = await session._get_compaction_snapshot(5)

    assert compaction.SNAPSHOTS_SUPPORTED is has_snapshots
    assert (snapshot is not None) is has_snapshots
    if snapshot is not None:
        assert (snapshot.items, snapshot.complete) == ([HELLO, REPLY], True)


async def test_skip_duplicate_items_stores_an_item_once_per_instance():
    session = DjangoSession("dedup", skip_duplicate_items=True)
    await session.add_items([HELLO])  # the first agent's run stores the user message
    await session.add_items([HELLO, REPLY])  # the second agent's run stores it again
    await session.add_items([{"content": "hello", "role": "user"}])  # same JSON, other key order
    assert await session.get_items() == [HELLO, REPLY]


async def test_skip_duplicate_items_keeps_repeats_within_one_call_and_across_instances():
    session = DjangoSession("dedup-scope", skip_duplicate_items=True)
    await session.add_items([HELLO, HELLO])
    await DjangoSession("dedup-scope", skip_duplicate_items=True).add_items([HELLO])
    assert await session.get_items() == [HELLO, HELLO, HELLO]


async def test_skip_duplicate_items_stores_again_what_was_popped_or_cleared():
    session = DjangoSession("dedup-undo", skip_duplicate_items=True)
    await session.add_items([HELLO, REPLY])
    assert await session.pop_item() == REPLY
    await session.add_items([REPLY])  # a retried turn re-adds what was undone
    assert await session.get_items() == [HELLO, REPLY]
    await session.clear_session()
    await session.add_items([HELLO])
    assert await session.get_items() == [HELLO]


async def test_duplicates_are_stored_by_default():
    session = DjangoSession("dup")
    await session.add_items([HELLO])
    await session.add_items([HELLO])
    assert await session.get_items() == [HELLO, HELLO]


def test_skip_duplicate_items_must_be_a_bool():
    with pytest.raises(TypeError, match="skip_duplicate_items must be a bool"):
        DjangoSession("x", skip_duplicate_items="yes")  # type: ignore[arg-type]
