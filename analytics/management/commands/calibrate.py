from django.core.management.base import BaseCommand, CommandError

from analytics import clickhouse
from analytics.calibration import (
    DEFAULT_DAYS,
    DEFAULT_DURATION_DAYS,
    DEFAULT_SEEDS,
    MAX_DAYS,
    MAX_SEEDS,
    calibration_verdict,
    metric_calibration_run,
)
from analytics.clickhouse.cli import clickhouse_command_errors
from experiments.models import Experiment
from metrics.models import Metric

# The analyses' default: the alpha a new experiment gets.
DEFAULT_ALPHA = Experiment._meta.get_field("alpha").default


class Command(BaseCommand):
    help = (
        "Calibrate metrics on your own data: split the units seen in the last days at random, many times "
        "(placebo A/A experiments), and report each metric's false-positive rate and minimum detectable "
        "effect. Exit status 2 when a metric's false-positive rate is far from alpha."
    )

    def add_arguments(self, parser):
        parser.add_argument("keys", nargs="*", metavar="METRIC", help="metric keys (default: every metric)")
        parser.add_argument(
            "--days", type=int, default=DEFAULT_DAYS, help=f"look back this many days (1–{MAX_DAYS})"
        )
        parser.add_argument(
            "--seeds", type=int, default=DEFAULT_SEEDS, help=f"placebo splits per metric (10–{MAX_SEEDS})"
        )
        parser.add_argument("--alpha", type=float, default=DEFAULT_ALPHA, help="the tests' alpha")
        parser.add_argument(
            "--duration",
            type=int,
            default=DEFAULT_DURATION_DAYS,
            help="experiment length for the MDE, in days",
        )
        parser.add_argument(
            "--environment",
            action="append",
            dest="environments",
            metavar="KEY",
            help="analysed environment (repeatable; default: production)",
        )

    def handle(self, *args, keys: list[str], days: int, seeds: int, alpha: float, duration: int,
               environments: list[str] | None, **options):  # fmt: skip
        metrics = Metric.objects.select_related("denominator").order_by("key")
        if keys:
            metrics = metrics.filter(key__in=keys)
            missing = sorted(set(keys) - {m.key for m in metrics})
            if missing:
                raise CommandError(f"No metric with key {', '.join(missing)}.")
        metrics = list(metrics)
        if not metrics:
            self.stdout.write("No metrics.")
            return
        flagged = 0
        with clickhouse_command_errors():
            clickhouse.ping()
            for metric in metrics:
                try:
                    calibration = metric_calibration_run(
                        metric=metric, ran_by="command", days=days, seeds=seeds, alpha=alpha,
                        duration_days=duration, environments=environments or ["production"],
                    )  # fmt: skip
                except ValueError as exc:  # an impossible option: the same for every metric
                    raise CommandError(str(exc)) from None
                report = calibration.report
                line = f"{metric.key}: {calibration_verdict(report)}"
                if report["flagged"]:
                    flagged += 1
                    self.stdout.write(self.style.WARNING(line))
                elif report["error"]:
                    self.stdout.write(self.style.NOTICE(line))
                else:
                    self.stdout.write(self.style.SUCCESS(line))
        if flagged:
            raise CommandError(
                f"{flagged} of {len(metrics)} metric(s) have a false-positive rate far from alpha.",
                returncode=2,
            )
