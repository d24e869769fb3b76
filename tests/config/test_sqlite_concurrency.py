"""The embedded default (SQLite in a file) takes concurrent writers: requests on gunicorn's threads and
the embedded scheduler's thread write at the same time, and every write lands without "database is
locked" (a 503). Found by the fuzzer: a DELETE of an environment and a PATCH of a metric answered 503
while other requests and the scheduler wrote.

Why it failed: SQLite allows one writer at a time. A deferred transaction (SQLite's default "BEGIN")
starts as a reader and asks for the write lock at its first write; if another connection wrote in the
meantime, SQLite cannot wait for it (its snapshot is stale, or waiting could deadlock) and fails at once,
whatever the busy timeout. ``BEGIN IMMEDIATE`` takes the write lock at the start, where waiting is safe,
and the WAL journal lets readers go on while one connection writes (config/settings.py)."""

import contextlib
import datetime as dt
import json
import random
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.support.production import ROOT, embedded_env, free_port

pytestmark = pytest.mark.slow  # a real gunicorn on a migrated file database: ~30 s

# Before the server starts: a user with a token, and the scheduler's schedule task every second, so
# the scheduler's thread writes (starting experiments) while the requests do.
SETUP = """
from django.contrib.auth import get_user_model
from django_celery_beat.models import IntervalSchedule, PeriodicTask
from rest_framework.authtoken.models import Token
user = get_user_model().objects.create_superuser("load", "load@example.com", None)  # token only
every_second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
PeriodicTask.objects.filter(task="experiments.tasks.experiments_run_schedules").update(interval=every_second)
print(Token.objects.create(user=user).key)
"""

METRICS, ENVIRONMENTS, EXPERIMENTS, ROUNDS = 12, 12, 6, 6
CLIENT_THREADS = 16


@dataclass
class Server:
    url: str
    token: str
    log: str = ""
    answers: list[tuple[str, str, int, str]] = field(default_factory=list)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, str]:
        request = urllib.request.Request(
            self.url + path,
            method=method,
            data=json.dumps(body).encode() if body is not None else None,
            headers={"Authorization": f"Token {self.token}", "Content-Type": "application/json"},
        )
        try:
            with urllib.request.urlopen(request, timeout=60) as response:  # noqa: S310 - loopback
                status, text = response.status, response.read().decode()
        except urllib.error.HTTPError as error:
            status, text = error.code, error.read().decode()
        self.answers.append((method, path, status, text[:300]))
        return status, text


@contextlib.contextmanager
def serving(tmp_path: Path) -> Iterator[Server]:
    """A migrated file database and gunicorn on it; the server's log is in ``server.log`` afterwards."""
    env = embedded_env(PLATFORM_VAR_DIR=str(tmp_path / "var"))
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "--noinput"], cwd=ROOT, env=env, check=True, timeout=300,
        capture_output=True,
    )  # fmt: skip
    token = subprocess.run(
        [sys.executable, "manage.py", "shell", "-c", SETUP],
        cwd=ROOT, env=env, check=True, timeout=120, capture_output=True, text=True,
    ).stdout.split()[-1]  # fmt: skip
    port = free_port()
    log_path = tmp_path / "gunicorn.log"
    with log_path.open("w") as log:
        # As `make serve` runs it: one worker, eight threads, the embedded scheduler in a thread of its own.
        process = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
             "--workers", "1", "--threads", "8", "--timeout", "120"],
            cwd=ROOT, env=env, stdout=log, stderr=subprocess.STDOUT,
        )  # fmt: skip
    server = Server(url=f"http://127.0.0.1:{port}", token=token)
    try:
        url = server.url
        deadline = time.monotonic() + 120
        while True:
            try:
                with urllib.request.urlopen(url + "/api/health", timeout=30):  # noqa: S310 - loopback
                    break
            except OSError as error:  # refused while it starts (URLError), or slow to answer (timeout)
                if time.monotonic() > deadline or process.poll() is not None:
                    raise AssertionError(f"gunicorn did not start: {log_path.read_text()[-3000:]}") from error
                time.sleep(0.2)
        yield server
    finally:
        process.terminate()
        process.wait(timeout=30)
        server.log = log_path.read_text()


def test_sqlite__concurrent_writes_and_scheduler__all_land_no_database_locked(tmp_path):
    with serving(tmp_path) as server:
        statuses = _concurrent_writes(server)
    # Then the server logged no failed write either (the scheduler's thread included)
    assert "database is locked" not in server.log, server.log[-3000:]
    assert statuses == {f"x{i}": "running" for i in range(EXPERIMENTS)}, server.log[-3000:]


def _concurrent_writes(server: Server) -> dict[str, str]:
    """Writes at once from sixteen clients while the scheduler starts experiments; checks that every
    answer is a success and every write landed; returns the experiments' statuses."""
    # Given metrics, environments and draft experiments made one at a time
    for index in range(METRICS):
        body = {"key": f"m{index}", "name": f"m{index}", "type": "count", "event": "e"}
        assert server.request("POST", "/api/v1/metrics/", body)[0] == 201
    for index in range(ENVIRONMENTS):
        body = {"key": f"old{index}", "name": f"old {index}"}
        assert server.request("POST", "/api/v1/environments/", body)[0] == 201
    for index in range(EXPERIMENTS):
        body = {"key": f"x{index}", "name": f"x{index}", "variants": [{"key": "a"}, {"key": "b"}]}
        assert server.request("POST", "/api/v1/experiments/", body)[0] == 201

    # When the experiments are scheduled to start over the next seconds (the scheduler's thread starts
    # them while the requests below write), and sixteen clients write at once
    now = dt.datetime.now(dt.UTC)
    for index in range(EXPERIMENTS):
        start = (now + dt.timedelta(seconds=1 + index)).isoformat()
        status, text = server.request(
            "PATCH", f"/api/v1/experiments/x{index}/", {"scheduled_start_at": start}
        )
        assert status == 200, text

    def patch_metric(index: int) -> None:
        for round_ in range(ROUNDS):
            server.request("PATCH", f"/api/v1/metrics/m{index}/", {"name": f"m{index} round {round_}"})

    work = (
        [lambda i=i: patch_metric(i) for i in range(METRICS)]
        + [lambda i=i: server.request("DELETE", f"/api/v1/environments/old{i}/") for i in range(ENVIRONMENTS)]
        + [
            lambda i=i: server.request(
                "POST", "/api/v1/environments/", {"key": f"new{i}", "name": f"new {i}"}
            )
            for i in range(ENVIRONMENTS)
        ]
        + [
            lambda i=i: server.request(
                "POST", "/api/v1/metrics/", {"key": f"n{i}", "name": f"n{i}", "type": "count", "event": "e"}
            )
            for i in range(METRICS)
        ]
    )
    random.Random(11).shuffle(work)
    with ThreadPoolExecutor(CLIENT_THREADS) as pool:
        for future in [pool.submit(job) for job in work]:
            future.result()
    # ...until the scheduler has had its turn at every experiment (bounded: it runs every second)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        statuses = {
            experiment["key"]: experiment["status"]
            for experiment in json.loads(server.request("GET", "/api/v1/experiments/")[1])["results"]
        }
        if all(status == "running" for status in statuses.values()):
            break
        time.sleep(0.5)

    # Then every write answered with success, none with "database is locked"
    refused = [answer for answer in server.answers if answer[2] >= 300]
    assert refused == [], refused[:5]
    # ...and every write landed: each metric carries its last name, the old environments are gone and the
    # new ones exist, every new metric exists, and the scheduler started every experiment
    for index in range(METRICS):
        metric = json.loads(server.request("GET", f"/api/v1/metrics/m{index}/")[1])
        assert metric["name"] == f"m{index} round {ROUNDS - 1}"
        assert server.request("GET", f"/api/v1/metrics/n{index}/")[0] == 200
    environments = {
        environment["key"]
        for environment in json.loads(server.request("GET", "/api/v1/environments/")[1])["results"]
    }
    assert environments >= {f"new{i}" for i in range(ENVIRONMENTS)}
    assert environments.isdisjoint({f"old{i}" for i in range(ENVIRONMENTS)})
    return statuses
