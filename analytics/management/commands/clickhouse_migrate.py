from django.core.management.base import BaseCommand

from analytics.clickhouse import database_name, migrations
from analytics.clickhouse.cli import clickhouse_command_errors


class Command(BaseCommand):
    help = (
        "Create or upgrade the ClickHouse schema: apply the numbered SQL files in "
        "analytics/clickhouse/migrations_sql that are not applied yet. Safe to run again."
    )

    def add_arguments(self, parser):
        parser.add_argument(
            "--list", action="store_true", help="Show every migration as applied [X] or pending [ ]."
        )

    def handle(self, *args, list: bool = False, **options):  # noqa: A002 - the option's name
        with clickhouse_command_errors():
            if list:
                self._list()
            else:
                self._migrate()

    def _list(self) -> None:
        self.stdout.write(f"ClickHouse migrations in database {database_name()}:")
        for state in migrations.status():
            migration = state.migration
            label = f"{migration.version:04d}_{migration.name}"
            if state.applied:
                note = f"applied {state.applied_at:%Y-%m-%d %H:%M:%S} UTC"
                if state.changed:
                    note += ", file changed since"
                self.stdout.write(f" [X] {label} ({note})")
            else:
                self.stdout.write(f" [ ] {label} (pending)")

    def _migrate(self) -> None:
        applied = migrations.migrate()
        database = database_name()
        if not applied:
            self.stdout.write(f"ClickHouse schema in database {database} is up to date; nothing to apply.")
            return
        for migration in applied:
            self.stdout.write(self.style.SUCCESS(f"Applied {migration.version:04d}_{migration.name}"))
        self.stdout.write(f"ClickHouse schema in database {database} is up to date.")
