"""The search box: the signed-in user's conversations that said the words, best first.

Committed rows (``transaction=True``): MariaDB's full-text index sees only those.
"""

from __future__ import annotations

import re

import pytest
from django.test import Client
from django.urls import reverse
from openai_django_sessions import search

from chat.templatetags.chat_format import highlight
from tests.conftest import signed_in

pytestmark = pytest.mark.django_db(transaction=True)


def conversation(client: Client, *messages: str) -> str:
    """A new conversation of ``client``'s user holding ``messages`` (and the replies)."""
    session_id = client.post(reverse("chat:new")).url.rstrip("/").rsplit("/", 1)[1]
    for text in messages:
        response = client.post(reverse("chat:send", args=[session_id]), {"message": text})
        assert response.status_code == 302
    return session_id


def results(client: Client, query: str | None) -> str:
    response = client.get(reverse("chat:search"), {} if query is None else {"q": query})
    assert response.status_code == 200
    return response.content.decode()


def found_ids(html: str) -> list[str]:
    return re.findall(r'href="/c/(web-[a-z0-9]+)/"', html)


def test_the_list_has_a_search_box() -> None:
    html = signed_in("ada").get(reverse("chat:list")).content.decode()
    assert f'action="{reverse("chat:search")}"' in html
    assert 'name="q"' in html


def test_finds_the_users_conversations_that_said_it_with_the_snippet() -> None:
    ada = signed_in("ada")
    lisbon = conversation(ada, "My secret plan is a trip to Lisbon in May")
    conversation(ada, "My name is Ada")
    html = results(ada, "lisbon")
    assert found_ids(html) == [lisbon]
    assert "<mark>Lisbon</mark> in May" in html
    assert "1 conversation mentions" in html


def test_every_word_must_match() -> None:
    ada = signed_in("ada")
    both = conversation(ada, "Pack a rain jacket for Lisbon")
    conversation(ada, "Lisbon has trams")
    assert found_ids(results(ada, "lisbon jacket")) == [both]
    assert "None of your conversations mentions" in results(ada, "lisbon bicycle")


def test_another_users_conversations_never_appear() -> None:
    ada, bob = signed_in("ada"), signed_in("bob")
    mine = conversation(ada, "Lisbon with the family")
    theirs = conversation(bob, "Lisbon secrets of Bob")
    html = results(ada, "lisbon")
    assert found_ids(html) == [mine]
    assert theirs not in html and "secrets" not in html
    assert found_ids(results(bob, "lisbon")) == [theirs]
    assert "None of your conversations" in results(bob, "family")


def test_an_empty_query_shows_the_box_and_nothing_else() -> None:
    ada = signed_in("ada")
    conversation(ada, "Lisbon in May")
    for query in (None, "", "   "):
        html = results(ada, query)
        assert 'name="q"' in html
        assert found_ids(html) == []
        assert "None of your conversations" not in html


def test_the_snippet_is_escaped_and_only_the_words_are_marked() -> None:
    ada = signed_in("ada")
    conversation(ada, "Lisbon <script>alert('x')</script> & <b>bold</b>")
    html = results(ada, "lisbon")
    assert "<script>alert" not in html and "<b>bold" not in html
    assert "&lt;script&gt;" in html
    assert "<mark>Lisbon</mark>" in html


def test_highlight_marks_whole_words_ignoring_case_and_escapes_the_rest() -> None:
    marked = highlight("Lisbon's <i>lisbonite</i> LISBON", "lisbon <i>")
    assert marked == (
        "<mark>Lisbon</mark>&#x27;s &lt;<mark>i</mark>&gt;lisbonite&lt;/<mark>i</mark>&gt; "
        "<mark>LISBON</mark>"
    )
    assert highlight("a <b>", "") == "a &lt;b&gt;"


@pytest.mark.parametrize(
    "query", ['"lisbon', "lisbon*", "-lisbon", "+lisbon", "lisbon AND (", "NEAR(lisbon", "x\x00y"]
)
def test_operators_and_odd_characters_are_searched_as_words(query: str) -> None:
    ada = signed_in("ada")
    lisbon = conversation(ada, "Lisbon and the towns near it in May")
    html = results(ada, query)
    if "lisbon" in query:
        assert found_ids(html) == [lisbon], query
    else:
        assert found_ids(html) == []


def test_a_too_long_query_is_refused_in_words() -> None:
    ada = signed_in("ada")
    conversation(ada, "Lisbon in May")
    html = results(ada, "lisbon " * search.MAX_QUERY_LENGTH)
    assert "Searches are limited to" in html
    assert found_ids(html) == []


def test_search_needs_a_signed_in_user() -> None:
    response = Client().get(reverse("chat:search"), {"q": "lisbon"})
    assert response.status_code == 302
    assert response.url.startswith(reverse("login") + "?next=")


def test_search_results_are_never_cached() -> None:
    assert "no-store" in signed_in("ada").get(reverse("chat:search"))["Cache-Control"]
