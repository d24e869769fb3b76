"""Clusters inside embedded ClickHouse (chDB): a server configuration whose shards are all itself.

chDB reads a server configuration given in its connection string (``CLICKHOUSE_EMBEDDED_CONFIG``). A
replica whose host is 127.0.0.1 and whose port is the configured ``tcp_port`` is the local server
(nothing listens on the port; chDB only compares the numbers), so a ``Distributed`` table over such a
cluster really routes inserts and runs selects per shard, inside the process:

- ``one_shard``: the analytics suites run through ``Distributed`` tables and must give the same
  answers as on a single server;
- ``two_shards``: both shards are this server, so every shard reads the same local tables and each
  count and sum comes out exactly twice the single-server answer, which shows the work ran per shard
  (ClickHouse's own ``test_cluster_two_shards_localhost`` technique).
"""

import os
import socket
from pathlib import Path

ONE_SHARD = "one_shard"
TWO_SHARDS = "two_shards"

_REPLICA = "<replica><host>127.0.0.1</host><port>{port}</port></replica>"


def unused_port() -> int:
    """A local TCP port nothing listens on now (chDB does not listen on it either)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def write_config(directory: Path, *, port: int | None = None) -> Path:
    """A chDB server configuration with the ``one_shard`` and ``two_shards`` clusters; its path."""
    port = port or unused_port()
    replica = _REPLICA.format(port=int(port))
    shard = f"<shard>{replica}</shard>"
    text = (
        "<clickhouse>\n"
        f"  <tcp_port>{int(port)}</tcp_port>\n"
        "  <macros><shard>01</shard><replica>local</replica></macros>\n"
        "  <remote_servers>\n"
        f"    <{ONE_SHARD}>{shard}</{ONE_SHARD}>\n"
        f"    <{TWO_SHARDS}>{shard}{shard}</{TWO_SHARDS}>\n"
        "  </remote_servers>\n"
        "</clickhouse>\n"
    )
    path = Path(directory) / "chdb-cluster.xml"
    path.write_text(text, encoding="utf-8")
    return path


def cluster_suite_env(config: Path) -> dict[str, str]:
    """The environment of a test process whose ClickHouse is the ``one_shard`` cluster in chDB.

    Not replicated (no Keeper runs here), SQLite and local memory (what it tests is ClickHouse, and
    the parent process may hold the PostgreSQL test database).
    """
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL", "CLICKHOUSE_URL")}
    env.update(
        CLICKHOUSE_CLUSTER=ONE_SHARD,
        CLICKHOUSE_CLUSTER_REPLICATED="false",
        CLICKHOUSE_EMBEDDED_CONFIG=str(config),
        CLICKHOUSE_INSERT_QUORUM="0",
    )
    return env
