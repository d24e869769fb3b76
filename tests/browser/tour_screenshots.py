"""The README tour's screenshots of the full demo (``make demo``, 100,000 users): the quantile metric,
the winsorized metric, its breakdown by country, the rolled-back safe rollout and the checkout
holdout's results, at 1440 × 900 in Chromium.

Run against a server holding the demo (log in ``admin`` / ``admin``)::

    PLATFORM_VAR_DIR=/tmp/demo .venv/bin/python manage.py migrate
    PLATFORM_VAR_DIR=/tmp/demo .venv/bin/python manage.py clickhouse_migrate
    PLATFORM_VAR_DIR=/tmp/demo .venv/bin/python manage.py demo
    PLATFORM_VAR_DIR=/tmp/demo .venv/bin/uvicorn config.asgi:application --port 8380 &
    .venv/bin/python -m tests.browser.tour_screenshots http://127.0.0.1:8380

Each page is checked for what its sentence in the README says before it is saved in docs/screenshots/.
"""

from __future__ import annotations

import sys
from pathlib import Path

from playwright.sync_api import Page, sync_playwright

from tests.browser.conftest import CHROMIUM, CHROMIUM_ARGS

DOCS = Path(__file__).resolve().parents[2] / "docs" / "screenshots"
VIEWPORT = {"width": 1440, "height": 900}


def _results(page: Page, experiment_name: str) -> None:
    page.goto("/admin/experiments/experiment/")
    change_url = page.locator(f"#result_list a:has-text('{experiment_name}')").first.get_attribute("href")
    experiment_id = change_url.rstrip("/").split("/")[-2]
    page.goto(f"/admin/analytics/experimentresult/experiment/{experiment_id}/results/")
    page.wait_for_selector("table.numbers")
    page.wait_for_timeout(1000)  # the charts' drawing


def _bottom(page: Page, name: str) -> None:
    page.evaluate("window.scrollTo(0, document.body.scrollHeight)")
    page.wait_for_timeout(300)
    page.screenshot(path=str(DOCS / f"{name}.png"))


def take(base_url: str, username: str = "admin", password: str = "admin") -> None:  # noqa: S107 - the demo's
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_ARGS, headless=True)
        context = browser.new_context(viewport=VIEWPORT, base_url=base_url, locale="en-US")
        context.add_init_script("window.localStorage.setItem('django.admin.navSidebarIsOpen', 'false');")
        page = context.new_page()
        page.goto("/admin/login/")
        page.fill("#id_username", username)
        page.fill("#id_password", password)
        page.click("input[type=submit]")
        page.wait_for_selector("#user-tools")

        # The pricing banner's p90 order value: a quantile, each variant's p90 in the mean column
        _results(page, "Pricing banner")
        assert "quantile" in page.locator("table.numbers tr", has_text="p90 order value").first.inner_text()
        _bottom(page, "quantile-metric")

        # Free shipping: the winsorized revenue says what it was capped at (cap_used)
        _results(page, "Free shipping over 50")
        assert "capped at" in page.locator("table.numbers tr", has_text="(winsorized)").first.inner_text()
        _bottom(page, "winsorized-metric")

        # Free shipping by country: the lift exists in Germany only (the demo plants it there)
        page.select_option("#dimension-picker", "country")
        page.wait_for_selector("h3.dimension-level")
        page.wait_for_timeout(1000)  # the lift chart's drawing
        assert "Exploratory." in page.inner_text("#dimension-warning")
        page.evaluate("document.getElementById('dimension-picker').scrollIntoView({block: 'start'})")
        page.evaluate("window.scrollBy(0, -90)")
        page.screenshot(path=str(DOCS / "results-by-country.png"))

        # The new search: its safe rollout rolled it back, with the guardrails' evidence
        page.goto("/admin/features/feature/")
        page.click("text=New search")
        page.wait_for_selector("text=Rolled back")
        assert "regression" in page.inner_text("#content")
        page.screenshot(path=str(DOCS / "safe-rollout-rolled-back.png"))

        # The checkout holdout: its results page, reached from the holdout, compares the held-out users
        # with the general population's sample
        page.goto("/admin/features/holdout/")
        page.click("#result_list a:has-text('Checkout holdout')")
        page.click("text=Results: held out vs. general population")
        page.wait_for_selector("table.numbers")
        page.wait_for_timeout(1000)  # the charts' drawing
        assert "General population" in page.inner_text("#content")
        page.screenshot(path=str(DOCS / "holdout-results.png"))
        browser.close()


if __name__ == "__main__":
    take(sys.argv[1] if len(sys.argv) > 1 else "http://127.0.0.1:8380")
