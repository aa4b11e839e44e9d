"""Full-text search across a user's conversations, on every database.

Transactional tests throughout: InnoDB's full-text index sees committed rows only.
"""

from __future__ import annotations

import io
import uuid
from datetime import timedelta
from typing import Any

import pytest
from asgiref.sync import async_to_sync
from django.contrib.auth.models import AnonymousUser
from django.db import connection
from django.test.utils import CaptureQueriesContext
from django.utils import timezone

from openai_django_sessions import DjangoSession
from openai_django_sessions import _tables as tables
from openai_django_sessions import _transfer as transfer
from openai_django_sessions.models import AgentMessage, AgentSession
from openai_django_sessions.search import MAX_QUERY_LENGTH, MAX_TEXT_LENGTH, message_text

pytestmark = pytest.mark.django_db(transaction=True)


def user_says(text: str) -> dict[str, Any]:
    return {"role": "user", "content": text}


def assistant_says(text: str) -> dict[str, Any]:
    return {
        "type": "message",
        "role": "assistant",
        "id": "msg_1",
        "status": "completed",
        "content": [{"type": "output_text", "text": text, "annotations": []}],
    }


def ids(found: list[AgentSession]) -> list[str]:
    return [session.session_id for session in found]


# -- message_text ----------------------------------------------------------------------


def test_message_text_reads_user_and_assistant_messages_only() -> None:
    assert message_text(user_says("Trip to Lisbon")) == "Trip to Lisbon"
    assert message_text(assistant_says("Book the train")) == "Book the train"
    parts = {
        "role": "user",
        "content": [
            {"type": "input_text", "text": "first"},
            {"type": "input_image", "image_url": "https://example.com/a.png"},
            {"type": "input_text", "text": "second"},
        ],
    }
    assert message_text(parts) == "first\nsecond"
    for item in [
        {"role": "system", "content": "You are helpful"},
        {"role": "developer", "content": "Be brief"},
        {"type": "function_call", "call_id": "c", "name": "lookup", "arguments": '{"q":"x"}'},
        {"type": "function_call_output", "call_id": "c", "output": "Lisbon"},
        {"type": "reasoning", "id": "r", "summary": [{"type": "summary_text", "text": "hmm"}]},
        # The envelope of the SDK's EncryptedSession: nothing readable in it.
        {"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "gAAAAABl..."},
        {"role": "user", "content": None},
        {"role": "user", "type": "function_call", "content": "not a message"},
        "not a dict",
    ]:
        assert message_text(item) == "", item


def test_message_text_is_capped() -> None:
    text = message_text(user_says("word " * MAX_TEXT_LENGTH))
    assert len(text) == MAX_TEXT_LENGTH


# -- searching -------------------------------------------------------------------------


def test_search_finds_the_owners_conversation_with_a_snippet_and_a_rank(alice: Any) -> None:
    trip = DjangoSession("trip", owner=alice)
    trip._add_items(
        [user_says("I want to visit Lisbon in May"), assistant_says("Lisbon is lovely")]
    )
    DjangoSession("work", owner=alice)._add_items([user_says("Quarterly report due")])

    found = AgentSession.objects.search(alice, "lisbon")

    assert ids(found) == ["trip"]
    assert isinstance(found[0].search_rank, float) and found[0].search_rank > 0
    assert "Lisbon" in found[0].search_snippet
    assert found[0].title  # a full instance, not a bare row
    assert AgentSession.objects.search(alice, "LISBON")[0].session_id == "trip"


def test_every_word_must_match_within_one_message(alice: Any) -> None:
    DjangoSession("both", owner=alice)._add_items([user_says("lisbon trams are yellow")])
    DjangoSession("one", owner=alice)._add_items([user_says("lisbon")])
    DjangoSession("split", owner=alice)._add_items([user_says("trams"), user_says("lisbon")])

    assert ids(AgentSession.objects.search(alice, "lisbon trams")) == ["both"]
    assert set(ids(AgentSession.objects.search(alice, "lisbon"))) == {"both", "one", "split"}


def test_no_search_returns_another_users_text(alice: Any, bob: Any) -> None:
    DjangoSession("alice-trip", owner=alice)._add_items([user_says("secret plans for Lisbon")])
    DjangoSession("bob-trip", owner=bob)._add_items([user_says("my own Lisbon plans")])
    DjangoSession("nobody", owner=None)._add_items([user_says("Lisbon without an owner")])

    assert ids(AgentSession.objects.search(alice, "lisbon")) == ["alice-trip"]
    assert ids(AgentSession.objects.search(bob.pk, "lisbon")) == ["bob-trip"]
    assert "secret" not in AgentSession.objects.search(bob, "lisbon")[0].search_snippet
    assert set(ids(AgentSession.objects.search_all("lisbon"))) == {
        "alice-trip",
        "bob-trip",
        "nobody",
    }
    with pytest.raises(ValueError):
        AgentSession.objects.search(AnonymousUser(), "lisbon")
    with pytest.raises((ValueError, TypeError)):
        AgentSession.objects.search(None, "lisbon")


def test_best_match_first_then_newest_activity_and_limit(alice: Any) -> None:
    DjangoSession("weak", owner=alice)._add_items(
        [user_says("lisbon " + " ".join(f"filler{n}" for n in range(60)))]
    )
    DjangoSession("strong", owner=alice)._add_items([user_says("lisbon lisbon lisbon")])
    DjangoSession("older", owner=alice)._add_items([user_says("porto")])
    DjangoSession("newer", owner=alice)._add_items([user_says("porto")])
    AgentSession.objects.filter(session_id="older").update(
        updated_at=timezone.now() - timedelta(days=1)
    )

    assert ids(AgentSession.objects.search(alice, "lisbon")) == ["strong", "weak"]
    assert ids(AgentSession.objects.search(alice, "porto")) == ["newer", "older"]
    assert ids(AgentSession.objects.search(alice, "porto", limit=1)) == ["newer"]
    ranks = [s.search_rank for s in AgentSession.objects.search(alice, "lisbon")]
    assert ranks == sorted(ranks, reverse=True)


def test_a_search_is_one_query(alice: Any) -> None:
    for n in range(5):
        DjangoSession(f"s{n}", owner=alice)._add_items(
            [user_says(f"lisbon {n}"), assistant_says("lisbon indeed")]
        )
    AgentSession.objects.search(alice, "lisbon")  # warm: MariaDB reads its word limits once
    with CaptureQueriesContext(connection) as queries:
        found = AgentSession.objects.search(alice, "lisbon")
    assert len(found) == 5
    assert len(queries) == 1, [q["sql"] for q in queries]


def test_the_snippet_surrounds_the_first_matched_word_of_the_best_message(alice: Any) -> None:
    before = " ".join(f"before{n}" for n in range(40))
    after = " ".join(f"after{n}" for n in range(40))
    DjangoSession("long", owner=alice)._add_items([user_says(f"{before} Lisbon {after}")])

    [found] = AgentSession.objects.search(alice, "lisbon")

    snippet = found.search_snippet
    assert snippet.startswith("…") and snippet.endswith("…")
    assert "Lisbon" in snippet
    assert 120 <= len(snippet) <= 165
    assert "before39 Lisbon after0" in snippet


def test_empty_and_punctuation_only_queries_find_nothing(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says("anything at all")])
    for query in ["", "   ", "\n\t", '"', "***", "-+()", "''"]:
        assert AgentSession.objects.search(alice, query) == []
        assert list(AgentSession.objects.matching(query)) == []


@pytest.mark.parametrize(
    "query",
    [
        '"lisbon',
        'lisbon"',
        "lisbon*",
        "-lisbon",
        "+lisbon",
        "lisbon NEAR trams",
        "lisbon AND trams",
        "lisbon OR nothing",
        "NOT lisbon",
        "(lisbon) trams)",
        "lisbon'; DROP TABLE agent_messages; --",
        "lisbon: trams^ @ ~ < > \\ {} [] | ; , . ! ? % & $ #",
        "text:lisbon",
    ],
)
def test_query_syntax_is_searched_as_plain_words(alice: Any, query: str) -> None:
    DjangoSession("s", owner=alice)._add_items(
        [user_says("lisbon trams and drop table agent_messages near text not or nothing")]
    )
    found = AgentSession.objects.search(alice, query)
    # Every word of these is in the message (InnoDB drops its stop words "and", "or"...).
    assert ids(found) == ["s"], query
    assert ids(AgentSession.objects.filter(owner=alice).matching(query)) == ["s"]


def test_query_type_and_length_are_checked(alice: Any) -> None:
    with pytest.raises(TypeError, match="query must be a str"):
        AgentSession.objects.search(alice, b"lisbon")  # type: ignore[arg-type]
    with pytest.raises(TypeError, match="query must be a str"):
        AgentSession.objects.matching(None)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match=f"at most {MAX_QUERY_LENGTH}"):
        AgentSession.objects.search(alice, "a" * (MAX_QUERY_LENGTH + 1))
    with pytest.raises(ValueError, match="limit"):
        AgentSession.objects.search(alice, "lisbon", limit=0)
    with pytest.raises(TypeError, match="limit"):
        AgentSession.objects.search(alice, "lisbon", limit="5")  # type: ignore[arg-type]
    # The longest query allowed is searched.
    assert AgentSession.objects.search(alice, "lisbon " * (MAX_QUERY_LENGTH // 7)) == []


def test_only_user_and_assistant_text_is_searched(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items(
        [
            {"role": "system", "content": "zanzibar system prompt"},
            {"type": "function_call_output", "call_id": "c", "output": "zanzibar tool"},
            user_says("hello"),
        ]
    )
    assert AgentSession.objects.search(alice, "zanzibar") == []
    assert AgentSession.objects.search(alice, "hello") != []
    assert list(AgentMessage.objects.order_by("pk").values_list("text", flat=True)) == [
        "",
        "",
        "hello",
    ]


# -- features meet ----------------------------------------------------------------------


def test_deleted_text_is_no_longer_found(alice: Any) -> None:
    session = DjangoSession("s", owner=alice)
    session._add_items([user_says("lisbon first"), user_says("porto second")])
    session._pop_item()
    assert AgentSession.objects.search(alice, "porto") == []
    assert ids(AgentSession.objects.search(alice, "lisbon")) == ["s"]
    session._clear_session()
    assert AgentSession.objects.search(alice, "lisbon") == []

    DjangoSession("gone", owner=alice)._add_items([user_says("madeira")])
    AgentSession.objects.filter(session_id="gone").delete()
    assert AgentSession.objects.search(alice, "madeira") == []


def test_a_forks_copied_messages_are_found_under_the_fork(alice: Any) -> None:
    source = DjangoSession("source", owner=alice)
    source._add_items([user_says("lisbon early"), user_says("porto later")])
    async_to_sync(source.afork)("fork", keep=1)

    assert set(ids(AgentSession.objects.search(alice, "lisbon"))) == {"source", "fork"}
    assert ids(AgentSession.objects.search(alice, "porto")) == ["source"]
    fork_texts = AgentMessage.objects.filter(session__session_id="fork").values_list("text")
    assert list(fork_texts) == [("lisbon early",)]


def test_compaction_replaces_what_is_found(alice: Any) -> None:
    session = DjangoSession("s", owner=alice)
    session._add_items([user_says("lisbon details"), assistant_says("long answer")])
    assert async_to_sync(session._atomic_replace_items)([user_says("summary of azores")])

    assert AgentSession.objects.search(alice, "lisbon") == []
    assert ids(AgentSession.objects.search(alice, "azores")) == ["s"]


def test_expired_conversations_are_not_found(alice: Any) -> None:
    DjangoSession("old", owner=alice, expires_after=timedelta(hours=1))._add_items(
        [user_says("lisbon long ago")]
    )
    DjangoSession("live", owner=alice)._add_items([user_says("lisbon today")])
    AgentSession.objects.filter(session_id="old").update(
        updated_at=timezone.now() - timedelta(hours=2)
    )
    assert ids(AgentSession.objects.search(alice, "lisbon")) == ["live"]
    assert ids(AgentSession.objects.search_all("lisbon")) == ["live"]


def test_an_import_computes_the_text_and_an_export_leaves_it_out(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says("lisbon")])
    exported = io.StringIO()
    transfer.export_sessions(exported, using="default")
    assert '"text"' not in exported.getvalue()
    AgentSession.objects.all().delete()

    lines = exported.getvalue().splitlines()
    transfer.import_sessions(lambda: transfer.read_jsonl(lines), using="default")
    assert ids(AgentSession.objects.search(alice, "lisbon")) == ["s"]

    # A text in a file is not trusted: the line is refused, nothing is written.
    forged = lines[0].replace('"data":', '"text":"forged","data":', 1)
    AgentSession.objects.all().delete()
    with pytest.raises(transfer.TransferError, match=r"items\[0\] must be an object"):
        transfer.import_sessions(lambda: transfer.read_jsonl([forged]), using="default")
    assert not AgentSession.objects.exists()


def test_encrypted_conversations_are_not_searchable(alice: Any) -> None:
    envelope = {"__enc__": 1, "v": 1, "kid": "hkdf-v1", "payload": "lisbon-looking-bytes"}
    DjangoSession("sealed", owner=alice)._add_items([envelope])
    assert AgentSession.objects.search(alice, "lisbon") == []
    assert AgentMessage.objects.get().text == ""


def test_matching_filters_a_queryset(alice: Any, bob: Any) -> None:
    DjangoSession("a", owner=alice)._add_items([user_says("lisbon")])
    DjangoSession("b", owner=bob)._add_items([user_says("lisbon")])
    DjangoSession("c", owner=bob)._add_items([user_says("porto")])

    assert sorted(ids(list(AgentSession.objects.matching("lisbon")))) == ["a", "b"]
    assert ids(list(AgentSession.objects.filter(owner=bob).matching("lisbon"))) == ["b"]
    assert AgentSession.objects.matching("lisbon").count() == 2


@pytest.mark.django_db(transaction=True, databases=["default", "other"])
def test_a_fork_to_another_database_is_found_there(alice: Any) -> None:
    source = DjangoSession("source", owner=alice)
    source._add_items([user_says("lisbon early")])
    AgentMessage.objects.update(text=None)  # stored before the migration: computed on copy
    async_to_sync(source.afork)("fork", using="other")

    assert ids(AgentSession.objects.using("other").search(alice, "lisbon")) == ["fork"]
    assert AgentSession.objects.search(alice, "lisbon") == []  # not backfilled here yet


def test_custom_tables_keep_working_and_are_not_searched(alice: Any) -> None:
    names = (f"search_sessions_{uuid.uuid4().hex[:8]}", f"search_messages_{uuid.uuid4().hex[:8]}")
    custom = DjangoSession(
        "custom", sessions_table=names[0], messages_table=names[1], create_tables=True
    )
    try:
        custom._add_items([user_says("lisbon in a table of its own")])
        assert custom._get_items(None) == [user_says("lisbon in a table of its own")]
        assert AgentSession.objects.search_all("lisbon") == []
        columns = connection.introspection.get_table_description(connection.cursor(), names[1])
        assert "text" not in [column.name for column in columns]
    finally:
        with connection.schema_editor() as editor:
            editor.delete_model(custom.message_model)
            editor.delete_model(custom.session_model)
        tables._created.clear()


@pytest.mark.vendor("sqlite", "mysql")
def test_accents_are_ignored_where_the_tokenizer_or_collation_folds_them(alice: Any) -> None:
    DjangoSession("s", owner=alice)._add_items([user_says("Um café em Lisboa")])
    assert ids(AgentSession.objects.search(alice, "cafe")) == ["s"]
    assert ids(AgentSession.objects.search(alice, "CAFÉ lisboa")) == ["s"]
    assert "café" in AgentSession.objects.search(alice, "cafe")[0].search_snippet


def test_words_whose_case_folding_changes_them_are_found_as_written(alice: Any) -> None:
    # casefold() makes "Straße" "strasse", which no index holds: the indexes lowercase.
    DjangoSession("s", owner=alice)._add_items([user_says("Treffen in der Straße, Fußball")])
    assert ids(AgentSession.objects.search(alice, "Straße")) == ["s"]
    assert ids(AgentSession.objects.search(alice, "FUßBALL straße")) == ["s"]


def test_a_write_adds_no_statement_for_the_text(alice: Any) -> None:
    session = DjangoSession("s", owner=alice)
    session._add_items([user_says("warm up")])
    with CaptureQueriesContext(connection) as queries:
        session._add_items([user_says("lisbon"), assistant_says("porto"), {"type": "x"}])
    table = AgentMessage._meta.db_table
    inserts = [q["sql"] for q in queries if table in q["sql"] and "INSERT" in q["sql"].upper()]
    assert len(inserts) == 1, inserts  # the messages, text included, in one statement
    texts = AgentMessage.objects.order_by("pk").values_list("text", flat=True)
    assert list(texts) == ["warm up", "lisbon", "porto", ""]
