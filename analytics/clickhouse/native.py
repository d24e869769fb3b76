"""ClickHouse's ``Native`` format, read and written with clickhouse-connect's own codecs.

The embedded backend (chDB) speaks bytes, not Python values. Encoding rows to ``Native`` and decoding
``Native`` results with the same column codecs clickhouse-connect uses over HTTP means both backends
turn the same Python values into the same ClickHouse values and back (a ``UUID``, a UTC-aware
``datetime``, a ``dict`` for a ``Map``), and no value is ever formatted into SQL text. The codecs are
C-accelerated, which is what makes inserts into chDB fast (see ``bench/clickhouse_insert.py``).

These are clickhouse-connect's driver internals (``InsertContext``, ``NativeTransform``); they have been
stable across its 0.x releases, and the test suite runs every query on both backends to catch a
change.
"""

from collections.abc import Iterator, Sequence
from typing import Any

from clickhouse_connect.datatypes.registry import get_from_name
from clickhouse_connect.driver.common import write_leb128
from clickhouse_connect.driver.ctypes import RespBuffCls
from clickhouse_connect.driver.insert import InsertContext
from clickhouse_connect.driver.query import QueryContext
from clickhouse_connect.driver.transform import NativeTransform


def encode(column_names: Sequence[str], type_names: Sequence[str], rows: Sequence[Sequence[Any]]) -> bytes:
    """``rows`` (tuples in ``column_names`` order) as ``Native`` blocks for ``INSERT ... FORMAT Native``."""
    column_types = [get_from_name(name) for name in type_names]
    context = InsertContext("", list(column_names), column_types, data=rows)
    output = bytearray()
    # The same block layout clickhouse-connect sends over HTTP, without its ``INSERT ...`` prefix.
    for block in context.next_block():
        write_leb128(block.column_count, output)
        write_leb128(block.row_count, output)
        for name, column_type, data in zip(
            block.column_names, block.column_types, block.column_data, strict=True
        ):
            for text in (name, column_type.insert_name):
                encoded = text.encode()
                write_leb128(len(encoded), output)
                output += encoded
            context.start_column(name)
            column_type.write_column(data, output, context)
    return bytes(output)


class _BytesSource:
    """The minimal byte source clickhouse-connect's response buffer reads from."""

    last_message = None

    def __init__(self, data: bytes) -> None:
        self.gen: Iterator[bytes] = iter([data] if data else [])

    def close(self) -> None:
        pass


def decode(data: bytes) -> list[dict[str, Any]]:
    """``Native`` result bytes as rows keyed by column name (datetimes UTC-aware, like the HTTP backend)."""
    if not data:
        return []
    context = QueryContext(tz_mode="aware")
    result = NativeTransform.parse_response(RespBuffCls(_BytesSource(data)), context)
    return list(result.named_results())
