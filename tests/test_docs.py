"""Every Python block of README.md and docs/ runs as shown (see tests/docs_blocks.py).

The blocks of a page run in order in one namespace, on SQLite, with the SDK's model
provider answering through ``agents.testing.ScriptedModel`` (offline, deterministic).
A block without a top-level ``await`` is sync code and runs in a thread of its own, as
in a shell, a script or a task; one with ``await`` runs on the event loop. Each ``async def``
view a block defines (a function whose first parameter is ``request``) is then
requested through Django's ``AsyncClient``, as an anonymous visitor (who must be
refused and store nothing) and as a signed-in user (who must get a 200 and own every
conversation stored).
"""

from __future__ import annotations

import ast
import asyncio
import importlib
import importlib.util
import inspect
import re
import sys
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import django
import pytest
from agents import Model
from agents.models.multi_provider import MultiProvider
from agents.testing import ScriptedModel, assistant_message
from agents.usage import Usage
from django.core.exceptions import SynchronousOnlyOperation
from django.db import connections
from django.test import AsyncClient, override_settings
from django.urls import path

from openai_django_sessions import _conf as conf
from openai_django_sessions.models import AgentSession
from tests.docs_blocks import ROOT, Block, DocsBlockError, blocks, pages

pytestmark = [pytest.mark.vendor("sqlite"), pytest.mark.django_db(transaction=True)]

URLCONF = "tests.docs_views_urls"
# What the scripted model answers, and the usage each answer reports.
ANSWER = "Noted."
USAGE = Usage(requests=1, input_tokens=12, output_tokens=3, total_tokens=15)


@pytest.fixture
def scripted_model(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every agent without a model object of its own answers through ScriptedModel."""

    def get_model(self: MultiProvider, name: str | None) -> Model:
        return ScriptedModel([[assistant_message(ANSWER)]], default_usage=USAGE)

    monkeypatch.setattr(MultiProvider, "get_model", get_model)
    # Building a compaction session builds an OpenAI client, which wants a key; no
    # request leaves the machine (the page's runs are answered by ScriptedModel).
    monkeypatch.setenv("OPENAI_API_KEY", "sk-docs-offline")
    yield


def _page_id(page: Path) -> str:
    return str(page.relative_to(ROOT))


@pytest.mark.parametrize("page", pages(), ids=_page_id)
async def test_every_python_block_of_the_page_runs_as_shown(
    page: Path, scripted_model: None, django_user_model: Any
) -> None:
    namespace: dict[str, Any] = {"__name__": "docs_page"}
    for block in blocks(page):
        if block.mark == "settings":
            _run_settings(block)
        elif block.runs:
            before = set(namespace)
            await _run(block, namespace)
            for name in sorted(set(namespace) - before):
                if _is_view(namespace[name]):
                    await _request_view(block, namespace[name], django_user_model)
    namespace.clear()  # frees the page's receivers now, not at the next garbage collection


def _compile(block: Block) -> types.CodeType:
    try:
        return compile(
            block.code, block.where, "exec", flags=ast.PyCF_ALLOW_TOP_LEVEL_AWAIT, dont_inherit=True
        )
    except SyntaxError as error:
        raise DocsBlockError(f"{block.where}: not valid Python: {error}") from error


async def _run(block: Block, namespace: dict[str, Any]) -> None:
    code = _compile(block)
    namespace.setdefault("__name__", "docs_page")  # a module name, as views need one
    try:
        if code.co_flags & inspect.CO_COROUTINE:
            await eval(code, namespace)
        else:
            await asyncio.to_thread(_exec_in_thread, code, namespace)
    except Exception as error:
        raise DocsBlockError(f"{block.where}: the block raised {error!r}") from error


def _exec_in_thread(code: types.CodeType, namespace: dict[str, Any]) -> None:
    """Sync code in a thread of its own, as in a shell, a script or a task."""
    try:
        exec(code, namespace)
    finally:
        connections.close_all()


def _run_settings(block: Block) -> None:
    """A settings fragment runs as a settings module does and defines settings only."""
    namespace: dict[str, Any] = {"BASE_DIR": Path("/srv/project")}
    exec(_compile(block), namespace)
    defined = [name for name in namespace if name not in ("BASE_DIR", "__builtins__")]
    if not defined or any(not name.isupper() for name in defined):
        raise DocsBlockError(f"{block.where}: a settings fragment defines {defined}")


def _is_view(value: object) -> bool:
    function = inspect.unwrap(value) if callable(value) else None
    if not inspect.iscoroutinefunction(function):
        return False
    parameters = list(inspect.signature(function).parameters)
    return bool(parameters) and parameters[0] == "request"


async def _request_view(block: Block, view: Callable[..., Any], user_model: Any) -> None:
    """Anonymous visitors are refused and store nothing; a user gets 200 and owns it all."""
    function = inspect.unwrap(view)
    kwargs = [name for name in inspect.signature(function).parameters if name != "request"]
    route = "view/" + "".join(f"<str:{name}>/" for name in kwargs)
    url = "/view/" + "".join(f"docs-{name}-{block.line}/" for name in kwargs)
    posted = re.findall(r"request\.POST\[\"(\w+)\"\]", block.code)
    module = types.ModuleType(URLCONF)
    module.urlpatterns = [path(route, view)]  # type: ignore[attr-defined]
    sys.modules[URLCONF] = module

    async def call(client: AsyncClient) -> Any:
        if posted:
            return await client.post(url, {name: "Hello" for name in posted})
        return await client.get(url)

    where = f"{block.where} ({function.__name__})"
    try:
        with override_settings(ROOT_URLCONF=URLCONF):
            stored = await AgentSession.objects.acount()
            anonymous = await call(AsyncClient())
            assert anonymous.status_code in (302, 401, 403), f"{where}: anonymous visitor served"
            assert await AgentSession.objects.acount() == stored, f"{where}: anonymous stored"
            user = await user_model.objects.acreate_user(f"reader-{block.line}-{function.__name__}")
            client = AsyncClient()
            await client.aforce_login(user)
            signed_in = await call(client)
            assert signed_in.status_code == 200, f"{where}: {signed_in.status_code} for a user"
            unowned = AgentSession.objects.exclude(owner=user)
            assert await unowned.acount() == stored, f"{where}: stored without the user as owner"
    finally:
        del sys.modules[URLCONF]


# The collector itself: what it refuses.


def _page(text: str) -> list[Block]:
    return blocks(ROOT / "docs" / "sample.md", text)


def test_a_block_without_a_language_is_an_error() -> None:
    with pytest.raises(DocsBlockError, match=r"sample\.md:2: a block without a language"):
        _page("Text\n```\nx = 1\n```\n")


def test_a_block_in_an_unknown_language_is_an_error() -> None:
    with pytest.raises(DocsBlockError, match="unknown language 'pyhton'"):
        _page("```pyhton\nx = 1\n```\n")


def test_an_unknown_mark_is_an_error() -> None:
    with pytest.raises(DocsBlockError, match="unknown mark 'skip'"):
        _page("<!-- docs-test: skip -->\n```python\nx = 1\n```\n")


def test_a_not_run_mark_needs_a_reason() -> None:
    with pytest.raises(DocsBlockError, match="'not-run' needs a reason"):
        _page("<!-- docs-test: not-run -->\n```python\nx = 1\n```\n")


def test_an_unclosed_block_is_an_error() -> None:
    with pytest.raises(DocsBlockError, match="never closed"):
        _page("```python\nx = 1\n")


def test_python_blocks_run_and_marked_or_other_blocks_do_not() -> None:
    found = _page(
        "```python\nx = 1\n```\n\n"
        "<!-- docs-test: settings -->\n```python\nDEBUG = True\n```\n\n"
        "<!-- docs-test: not-run needs a server -->\n```python\nconnect()\n```\n\n"
        "```bash\npython manage.py migrate\n```\n"
    )
    assert [(b.line, b.runs, b.mark, b.reason) for b in found] == [
        (1, True, None, ""),
        (6, False, "settings", ""),
        (11, False, "not-run", "needs a server"),
        (15, False, None, ""),
    ]


async def test_a_block_that_raises_fails_naming_its_line(scripted_model: None) -> None:
    (block,) = _page("Intro\n\n```python\nraise ValueError('broken sample')\n```\n")
    with pytest.raises(DocsBlockError, match=r"sample.md:3: the block raised .*broken sample"):
        await _run(block, {})


async def test_a_view_serving_anonymous_visitors_fails(django_user_model: Any) -> None:
    (block,) = _page(
        "```python\nfrom django.http import JsonResponse\n\n"
        "async def chat(request):\n    return JsonResponse({})\n```\n"
    )
    namespace: dict[str, Any] = {}
    await _run(block, namespace)
    with pytest.raises(AssertionError, match="anonymous visitor served"):
        await _request_view(block, namespace["chat"], django_user_model)


async def test_a_view_reading_request_user_in_async_code_fails(
    scripted_model: None, django_user_model: Any
) -> None:
    (block,) = _page(
        "```python\nfrom django.contrib.auth.decorators import login_required\n"
        "from django.http import JsonResponse\n\n"
        "@login_required\nasync def chat(request):\n"
        "    return JsonResponse({'id': f'user-{request.user.pk}'})\n```\n"
    )
    namespace: dict[str, Any] = {}
    await _run(block, namespace)
    with pytest.raises(SynchronousOnlyOperation):
        await _request_view(block, namespace["chat"], django_user_model)


def test_a_settings_fragment_defines_settings_only() -> None:
    (block,) = _page("<!-- docs-test: settings -->\n```python\nagent = 1\n```\n")
    with pytest.raises(DocsBlockError, match="a settings fragment defines"):
        _run_settings(block)


# The reference: docs/reference/api.md is the one list of public names.


# Documented names that exist only from a Django version on (the page says so).
NEWER_DJANGO_ONLY = {("openai_django_sessions.tasks", "purge_expired_conversations"): (6, 0)}


def _documented() -> dict[str, set[str]]:
    """Module → the names docs/reference/api.md documents in it."""
    text = (ROOT / "docs" / "reference" / "api.md").read_text(encoding="utf-8")
    documented: dict[str, set[str]] = {}
    for target, members in re.findall(
        r"^::: ([\w.]+)\n(?:(?:    .*\n)*?      members: \[([^\]]*)\])?", text, re.MULTILINE
    ):
        package, _, name = target.rpartition(".")
        if package == "openai_django_sessions" and importlib.util.find_spec(target) is None:
            documented.setdefault(package, set()).add(name)
        elif members:
            documented[target] = {name.strip() for name in members.split(",")}
    for (module_name, name), version in NEWER_DJANGO_ONLY.items():
        if version > django.VERSION:
            documented[module_name].discard(name)
    return documented


def test_the_reference_documents_every_name_that_exists() -> None:
    for module_name, names in _documented().items():
        module = importlib.import_module(module_name)
        missing = sorted(name for name in names if not hasattr(module, name))
        assert not missing, f"docs/reference/api.md documents {module_name}.{missing}"


def test_the_reference_lists_exactly_the_public_names_of_modules_with_all() -> None:
    documented = _documented()
    assert documented["openai_django_sessions"] == set(
        importlib.import_module("openai_django_sessions").__all__
    )
    for module_name, names in documented.items():
        public = getattr(importlib.import_module(module_name), "__all__", None)
        if public is not None:
            assert names == set(public), f"docs/reference/api.md and {module_name}.__all__"


def test_the_settings_reference_shows_every_key_with_its_default() -> None:
    # The settings page's fragment is the reader's list of keys: a key added to
    # conf.DEFAULTS without it there would be undocumented.
    (fragment,) = (
        block
        for block in blocks(ROOT / "docs" / "reference" / "settings.md")
        if block.mark == "settings"
    )
    namespace: dict[str, Any] = {}
    exec(fragment.code, namespace)

    assert namespace["OPENAI_DJANGO_SESSIONS"] == conf.DEFAULTS
