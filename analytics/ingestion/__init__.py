"""Ingestion: the SDK-facing write path of events and exposures into ClickHouse.

* :mod:`.services`: the writes (group commit, the spool when ClickHouse is down, the spool's drain);
* :mod:`.validation`: the fast per-item validation of request bodies (``.serializers`` describes the
  same shapes for the OpenAPI document);
* :mod:`.views` and :mod:`.urls`: ``POST /api/v1/events`` and ``POST /api/v1/exposures``.
"""
