"""Reads of the analytics app: ClickHouse health and the spool's depth (results: ``analytics.results.selectors``)."""

from analytics import clickhouse
from analytics.ingestion.services import spool_depth


def clickhouse_health() -> dict:
    """ClickHouse's version, or why it cannot be reached, and the spool's depth either way.

    Rows acknowledged while ClickHouse was down wait in the spool (PostgreSQL), so its depth is the
    number an operator wants to see next to ClickHouse's status.
    """
    depth = spool_depth()
    result = {
        "spool_rows": depth.rows,
        "spool_batches": depth.batches,
        "spool_oldest": depth.oldest.isoformat() if depth.oldest else None,
    }
    try:
        result["version"] = clickhouse.ping()
    except clickhouse.ClickHouseError as exc:
        return {"status": "error", "error": str(exc)[:300], **result}
    return {"status": "ok", **result}
