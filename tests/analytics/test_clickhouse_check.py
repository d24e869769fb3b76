"""``manage.py clickhouse_check``: what it prints, and how it fails."""

import datetime as dt
import os
import subprocess
import sys
from io import StringIO
from pathlib import Path

import pytest
from django.conf import settings as django_settings
from django.core.management import CommandError, call_command

from analytics import clickhouse as ch
from analytics.clickhouse import migrations
from analytics.ingestion import services as ingestion

ROOT = Path(__file__).resolve().parents[2]
NOW = dt.datetime(2024, 1, 2, 3, 4, 5, tzinfo=dt.UTC)


def _manage(*args: str, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "manage.py", *args],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_clickhouse_check__reachable__prints_version_databases_tables_and_row_counts(clickhouse):
    # Given three events
    ingestion.events_write(rows=[{"name": "e", "unit_id": "u"} for _ in range(3)], received_at=NOW)
    out = StringIO()

    # When the check runs
    call_command("clickhouse_check", stdout=out)

    # Then it shows the server, the databases, each table with its rows, and the migrations
    output = out.getvalue()
    assert output.startswith(f"ClickHouse {ch.ping()} (")
    expected_backend = "server at http://127.0.0.1:" if clickhouse.backend == "http" else "embedded chDB"
    assert expected_backend in output.splitlines()[0]
    assert f"Databases: default, {clickhouse.database}" in output
    lines = {line.split()[0]: line.split()[1:] for line in output.splitlines() if line.startswith("  ")}
    assert lines["events"] == ["ReplacingMergeTree", "3", "rows"]
    assert lines["exposures"] == ["ReplacingMergeTree", "0", "rows"]
    assert lines["events_dedup"] == ["View"]
    shipped = len(migrations.discover(migrations.MIGRATIONS_DIR))
    assert shipped >= 5
    assert f"Migrations: {shipped} applied, 0 pending" in output


def test_clickhouse_check__server_not_listening__fails_with_one_clear_line(settings, closed_tcp_port):
    settings.CLICKHOUSE_URL = f"http://default@127.0.0.1:{closed_tcp_port}/experiments"

    with pytest.raises(CommandError) as caught:
        call_command("clickhouse_check", stdout=StringIO())

    message = str(caught.value)
    assert message == (
        f"ClickHouse at http://127.0.0.1:{closed_tcp_port} is unreachable: "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    )


@pytest.mark.slow  # starts Python processes of its own
def test_clickhouse_check_process__server_not_listening__exits_non_zero_without_traceback(closed_tcp_port):
    result = _manage(
        "clickhouse_check", CLICKHOUSE_URL=f"http://default@127.0.0.1:{closed_tcp_port}/experiments"
    )

    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"CommandError: ClickHouse at http://127.0.0.1:{closed_tcp_port} is unreachable: "
        "Failed to establish a new connection: [Errno 111] Connection refused"
    ]
    assert "Traceback" not in result.stderr


@pytest.mark.slow  # starts Python processes of its own
def test_clickhouse_check_process__embedded_data_owned_by_another_process__exits_non_zero_saying_so(tmp_path):
    # Given another process that has the embedded data directory open
    data_dir = tmp_path / "chdb"
    owner = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys; from chdb import session; s = session.Session(sys.argv[1]); "
            "print('open', flush=True); sys.stdin.read()",
            str(data_dir),
        ],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert owner.stdout.readline().strip() == "open"

        # When the check runs on the same directory
        result = _manage("clickhouse_check", CLICKHOUSE_DATA_DIR=str(data_dir), CLICKHOUSE_URL="")
    finally:
        owner.communicate(input="", timeout=60)

    # Then it says who owns it and what to do, in one line, and exits non-zero
    assert result.returncode == 1
    assert result.stderr.strip().splitlines() == [
        f"CommandError: the embedded ClickHouse data in {data_dir} is in use by another process "
        "(is `make demo` / the server running?); stop it or set CLICKHOUSE_URL"
    ]


def test_clickhouse_check__database_not_created__says_to_migrate(clickhouse, settings, request):
    settings.CLICKHOUSE_DATABASE = "not_migrated_yet"
    if clickhouse.backend == "http":
        settings.CLICKHOUSE_URL = request.getfixturevalue("clickhouse_http_server").url("not_migrated_yet")
    out = StringIO()

    call_command("clickhouse_check", stdout=out)

    assert (
        "Database not_migrated_yet does not exist yet; run `manage.py clickhouse_migrate`." in out.getvalue()
    )
    assert django_settings.CLICKHOUSE_DATABASE == "not_migrated_yet"
