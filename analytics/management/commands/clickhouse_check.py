from django.conf import settings
from django.core.management.base import BaseCommand

from analytics.clickhouse import database_name, get_backend, migrations, ping, query
from analytics.clickhouse.cli import clickhouse_command_errors


class Command(BaseCommand):
    help = "Connect to ClickHouse and print its version, databases, tables and row counts."

    def handle(self, *args, **options):
        with clickhouse_command_errors():
            self._check()

    def _check(self) -> None:
        version = ping()
        self.stdout.write(f"ClickHouse {version} ({get_backend().describe()})")
        databases = [
            row["name"]
            for row in query(
                "SELECT name FROM system.databases "
                "WHERE name NOT IN ('system', 'information_schema', 'INFORMATION_SCHEMA') ORDER BY name",
                use_database=False,
            )
        ]
        self.stdout.write(f"Databases: {', '.join(databases)}")
        if settings.CLICKHOUSE_CLUSTER:
            shards, replicas = migrations.cluster_shape(settings.CLICKHOUSE_CLUSTER)
            if shards:
                self.stdout.write(
                    f"Cluster {settings.CLICKHOUSE_CLUSTER}: shards {shards}, replicas {replicas}"
                )
            else:
                self.stdout.write(
                    self.style.WARNING(
                        f"Cluster {settings.CLICKHOUSE_CLUSTER} (CLICKHOUSE_CLUSTER) is not in this server's "
                        "remote_servers."
                    )
                )
        database = database_name()
        if database not in databases:
            self.stdout.write(
                self.style.WARNING(
                    f"Database {database} does not exist yet; run `manage.py clickhouse_migrate`."
                )
            )
            return
        tables = query(
            "SELECT name, engine, total_rows FROM system.tables "
            "WHERE database = {database:String} ORDER BY name",
            {"database": database},
            use_database=False,
        )
        self.stdout.write(f"Tables in {database}:")
        width = max((len(table["name"]) for table in tables), default=0)
        for table in tables:
            rows = "" if table["total_rows"] is None else f"{table['total_rows']:>12,} rows"
            self.stdout.write(f"  {table['name']:<{width}}  {table['engine']:<20} {rows}".rstrip())
        self._migrations(database, {table["name"] for table in tables})

    def _migrations(self, database: str, tables: set[str]) -> None:
        known = migrations.discover()
        applied = set()
        if "schema_migrations" in tables:
            applied = {
                row["version"]
                for row in query(
                    "SELECT DISTINCT version FROM {db:Identifier}.schema_migrations",
                    {"db": database},
                    use_database=False,
                )
            }
        pending = [m for m in known if m.version not in applied]
        message = f"Migrations: {len(known) - len(pending)} applied, {len(pending)} pending"
        if pending:
            self.stdout.write(self.style.WARNING(f"{message}; run `manage.py clickhouse_migrate`."))
        else:
            self.stdout.write(message)
