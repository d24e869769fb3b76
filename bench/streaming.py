"""Idle GrowthBook streams do not slow evaluation: ``/api/v1/evaluate`` with and without 1,000 streams.

1,000 idle ``GET /sub/{key}`` streams (server-sent events, each holding its first ``features``
event) are held open while ``POST /api/v1/evaluate`` (50 flags, ``bench.evaluate``'s workspace) is
loaded, and its throughput is compared with the throughput without them, in the same run:

(a) production shape: evaluate on gunicorn (1 worker, 4 threads), the streams on a separate stream
    process (uvicorn on ``config.asgi``, as docker-compose's ``stream`` service). Goal: ratio >= 0.9.
(b) embedded one-process mode (``make serve``): evaluate and the streams on the same uvicorn process
    (``config.asgi``: Django in 8 threads, streams on the event loop). Goal: ratio >= 0.9.
(c) for the record: evaluate on uvicorn + a2wsgi (``make serve``) against gunicorn's threads, without
    streams.

Load: ``wrk -t1 -c8`` when installed, else 8 Python threads; ``BENCH_HTTP_SECONDS`` (default 10, at
least 2 s a round) on each side, in rounds alternating without and with the streams (opened anew for
each round), the best round of each counted. wrk cuts its connections when a round ends, so the
server may log a few "Bad Request" for bodies cut short: those clients are gone.
"""

from __future__ import annotations

import asyncio
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
    _free_port,
    _load_python,
    _load_wrk,
    _post,
    _wait_for_port,
    server_environment,
)

ROOT = Path(__file__).resolve().parent.parent
STREAMS = int(os.environ.get("BENCH_STREAMS", "1000"))
HTTP_SECONDS = float(os.environ.get("BENCH_HTTP_SECONDS", "10"))
ROUNDS = 6  # per side: without, with, with, without, ... (the machine's other load hits both alike)


class IdleStreams:
    """``count`` streams opened from a thread of this process, each read up to its first event, then idle."""

    def __init__(self, port: int, key: str, count: int) -> None:
        self.port, self.key, self.count = port, key, count
        self.opened = 0
        self.failures: list[str] = []
        self._loop = asyncio.new_event_loop()
        self._ready = threading.Event()
        self._stop: asyncio.Event | None = None
        self._thread = threading.Thread(
            target=self._loop.run_until_complete, args=(self._main(),), daemon=True
        )

    async def _one(self, writers: list) -> None:
        try:
            reader, writer = await asyncio.open_connection("127.0.0.1", self.port)
            request = f"GET /sub/{self.key} HTTP/1.1\r\nHost: 127.0.0.1\r\nAccept: text/event-stream\r\n\r\n"
            writer.write(request.encode())
            await writer.drain()
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), 60)
            if not head.startswith(b"HTTP/1.1 200"):
                raise RuntimeError(head.split(b"\r\n", 1)[0].decode())
            await asyncio.wait_for(reader.readuntil(b"event: features"), 60)
            writers.append((reader, writer))
            self.opened += 1
        except (OSError, RuntimeError, TimeoutError, asyncio.IncompleteReadError) as exc:
            self.failures.append(repr(exc))

    async def _main(self) -> None:
        self._stop = asyncio.Event()
        writers: list = []
        batch = 100  # connect in batches, as clients arriving over a moment would
        for start in range(0, self.count, batch):
            await asyncio.gather(*(self._one(writers) for _ in range(min(batch, self.count - start))))
        self._ready.set()

        async def drain(reader):  # read keep-alives so the server's writes never back up
            while await reader.read(65536):
                pass

        readers = [asyncio.ensure_future(drain(reader)) for reader, _ in writers]
        await self._stop.wait()
        for task in readers:
            task.cancel()
        for _, writer in writers:
            writer.close()
        await asyncio.sleep(0.5)

    def __enter__(self) -> IdleStreams:
        self._thread.start()
        if not self._ready.wait(300):
            raise RuntimeError("the streams did not open in time")
        if self.opened != self.count:
            raise RuntimeError(
                f"{self.opened} of {self.count} streams opened; first failures: {self.failures[:3]}"
            )
        return self

    def __exit__(self, *exc) -> None:
        self._loop.call_soon_threadsafe(self._stop.set)
        self._thread.join(30)


def _start(command: list[str], port: int, env: dict[str, str]) -> subprocess.Popen:
    process = subprocess.Popen(command, cwd=ROOT, env=env)
    _wait_for_port(port, process, timeout=60)
    return process


def _stop(process: subprocess.Popen | None) -> None:
    if process is None:
        return
    process.terminate()
    try:
        process.wait(timeout=15)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def _gunicorn(port: int) -> list[str]:
    return [
        sys.executable, "-m", "gunicorn", "config.wsgi:application", "--bind", f"127.0.0.1:{port}",
        "--workers", "1", "--threads", "4", "--log-level", "warning",
    ]  # fmt: skip


def _uvicorn(port: int) -> list[str]:
    return [
        sys.executable, "-m", "uvicorn", "config.asgi:application", "--host", "127.0.0.1", "--port", str(port),
        "--log-level", "warning", "--no-access-log", "--timeout-graceful-shutdown", "2",
    ]  # fmt: skip


def _rates(evaluate_port: int, stream_port: int, key: str, workdir: Path) -> tuple[float, float, str]:
    """Best evaluate throughput without and with the idle streams, rounds alternating."""
    body = json.dumps({"unit_id": "user-42", "attributes": ATTRIBUTES}).encode()
    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {key}"}
    status, answer = _post(evaluate_port, "/api/v1/evaluate", body, headers)
    if status != 200:
        raise RuntimeError(f"/api/v1/evaluate answered {status}: {answer[:300]!r}")
    use_wrk = shutil.which("wrk") is not None
    client = "wrk -t1 -c8" if use_wrk else "python http.client, 8 threads"
    seconds = max(HTTP_SECONDS / ROUNDS, 2.0)

    def measure() -> float:
        if use_wrk:
            return _load_wrk(evaluate_port, [("/api/v1/evaluate", body)], headers, seconds, workdir)
        return _load_python(evaluate_port, [("/api/v1/evaluate", body)], headers, seconds)

    without: list[float] = []
    with_streams: list[float] = []
    for round_ in range(ROUNDS):
        if round_ % 2 == 0:
            without.append(measure())
            with IdleStreams(stream_port, key, STREAMS):
                time.sleep(1)  # let the connection burst settle
                with_streams.append(measure())
        else:
            with IdleStreams(stream_port, key, STREAMS):
                time.sleep(1)
                with_streams.append(measure())
            without.append(measure())
    return max(without), max(with_streams), client


def run() -> list[Result]:
    workdir = Path(tempfile.mkdtemp(prefix="bench-streaming-"))
    (workdir / "static").mkdir()
    env = {
        **server_environment(workdir),
        # Two processes share the workspace in (a): neither runs the periodic schedules.
        "EMBEDDED_SCHEDULER": "0",
        "SDK_STREAM_MAX_PER_KEY": str(max(STREAMS, 5000)),
    }
    env.pop("REDIS_URL", None)  # the one-process mode in (b) has no Redis; (a) needs none for idle streams
    processes: list[subprocess.Popen] = []
    try:
        setup = subprocess.run(
            [sys.executable, "-m", "bench.evaluate", "setup"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip
        key = setup.stdout.strip().splitlines()[-1]
        # evaluate records exposures of the experiment rules: ClickHouse needs its tables.
        subprocess.run(
            [sys.executable, "manage.py", "clickhouse_migrate"],
            cwd=ROOT, env=env, capture_output=True, text=True, timeout=600, check=True,
        )  # fmt: skip

        # (a) gunicorn for evaluate, a separate uvicorn stream process
        web_port, stream_port = _free_port(), _free_port()
        processes.append(_start(_gunicorn(web_port), web_port, env))
        processes.append(_start(_uvicorn(stream_port), stream_port, env))
        separate_without, separate_with, client = _rates(web_port, stream_port, key, workdir)
        for process in processes:
            _stop(process)
        processes.clear()
        print(
            f"evaluate on gunicorn (1 worker, 4 threads): {separate_without:,.0f} req/s; with {STREAMS} idle "
            f"streams on a stream process: {separate_with:,.0f} req/s ({separate_with / separate_without:.3f})",
            flush=True,
        )

        # (b) one uvicorn process for both (make serve)
        port = _free_port()
        processes.append(_start(_uvicorn(port), port, env))
        one_without, one_with, _ = _rates(port, port, key, workdir)
        print(
            f"evaluate on uvicorn + a2wsgi (8 threads): {one_without:,.0f} req/s; with {STREAMS} idle streams "
            f"in the same process: {one_with:,.0f} req/s ({one_with / one_without:.3f})",
            flush=True,
        )
    finally:
        for process in processes:
            _stop(process)
        shutil.rmtree(workdir, ignore_errors=True)
    return [
        Result(
            entry="streaming",
            measured=f"evaluate with {STREAMS} idle streams on a stream process ({client})",
            value=separate_with,
            baseline="evaluate without streams, same gunicorn (1 worker, 4 threads)",
            baseline_value=separate_without,
            unit="req/s",
            goal="ratio >= 0.90",
        ),
        Result(
            entry="streaming",
            measured=f"evaluate with {STREAMS} idle streams in the same uvicorn process (make serve)",
            value=one_with,
            baseline="evaluate without streams, same uvicorn process",
            baseline_value=one_without,
            unit="req/s",
            goal="ratio >= 0.90",
        ),
        Result(
            entry="streaming",
            measured="evaluate on uvicorn + a2wsgi, 8 threads (make serve), no streams",
            value=one_without,
            baseline="evaluate on gunicorn, 1 worker x 4 threads",
            baseline_value=separate_without,
            unit="req/s",
            goal="for the record",
        ),
    ]


if __name__ == "__main__":
    print("\n" + Result.table(run()))
