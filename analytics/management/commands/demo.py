import os
import secrets
import time

from django.conf import settings
from django.core.management.base import BaseCommand, CommandError, CommandParser

from analytics.clickhouse import migrations
from analytics.clickhouse.cli import clickhouse_command_errors
from analytics.demo import (
    DEFAULT_DAYS,
    DEFAULT_SEED,
    DEFAULT_UNITS,
    demo_experiments_backdate,
    demo_results_refresh,
    demo_traffic_write,
    demo_workspace_create,
)

BAR_WIDTH = 30


class ProgressBar:
    """A one-line progress bar on a terminal; a line every quarter of the way elsewhere (logs, CI)."""

    def __init__(self, stream, label: str) -> None:
        self.stream = stream
        self.label = label
        self.started = time.perf_counter()
        self.interactive = getattr(stream, "isatty", lambda: False)()
        self.last_quarter = -1

    def __call__(self, done: int, total: int) -> None:
        share = done / total if total else 1.0
        elapsed = time.perf_counter() - self.started
        filled = round(share * BAR_WIDTH)
        line = (
            f"  {self.label} [{'#' * filled}{'.' * (BAR_WIDTH - filled)}] "
            f"{done:,}/{total:,} users  {elapsed:.1f} s"
        )
        if self.interactive:
            self.stream.write("\r" + line, ending="\n" if done >= total else "")
            self.stream.flush()
            return
        quarter = int(share * 4)
        if quarter != self.last_quarter:
            self.last_quarter = quarter
            self.stream.write(line)


class Command(BaseCommand):
    help = (
        "Create the demo workspace (idempotent): an admin user (unless one exists), metrics, flags (one "
        "rolled back by its safe rollout), four "
        "running experiments with about 100,000 users of simulated traffic over the last 14 days, and their "
        "results. Refuses to run with DJANGO_DEBUG off unless --allow-production is given."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--units",
            type=int,
            default=DEFAULT_UNITS,
            help=f"simulated users (default {DEFAULT_UNITS:,}); written only the first time",
        )
        parser.add_argument(
            "--days", type=int, default=DEFAULT_DAYS, help="days of traffic before now (default 14)"
        )
        parser.add_argument("--seed", type=int, default=DEFAULT_SEED, help="random seed of the simulation")
        parser.add_argument(
            "--no-traffic", action="store_true", help="only the configuration: no ClickHouse, no results"
        )
        parser.add_argument(
            "--allow-production",
            action="store_true",
            help="run even with DJANGO_DEBUG off (a production deployment): adds demo experiments, flags "
            "and simulated traffic, and an admin superuser when there is none (with DEMO_ADMIN_PASSWORD, "
            "or a random password printed once)",
        )

    def handle(
        self, *args, units: int, days: int, seed: int, no_traffic: bool, allow_production: bool, **options
    ) -> None:
        if not settings.DEBUG and not allow_production:
            raise CommandError(
                "DJANGO_DEBUG is off, so this looks like a production deployment: the demo would add "
                "simulated experiments, flags and traffic, and an admin superuser. Nothing was changed. "
                "Run it with --allow-production if that is really what you want."
            )
        if units < 100 or days < 1:
            raise CommandError("--units must be at least 100 and --days at least 1.")
        started = time.perf_counter()
        password = os.environ.get("DEMO_ADMIN_PASSWORD")
        if not password:
            # admin/admin is for a laptop; with debug off a new superuser gets a password nobody can guess.
            password = "admin" if settings.DEBUG else secrets.token_urlsafe(12)
        workspace = demo_workspace_create(admin_password=password)
        for item in workspace.created:
            self.stdout.write(f"  created {item}")
        if not workspace.created:
            self.stdout.write("  the demo workspace already exists; nothing to create")

        if not no_traffic:
            with clickhouse_command_errors():  # embedded engine owned by a server, or unreachable: one line
                migrations.migrate()
                self._traffic(units=units, days=days, seed=seed)

        if workspace.sdk_key:
            self.stdout.write(f"  SDK key for development (shown once): {workspace.sdk_key}")
        else:
            self.stdout.write("  make an SDK key with: python manage.py create_sdk_key development")
        self.stdout.write(
            "  the experiments' results count production traffic only (their analysed environments); "
            "what you send with a development key stays out of them"
        )
        self.stdout.write(f"  done in {time.perf_counter() - started:.1f} s")
        if workspace.admin_password is not None:
            login = f"{workspace.admin_username} / {workspace.admin_password}"
        else:
            login = f"{workspace.admin_username} (an existing user: its password was not changed)"
        self.stdout.write(self.style.SUCCESS(f"Log in at http://127.0.0.1:8000/admin/ as {login}"))

    def _traffic(self, *, units: int, days: int, seed: int) -> None:
        bar = ProgressBar(self.stdout, "simulating traffic")
        traffic = demo_traffic_write(units=units, days=days, seed=seed, progress=bar)
        if traffic.skipped:
            self.stdout.write("  simulated traffic already stored; not written again")
        else:
            self.stdout.write(
                f"  wrote {traffic.exposures:,} exposures and {traffic.events:,} events "
                f"of {traffic.units:,} users over {days} days"
            )
        for key, when in demo_experiments_backdate().items():
            self.stdout.write(f"  {key} started {when:%Y-%m-%d %H:%M} UTC (its first exposure)")

        def report(key: str, duration_ms: float) -> None:
            self.stdout.write(f"  results of {key} computed in {duration_ms / 1000:.1f} s")

        self.stdout.write("  computing results ...")
        demo_results_refresh(progress=report)
