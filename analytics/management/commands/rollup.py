import logging
import time

from django.core.management.base import BaseCommand, CommandError

from analytics import clickhouse
from analytics.clickhouse import ClickHouseError, ClickHouseUnavailable
from analytics.clickhouse.cli import clickhouse_command_errors
from analytics.results.selectors import running_experiment_ids
from analytics.results.services import experiment_results_refresh
from experiments.models import Experiment

SCHEMA_MISSING_CODES = frozenset({60, 81})  # UNKNOWN_TABLE, UNKNOWN_DATABASE


class Command(BaseCommand):
    help = (
        "Roll events up and analyse now: recompute and store the results of the given experiments "
        "(all running experiments by default)."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "keys", nargs="*", metavar="KEY", help="experiment keys (default: every running one)"
        )
        parser.add_argument(
            "--full",
            action="store_true",
            help="recompute every unit from every event instead of only what arrived since the last "
            "refresh (which is what happens by itself after a definition change or lost state)",
        )

    def handle(self, *args, keys: list[str], full: bool = False, **options):
        if keys:
            found = dict(Experiment.objects.filter(key__in=keys).values_list("key", "pk"))
            missing = [key for key in keys if key not in found]
            if missing:
                raise CommandError(f"No experiment with key {', '.join(missing)}.")
            ids = [found[key] for key in keys]
        else:
            ids = running_experiment_ids()
            if not ids:
                self.stdout.write("No running experiments.")
                return
        keys_by_id = dict(Experiment.objects.filter(pk__in=ids).values_list("pk", "key"))
        # This command reports each failure itself; the service's warning would repeat it on stderr.
        service_logger = logging.getLogger("analytics.results.services")
        level = service_logger.level
        service_logger.setLevel(logging.ERROR)
        try:
            with clickhouse_command_errors():  # unreachable, locked or missing: one line, exit status 1
                # Open ClickHouse before touching any experiment: when it cannot be opened at all (the
                # embedded data owned by the server, a server that does not answer), the command is
                # refused and records nothing; the experiments' results pages keep what they had.
                clickhouse.ping()
                failed = self._refresh(ids, keys_by_id, full=full)
        finally:
            service_logger.setLevel(level)
        if failed:
            raise CommandError(f"{failed} of {len(ids)} experiment(s) could not be rolled up; see above.")

    def _refresh(self, ids: list[int], keys_by_id: dict[int, str], *, full: bool) -> int:
        failed = 0
        started = time.perf_counter()
        for position, experiment_id in enumerate(ids, start=1):
            self.stdout.write(f"[{position}/{len(ids)}] {keys_by_id[experiment_id]} ... ", ending="")
            self.stdout.flush()
            try:
                snapshot = experiment_results_refresh(
                    experiment_id=experiment_id, refreshed_by="command", full=full
                )
            except ClickHouseUnavailable:
                self.stdout.write(self.style.ERROR("ClickHouse unavailable"))
                raise
            except ClickHouseError as exc:
                if exc.code in SCHEMA_MISSING_CODES:
                    self.stdout.write(self.style.ERROR("no schema"))
                    raise ClickHouseError(
                        f"{' '.join(exc.message.split())} Run `manage.py clickhouse_migrate` first."
                    ) from None
                failed += 1  # recorded on the experiment; go on with the others
                self.stdout.write(self.style.ERROR(f"failed: {' '.join(str(exc).split())[:300]}"))
                continue
            except ValueError as exc:  # an experiment whose metrics cannot be rolled up (recorded too)
                failed += 1
                self.stdout.write(self.style.ERROR(f"failed: {exc}"))
                continue
            document = snapshot.document
            warnings = len(document.warnings)
            self.stdout.write(
                self.style.SUCCESS(f"{snapshot.duration_ms} ms")
                + f" ({(snapshot.rollup_state or {}).get('kind', 'full')})"
                + f"  {document.total_units or 0:,} units, {len(document.metrics)} metrics"
                + (self.style.WARNING(f", {warnings} warning(s)") if warnings else "")
            )
        if not failed:
            self.stdout.write(f"{len(ids)} experiment(s) rolled up in {time.perf_counter() - started:.1f} s.")
        return failed
