"""The whole flow in a real browser: Chromium, driven by Playwright, against uvicorn.

The server runs in a subprocess on a database of its own: a temporary SQLite
file, and once more a PostgreSQL database created (and dropped) here. The
screenshot of the SQLite run is saved to ``artifacts/example-chat.png``.
"""

from __future__ import annotations

import os
import re
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from psycopg import sql

from tests.serving import uvicorn_server

REPO_ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT = REPO_ROOT / "artifacts" / "example-chat.png"
CHROMIUM = os.environ.get("CHROMIUM_PATH", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# A server to create the test database on; its own database is only connected to.
POSTGRES_URL = os.environ.get("EXAMPLE_POSTGRES_URL", "postgres://postgres@127.0.0.1:5432/postgres")

# Background turns take a second there, so the page's polling is what shows them.
APP = "tests.delayed_turns_asgi:application"

pytestmark = pytest.mark.browser
# Replies come from a real server (and a background thread): allow them time.
expect.set_options(timeout=15_000)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    if not Path(CHROMIUM).exists():
        pytest.fail(
            f"Chromium is not installed at {CHROMIUM}: run `apt-get install chromium` "
            "(or point CHROMIUM_PATH at a Chromium binary)."
        )
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        yield browser
        browser.close()


@pytest.fixture
def page(browser: Browser) -> Iterator[Page]:
    context = browser.new_context(viewport={"width": 900, "height": 1000})
    page = context.new_page()
    page.set_default_timeout(15_000)
    yield page
    context.close()


def test_conversation_flow_on_sqlite(page: Page, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    with uvicorn_server(database_url, tmp_path / "uvicorn.log", app=APP) as base_url:
        conversation_flow(page, base_url, screenshot=SCREENSHOT)
    assert SCREENSHOT.stat().st_size > 10_000


@pytest.mark.postgres
def test_conversation_flow_on_postgresql(page: Page, tmp_path: Path) -> None:
    with (
        postgres_database() as database_url,
        uvicorn_server(database_url, tmp_path / "uvicorn.log", app=APP) as base_url,
    ):
        conversation_flow(page, base_url, screenshot=None)


def conversation_flow(page: Page, base_url: str, *, screenshot: Path | None) -> None:
    """Two dependent messages, a background tool turn, reload, undo, clear."""
    page.goto(base_url + "/")
    expect(page.get_by_text("No conversations yet")).to_be_visible()
    expect(page.get_by_test_id("model")).to_contain_text("offline")
    page.get_by_role("button", name="New conversation").click()
    expect(page).to_have_url(re.compile(r"/c/web-[a-z0-9]{16}/$"))
    conversation_url = page.url

    users = page.locator('[data-role="user"]')
    replies = page.locator('[data-role="assistant"]')

    send(page, "My name is Ada")
    expect(replies.last).to_have_text(
        "Offline model: Nice to meet you, Ada. I will remember your name."
    )
    send(page, "What is my name?")
    expect(replies.last).to_have_text("Offline model: Your name is Ada. You told me earlier.")

    # A tool turn, as a background task: the page polls until the reply lands.
    page.get_by_label("Message").fill("What is 12 * (3 + 4)?")
    runs_in_background = page.get_by_text("runs at once on this Django version").count() == 0
    page.get_by_label("Run in background").check()
    page.get_by_role("button", name="Send").click()
    if runs_in_background:  # Django >= 6.0; 5.2 answers before the redirect
        expect(page.get_by_test_id("pending")).to_have_text("Answering in the background…")
        expect(users.last).to_have_text("What is 12 * (3 + 4)?")
        expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(replies).to_have_count(3)
    expect(page.get_by_test_id("pending")).to_have_count(0)
    expect(replies.last).to_contain_text("From calculate: 12 * (3 + 4) = 84")
    tool = page.locator('details[data-role="tool"]')
    expect(tool).to_have_count(1)
    expect(tool).not_to_have_attribute("open", "")
    expect(tool.locator("summary")).to_have_text('Tool call: calculate(expression="12 * (3 + 4)")')
    tool.locator("summary").click()  # opened for the screenshot: arguments and output
    expect(tool).to_contain_text("12 * (3 + 4) = 84")
    if screenshot is not None:
        screenshot.parent.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(screenshot), full_page=True)

    # The history is in the database, not in the page.
    page.reload()
    expect(users).to_have_text(["My name is Ada", "What is my name?", "What is 12 * (3 + 4)?"])
    expect(replies).to_have_count(3)
    page.goto(base_url + "/")
    row = page.get_by_test_id("conversations").get_by_role("link")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("My name is Ada")
    expect(row).to_contain_text("8 messages")
    row.click()
    expect(page).to_have_url(conversation_url)

    page.get_by_role("button", name="Undo last exchange").click()
    expect(users).to_have_text(["My name is Ada", "What is my name?"])
    expect(page.locator('details[data-role="tool"]')).to_have_count(0)
    expect(replies.last).to_have_text("Offline model: Your name is Ada. You told me earlier.")

    page.get_by_role("button", name="Clear").click()
    expect(page.get_by_text("No messages yet")).to_be_visible()
    expect(users).to_have_count(0)
    send(page, "What is my name?")
    expect(replies.last).to_have_text("Offline model: You have not told me your name yet.")


def send(page: Page, text: str) -> None:
    count = page.locator('[data-role="assistant"]').count()
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.locator('[data-role="assistant"]')).to_have_count(count + 1)


@contextmanager
def postgres_database() -> Iterator[str]:
    """A new, empty PostgreSQL database on ``EXAMPLE_POSTGRES_URL``'s server; its URL."""
    name = f"ods_example_test_{uuid.uuid4().hex[:8]}"
    server = urlsplit(POSTGRES_URL)
    with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
        admin.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        yield urlunsplit(server._replace(path=f"/{name}"))
    finally:
        with psycopg.connect(POSTGRES_URL, autocommit=True) as admin:
            admin.execute(
                sql.SQL("DROP DATABASE IF EXISTS {} WITH (FORCE)").format(sql.Identifier(name))
            )
