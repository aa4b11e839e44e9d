"""The chat views of the README and the tutorial, served as a new project serves them.

``tests/test_docs.py`` runs every block and requests each view once, anonymous and
signed in. Here the two first views are requested the other ways a newcomer will:
with Django's CSRF middleware (as ``startproject`` sets it up), by GET, without text.
"""

from __future__ import annotations

import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings
from django.test import AsyncClient, override_settings
from django.urls import path

from tests.docs_blocks import ROOT, blocks
from tests.test_docs import ANSWER, _run
from tests.test_docs import scripted_model as scripted_model  # the fixture, by its name

pytestmark = [pytest.mark.vendor("sqlite"), pytest.mark.django_db(transaction=True)]

URLCONF = "tests.first_views_urls"


async def served(page: Path) -> Callable[..., Any]:
    """The ``chat`` view that ``page`` defines, its page's blocks run up to it."""
    namespace: dict[str, Any] = {"__name__": "first_views"}
    for block in blocks(page):
        if block.runs:
            await _run(block, namespace)
            if "chat" in namespace:
                return namespace["chat"]
    raise AssertionError(f"{page} defines no chat view")


@pytest.fixture
def as_a_new_project() -> Iterator[Callable[[Callable[..., Any]], None]]:
    """Route ``/chat/`` to a view, with the CSRF middleware and the tutorial's LOGIN_URL."""

    def route(view: Callable[..., Any]) -> None:
        module = types.ModuleType(URLCONF)
        module.urlpatterns = [path("chat/", view)]  # type: ignore[attr-defined]
        sys.modules[URLCONF] = module

    middleware = [*settings.MIDDLEWARE, "django.middleware.csrf.CsrfViewMiddleware"]
    try:
        with override_settings(
            ROOT_URLCONF=URLCONF, MIDDLEWARE=middleware, LOGIN_URL="/admin/login/"
        ):
            yield route
    finally:
        sys.modules.pop(URLCONF, None)


async def test_the_tutorial_view_serves_a_form_whose_token_lets_a_user_post_each_turn(
    scripted_model: None, as_a_new_project: Any, django_user_model: Any
) -> None:
    as_a_new_project(await served(ROOT / "docs" / "tutorial.md"))
    anonymous = AsyncClient(enforce_csrf_checks=True)
    client = AsyncClient(enforce_csrf_checks=True)
    await client.aforce_login(await django_user_model.objects.acreate_user("ada"))

    to_login = await anonymous.get("/chat/")
    assert (to_login.status_code, to_login["Location"]) == (302, "/admin/login/?next=/chat/")
    assert (await anonymous.post("/chat/", {"text": "Hello"})).status_code == 403
    form = await client.get("/chat/")
    assert form.status_code == 200
    found = re.search(r'name="csrfmiddlewaretoken" value="(\w+)"', form.content.decode())
    assert found is not None, form.content
    token = found.group(1)

    assert (await client.post("/chat/", {"text": "Hello"})).status_code == 403  # no token
    assert (await client.post("/chat/", {"csrfmiddlewaretoken": token})).status_code == 400
    reply = await client.post("/chat/", {"text": "Hello", "csrfmiddlewaretoken": token})
    assert (reply.status_code, reply.json()) == (200, {"reply": ANSWER})


async def test_the_readme_view_refuses_a_get_and_a_post_without_text(
    scripted_model: None, as_a_new_project: Any, django_user_model: Any
) -> None:
    as_a_new_project(await served(ROOT / "README.md"))
    client = AsyncClient()  # its token is checked above; here, what the view answers
    await client.aforce_login(await django_user_model.objects.acreate_user("ada"))

    assert (await client.get("/chat/")).status_code == 405
    assert (await client.post("/chat/", {})).status_code == 400
    assert (await client.post("/chat/", {"text": "Hello"})).status_code == 200
