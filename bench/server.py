"""A throw-away platform for benchmarks: its own data directory, migrated, served by gunicorn."""

import os
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


class BenchPlatform:
    """`with BenchPlatform() as platform:` a migrated workspace in a temporary directory.

    Production-like settings (debug off, so Django records no queries); embedded chDB, so one
    gunicorn worker owns it, as in the one-process default.
    """

    def __init__(
        self, *, extra_env: dict[str, str] | None = None, workers: int = 1, threads: int = 4
    ) -> None:
        self.tmp = tempfile.TemporaryDirectory(prefix="bench-")
        self.var = Path(self.tmp.name)
        self.env = {
            **{
                k: v
                for k, v in os.environ.items()
                if k not in ("DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL")
            },
            "PLATFORM_VAR_DIR": str(self.var),
            "DJANGO_DEBUG": "false",
            "DJANGO_SECRET_KEY": "bench-only-" + "x" * 40,
            "DJANGO_ALLOWED_HOSTS": "127.0.0.1,localhost",
            "DJANGO_SECURE_SSL_REDIRECT": "false",
            "LOG_LEVEL": "WARNING",
            "PYTHONPATH": str(ROOT),
            # Benchmarks measure; whatever the environment or .env sets, they are never throttled.
            "SDK_RATE_LIMIT_PER_MINUTE": "0",
        }
        self.env.update(extra_env or {})
        self.workers, self.threads = workers, threads
        self.port = free_port()
        self.process: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def manage(self, *args: str) -> str:
        result = subprocess.run(
            [sys.executable, "manage.py", *args],
            cwd=ROOT,
            env=self.env,
            capture_output=True,
            text=True,
            check=True,
        )
        return result.stdout

    def __enter__(self) -> "BenchPlatform":
        self.manage("migrate", "--noinput", "-v0")
        self.manage("collectstatic", "--noinput", "-v0")
        self.manage("clickhouse_migrate")
        return self

    def serve(self) -> None:
        gunicorn = str(Path(sys.executable).with_name("gunicorn"))
        self.process = subprocess.Popen(
            [
                gunicorn,
                "config.wsgi:application",
                "--bind",
                f"127.0.0.1:{self.port}",
                "--workers",
                str(self.workers),
                "--threads",
                str(self.threads),
                "--log-level",
                "warning",
            ],
            cwd=ROOT,
            env=self.env,
        )
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(self.url + "/api/health", timeout=2)
                return
            except OSError:
                time.sleep(0.3)
        raise RuntimeError("gunicorn did not come up")

    def stop(self) -> None:
        if self.process is not None:
            self.process.terminate()
            self.process.wait(timeout=30)
            self.process = None

    def __exit__(self, *exc) -> None:
        self.stop()
        self.tmp.cleanup()
