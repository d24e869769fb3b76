"""/api/docs and /api/redoc render in a browser that can reach nothing but the server: every request
to another host is aborted and recorded, and any such attempt fails the test.

The pages' content security policy (config/templates/drf_spectacular/) stops the browser before it
tries another host; what it stops is recorded too, and only a decorative image may be among it (ReDoc's
bundle asks for the Redocly logo from a CDN): no script, stylesheet, font or request is needed from
elsewhere."""

from urllib.parse import urlsplit

import pytest

from tests.browser.conftest import requires_chromium, screenshot

pytestmark = [requires_chromium, pytest.mark.django_db(transaction=True, serialized_rollback=True)]

LOOPBACK = {"127.0.0.1", "localhost", "::1", "[::1]"}


@pytest.fixture
def offline_page(browser_page):
    """The page with the network unplugged: any request whose host is not loopback is aborted and
    listed in ``page.external_requests``."""
    external: list[str] = []

    def route(route_request) -> None:
        url = route_request.request.url
        if urlsplit(url).scheme in ("data", "blob") or urlsplit(url).hostname in LOOPBACK:
            route_request.continue_()
        else:
            external.append(url)
            route_request.abort("internetdisconnected")

    browser_page.context.route("**/*", route)
    browser_page.context.add_init_script(
        "window.__blocked = [];"
        "document.addEventListener('securitypolicyviolation',"
        " (e) => window.__blocked.push([e.effectiveDirective, e.blockedURI]));"
    )
    browser_page.external_requests = external
    return browser_page


def _blocked_by_policy(page) -> list[list[str]]:
    """What the content security policy refused, as [directive, URL] pairs."""
    return page.evaluate("window.__blocked")


def _only_images(blocked: list[list[str]]) -> bool:
    return all(directive == "img-src" for directive, _ in blocked)


def test_swagger_ui__network_unplugged__operations_listed_nothing_external(offline_page):
    page = offline_page
    page.goto("/api/docs")
    # Swagger UI drew the document: its title and the operations list, one block per operation
    page.wait_for_selector(".swagger-ui .info .title")
    page.wait_for_selector(".opblock-summary-path")
    paths = page.locator(".opblock-summary-path").all_inner_texts()
    page.wait_for_load_state("networkidle")
    screenshot(page, "api-docs-offline", full_page=False, docs=False)

    assert "Experimentation Platform API" in page.locator(".swagger-ui .info .title").inner_text()
    assert any(path.startswith("/api/v1/experiments") for path in paths), paths[:10]
    assert page.external_requests == []
    assert _blocked_by_policy(page) == []


def test_redoc__network_unplugged__renders_nothing_external(offline_page):
    page = offline_page
    page.goto("/api/redoc")
    # ReDoc drew the document: the title and the side menu of operations
    page.wait_for_selector(".api-info h1")
    page.wait_for_selector("[role=menuitem]")
    menu = page.locator("[role=menuitem]").count()
    page.wait_for_load_state("networkidle")
    screenshot(page, "api-redoc-offline", full_page=False, docs=False)

    assert "Experimentation Platform API" in page.locator(".api-info h1").inner_text()
    assert menu > 10
    assert page.external_requests == []
    blocked = _blocked_by_policy(page)
    assert _only_images(blocked), blocked
