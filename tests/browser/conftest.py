"""Browser tests: Playwright's sync API driving Debian's Chromium (``/usr/bin/chromium``) headless
against pytest-django's ``live_server``.

Playwright's own browser download does not work on these machines, so the browser is always the
system's Chromium; the tests are skipped, with the reason, only when it is missing (CI installs it).
Screenshots go to ``docs/screenshots/`` (the README's tour) and ``test-artifacts/`` (gitignored).
"""

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connections

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ROOT = Path(__file__).resolve().parents[2]
SCREENSHOT_DIRS = (ROOT / "docs" / "screenshots", ROOT / "test-artifacts")
VIEWPORT = {"width": 1280, "height": 860}
TIMEOUT_MS = 15_000

HERE = Path(__file__).resolve().parent


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Every test in this directory is a browser test (``-m "not browser"`` leaves them out)."""
    for item in items:
        if HERE in item.path.parents:
            item.add_marker(pytest.mark.browser)


SKIP_REASON = f"browser tests need Chromium at {CHROMIUM} (CI installs it: apt-get install chromium)"
requires_chromium = pytest.mark.skipif(not CHROMIUM.exists(), reason=SKIP_REASON)

Page = Any  # playwright.sync_api.Page; imported only when the browser runs


@pytest.fixture
def orm_next_to_playwright(monkeypatch: pytest.MonkeyPatch) -> None:
    """Playwright's sync API runs an event loop in this thread while it is started, so Django would
    refuse the test's own ORM calls ("SynchronousOnlyOperation"); they are plain synchronous calls made
    between browser steps, so allow them for the test's duration."""
    monkeypatch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")


@pytest.fixture
def chromium(live_server, orm_next_to_playwright) -> Iterator[Any]:
    """Headless Chromium for one test (about a second to start). Function-scoped on purpose: the
    event loop Playwright keeps must be gone before the database is flushed and other tests run."""
    sync_api = pytest.importorskip("playwright.sync_api", reason="browser tests need the playwright package")
    with sync_api.sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        yield browser
        browser.close()
        # While Playwright's loop runs, Django keeps this thread's connections per async context
        # (asgiref's Local), so the test's ORM calls opened their own; close them here, in that same
        # context, or they outlive the test and hold the test database open at teardown.
        connections.close_all()


@pytest.fixture
def browser_page(chromium, live_server) -> Iterator[Page]:
    """A fresh page (its own cookies) on the live server, with the admin's navigation sidebar folded,
    so pages and screenshots get the whole width."""
    context = chromium.new_context(viewport=VIEWPORT, base_url=live_server.url, locale="en-US")
    context.add_init_script("window.localStorage.setItem('django.admin.navSidebarIsOpen', 'false');")
    context.set_default_timeout(TIMEOUT_MS)
    page = context.new_page()
    yield page
    context.close()


# The README's screenshots are refreshed on demand (UPDATE_SCREENSHOTS=1), so a test run leaves the
# tree clean; every run saves its screenshots as artefacts in test-artifacts/.
UPDATE_DOCS = os.environ.get("UPDATE_SCREENSHOTS") == "1"


def screenshot(page: Page, name: str, *, full_page: bool = True, docs: bool = True) -> None:
    """Save ``name``.png in test-artifacts/, and in docs/screenshots/ with UPDATE_SCREENSHOTS=1."""
    for directory in SCREENSHOT_DIRS if docs and UPDATE_DOCS else SCREENSHOT_DIRS[1:]:
        directory.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(directory / f"{name}.png"), full_page=full_page)


def admin_login(page: Page, username: str, password: str) -> None:
    page.goto("/admin/login/")
    page.fill("#id_username", username)
    page.fill("#id_password", password)
    page.click("input[type=submit]")
    page.wait_for_selector("#user-tools")


def assert_plot_drawn(page: Page, container: str) -> None:
    """Plotly drew into ``container``: an SVG with at least one trace in it."""
    page.wait_for_selector(f"{container} svg.main-svg")
    traces = page.locator(f"{container} svg.main-svg .trace").count()
    box = page.locator(f"{container} svg.main-svg").first.bounding_box()
    assert traces > 0, f"no trace drawn in {container}"
    assert box is not None and box["width"] > 200 and box["height"] > 100, f"{container} is empty: {box}"
