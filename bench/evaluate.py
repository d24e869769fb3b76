"""Flag evaluation: the pure evaluator in process, and OFREP over HTTP through gunicorn.

(a) ``evaluate_feature`` over 50 flags of 5 rules each (force rules with conditions, rollouts, an
    experiment rule on every fifth flag), one core, against a baseline of the same loop calling a
    function that only looks the flag up in a dict: the floor of any evaluation. Goal: at least
    100,000 evaluations/s.
(b) ``POST /ofrep/v1/evaluate/flags/{key}`` through gunicorn (one sync worker) against a bare Django
    JSON view (``bench/urls.py``) served by the same gunicorn in the same run, same request body and
    headers. Load: ``wrk`` when installed (``apt-get install wrk``), else a threaded ``http.client``
    loop; 10 s on each path in 5 interleaved rounds, the best round of each counted, so that other
    load on the machine does not favour either. Goal: OFREP at least 70% of the bare view's requests/s.
(c) The same comparison as a production-like mix (issue #12): gunicorn with 1 worker of 4 threads
    (``gthread``), and every request a different context -- a random unit, country, plan and age --
    for one of 20 flags that each have two force rules with conditions and a 20% rollout
    (``ofrep_00`` .. ``ofrep_19``), cycling through ``VARIED_REQUESTS`` pre-made requests; the bare
    view gets the same requests. Varied contexts miss every per-context memo, as real traffic does.

The HTTP part runs on its own SQLite database and var/ directory in a temporary folder, which a
subprocess migrates and fills with the 50 flags and an SDK key (``python -m bench.evaluate setup``).
REDIS_URL is passed through when set (then the configuration generation is read from Redis on
every request, as in production); otherwise the embedded local-memory cache is used.
"""

from __future__ import annotations

import contextlib
import http.client
import json
import os
import re
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from bench.common import Result

ROOT = Path(__file__).resolve().parent.parent
N_FLAGS = 50
N_EXPERIMENTS = 5
HTTP_SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "10"))  # of load on each path, in ROUNDS rounds
ROUNDS = 5
FLAG_UNDER_LOAD = "flag_07"  # four rules that miss, then a 20% rollout: a typical path
ATTRIBUTES = {"plan": "free", "country": "US", "age": 30, "beta": False, "email": "someone@corp.test"}
N_VARIED_FLAGS = 20
VARIED_REQUESTS = 2000  # distinct (flag, context) requests the varied run cycles through
VARIED_THREADS = 4  # gunicorn --threads of the varied run (1 worker, gthread)


# --- the flags ---------------------------------------------------------------------------------------


def flag_definitions() -> dict[str, dict[str, Any]]:
    """50 flags of 5 rules each, in the contract's shape (``{"type", "default", "rules"}``)."""
    flags = {}
    for i in range(N_FLAGS):
        fourth = (
            {
                "type": "experiment",
                "condition": {},
                "experiment": f"exp_{i % N_EXPERIMENTS}",
                "values": {"control": False, "treatment": True},
            }
            if i % 5 == 0
            else {"type": "force", "condition": {"email": {"$regex": r"@example\.com$"}}, "value": True}
        )
        flags[f"flag_{i:02d}"] = {
            "type": "boolean",
            "default": False,
            "rules": [
                {"type": "force", "condition": {"plan": "internal"}, "value": True},
                {
                    "type": "force",
                    "condition": {"country": {"$in": ["FR", "DE", "IT"]}, "age": {"$gte": 18}},
                    "value": True,
                },
                {"type": "rollout", "condition": {"beta": True}, "value": True, "coverage": 0.5},
                fourth,
                {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2},
            ],
        }
    return flags


def varied_flag_definitions() -> dict[str, dict[str, Any]]:
    """20 flags of two force rules and a rollout each: the varied-context OFREP run's flags."""
    return {
        f"ofrep_{i:02d}": {
            "type": "boolean",
            "default": False,
            "rules": [
                {"type": "force", "condition": {"plan": "internal"}, "value": True},
                {
                    "type": "force",
                    "condition": {"country": {"$in": ["FR", "DE", "IT"]}, "age": {"$gte": 18}},
                    "value": True,
                },
                {"type": "rollout", "condition": {}, "value": True, "coverage": 0.2},
            ],
        }
        for i in range(N_VARIED_FLAGS)
    }


def varied_requests(n: int = VARIED_REQUESTS, seed: int = 12) -> list[tuple[str, bytes]]:
    """``n`` OFREP requests ``(path, body)``, each a random flag and a random context."""
    import random

    rng = random.Random(seed)
    requests = []
    for _ in range(n):
        context = {
            "targetingKey": f"user-{rng.randrange(10**9)}",
            "country": rng.choice(["US", "DE", "FR", "JP", "BR", "IN", "GB", "IT"]),
            "plan": rng.choice(["free", "pro", "team", "internal"]),
            "age": rng.randint(13, 80),
        }
        flag = f"ofrep_{rng.randrange(N_VARIED_FLAGS):02d}"
        requests.append((f"/ofrep/v1/evaluate/flags/{flag}", json.dumps({"context": context}).encode()))
    return requests


def experiment_definitions() -> dict[str, dict[str, Any]]:
    return {
        f"exp_{i}": {
            "status": "running",
            "seed": f"exp_{i}",
            "variants": [
                {"key": "control", "weight": 1.0, "payload": None},
                {"key": "treatment", "weight": 1.0, "payload": None},
            ],
            "traffic_allocation": 0.5,
            "targeting": {"country": {"$in": ["US", "CA"]}},
            "layer": None,
            "layer_slice_start": None,
        }
        for i in range(N_EXPERIMENTS)
    }


# --- (a) the pure evaluator ------------------------------------------------------------------------


def _best_rate(loop, n: int, repeats: int = 3) -> float:
    best = float("inf")
    for _ in range(repeats):
        started = time.perf_counter()
        loop(n)
        best = min(best, time.perf_counter() - started)
    return n / best


def bench_pure() -> Result:
    from features.evaluation import config_compile, evaluate_feature, snapshot_version

    features = {
        key: {
            "type": f["type"],
            "default": f["default"],
            "enabled": True,
            "rules": f["rules"],
            "prerequisites": [],
        }
        for key, f in flag_definitions().items()
    }
    snapshot = {
        "environment": {"id": 1, "key": "production"},
        "features": features,
        "experiments": experiment_definitions(),
    }
    snapshot["version"] = snapshot_version(snapshot)
    snapshot["built_at"] = time.time()
    config = config_compile(snapshot)
    keys = list(features)
    units = [f"user-{i}" for i in range(1000)]
    jobs = [(keys[i % N_FLAGS], units[(i * 7) % len(units)]) for i in range(10_000)]
    table = {key: f["default"] for key, f in features.items()}

    def lookup(_config, key, _unit_id, _attributes):
        return table[key]

    def measured(n: int) -> None:
        for i in range(n):
            key, unit_id = jobs[i % 10_000]
            evaluate_feature(config, key, unit_id, ATTRIBUTES)

    def baseline(n: int) -> None:
        for i in range(n):
            key, unit_id = jobs[i % 10_000]
            lookup(config, key, unit_id, ATTRIBUTES)

    n = 200_000
    rate = _best_rate(measured, n)
    floor = _best_rate(baseline, n)
    print(f"pure evaluation: {rate:,.0f} evaluations/s; dict lookup + call: {floor:,.0f}/s", flush=True)
    return Result(
        entry="evaluate",
        measured="evaluate_feature, 50 flags x 5 rules, 1 core",
        value=rate,
        baseline="dict lookup + function call",
        baseline_value=floor,
        unit="evals/s",
        goal=">= 100,000 evals/s",
    )


# --- (b) OFREP through gunicorn -----------------------------------------------------------------------


def setup_database() -> None:
    """Run in a subprocess with the benchmark's environment: migrate, 50 flags, an SDK key (printed last)."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from experiments.services import experiment_create, experiment_start
    from features.models import Environment
    from features.services import feature_create, sdk_key_create

    call_command("migrate", verbosity=0)
    for key, raw in experiment_definitions().items():
        experiment = experiment_create(
            user=None,
            key=key,
            name=key,
            variants=raw["variants"],
            traffic_allocation=raw["traffic_allocation"],
            targeting=raw["targeting"],
        )
        experiment_start(experiment=experiment, user=None)
    for key, raw in {**flag_definitions(), **varied_flag_definitions()}.items():
        feature_create(
            user=None,
            key=key,
            name=key,
            type=raw["type"],
            default_value=raw["default"],
            environments={"production": {"enabled": True, "rules": raw["rules"]}},
        )
    _, sdk_key = sdk_key_create(environment=Environment.objects.get(key="production"), name="bench")
    print(sdk_key)


def wsgi_application():
    """gunicorn's entry point for the benchmark: the platform, with ``bench/urls.py`` as the URLconf."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.conf import settings
    from django.core.wsgi import get_wsgi_application

    settings.ROOT_URLCONF = "bench.urls"
    return get_wsgi_application()


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _wait_for_port(port: int, process: subprocess.Popen, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"gunicorn exited with {process.returncode}")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.1)
    raise RuntimeError("gunicorn did not start listening in time")


def _post(port: int, path: str, body: bytes, headers: dict[str, str]) -> tuple[int, bytes]:
    # Generous: the first request loads the application in the worker (slow on a busy machine).
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=120)
    try:
        connection.request("POST", path, body=body, headers=headers)
        response = connection.getresponse()
        return response.status, response.read()
    finally:
        connection.close()


Request = tuple[str, bytes]  # (path, body)


def _load_wrk(
    port: int, requests: list[Request], headers: dict[str, str], seconds: float, workdir: Path
) -> float:
    script = workdir / "post.lua"
    if len(requests) == 1:
        path, body = requests[0]
        lines = ['wrk.method = "POST"', f"wrk.body = {json.dumps(body.decode())}"]
        lines += [f"wrk.headers[{json.dumps(name)}] = {json.dumps(value)}" for name, value in headers.items()]
    else:
        # Cycle through the requests: one Lua state (-t1), so the counter is shared.
        path = "/"
        lines = ["local requests = {"]
        lines += [f"  {{{json.dumps(p)}, {json.dumps(b.decode())}}}," for p, b in requests]
        lines += ["}", "local headers = {"]
        lines += [f"  [{json.dumps(name)}] = {json.dumps(value)}," for name, value in headers.items()]
        lines += [
            "}",
            "local i = 0",
            "request = function()",
            "  i = i % #requests + 1",
            '  return wrk.format("POST", requests[i][1], headers, requests[i][2])',
            "end",
        ]
    script.write_text("\n".join(lines) + "\n")
    result = subprocess.run(
        [
            "wrk",
            "-t1",
            "-c8",
            f"-d{max(round(seconds), 1)}s",
            "-s",
            str(script),
            f"http://127.0.0.1:{port}{path}",
        ],
        capture_output=True,
        text=True,
        timeout=seconds + 60,
        check=True,
    )
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", result.stdout)
    if errors:
        raise RuntimeError(f"{requests[0][0]}: {errors.group(1)} failed responses under load")
    return float(re.search(r"Requests/sec:\s+([\d.]+)", result.stdout).group(1))


def _load_python(port: int, requests: list[Request], headers: dict[str, str], seconds: float) -> float:
    counts = [0] * 8
    deadline = time.monotonic() + seconds

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=10)  # kept alive, as wrk's
        position = index * len(requests) // len(counts)
        try:
            while time.monotonic() < deadline:
                path, body = requests[position % len(requests)]
                position += 1
                connection.request("POST", path, body=body, headers=headers)
                response = connection.getresponse()
                response.read()
                if response.status != 200:
                    raise RuntimeError(f"{path} answered {response.status} under load")
                counts[index] += 1
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return sum(counts) / (time.monotonic() - started)


def server_environment(workdir: Path) -> dict[str, str]:
    """The environment of the setup subprocess and of gunicorn: the caller's, with the benchmark's own
    database and data directory, debug off, and no rate limit."""
    return {
        **os.environ,
        "DJANGO_SETTINGS_MODULE": "config.settings",
        "DATABASE_URL": f"sqlite:///{workdir / 'db.sqlite3'}",
        "PLATFORM_VAR_DIR": str(workdir),
        "DJANGO_DEBUG": "0",
        "DJANGO_SECRET_KEY": "bench-only-secret-key",
        "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
        "DJANGO_SECURE_SSL_REDIRECT": "0",
        "LOG_LEVEL": "WARNING",
        # Measured, not throttled: whatever the environment or .env sets, the load must never meet 429s.
        "SDK_RATE_LIMIT_PER_MINUTE": "0",
    }


@contextlib.contextmanager
def _gunicorn(env: dict[str, str], *worker_options: str) -> Iterator[int]:
    """A gunicorn serving the benchmark's WSGI application with one worker; yields its port."""
    port = _free_port()
    server = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "gunicorn",
            "--bind",
            f"127.0.0.1:{port}",
            "--workers",
            "1",
            *worker_options,
            "--log-level",
            "warning",
            "bench.evaluate:wsgi_application()",
        ],
        cwd=ROOT,
        env=env,
    )
    try:
        _wait_for_port(port, server)
        yield port
    finally:
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


def _compare(
    port: int, ofrep: list[Request], bare: list[Request], headers: dict[str, str], workdir: Path
) -> tuple[float, float, str]:
    """Best requests/s of the OFREP requests and of the bare ones over interleaved rounds."""
    for path, body in (*ofrep[:50], bare[0]):
        status, answer = _post(port, path, body, headers)
        if status != 200:
            raise RuntimeError(f"{path} answered {status}: {answer[:300]!r}")
    use_wrk = shutil.which("wrk") is not None
    client = "wrk -t1 -c8" if use_wrk else "python http.client, 8 threads"
    # Interleaved rounds, best round of each: other load on the machine hits both alike.
    rates: dict[str, list[float]] = {"bare": [], "ofrep": []}
    for round_ in range(ROUNDS):
        for name in ("bare", "ofrep") if round_ % 2 == 0 else ("ofrep", "bare"):
            requests = ofrep if name == "ofrep" else bare
            seconds = HTTP_SECONDS / ROUNDS
            if use_wrk:
                rates[name].append(_load_wrk(port, requests, headers, seconds, workdir))
            else:
                rates[name].append(_load_python(port, requests, headers, seconds))
    return max(rates["ofrep"]), max(rates["bare"]), client


def bench_http() -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-evaluate-"))
    (workdir / "static").mkdir()  # STATIC_ROOT under PLATFORM_VAR_DIR: WhiteNoise warns when it is missing
    env = server_environment(workdir)
    cache = "Redis" if env.get("REDIS_URL") else "local-memory cache"
    try:
        setup = subprocess.run(
            [sys.executable, "-m", "bench.evaluate", "setup"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=600,
            check=True,
        )
        sdk_key = setup.stdout.strip().splitlines()[-1]
        headers = {"Content-Type": "application/json", "Authorization": f"Bearer {sdk_key}"}
        results = []

        body = json.dumps({"context": {"targetingKey": "user-42", **ATTRIBUTES}}).encode()
        single = [(f"/ofrep/v1/evaluate/flags/{FLAG_UNDER_LOAD}", body)]
        with _gunicorn(env, "--worker-class", "sync") as port:
            ofrep, bare, client = _compare(port, single, [("/bench/bare", body)], headers, workdir)
        print(
            f"OFREP single flag: {ofrep:,.0f} requests/s; bare Django JSON view: {bare:,.0f} requests/s; "
            f"ratio {ofrep / bare:.3f} (gunicorn 1 sync worker, {client}, {cache})",
            flush=True,
        )
        results.append(
            Result(
                entry="evaluate",
                measured=f"OFREP single flag, gunicorn 1 sync worker ({cache}, {client})",
                value=ofrep,
                baseline="bare Django JSON view, same gunicorn",
                baseline_value=bare,
                unit="req/s",
                goal="ratio >= 0.70",
            )
        )

        varied = varied_requests()
        threads = ("--worker-class", "gthread", "--threads", str(VARIED_THREADS))
        with _gunicorn(env, *threads) as port:
            ofrep, bare, client = _compare(
                port, varied, [("/bench/bare", b) for _, b in varied], headers, workdir
            )
        print(
            f"OFREP varied contexts ({N_VARIED_FLAGS} flags, {len(varied)} contexts): {ofrep:,.0f} requests/s; "
            f"bare view: {bare:,.0f} requests/s; ratio {ofrep / bare:.3f} (gunicorn 1 worker x "
            f"{VARIED_THREADS} threads, {client}, {cache})",
            flush=True,
        )
        results.append(
            Result(
                entry="evaluate",
                measured=f"OFREP single flag, varied contexts ({N_VARIED_FLAGS} flags x 2 force + rollout), "
                f"gunicorn 1 worker x {VARIED_THREADS} threads ({cache}, {client})",
                value=ofrep,
                baseline="bare Django JSON view, same gunicorn and bodies",
                baseline_value=bare,
                unit="req/s",
                goal="ratio >= 0.70",
            )
        )
        return results
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def run() -> list[Result]:
    return [bench_pure(), *bench_http()]


if __name__ == "__main__":
    if sys.argv[1:] == ["setup"]:
        setup_database()
    else:
        print("\n" + Result.table(run()))
