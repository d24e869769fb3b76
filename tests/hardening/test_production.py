"""Production settings and code hygiene: the deploy checklist passes, secrets come only from the
environment, and no SQL is built by string formatting."""

import os
import re
import secrets
import subprocess
import sys
from pathlib import Path

import pytest

from tests.hardening import sql_scan

ROOT = Path(__file__).resolve().parents[2]


def _production_env(**overrides: str) -> dict[str, str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("DJANGO_") and k not in ("DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL")
    }
    env.update(
        DJANGO_DEBUG="false",
        DJANGO_SECRET_KEY=secrets.token_urlsafe(50),
        DJANGO_ALLOWED_HOSTS="example.com",
        PYTHONPATH=str(ROOT),
    )
    env.update(overrides)
    return env


@pytest.mark.slow  # starts Python processes of its own
def test_check_deploy__production_settings__no_warnings(tmp_path):
    result = subprocess.run(
        [sys.executable, "manage.py", "check", "--deploy", "--fail-level", "WARNING"],
        cwd=ROOT,
        env=_production_env(PLATFORM_VAR_DIR=str(tmp_path)),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert "no issues" in result.stdout


SETTINGS_PROBE = (
    "import django; django.setup(); from django.conf import settings; "
    "print(settings.SECRET_KEY == __import__('os').environ.get('DJANGO_SECRET_KEY'))"
)


@pytest.mark.slow  # starts Python processes of its own
@pytest.mark.parametrize(
    "secret_key, refused",
    [
        (None, True),  # no key: refused
        ("dev-only-insecure-key-do-not-use-in-production", True),  # the public development key
        ("from-the-environment-" + "s" * 40, False),  # any other: used as given
    ],
)
def test_settings__debug_off__secret_key_only_from_the_environment(tmp_path, secret_key, refused):
    env = _production_env(PLATFORM_VAR_DIR=str(tmp_path), DJANGO_SETTINGS_MODULE="config.settings")
    env.pop("DJANGO_SECRET_KEY")
    if secret_key is not None:
        env["DJANGO_SECRET_KEY"] = secret_key
    result = subprocess.run(
        [sys.executable, "-c", SETTINGS_PROBE], cwd=ROOT, env=env, capture_output=True, text=True, timeout=60
    )
    if refused:
        assert result.returncode != 0 and "ImproperlyConfigured" in result.stderr
    else:
        assert result.returncode == 0, result.stderr
        assert result.stdout.strip() == "True"


# --- secrets in the repository -----------------------------------------------------------------------------
SECRET_PATTERNS = {
    "private key": re.compile(r"-----BEGIN [A-Z ]*PRIVATE KEY-----"),
    "AWS access key": re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"),
    "GitHub token": re.compile(r"\b(gh[pousr]_[A-Za-z0-9]{36,}|github_pat_[A-Za-z0-9_]{40,})\b"),
    "Slack token": re.compile(r"\bxox[abprs]-[A-Za-z0-9-]{10,}"),
    "Stripe live key": re.compile(r"\b[sr]k_live_[0-9A-Za-z]{16,}"),
    "Google API key": re.compile(r"\bAIza[0-9A-Za-z_-]{35}\b"),
    "an SDK key of this platform": re.compile(r"\bsdk_[A-Za-z0-9_-]{32}\b"),
    "a DRF token": re.compile(r"\bToken [0-9a-f]{40}\b"),
    "a hard-coded secret": re.compile(
        r"(?i)\b(secret_key|api_key|auth_token|access_token|password)\b[\"']?\s*[:=]\s*[\"'][^\"'\s$]{16,}[\"']"
    ),
    "credentials in a URL": re.compile(r"\b[a-z][a-z0-9+]*://[^/\s:@'\"]+:[^/\s@'\"$]{12,}@"),
}
# Values that look like secrets on purpose and are refused or harmless where they are used.
ALLOWED_SECRET_LINES = (
    'DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"',  # refused when DEBUG is off
)


def repository_files() -> list[Path]:
    """Files git tracks, and new ones it would track (not ignored): what a commit can contain."""
    result = subprocess.run(
        ["git", "ls-files", "--cached", "--others", "--exclude-standard", "-z"],
        cwd=ROOT,
        capture_output=True,
        timeout=60,
    )
    if result.returncode != 0:
        pytest.skip("not a git checkout")
    return [ROOT / name for name in result.stdout.decode().split("\0") if name and (ROOT / name).is_file()]


def find_secrets(text: str) -> list[tuple[str, str]]:
    found = []
    for line in text.splitlines():
        if any(allowed in line for allowed in ALLOWED_SECRET_LINES):
            continue
        found += [
            (name, line.strip()[:160]) for name, pattern in SECRET_PATTERNS.items() if pattern.search(line)
        ]
    return found


def test_repository__tracked_files__no_secrets_or_keys():
    leaks = []
    for path in repository_files():
        if path.stat().st_size > 2_000_000:
            continue
        try:
            text = path.read_text(encoding="utf-8")
        except UnicodeDecodeError:
            continue  # binary
        leaks += [(path.relative_to(ROOT).as_posix(), *leak) for leak in find_secrets(text)]
    assert not leaks, "\n".join(f"{path}: {kind}: {line}" for path, kind, line in leaks)


@pytest.mark.parametrize(
    "line",
    [
        # Assembled at run time, so that this file does not hold what it plants.
        "-----BEGIN RSA " + "PRIVATE KEY-----",
        "aws_access_key_id = AKIA" + "IOSFODNN7EXAMPLE",
        "token = 'ghp_" + "a1B2" * 9 + "'",
        'SECRET_KEY = "' + "k9#xT" * 8 + '"',
        "DATABASE_URL=postgres://platform:" + "Sup3rS3cretPassw0rd@db:5432/platform",
        "curl -H 'Authorization: Bearer sdk_" + "Ab3_" * 8 + "'",
        "Authorization: Token " + "0123456789abcdef" * 2 + "01234567",
    ],
)
def test_find_secrets__planted_secret__found(line):
    assert find_secrets(line)


@pytest.mark.parametrize(
    "line",
    [
        'SECRET_KEY = env.str("DJANGO_SECRET_KEY", default="")',
        "DJANGO_SECRET_KEY: ${DJANGO_SECRET_KEY:?set DJANGO_SECRET_KEY}",
        "`postgres://user:pass@host:5432/db` in production",
        "KEY=sdk_...   # printed by make demo",
        'DEV_SECRET_KEY = "dev-only-insecure-key-do-not-use-in-production"  # noqa: S105',
    ],
)
def test_find_secrets__harmless_line__not_found(line):
    assert not find_secrets(line)


# --- SQL built by string formatting ------------------------------------------------------------------------
def test_sql_scan__project__no_sql_built_by_string_formatting():
    findings, used = sql_scan.scan_tree(ROOT)
    assert not findings, (
        "SQL built by string formatting (bind values; see tests/hardening/sql_scan.py):\n"
        + (sql_scan.format_findings(findings))
    )
    # An exception that no longer matches anything should go, so the list stays reviewed.
    assert used == set(sql_scan.ALLOWED), f"unused exceptions: {set(sql_scan.ALLOWED) - used}"


PLANTED_BAD = {
    "f-string into a cursor": "def f(cursor, name):\n    cursor.execute(f\"SELECT * FROM t WHERE name = '{name}'\")\n",
    "%-formatting": "def f(cursor, name):\n    cursor.execute(\"SELECT * FROM t WHERE name = '%s'\" % name)\n",
    ".format()": 'def f(ch, table):\n    ch.query("SELECT count() FROM {}".format(table))\n',
    "concatenation": 'def f(ch, name):\n    ch.command("DROP TABLE " + name)\n',
    "through a variable": (
        'def f(cursor, unit):\n    sql = "SELECT * FROM t WHERE unit = " + unit\n    cursor.execute(sql)\n'
    ),
    "built up with +=": (
        'def f(ch, where):\n    sql = "SELECT 1 FROM t"\n    sql += " WHERE " + where\n    ch.query(sql)\n'
    ),
    "keyword argument": 'def f(ch, n):\n    ch.query(sql=f"SELECT {n}", params={})\n',
    "raw()": 'def f(Model, key):\n    Model.objects.raw(f"SELECT * FROM m WHERE key = {key}")\n',
    "extra()": 'def f(qs, key):\n    qs.extra(where=["a = 1", f"key = {key}"])\n',
    "SQL built far from its call": "def where(unit):\n    return f\"SELECT * FROM events WHERE unit_id = '{unit}'\"\n",
    "template substitution": 'def f(sql, table):\n    return sql.replace("{table}", table)\n',
    "loop variable": 'def f(ch, tables):\n    for table in tables:\n        ch.command(f"TRUNCATE TABLE {table}")\n',
}
PLANTED_GOOD = {
    "bound parameters": 'def f(ch, name):\n    ch.query("SELECT count() FROM e WHERE name = {name:String}", {"name": name})\n',
    "identifier parameter": ('def f(ch, t):\n    ch.command("TRUNCATE TABLE {t:Identifier}", {"t": t})\n'),
    "cursor placeholders": 'def f(cursor, pk):\n    cursor.execute("SELECT * FROM t WHERE id = %s", [pk])\n',
    "literal split over lines": 'def f(ch):\n    ch.query("SELECT 1 " "FROM t " + "LIMIT 1")\n',
    "constants only": (
        'COLUMNS = ("a", "b")\ndef f(ch):\n    ch.query(f"SELECT {\', \'.join(COLUMNS)} FROM t")\n'
    ),
    "f-string of a local literal": (
        'def f(ch):\n    t0 = "now()"\n    ch.command(f"INSERT INTO t SELECT {t0}", {})\n'
    ),
    "not SQL": 'def f(name):\n    return f"Hello {name}, select a plan from the list"\n',
    "str.format not for SQL": 'def f(n):\n    print("{} rows".format(n))\n',
}


@pytest.mark.parametrize("source", PLANTED_BAD.values(), ids=PLANTED_BAD.keys())
def test_sql_scan__planted_bad_example__found(source):
    assert sql_scan.scan_source(source, "planted.py"), source


@pytest.mark.parametrize("source", PLANTED_GOOD.values(), ids=PLANTED_GOOD.keys())
def test_sql_scan__safe_example__not_found(source):
    assert sql_scan.scan_source(source, "planted.py") == [], source


def test_sql_scan__planted_file_in_a_tree__fails_the_scan(tmp_path):
    (tmp_path / "features").mkdir()
    (tmp_path / "features" / "bad.py").write_text(PLANTED_BAD["through a variable"])
    (tmp_path / "features" / "migrations").mkdir()
    (tmp_path / "features" / "migrations" / "0001.py").write_text(PLANTED_BAD["f-string into a cursor"])
    findings, _ = sql_scan.scan_tree(tmp_path)
    assert {f.path for f in findings} == {"features/bad.py"}  # migrations are not scanned
    assert "call" in {f.kind for f in findings}
