import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import asdict, dataclass


@dataclass
class Result:
    """One measurement against its baseline from the same run."""

    entry: str
    measured: str
    value: float
    baseline: str
    baseline_value: float
    unit: str
    higher_is_better: bool = True
    goal: str = ""

    @property
    def ratio(self) -> float:
        return self.value / self.baseline_value if self.baseline_value else float("nan")

    def as_dict(self) -> dict:
        return {**asdict(self), "ratio": self.ratio}

    @staticmethod
    def table(results: list["Result"]) -> str:
        header = "| entry | measured | value | baseline | baseline value | ratio | goal |"
        lines = [header, "|---|---|---|---|---|---|---|"]
        for r in results:
            lines.append(
                f"| {r.entry} | {r.measured} | {r.value:,.2f} {r.unit} | {r.baseline} | "
                f"{r.baseline_value:,.2f} {r.unit} | {r.ratio:.3f} | {r.goal} |"
            )
        return "\n".join(lines)


@contextlib.contextmanager
def embedded_clickhouse(prefix: str, timeout: int) -> Iterator[None]:
    """A migrated embedded ClickHouse (chDB) in a temporary directory for one benchmark, with a longer
    query timeout; the settings, the client and the engine are put back after (Django is set up)."""
    from django.conf import settings

    from analytics import clickhouse as ch
    from analytics.clickhouse import migrations
    from analytics.clickhouse.embedded import close_engine

    saved = settings.CLICKHOUSE_DATA_DIR, settings.CLICKHOUSE_URL, settings.CLICKHOUSE_QUERY_TIMEOUT
    with tempfile.TemporaryDirectory(prefix=prefix) as data_dir:
        settings.CLICKHOUSE_DATA_DIR, settings.CLICKHOUSE_URL, settings.CLICKHOUSE_QUERY_TIMEOUT = (
            data_dir,
            "",
            timeout,
        )
        ch.reset()
        try:
            migrations.migrate()
            yield
        finally:
            ch.reset()
            close_engine()
            settings.CLICKHOUSE_DATA_DIR, settings.CLICKHOUSE_URL, settings.CLICKHOUSE_QUERY_TIMEOUT = saved
