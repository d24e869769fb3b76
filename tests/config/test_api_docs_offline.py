"""/api/docs (Swagger UI) and /api/redoc (ReDoc) load nothing from another host: every script,
stylesheet, icon and font is one of our static files (drf-spectacular-sidecar), so the pages work with
the network unplugged. The browser check (tests/browser/test_api_docs_offline.py) blocks every
non-loopback request and watches the pages render."""

import json
import re
import subprocess
import sys
from html.parser import HTMLParser
from urllib.parse import urlsplit

import pytest
from django.conf import settings
from django.contrib.staticfiles import finders

from tests.support.production import ROOT, production_env

DOCS_PAGES = ["/api/docs", "/api/redoc"]


class _UrlCollector(HTMLParser):
    """Every URL an HTML page makes the browser fetch or link to: src, href, srcset, and url(...)
    and @import in inline styles."""

    def __init__(self) -> None:
        super().__init__()
        self.urls: list[str] = []
        self._in_style = False

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        for name, value in attrs:
            if value and name in ("src", "href", "data-src", "poster", "action"):
                self.urls.append(value)
            elif value and name == "srcset":
                self.urls.extend(part.split()[0] for part in value.split(",") if part.strip())
            elif value and name == "style":
                self.urls.extend(_css_urls(value))
        self._in_style = tag == "style"

    def handle_endtag(self, tag: str) -> None:
        self._in_style = False

    def handle_data(self, data: str) -> None:
        if self._in_style:
            self.urls.extend(_css_urls(data))


def _css_urls(css: str) -> list[str]:
    return re.findall(r"""url\(\s*['"]?([^'")\s]+)""", css) + re.findall(r"""@import\s+['"]([^'"]+)""", css)


def page_urls(html: str) -> list[str]:
    collector = _UrlCollector()
    collector.feed(html)
    return collector.urls


def _is_same_origin(url: str) -> bool:
    parts = urlsplit(url)
    return not parts.scheme and not parts.netloc  # "//host/x" has a netloc and is another host


@pytest.mark.parametrize(
    "url, same_origin",
    [
        ("/static/drf_spectacular_sidecar/redoc/bundles/redoc.standalone.js", True),
        ("/api/schema", True),
        ("https://fonts.googleapis.com/css2?family=Roboto", False),
        ("//cdn.jsdelivr.net/npm/redoc@latest", False),
        ("http://127.0.0.1:8000/static/x.js", False),  # absolute: our pages never need one
    ],
)
def test_is_same_origin__url__classified(url, same_origin):
    assert _is_same_origin(url) is same_origin


def test_page_urls__external_font_stylesheet_and_css_import__found():
    html = (
        '<link rel="stylesheet" href="https://fonts.googleapis.com/css2?family=Montserrat">'
        "<style>@import 'https://x.example/a.css'; body { background: url(https://x.example/b.png) }</style>"
        '<script src="/static/a.js"></script>'
    )
    assert page_urls(html) == [
        "https://fonts.googleapis.com/css2?family=Montserrat",
        "https://x.example/b.png",
        "https://x.example/a.css",
        "/static/a.js",
    ]


@pytest.mark.django_db
@pytest.mark.parametrize("path", DOCS_PAGES)
def test_docs_page__rendered__every_url_same_origin_and_static_files_found(client, path):
    # Given the page as a browser gets it
    response = client.get(path)
    assert response.status_code == 200
    html = response.content.decode()
    urls = page_urls(html)

    # Then it loads something (the UI's script), and every URL in it is on our own host
    assert any(url.endswith(".js") for url in urls), urls
    assert [url for url in urls if not _is_same_origin(url)] == []
    # ...and each static file it names is one the staticfiles finders have (so collectstatic ships it)
    prefix = "/" + settings.STATIC_URL.lstrip("/")
    static = [urlsplit(url).path for url in urls if urlsplit(url).path.startswith(prefix)]
    assert static, urls
    for url in static:
        assert finders.find(url.removeprefix(prefix)), f"{url} is not a static file"
    # ...and the browser is told to fetch nothing from elsewhere (ReDoc's bundle asks for a CDN logo)
    assert re.search(r'<meta http-equiv="Content-Security-Policy" content="default-src \'self\';', html)


@pytest.mark.django_db
def test_swagger_ui__settings__no_public_validator_badge(client):
    page = client.get("/api/docs").content.decode()
    assert re.search(r'"validatorUrl":\s*null', page)
    assert "validator.swagger.io" not in page


# In a production process: debug off, collectstatic into a fresh STATIC_ROOT (hashed names through the
# manifest), then the pages and every static URL they name fetched through WhiteNoise.
PRODUCTION_PROBE = """
import json, sys
import django
from django.core.management import call_command
django.setup()
call_command("collectstatic", "--noinput", verbosity=0)
from html.parser import HTMLParser
from django.test import Client
client = Client(HTTP_HOST="example.com", HTTP_X_FORWARDED_PROTO="https")
report = {}
for page in sys.argv[1:]:
    response = client.get(page, secure=True)
    urls = []
    class Collector(HTMLParser):
        def handle_starttag(self, tag, attrs):
            urls.extend(v for k, v in attrs if k in ("src", "href") and v)
    Collector().feed(response.content.decode())
    statics = {}
    for url in urls:
        if url.startswith("/static/"):
            r = client.get(url, secure=True)
            body = b"".join(r.streaming_content) if r.streaming else r.content
            statics[url] = [r.status_code, len(body)]
    report[page] = {"status": response.status_code, "urls": urls, "static": statics}
print(json.dumps(report))
"""


@pytest.mark.slow  # collectstatic in a production process: ~10 s
def test_docs_pages__production_after_collectstatic__static_files_served(tmp_path):
    env = production_env(
        PLATFORM_VAR_DIR=str(tmp_path / "var"),
        DJANGO_STATIC_ROOT=str(tmp_path / "static"),
        DJANGO_ALLOWED_HOSTS="example.com",
    )
    result = subprocess.run(
        [sys.executable, "-c", PRODUCTION_PROBE, *DOCS_PAGES],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert result.returncode == 0, result.stderr[-3000:]
    report = json.loads(result.stdout.strip().splitlines()[-1])
    for page in DOCS_PAGES:
        assert report[page]["status"] == 200, report[page]
        assert [url for url in report[page]["urls"] if not _is_same_origin(url)] == []
        assert report[page]["static"], report[page]
        for url, (status, size) in report[page]["static"].items():
            assert status == 200 and size > 0, (page, url, status)
