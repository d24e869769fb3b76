"""docker-compose.yml, the Caddyfile and the Dockerfile hold together, and the settings the compose
file gives the web service let a browser on another machine log into the admin through the proxy.

There is no Docker engine here: the compose file is read as YAML and its variables interpolated as
Compose does (``interpolate``, nested defaults included); the web service's settings are then loaded
in a production process of their own and driven as the proxy forwards a browser's requests. Found
before: debug off (Secure cookies, HSTS) over plain HTTP, so the admin login failed on any host but
localhost, and ``DJANGO_CSRF_TRUSTED_ORIGINS`` was not passed through."""

import json
import re
import secrets
import shutil
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

import pytest
import yaml

from tests.support.production import ROOT, embedded_env, production_env

COMPOSE = yaml.safe_load((ROOT / "docker-compose.yml").read_text())
CADDYFILE = (ROOT / "Caddyfile").read_text()
DOCKERFILE = (ROOT / "Dockerfile").read_text()
SERVICES = COMPOSE["services"]


# --- Compose's interpolation ---------------------------------------------------------------------------
_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_OPERATORS = (":-", "-", ":?", "?", ":+", "+")


def interpolate(value: str, env: Mapping[str, str]) -> str:
    """``value`` as Compose interpolates it: ``$$``, ``$VAR``, ``${VAR}`` and ``${VAR<op>operand}`` for
    the operators :- - :? ? :+ +, with operands interpolated in turn (nested)."""
    out, index = [], 0
    while index < len(value):
        if value.startswith("$$", index):
            out.append("$")
            index += 2
        elif value.startswith("${", index):
            depth, end = 1, index + 2
            while depth:
                if end >= len(value):
                    raise ValueError(f"unclosed ${{ in {value!r}")
                depth += {"{": 1, "}": -1}.get(value[end], 0)
                end += 1
            out.append(_expression(value[index + 2 : end - 1], env))
            index = end
        elif value[index] == "$" and (match := _NAME.match(value, index + 1)):
            out.append(env.get(match.group(), ""))
            index = match.end()
        else:
            out.append(value[index])
            index += 1
    return "".join(out)


def _expression(expression: str, env: Mapping[str, str]) -> str:
    match = _NAME.match(expression)
    if match is None:
        raise ValueError(f"not a variable: ${{{expression}}}")
    name, rest = match.group(), expression[match.end() :]
    if not rest:
        return env.get(name, "")
    operator = next((op for op in _OPERATORS if rest.startswith(op)), None)
    if operator is None:
        raise ValueError(f"unknown operator in ${{{expression}}}")
    operand, value = rest[len(operator) :], env.get(name)
    is_set = value is not None and (value != "" or ":" not in operator)
    if operator in (":-", "-"):
        return value if is_set else interpolate(operand, env)
    if operator in (":?", "?"):
        if not is_set:
            raise ValueError(f"{name}: {interpolate(operand, env)}")
        return value
    return interpolate(operand, env) if is_set else ""


@pytest.mark.parametrize(
    "value, env, expected",
    [
        ("${A:-x}", {}, "x"),
        ("${A:-x}", {"A": ""}, "x"),
        ("${A-x}", {"A": ""}, ""),
        ("${A:-${B:-b},c}", {}, "b,c"),
        ("${A:-${B:-b},c}", {"B": "h"}, "h,c"),
        ("${A:-https://${B:-localhost}}", {"A": "https://given"}, "https://given"),
        ("$$A and $A", {"A": "a"}, "$A and a"),
        ("${A:+yes}", {"A": "1"}, "yes"),
    ],
)
def test_interpolate__compose_syntax__as_compose(value, env, expected):
    assert interpolate(value, env) == expected


def test_interpolate__required_missing__error():
    with pytest.raises(ValueError, match="set DJANGO_SECRET_KEY"):
        interpolate("${DJANGO_SECRET_KEY:?set DJANGO_SECRET_KEY}", {})


def service_environment(service: str, env: Mapping[str, str]) -> dict[str, str]:
    return {key: interpolate(str(value), env) for key, value in SERVICES[service]["environment"].items()}


def _caddy_placeholder(text: str) -> str:
    """A Caddyfile's ``{$VAR:default}`` with the variable unset: its default."""
    return re.sub(r"\{\$[A-Z_]+:([^}]*)\}", r"\1", text)


# --- The files agree with each other -------------------------------------------------------------------
def test_compose__references__every_service_volume_and_file_exists():
    declared_volumes = set(COMPOSE.get("volumes") or {})
    for name, service in SERVICES.items():
        for dependency in service.get("depends_on", {}):
            assert dependency in SERVICES, f"{name} depends on unknown service {dependency}"
        for volume in service.get("volumes", []):
            source = volume.split(":")[0]
            if source.startswith((".", "/")):
                assert (ROOT / source).exists(), f"{name} mounts {source}, which is not in the repository"
            else:
                assert source in declared_volumes, f"{name} uses undeclared volume {source}"
        if service.get("build") == ".":
            assert (ROOT / "Dockerfile").is_file()


def test_compose__proxy__terminates_tls_in_front_of_web_and_only_it_is_published():
    # The proxy publishes HTTP and HTTPS; web is reachable only inside the compose network
    assert {"80:80", "443:443"} <= set(SERVICES["proxy"]["ports"])
    assert "ports" not in SERVICES["web"]
    assert SERVICES["proxy"]["depends_on"]["web"]["condition"] == "service_healthy"
    # The Caddyfile hands requests to web on the port gunicorn binds in the image
    upstream = re.search(r"reverse_proxy\s+(\S+)", _caddy_placeholder(CADDYFILE)).group(1)
    host, port = upstream.rsplit(":", 1)
    assert host == "web" and host in SERVICES
    assert re.search(rf'"--bind", "0\.0\.0\.0:{port}"', DOCKERFILE)
    assert SERVICES["web"]["expose"] == [port]
    # ...for the host browsers type, with a certificate of Caddy's own by default
    assert re.search(r"^\{\$PLATFORM_HOST:localhost\} \{", CADDYFILE, re.MULTILINE)
    assert _caddy_placeholder("tls {$PROXY_TLS:internal}") in _caddy_placeholder(CADDYFILE)
    assert SERVICES["proxy"]["environment"]["PLATFORM_HOST"] == "${PLATFORM_HOST:-localhost}"


def test_compose__app_services__same_settings_from_the_x_app_anchor():
    # The YAML merge key gives every app service the same environment (web, worker, beat, migrate)
    environments = [SERVICES[name]["environment"] for name in ("web", "worker", "beat", "migrate")]
    assert all(environment == environments[0] for environment in environments)
    for name in ("DJANGO_ALLOWED_HOSTS", "DJANGO_CSRF_TRUSTED_ORIGINS", "DJANGO_SECURE_PROXY_SSL_HEADER"):
        assert name in environments[0], f"{name} is not passed to the app"


def test_compose__variables__documented_in_readme():
    readme = (ROOT / "README.md").read_text()
    text = (ROOT / "docker-compose.yml").read_text()
    variables = set(re.findall(r"\$\{([A-Z_]+)", text)) | set(re.findall(r"\{\$([A-Z_]+)", CADDYFILE))
    assert variables >= {"PLATFORM_HOST", "DJANGO_SECRET_KEY"}
    undocumented = sorted(name for name in variables if f"`{name}`" not in readme)
    assert undocumented == []


def test_dockerfile__dependencies__installed_before_the_source_is_copied():
    # The layer that installs the dependencies follows COPY pyproject.toml and precedes every COPY of
    # code, so a code change reuses it; the project itself is installed without its dependencies.
    steps = [line for line in DOCKERFILE.splitlines() if re.match(r"(COPY|RUN) ", line)]
    install = next(i for i, step in enumerate(steps) if "pip install -r" in step or "tomllib" in step)
    copies_before = [step for step in steps[:install] if step.startswith("COPY")]
    assert copies_before == ["COPY pyproject.toml ./"]
    assert any("pip install --no-deps ." in step for step in steps[install + 1 :])


def test_dockerfile__requirements_step__lists_pyproject_dependencies():
    # The same one-liner the Dockerfile runs, run here: it yields exactly pyproject's dependencies
    command = re.search(r'RUN (python -c ".*?") \\\n', DOCKERFILE).group(1)
    result = subprocess.run(["sh", "-c", command.replace("python", sys.executable, 1)], cwd=ROOT,
                            capture_output=True, text=True, check=True, timeout=60)  # fmt: skip
    import tomllib

    expected = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert result.stdout.split("\n")[:-1] == expected


def test_pyproject__dependency_comments__on_their_own_line():
    """Each why-comment stands on its own line above its dependency (the plotly line once carried the
    orjson and whitenoise comments)."""
    lines = (ROOT / "pyproject.toml").read_text().splitlines()
    trailing = [line for line in lines if re.match(r'\s*"[^"]+",\s*#', line)]
    assert trailing == []


# --- The web service's settings, driven as the proxy forwards a browser --------------------------------
BROWSER_THROUGH_PROXY = """
import json, sys
import django
django.setup()
from django.contrib.auth import get_user_model
from django.test import Client

host, origin, password = sys.argv[1:4]
get_user_model().objects.create_superuser("pm", "pm@example.com", password)
# What Caddy sends gunicorn for a browser at https://<host>/: the browser's Host, and
# X-Forwarded-Proto: https; gunicorn itself is spoken to in plain HTTP (secure=False).
forwarded = {"HTTP_HOST": host, "HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_FOR": "203.0.113.7"}
browser = Client(enforce_csrf_checks=True, **forwarded)
report = {}
page = browser.get("/admin/login/?next=/admin/")
report["login_page"] = page.status_code
report["cookie_secure"] = {name: bool(morsel["secure"]) for name, morsel in browser.cookies.items()}
token = browser.cookies["csrftoken"].value
login = browser.post(
    "/admin/login/?next=/admin/",
    {"username": "pm", "password": password, "csrfmiddlewaretoken": token, "next": "/admin/"},
    HTTP_ORIGIN=origin, HTTP_REFERER=origin + "/admin/login/?next=/admin/",
)
report["login"] = [login.status_code, login.get("Location", "")]
report["cookie_secure"].update({n: bool(m["secure"]) for n, m in browser.cookies.items()})
admin = browser.get("/admin/")
report["admin"] = [admin.status_code, "user-tools" in admin.content.decode()]
report["hsts"] = admin.get("Strict-Transport-Security", "")
# A form posted from another site is still refused
evil = Client(enforce_csrf_checks=True, **forwarded)
evil.get("/admin/login/")
refused = evil.post(
    "/admin/login/",
    {"username": "pm", "password": password, "csrfmiddlewaretoken": evil.cookies["csrftoken"].value},
    HTTP_ORIGIN="https://evil.example",
)
report["cross_site"] = refused.status_code
# The container's health check: plain HTTP to localhost:8000, no proxy
report["health"] = Client(HTTP_HOST="localhost:8000").get("/api/health").status_code
# A Host nobody configured
report["other_host"] = Client(HTTP_HOST="other.example", HTTP_X_FORWARDED_PROTO="https").get("/admin/login/").status_code
print(json.dumps(report))
"""


@pytest.fixture(scope="module")
def built(tmp_path_factory) -> tuple[Path, Path]:
    """What the image and the migrate service provide, made once: the collected static files (the
    Dockerfile's collectstatic) and a migrated database (an SQLite file each test copies)."""
    directory = tmp_path_factory.mktemp("compose")
    env = production_env(PLATFORM_VAR_DIR=str(directory), DJANGO_STATIC_ROOT=str(directory / "static"),
                         DJANGO_ALLOWED_HOSTS="build")  # fmt: skip
    for command in (["migrate", "--noinput"], ["collectstatic", "--noinput"]):
        subprocess.run([sys.executable, "manage.py", *command], cwd=ROOT, env=env, check=True,
                       capture_output=True, timeout=300)  # fmt: skip
    return directory / "db.sqlite3", directory / "static"


def _browser_through_proxy(
    tmp_path: Path, built: tuple[Path, Path], compose_env: dict[str, str], host: str
) -> dict:
    web = service_environment("web", compose_env)
    # No PostgreSQL, Redis or ClickHouse server here: the embedded ones stand in; every other setting
    # is the compose file's.
    for name in ("DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL"):
        web.pop(name)
    database, static = built
    shutil.copy(database, tmp_path / "db.sqlite3")
    env = embedded_env(PLATFORM_VAR_DIR=str(tmp_path), DJANGO_STATIC_ROOT=str(static), **web)
    origin = f"https://{host}"
    result = subprocess.run([sys.executable, "-c", BROWSER_THROUGH_PROXY, host, origin, secrets.token_urlsafe(16)], cwd=ROOT, env=env,
                            capture_output=True, text=True, timeout=180)  # fmt: skip
    assert result.returncode == 0, result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


# production processes of their own (~5 s each, after ~15 s of collectstatic and migrate); the
# xdist_group keeps the tests of the module-scoped build on one pytest-xdist worker, built once
@pytest.mark.slow
@pytest.mark.xdist_group("compose_built")
@pytest.mark.parametrize(
    "platform_host",
    [
        "exp.example.test",  # a DNS name on the network
        "192.0.2.10",  # the server's IP address
        None,  # PLATFORM_HOST unset: this machine, https://localhost
    ],
)
def test_compose_web_settings__browser_through_proxy__admin_login_works(tmp_path, built, platform_host):
    # Given the compose file's environment for web, as `docker compose up` gives it
    compose_env = {"DJANGO_SECRET_KEY": secrets.token_hex(32)}
    if platform_host:
        compose_env["PLATFORM_HOST"] = platform_host
    host = platform_host or "localhost"

    # When a browser at https://<host>/ logs into the admin through the proxy
    report = _browser_through_proxy(tmp_path, built, compose_env, host)

    # Then the login page and the login succeed, and the admin opens
    assert report["login_page"] == 200, report
    assert report["login"] == [302, "/admin/"], report
    assert report["admin"] == [200, True], report
    # ...with cookies a browser keeps on HTTPS (Secure) and HSTS, as debug off demands
    assert report["cookie_secure"] == {"csrftoken": True, "sessionid": True}, report
    assert report["hsts"].startswith("max-age="), report
    # ...while a form from another site is refused, the container's health check is answered over
    # plain HTTP (no redirect), and a host nobody configured gets 400
    assert report["cross_site"] == 403, report
    assert report["health"] in (200, 503), report  # answered (503: a check failed), not redirected
    assert report["other_host"] == 400, report


@pytest.mark.slow
@pytest.mark.xdist_group("compose_built")
def test_compose_web_settings__given_allowed_hosts_and_origins__passed_through(tmp_path, built):
    # Given an operator who sets the Django variables themselves (a proxy of their own on 8443)
    compose_env = {
        "DJANGO_SECRET_KEY": secrets.token_hex(32),
        "DJANGO_ALLOWED_HOSTS": "exp.example.test",
        "DJANGO_CSRF_TRUSTED_ORIGINS": "https://exp.example.test:8443",
    }
    web = service_environment("web", compose_env)
    assert web["DJANGO_ALLOWED_HOSTS"] == "exp.example.test"
    assert web["DJANGO_CSRF_TRUSTED_ORIGINS"] == "https://exp.example.test:8443"

    # When a browser logs in at https://exp.example.test:8443 (the proxy keeps the Host header's port)
    report = _browser_through_proxy(tmp_path, built, compose_env, "exp.example.test:8443")

    # Then it works
    assert report["login"] == [302, "/admin/"], report
    assert report["admin"] == [200, True], report
