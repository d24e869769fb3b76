"""The file's text: YAML (readable, the default) or JSON (the same document)."""

from __future__ import annotations

import datetime as dt
import json
from typing import Any

import yaml

FORMATS = ("yaml", "json")


class DocumentUnreadable(ValueError):
    """A file that is not YAML or JSON, with the parser's reason."""


def document_dump(document: dict[str, Any], *, format: str = "yaml") -> str:
    if format == "json":
        return json.dumps(document, indent=2, ensure_ascii=False) + "\n"
    return yaml.safe_dump(document, sort_keys=False, allow_unicode=True, default_flow_style=False, width=100)


def _plain(value: Any) -> Any:
    """YAML reads an unquoted 2026-01-31T10:00:00Z as a datetime: back to the ISO text the API uses."""
    if isinstance(value, dt.datetime):
        return value.isoformat().replace("+00:00", "Z")
    if isinstance(value, dt.date):
        return value.isoformat()
    if isinstance(value, dict):
        return {str(key): _plain(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_plain(item) for item in value]
    return value


def document_load(text: str | bytes) -> Any:
    """The document in ``text`` (JSON is YAML too, so one parser reads both)."""
    if isinstance(text, bytes):
        try:
            text = text.decode("utf-8")
        except UnicodeDecodeError as exc:
            raise DocumentUnreadable(f"the file is not UTF-8 text ({exc})") from None
    try:
        return _plain(yaml.safe_load(text))
    except yaml.YAMLError as exc:
        raise DocumentUnreadable(f"the file is not valid YAML or JSON: {exc}") from None
