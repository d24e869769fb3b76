"""GrowthBook's SDK protocol: local evaluation by the SDK against remote evaluation, and the payload.

500 flags (``bench.evaluate``'s 50 flags of 5 rules, ten times over: force rules with conditions,
rollouts, an experiment rule on every fifth flag) and 5 running experiments, on the benchmark's own
database, served by gunicorn (1 sync worker, the one-process default) with ``bench/urls.py``.

(a) GrowthBook's Python SDK (PyPI ``growthbook``) loads ``GET /api/features/{client_key}`` once and
    evaluates every flag for one unit after another, in this process (``stale_while_revalidate=True``:
    refreshed in the background, as a server runs it): evaluations/s. Baseline, the
    same flags the remote way: ``POST /api/v1/evaluate`` (every flag of the environment for one unit
    a request) from 8 client threads on kept-alive connections, counted as flags evaluated per
    second. The ratio is how many times more evaluations a process gets by evaluating locally.
(b) The payload's size for 500 flags, as served (bytes) and gzip-compressed (what a proxy or CDN with
    compression sends); baseline: the uncompressed size (the ratio is gzip's).
(c) ``GET /api/features/{client_key}`` for 500 flags, warm (built once per configuration and
    process), one client on a kept-alive connection: milliseconds a request, against the bare Django
    JSON view on the same gunicorn (the floor of any answer).
"""

from __future__ import annotations

import gzip
import http.client
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from bench.common import Result
from bench.evaluate import (
    ATTRIBUTES,
    ROOT,
    _free_port,
    _wait_for_port,
    experiment_definitions,
    flag_definitions,
    server_environment,
)

N_COPIES = 10  # of bench.evaluate's 50 flags: 500
SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "10"))


def setup_database() -> None:
    """In a subprocess with the benchmark's environment: migrate, 500 flags, a client and a secret key."""
    import django

    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "config.settings")
    django.setup()
    from django.core.management import call_command

    from experiments.services import experiment_create, experiment_start
    from features.models import Environment
    from features.services import feature_create, sdk_key_create

    call_command("migrate", verbosity=0)
    call_command("clickhouse_migrate", stdout=open(os.devnull, "w"))  # /api/v1/evaluate records exposures
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
    for copy in range(N_COPIES):
        for key, raw in flag_definitions().items():
            feature_create(
                user=None,
                key=f"{key}_{copy}",
                name=f"{key}_{copy}",
                type=raw["type"],
                default_value=raw["default"],
                environments={"production": {"enabled": True, "rules": raw["rules"]}},
            )
    production = Environment.objects.get(key="production")
    _, client_key = sdk_key_create(environment=production, name="bench browser", kind="client")
    _, secret_key = sdk_key_create(environment=production, name="bench server")
    print(client_key)
    print(secret_key)


def _request(connection: http.client.HTTPConnection, method: str, path: str, body=None, headers=None):
    connection.request(method, path, body=body, headers=headers or {})
    response = connection.getresponse()
    data = response.read()
    if response.status != 200:
        raise RuntimeError(f"{method} {path} answered {response.status}: {data[:300]!r}")
    return data


def bench_sdk_local(url: str, client_key: str, n_flags: int) -> float:
    """Evaluations/s of GrowthBook's Python SDK evaluating every flag locally for unit after unit."""
    from growthbook import GrowthBook
    from growthbook.growthbook import feature_repo

    # stale_while_revalidate: refreshed in the background, as a server process would run it. With the
    # defaults, every evaluation re-reads and re-parses the whole payload from the SDK's cache
    # (``_ensure_fresh_features``), about 40 evaluations/s with 500 flags.
    gb = GrowthBook(api_host=url, client_key=client_key, stale_while_revalidate=True)
    gb.load_features()
    keys = list(gb.get_features())
    if len(keys) != n_flags:
        raise RuntimeError(f"the SDK loaded {len(keys)} flags, not {n_flags}")
    evaluations, unit = 0, 0
    started = time.perf_counter()
    deadline = started + SECONDS
    while time.perf_counter() < deadline:
        gb.set_attributes({"id": f"user-{unit}", **ATTRIBUTES})
        for key in keys:
            gb.eval_feature(key)
        evaluations += len(keys)
        unit += 1
    rate = evaluations / (time.perf_counter() - started)
    gb.destroy()
    if feature_repo.http is not None:
        feature_repo.http.clear()
    return rate


def bench_remote(port: int, secret_key: str, n_flags: int) -> float:
    """Flags evaluated per second by ``POST /api/v1/evaluate``, 8 threads on kept-alive connections."""
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {secret_key}"}
    counts = [0] * 8
    deadline = time.monotonic() + SECONDS
    errors: list[BaseException] = []

    def worker(index: int) -> None:
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        try:
            unit = index
            while time.monotonic() < deadline:
                body = json.dumps({"unit_id": f"user-{unit}", "attributes": ATTRIBUTES}).encode()
                answer = json.loads(_request(connection, "POST", "/api/v1/evaluate", body, headers))
                if len(answer["flags"]) != n_flags:
                    raise RuntimeError(f"/api/v1/evaluate answered {len(answer['flags'])} flags")
                counts[index] += 1
                unit += len(counts)
        except BaseException as exc:  # noqa: BLE001 - reported by the caller
            errors.append(exc)
        finally:
            connection.close()

    started = time.monotonic()
    threads = [threading.Thread(target=worker, args=(i,)) for i in range(len(counts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if errors:
        raise errors[0]
    return sum(counts) * n_flags / (time.monotonic() - started)


def _mean_ms(port: int, method: str, path: str, seconds: float) -> float:
    connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
    try:
        _request(connection, method, path, b"{}" if method == "POST" else None)  # warm
        n, started = 0, time.perf_counter()
        while time.perf_counter() - started < seconds:
            _request(connection, method, path, b"{}" if method == "POST" else None)
            n += 1
        return (time.perf_counter() - started) * 1000 / n
    finally:
        connection.close()


def run() -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-growthbook-"))
    (workdir / "static").mkdir()
    env = server_environment(workdir)
    server = None
    n_flags = N_COPIES * len(flag_definitions())
    try:
        setup = subprocess.run(
            [sys.executable, "-m", "bench.growthbook", "setup"],
            cwd=ROOT,
            env=env,
            capture_output=True,
            text=True,
            timeout=1200,
            check=True,
        )
        client_key, secret_key = setup.stdout.strip().splitlines()[-2:]
        port = _free_port()
        server = subprocess.Popen(
            [sys.executable, "-m", "gunicorn", "--bind", f"127.0.0.1:{port}", "--workers", "1",
             "--worker-class", "sync", "--log-level", "warning", "bench.evaluate:wsgi_application()"],
            cwd=ROOT,
            env=env,
        )  # fmt: skip
        _wait_for_port(port, server)
        url = f"http://127.0.0.1:{port}"
        payload_path = f"/api/features/{client_key}"
        connection = http.client.HTTPConnection("127.0.0.1", port, timeout=30)
        payload = _request(connection, "GET", payload_path)
        connection.close()
        if len(json.loads(payload)["features"]) != n_flags:
            raise RuntimeError("the payload does not hold every flag")
        raw_bytes, gzip_bytes = len(payload), len(gzip.compress(payload, 6))

        local = bench_sdk_local(url, client_key, n_flags)
        remote = bench_remote(port, secret_key, n_flags)
        payload_ms = _mean_ms(port, "GET", payload_path, SECONDS / 2)
        bare_ms = _mean_ms(port, "POST", "/bench/bare", SECONDS / 2)
        print(
            f"GrowthBook Python SDK, local: {local:,.0f} evaluations/s; /api/v1/evaluate: {remote:,.0f} "
            f"flag evaluations/s ({remote / n_flags:,.0f} requests/s of {n_flags} flags); payload "
            f"{raw_bytes:,} bytes ({gzip_bytes:,} gzip), {payload_ms:.2f} ms a request (bare view "
            f"{bare_ms:.2f} ms)",
            flush=True,
        )
        return [
            Result(
                entry="growthbook",
                measured=f"Python SDK evaluating our payload locally, {n_flags} flags, 1 thread",
                value=local,
                baseline=f"POST /api/v1/evaluate ({n_flags} flags a request), gunicorn 1 worker, 8 threads",
                baseline_value=remote,
                unit="evals/s",
            ),
            Result(
                entry="growthbook",
                measured=f"GET /api/features payload, {n_flags} flags, gzip",
                value=gzip_bytes,
                baseline="the same payload uncompressed",
                baseline_value=raw_bytes,
                unit="bytes",
                higher_is_better=False,
            ),
            Result(
                entry="growthbook",
                measured=f"GET /api/features, {n_flags} flags, warm, 1 client",
                value=payload_ms,
                baseline="bare Django JSON view, same gunicorn",
                baseline_value=bare_ms,
                unit="ms",
                higher_is_better=False,
            ),
        ]
    finally:
        if server is not None:
            server.terminate()
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(workdir, ignore_errors=True)


if __name__ == "__main__":
    if sys.argv[1:] == ["setup"]:
        setup_database()
    else:
        print("\n" + Result.table(run()))
