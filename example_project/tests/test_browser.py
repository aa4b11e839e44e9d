"""The whole flow in a real browser: Chromium, driven by Playwright, against uvicorn.

The server runs in a subprocess on a database of its own: a temporary SQLite
file, and once more a PostgreSQL database created (and dropped) here. The SQLite
run saves a screenshot of each state it checks to ``artifacts/`` (the reply
streaming in, the tab closed mid-reply, a failed turn and its retry, the list
on a phone, an error in view, the admin at two widths); the PostgreSQL run
saves the ones of the tab closed mid-reply there, with ``-postgresql``.
"""

from __future__ import annotations

import os
import re
import subprocess
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import psycopg
import pytest
from playwright.sync_api import Browser, Page, expect, sync_playwright
from psycopg import sql

from tests.serving import manage, stored_history, uvicorn_server

REPO_ROOT = Path(__file__).resolve().parents[2]
ARTIFACTS = REPO_ROOT / "artifacts"
SCREENSHOTS = {
    name: ARTIFACTS / f"example-{name}.png"
    for name in (
        "sign-in",
        "list",
        "conversation",
        "edited",
        "admin",
        "not-yours",
        "streaming",
        "tab-closed",
        "failed-turn",
        "retried-turn",
        "phone-list",
        "error-in-view",
        "admin-1280",
        "admin-1600",
        "two-tabs",
        "search",
        "phone-search",
    )
}
POSTGRES_SCREENSHOTS = {
    name: ARTIFACTS / f"example-{name}-postgresql.png" for name in ("streaming", "tab-closed")
}
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


def test_conversation_flow_on_sqlite(browser: Browser, page: Page, tmp_path: Path) -> None:
    database_url = f"sqlite:///{tmp_path / 'chat.sqlite3'}"
    for screenshot in SCREENSHOTS.values():
        screenshot.unlink(missing_ok=True)
    log = tmp_path / "uvicorn.log"
    with uvicorn_server(database_url, log, app=APP) as base_url:
        conversation_flow(page, base_url, database_url, screenshots=True)
        edit_flow(page, base_url, screenshots=True)
        closed_mid_reply_flow(browser, base_url, database_url, SCREENSHOTS)
        failed_turn_flow(page, base_url)
        two_tabs_flow(browser, base_url, database_url)
        phone_flow(browser, base_url, database_url)
        admin_flow(page, base_url, database_url)
        ownership_flow(browser, base_url, database_url)
        search_flow(browser, base_url, database_url)
    for screenshot in SCREENSHOTS.values():
        assert screenshot.stat().st_size > 10_000
    assert "lifespan" not in log.read_text()  # uvicorn started without its warning


@pytest.mark.postgres
def test_conversation_flow_on_postgresql(browser: Browser, page: Page, tmp_path: Path) -> None:
    with (
        postgres_database() as database_url,
        uvicorn_server(database_url, tmp_path / "uvicorn.log", app=APP) as base_url,
    ):
        conversation_flow(page, base_url, database_url, screenshots=False)
        edit_flow(page, base_url, screenshots=False)
        closed_mid_reply_flow(browser, base_url, database_url, POSTGRES_SCREENSHOTS)


def conversation_flow(page: Page, base_url: str, database_url: str, *, screenshots: bool) -> None:
    """Sign-in, two dependent messages, a background tool turn, reload, undo, clear, delete.

    Along the way: Enter sends, a send adds no history entry, an error keeps the
    page's URL, the length counter, right-to-left text, the terminal command.
    """
    password = create_user(database_url, "demo")
    page.goto(base_url + "/")
    expect(page).to_have_url(re.compile(r"/accounts/login/\?next=/$"))
    if screenshots:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS["sign-in"]), full_page=True)
    sign_in(page, "demo", password)
    expect(page).to_have_url(base_url + "/")
    expect(page.get_by_test_id("signed-in")).to_have_text("demo")
    expect(page.get_by_text("No conversations yet")).to_be_visible()
    expect(page.get_by_test_id("model")).to_contain_text("offline")
    expect(page.get_by_role("link", name="Admin")).to_have_count(0)  # not staff
    page.get_by_role("button", name="New conversation").click()
    expect(page).to_have_url(re.compile(r"/c/web-[a-z0-9]{16}/$"))
    conversation_url = page.url
    entries = page.evaluate("history.length")

    users = page.locator('[data-role="user"]')
    replies = page.locator('[data-role="assistant"]')

    expect(page).to_have_title("New conversation · Chat that remembers")
    send(page, "My name is Ada")
    expect(replies.last).to_have_text(
        "Offline model: Nice to meet you, Ada. I will remember your name."
    )
    # Titled after the first message, in the heading and the tab, not by its id.
    expect(page.get_by_test_id("title")).to_have_text("My name is Ada")
    expect(page).to_have_title("My name is Ada · Chat that remembers")
    # Enter sends; Shift+Enter is a new line.
    box = page.get_by_label("Message")
    box.fill("What is")
    box.press("Shift+Enter")
    box.press_sequentially("my name?")
    expect(box).to_have_value("What is\nmy name?")
    box.press("Enter")
    expect(replies).to_have_count(2)
    expect(page.locator("[data-streaming]")).to_have_count(0)
    expect(users.last).to_have_text("What is\nmy name?")
    expect(replies.last).to_have_text("Offline model: Your name is Ada. You told me earlier.")
    assert page.evaluate("history.length") == entries  # sends replace the page, not push

    # A long paste is not cut: the counter shows the limit, Send waits for a shorter text.
    send_button = page.get_by_role("button", name="Send")
    box.fill("x" * 4100)
    expect(page.get_by_test_id("counter")).to_have_text("4,100 / 4,000 (too long by 100)")
    expect(send_button).to_be_disabled()
    assert len(box.input_value()) == 4100
    box.fill("x" * 3999)
    expect(page.get_by_test_id("counter")).to_have_text("3,999 / 4,000")
    expect(send_button).to_be_enabled()

    # A refused message: the error shows at the page's own URL; Reload sends nothing.
    box.fill("   ")
    send_button.click()
    expect(page.get_by_test_id("error")).to_have_text("Type a message first.")
    expect(page).to_have_url(conversation_url)
    page.reload()
    expect(page.get_by_test_id("error")).to_have_count(0)
    expect(replies).to_have_count(2)

    # A tool turn, as a background task: the page polls until the reply lands.
    page.get_by_label("Message").fill("What is 12 * (3 + 4)?")
    runs_in_background = page.get_by_text("runs at once on this Django version").count() == 0
    page.get_by_label("Run in background").check()
    page.get_by_role("button", name="Send").click()
    expect(page.get_by_label("Run in background")).to_be_checked()  # stays ticked
    if runs_in_background:  # Django >= 6.0; 5.2 answers before the redirect
        expect(page.get_by_test_id("pending")).to_have_text("Answering in the background…")
        expect(users.last).to_have_text("What is 12 * (3 + 4)?")
        expect(page.get_by_role("button", name="Send")).to_be_disabled()
    expect(replies).to_have_count(3)
    expect(page.get_by_test_id("pending")).to_have_count(0)
    expect(replies.last).to_contain_text("From calculate: 12 * (3 + 4) = 84")
    if runs_in_background:
        expect(page.get_by_test_id("info")).to_have_text(
            "The last reply was computed in the background."
        )
    page.get_by_label("Run in background").uncheck()
    tool = page.locator('details[data-role="tool"]')
    expect(tool).to_have_count(1)
    expect(tool).not_to_have_attribute("open", "")
    expect(tool.locator("summary")).to_have_text('Tool call: calculate(expression="12 * (3 + 4)")')
    tool.locator("summary").click()  # opened for the screenshot: arguments and output
    expect(tool).to_contain_text("12 * (3 + 4) = 84")
    if screenshots:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS["conversation"]), full_page=True)

    # The count is of the bubbles shown; tool calls are counted apart.
    expect(page.get_by_test_id("summary")).to_contain_text("6 messages, 1 tool call")
    assert page.locator(".bubble").count() == 6

    # The terminal command, folded away below the conversation, works as copied:
    # on the same database, as this user.
    terminal_box = page.locator("details.terminal")
    assert terminal_box.bounding_box()["y"] > page.locator("form.composer").bounding_box()["y"]
    terminal_box.locator("summary").click()
    command = page.get_by_test_id("terminal-command").inner_text()
    assert " chat --user demo web-" in command, command
    terminal = subprocess.run(
        ["bash", "-c", command], input="/quit\n", capture_output=True, text=True, timeout=120
    )
    assert terminal.returncode == 0, terminal.stderr
    assert "--- history: 8 stored messages" in terminal.stdout  # the 6 bubbles and the tool's 2
    assert "you> What is 12 * (3 + 4)?" in terminal.stdout

    # The history is in the database, not in the page.
    page.reload()
    expect(users).to_have_text(["My name is Ada", "What is my name?", "What is 12 * (3 + 4)?"])
    expect(replies).to_have_count(3)
    page.go_back()  # one step back leaves the conversation
    expect(page).to_have_url(base_url + "/")
    row = page.get_by_test_id("conversations").get_by_role("link")
    expect(row).to_have_count(1)
    expect(row).to_contain_text("My name is Ada")
    expect(row).to_contain_text("6 messages")
    if screenshots:
        page.screenshot(path=str(SCREENSHOTS["list"]), full_page=True)
    # "New conversation" twice makes one empty conversation, and it is not listed.
    page.get_by_role("button", name="New conversation").click()
    empty_url = page.url
    page.goto(base_url + "/")
    page.get_by_role("button", name="New conversation").click()
    expect(page).to_have_url(empty_url)
    page.goto(base_url + "/")
    expect(row).to_have_count(1)
    row.click()
    expect(page).to_have_url(conversation_url)

    page.get_by_role("button", name="Undo last exchange").click()
    expect(users).to_have_text(["My name is Ada", "What is my name?"])
    expect(page.locator('details[data-role="tool"]')).to_have_count(0)
    expect(replies.last).to_have_text("Offline model: Your name is Ada. You told me earlier.")

    # Clear asks first; Cancel keeps everything.
    page.get_by_role("link", name="Clear…").click()
    expect(page.get_by_test_id("consequence")).to_contain_text("Its 4 stored messages")
    page.get_by_role("link", name="Cancel").click()
    expect(users).to_have_count(2)
    page.get_by_role("link", name="Clear…").click()
    page.get_by_role("button", name="Clear").click()
    expect(page).to_have_url(conversation_url)
    expect(page.get_by_text("No messages yet")).to_be_visible()
    expect(users).to_have_count(0)

    # Right-to-left text reads right to left.
    send(page, "שלום! מה שלומך?")
    assert users.last.evaluate("bubble => getComputedStyle(bubble).direction") == "rtl"
    assert replies.last.evaluate("bubble => getComputedStyle(bubble).direction") == "ltr"
    send(page, "What is my name?")
    expect(replies.last).to_have_text("Offline model: You have not told me your name yet.")

    # Renamed in the chat: the heading and the tab follow.
    page.locator("details.rename summary").click()
    page.get_by_label("Title").fill("Greetings")
    page.get_by_role("button", name="Save").click()
    expect(page.get_by_test_id("title")).to_have_text("Greetings")
    expect(page).to_have_title("Greetings · Chat that remembers")

    # Delete asks first, then the conversation is gone from the list and its URL.
    page.get_by_role("link", name="Delete…").click()
    page.get_by_role("button", name="Delete").click()
    expect(page).to_have_url(base_url + "/")
    expect(page.get_by_test_id("message")).to_have_text("Conversation deleted.")
    expect(page.get_by_text("No conversations yet")).to_be_visible()
    page.goto(conversation_url)
    expect(page.get_by_test_id("not-found")).to_be_visible()


def admin_flow(page: Page, base_url: str, database_url: str) -> None:
    """The documented staff login, then the admin's view of a conversation."""
    password = printed_password(database_url, "demo_admin")
    page.goto(base_url + "/")
    page.get_by_role("button", name="New conversation").click()
    send(page, "What time is it in Tokyo?")
    # One long unbroken title must not push the other columns out of view.
    page.locator("details.rename summary").click()
    page.get_by_label("Title").fill("x" * 200)
    page.get_by_role("button", name="Save").click()
    page.goto(base_url + "/admin/")
    page.get_by_label("Username").fill("admin")
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Log in").click()
    page.goto(base_url + "/")
    expect(page.get_by_role("link", name="Admin")).to_have_count(1)  # staff: the link shows
    page.goto(base_url + "/admin/")
    page.get_by_role("rowheader", name="Agent sessions").get_by_role("link").click()
    expect(page.locator(".breadcrumbs")).to_have_text(
        re.compile(r"^\W*Home\W+Agent memory\W+Agent sessions\W*$")
    )
    admin_widths(page)
    page.get_by_role("link", name=re.compile(r"^web-")).first.click()
    expect(page.get_by_text("Last activity:")).to_be_visible()
    expect(page.locator("body")).not_to_contain_text("+00:00")
    page.screenshot(path=str(SCREENSHOTS["admin"]), full_page=True)


def admin_widths(page: Page) -> None:
    """The changelist at 1,280 and 1,600 px: titles readable, "Last activity" in view."""
    for width in (1280, 1600):
        page.set_viewport_size({"width": width, "height": 900})
        # In view: within the list's box, not scrolled away to its right.
        header = page.locator("#result_list th.column-last_activity").bounding_box()
        results = page.locator("#changelist .results").bounding_box()
        assert header is not None and results is not None
        assert header["x"] + header["width"] <= results["x"] + results["width"], (width, header)
        for cell in page.locator("#result_list td.field-title").all():
            # Not a word per line: a title cell is at least 12em wide (about 150 px).
            assert cell.bounding_box()["width"] > 120, cell.bounding_box()
        page.screenshot(path=str(SCREENSHOTS[f"admin-{width}"]), full_page=True)
    page.set_viewport_size({"width": 900, "height": 1000})


def closed_mid_reply_flow(
    browser: Browser, base_url: str, database_url: str, screenshots: dict[str, Path]
) -> None:
    """A reply streams in; the tab is closed mid-reply: the run is cancelled, the history
    is the one before the message, which waits in the box when the conversation is opened."""
    context = browser.new_context(viewport={"width": 900, "height": 1000})
    page = context.new_page()
    try:
        new_conversation_of(page, base_url, create_user(database_url, "streamer"), "streamer")
        session_id = page.url.rstrip("/").rsplit("/", 1)[1]
        send(page, "My name is Ada")
        before = stored_history(database_url, session_id)

        # Held before its first word: the message shows at once, the typing indicator
        # until the first word, the tool call as it happened.
        page.get_by_label("Message").fill("What is 12 * (3 + 4)? (hold first)")
        page.get_by_role("button", name="Send").click()
        expect(page.locator('[data-role="user"]').last).to_have_text(
            "What is 12 * (3 + 4)? (hold first)"
        )
        expect(page.get_by_test_id("typing")).to_have_text("Writing a reply…")
        expect(page.get_by_test_id("tool-output")).to_have_text("12 * (3 + 4) = 84")
        expect(page.locator('[data-role="assistant"]')).to_have_count(1)
        page = reopened(
            page, database_url, session_id, before, "What is 12 * (3 + 4)? (hold first)"
        )

        # Held after three words: the reply is seen growing, then the tab is closed.
        page.get_by_label("Message").fill("Tell me something (hold)")
        page.get_by_role("button", name="Send").click()
        streaming = page.locator('[data-role="assistant"][data-streaming]')
        expect(streaming).to_have_text("Offline model: You")
        expect(page.get_by_test_id("typing")).to_have_count(0)
        page.screenshot(path=str(screenshots["streaming"]), full_page=True)
        page = reopened(page, database_url, session_id, before, "Tell me something (hold)")
        expect(page.locator('[data-role="user"]')).to_have_text(["My name is Ada"])
        page.screenshot(path=str(screenshots["tab-closed"]), full_page=True)
        send(page, "What is my name?")  # the conversation goes on
        expect(page.locator('[data-role="assistant"]').last).to_contain_text("Your name is Ada")
    finally:
        context.close()


def reopened(page: Page, database_url: str, session_id: str, before: str, text: str) -> Page:
    """Close ``page`` mid-reply; once the run is undone, the conversation in a new tab,
    which says the reply was interrupted and offers ``text`` back in the box."""
    url, context = page.url, page.context
    page.close()
    wait_for_history(database_url, session_id, before)
    page = context.new_page()
    page.goto(url)
    expect(page.get_by_test_id("error")).to_contain_text("The reply was interrupted")
    expect(page.get_by_label("Message")).to_have_value(text)
    return page


def two_tabs_flow(browser: Browser, base_url: str, database_url: str) -> None:
    """One turn at a time: while one tab's reply is written, the other tab's send is
    refused with its text kept; once the first is over, it goes through."""
    context = browser.new_context(viewport={"width": 900, "height": 1000})
    first = context.new_page()
    try:
        new_conversation_of(first, base_url, create_user(database_url, "twotabs"), "twotabs")
        send(first, "My name is Ada")
        session_id = first.url.rstrip("/").rsplit("/", 1)[1]
        before = stored_history(database_url, session_id)
        second = context.new_page()
        second.goto(first.url)

        first.get_by_label("Message").fill("Tell me something (hold)")
        first.get_by_role("button", name="Send").click()
        expect(first.locator('[data-role="assistant"][data-streaming]')).to_have_text(
            "Offline model: You"
        )
        second.get_by_label("Message").fill("What is my name?")
        second.get_by_role("button", name="Send").click()
        expect(second.get_by_test_id("error")).to_contain_text(
            "A reply is still being written in this conversation"
        )
        expect(second.get_by_label("Message")).to_have_value("What is my name?")
        # The other tab's message is stored as its turn started; this one is not.
        expect(second.locator('[data-role="user"]')).to_have_text(
            ["My name is Ada", "Tell me something (hold)"]
        )
        second.screenshot(path=str(SCREENSHOTS["two-tabs"]), full_page=True)

        first.close()  # the held reply is cancelled, the conversation free again
        wait_for_history(database_url, session_id, before)
        second.reload()
        send(second, "What is my name?")
        expect(second.locator('[data-role="assistant"]').last).to_contain_text("Your name is Ada")
        expect(second.locator('[data-role="user"]')).to_have_text(
            ["My name is Ada", "What is my name?"]
        )
    finally:
        context.close()


def failed_turn_flow(page: Page, base_url: str) -> None:
    """A model failure: the error in view, the text back in the box, nothing stored;
    Send again stores the message once. In a long conversation on a short window."""
    page.set_viewport_size({"width": 900, "height": 600})
    page.goto(base_url + "/")
    page.get_by_role("button", name="New conversation").click()
    page.get_by_label("Run in background").uncheck()  # the choice is remembered from before
    for number in range(4):
        send(page, f"Line {number} of a long conversation")
    page.get_by_label("Message").fill("My name is Ada (fail once)")
    page.get_by_role("button", name="Send").click()
    error = page.get_by_test_id("error")
    expect(error).to_have_text(re.compile(r"^The model could not answer just now\."))
    expect(error).to_be_in_viewport()
    expect(page.get_by_label("Message")).to_have_value("My name is Ada (fail once)")
    expect(page.locator('[data-role="user"]')).to_have_count(4)
    page.screenshot(path=str(SCREENSHOTS["failed-turn"]))
    page.get_by_role("button", name="Send").click()
    expect(page.locator('[data-role="assistant"]')).to_have_count(5)
    expect(page.locator("[data-streaming]")).to_have_count(0)
    expect(page.locator('[data-role="user"]').filter(has_text="(fail once)")).to_have_count(1)
    expect(page.get_by_test_id("error")).to_have_count(0)
    page.screenshot(path=str(SCREENSHOTS["retried-turn"]))

    # A null character: said in words, in view, and taken out of the text (no U+FFFD).
    page.get_by_label("Message").fill("nul \x00 here")
    page.get_by_role("button", name="Send").click()
    expect(error).to_contain_text("invisible null character")
    expect(error).to_be_in_viewport()
    expect(page.get_by_label("Message")).to_have_value("nul  here")
    page.screenshot(path=str(SCREENSHOTS["error-in-view"]))
    page.set_viewport_size({"width": 900, "height": 1000})


def phone_flow(browser: Browser, base_url: str, database_url: str) -> None:
    """At 390 px the list shows each title on a line of its own."""
    phone = browser.new_context(viewport={"width": 390, "height": 844}, is_mobile=True)
    page = phone.new_page()
    try:
        new_conversation_of(page, base_url, create_user(database_url, "phone"), "phone")
        send(page, "My name is Ada and this is a conversation on a phone")
        page.goto(base_url + "/")
        title = page.get_by_test_id("conversations").locator(".title").first
        expect(title).to_contain_text("My name is Ada")
        box = title.bounding_box()
        assert box is not None and box["width"] > 250, box
        page.screenshot(path=str(SCREENSHOTS["phone-list"]), full_page=True)
    finally:
        phone.close()


def edit_flow(page: Page, base_url: str, *, screenshots: bool) -> None:
    """Tokens on the page and in the list; "Edit and resend" answers in a copy."""
    page.goto(base_url + "/")
    page.get_by_role("button", name="New conversation").click()
    original_url = page.url
    send(page, "My name is Ada")
    send(page, "What is my name?")
    expect(page.get_by_test_id("usage")).to_have_text(
        re.compile(
            r"^[\d,]+ tokens \(words, offline model\): "
            r"[\d,]+ in, [\d,]+ out, over 2 model requests\.$"
        )
    )
    page.get_by_role("link", name="Edit and resend: My name is Ada").click()
    box = page.get_by_label("Edited message")
    expect(box).to_have_value("My name is Ada")
    box.fill("My name is Grace")
    page.get_by_role("button", name="Send as a new conversation").click()
    expect(page).to_have_url(re.compile(r"/c/web-[a-z0-9]{16}/$"))
    assert page.url != original_url
    expect(page.get_by_test_id("info")).to_contain_text("the original is unchanged")
    users = page.locator('[data-role="user"]')
    replies = page.locator('[data-role="assistant"]')
    expect(users).to_have_text(["My name is Grace"])
    send(page, "What is my name?")
    expect(replies.last).to_have_text("Offline model: Your name is Grace. You told me earlier.")
    expect(page.get_by_test_id("usage")).to_contain_text("over 2 model requests")
    if screenshots:
        page.screenshot(path=str(SCREENSHOTS["edited"]), full_page=True)
    # Back to the edit form, then Send: the copy already made opens, no second one.
    copy_url = page.url
    page.go_back()
    expect(page.get_by_label("Edited message")).to_have_value("My name is Grace")
    page.get_by_role("button", name="Send as a new conversation").click()
    expect(page).to_have_url(copy_url)
    expect(page.get_by_test_id("info")).to_contain_text("This edit was already sent")
    page.get_by_test_id("forked-from").get_by_role("link").click()
    expect(page).to_have_url(original_url)
    expect(users).to_have_text(["My name is Ada", "What is my name?"])
    expect(replies.last).to_have_text("Offline model: Your name is Ada. You told me earlier.")
    page.goto(base_url + "/")
    rows = page.get_by_test_id("conversations").get_by_role("link")
    expect(rows).to_have_count(2)
    expect(rows.first).to_contain_text("My name is Grace (edited copy)")
    expect(rows.last).to_contain_text("My name is Ada")
    expect(page.get_by_test_id("tokens")).to_have_text([re.compile(r"^[\d,]+ tokens")] * 2)


def ownership_flow(browser: Browser, base_url: str, database_url: str) -> None:
    """Two users side by side: neither lists nor opens the other's conversation."""
    users = {name: create_user(database_url, name) for name in ("alice", "bob")}
    pages = {}
    for name, password in users.items():
        context = browser.new_context(viewport={"width": 900, "height": 1000})
        pages[name] = context.new_page()
        pages[name].goto(base_url + "/")
        sign_in(pages[name], name, password)
    alice, bob = pages["alice"], pages["bob"]
    try:
        alice.get_by_role("button", name="New conversation").click()
        alices_url = alice.url
        bob.goto(alices_url)  # not stored yet: in alice's session only
        expect(bob.get_by_test_id("not-found")).to_be_visible()
        send(alice, "My secret plan is Lisbon")
        bob.goto(base_url + "/")
        bob.get_by_role("button", name="New conversation").click()
        bobs_url = bob.url
        send(bob, "My name is Bob")

        # Each list holds its user's conversation only, by its title.
        for page, mine, theirs in [
            (alice, "My secret plan", "My name is Bob"),
            (bob, "My name is Bob", "My secret plan"),
        ]:
            page.goto(base_url + "/")
            rows = page.get_by_test_id("conversations").get_by_role("link")
            expect(rows).to_have_count(1)
            expect(rows).to_contain_text(mine)
            expect(page.locator("body")).not_to_contain_text(theirs)

        # The other's URL, read or posted to: a friendly page, nothing of it shown or changed.
        bob.goto(alices_url)
        expect(bob.get_by_test_id("not-found")).to_be_visible()
        expect(bob.locator("body")).not_to_contain_text("Lisbon")
        expect(bob.locator("body")).not_to_contain_text("Traceback")
        bob.screenshot(path=str(SCREENSHOTS["not-yours"]), full_page=True)
        response = bob.request.get(alices_url + "status/")
        assert response.status == 404
        alice.goto(bobs_url)
        expect(alice.get_by_test_id("not-found")).to_be_visible()
        expect(alice.locator("body")).not_to_contain_text("Bob")
        alice.goto(alices_url)
        expect(alice.locator('[data-role="user"]')).to_have_text(["My secret plan is Lisbon"])

        # Signed out, the URL asks for a sign-in first.
        alice.get_by_role("button", name="Sign out").click()
        expect(alice).to_have_url(re.compile(r"/accounts/login/$"))
        alice.goto(alices_url)
        expect(alice).to_have_url(re.compile(r"/accounts/login/\?next="))
        expect(alice.locator("body")).not_to_contain_text("Lisbon")
    finally:
        for page in pages.values():
            page.context.close()


def search_flow(browser: Browser, base_url: str, database_url: str) -> None:
    """The list's search box finds the user's conversation by a word of it, the word
    marked in the snippet; another user finds nothing; at 390 px nothing overflows."""
    context = browser.new_context(viewport={"width": 900, "height": 1000})
    page = context.new_page()
    try:
        new_conversation_of(page, base_url, create_user(database_url, "searcher"), "searcher")
        send(page, "Pack a rain jacket for Lisbon, the forecast says showers")
        conversation_url = page.url
        page.goto(base_url + "/")
        page.get_by_role("button", name="New conversation").click()
        send(page, "My name is Ada")
        page.goto(base_url + "/")
        box = page.get_by_role("searchbox", name="Search your conversations")
        box.fill("lisbon JACKET")
        box.press("Enter")
        expect(page).to_have_url(re.compile(r"/search/\?q=lisbon\+JACKET$"))
        results = page.get_by_test_id("results").get_by_role("link")
        expect(results).to_have_count(1)
        expect(results).to_contain_text("Pack a rain jacket for Lisbon")
        snippet = page.get_by_test_id("snippet")
        expect(snippet.locator("mark")).to_have_text(["jacket", "Lisbon"])
        expect(page.get_by_role("searchbox")).to_have_value("lisbon JACKET")
        page.screenshot(path=str(SCREENSHOTS["search"]), full_page=True)
        page.set_viewport_size({"width": 390, "height": 844})
        width = page.evaluate("document.scrollingElement.scrollWidth")
        assert width <= 390, width
        # The snippet wraps within the list: none of it is cut off at the right.
        box, shown = snippet.bounding_box(), page.get_by_test_id("results").bounding_box()
        assert box is not None and shown is not None
        assert box["width"] > 250 and box["x"] + box["width"] <= shown["x"] + shown["width"], box
        assert snippet.evaluate("element => element.scrollWidth <= element.clientWidth")
        page.screenshot(path=str(SCREENSHOTS["phone-search"]), full_page=True)
        results.click()
        expect(page).to_have_url(conversation_url)

        # Another user's words are not found, even the same ones.
        other = browser.new_context(viewport={"width": 900, "height": 1000}).new_page()
        new_conversation_of(other, base_url, create_user(database_url, "nosy"), "nosy")
        other.goto(base_url + "/search/?q=lisbon")
        expect(other.get_by_test_id("no-results")).to_be_visible()
        expect(other.locator("body")).not_to_contain_text("jacket")
        other.context.close()
    finally:
        context.close()


def wait_for_history(database_url: str, session_id: str, expected: str) -> None:
    """Wait until the server has settled the cancelled run: the history is ``expected``."""
    for _ in range(60):
        if stored_history(database_url, session_id) == expected:
            return
    assert stored_history(database_url, session_id) == expected


def create_user(database_url: str, username: str) -> str:
    """The password of ``username``, made with the documented ``manage.py demo_user``."""
    return printed_password(database_url, "demo_user", "--username", username)


def printed_password(database_url: str, *command: str) -> str:
    """Run a ``manage.py`` command that creates a user; the password it prints once."""
    created = manage(database_url, *command)
    password = re.search(r"password (\S+) \(shown once\)", created)
    assert password is not None, created
    return password[1]


def new_conversation_of(page: Page, base_url: str, password: str, username: str) -> None:
    """Sign ``username`` in on ``page`` and open a new conversation."""
    page.goto(base_url + "/")
    sign_in(page, username, password)
    page.get_by_role("button", name="New conversation").click()


def sign_in(page: Page, username: str, password: str) -> None:
    page.get_by_label("Username").fill(username)
    page.get_by_label("Password").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page.get_by_test_id("signed-in")).to_have_text(username)


def send(page: Page, text: str) -> None:
    """Send ``text`` and wait for the page that shows the stored reply."""
    count = page.locator('[data-role="assistant"]').count()
    page.get_by_label("Message").fill(text)
    page.get_by_role("button", name="Send").click()
    expect(page.locator('[data-role="assistant"]')).to_have_count(count + 1)
    # Streamed elements are replaced by the stored history once the turn is over.
    expect(page.locator("[data-streaming]")).to_have_count(0)


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
