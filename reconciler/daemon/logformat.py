"""`--log-format json`: one JSON object per log record, on one line.

Invariants: every line is one JSON object with ``ts`` (UTC, ISO 8601), ``level``, ``logger`` and
``message``, plus the ``key=value`` pairs of the message as fields (the project's log lines are
structured that way; a value quoted as Python's %r is unquoted) — a pair never overwrites those
four, nor ``alert`` (an alert's whole webhook body, `reconciler.daemon.alerts.log_alert`) or
``exc`` (the traceback); URLs are redacted in everything printed, as `RedactingFilter` does for
the text format, so the formatter is safe even on a handler that lacks the filter.
"""

from __future__ import annotations

import ast
import json
import logging
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any

from reconciler.redaction import neutralise, redact_urls

_PAIR = re.compile(r"""(?:(?<=\s)|^)([A-Za-z_][\w.\-]*)=('(?:[^'\\]|\\.)*'|"(?:[^"\\]|\\.)*"|\S*)""")
_RESERVED = frozenset({"ts", "level", "logger", "message", "alert", "exc", "stack"})


def message_fields(message: str) -> dict[str, str]:
    """The ``key=value`` pairs of a log message, in order; the first of a repeated key wins."""
    fields: dict[str, str] = {}
    for match in _PAIR.finditer(message):
        key, raw = match.group(1), match.group(2)
        fields.setdefault(key, _unquote(raw))
    return fields


def _unquote(raw: str) -> str:
    if len(raw) >= 2 and raw[0] == raw[-1] and raw[0] in "'\"":
        try:
            value = ast.literal_eval(raw)
        except (ValueError, SyntaxError):
            return raw
        return value if isinstance(value, str) else raw
    return raw


def _redacted(value: Any) -> Any:
    if isinstance(value, str):
        return redact_urls(value)
    if isinstance(value, Mapping):
        return {str(k): _redacted(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_redacted(v) for v in value]
    return value


class JsonLogFormatter(logging.Formatter):
    """One JSON object per record: ts, level, logger, the message's key=value fields, message."""

    def format(self, record: logging.LogRecord) -> str:
        message = redact_urls(record.getMessage())
        doc: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
        }
        for key, value in message_fields(message).items():
            if key not in _RESERVED:
                doc.setdefault(key, value)
        doc["message"] = message
        alert = getattr(record, "alert", None)
        if isinstance(alert, Mapping):
            doc["alert"] = _redacted(alert)
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exc"] = redact_urls(record.exc_text)
        if record.stack_info:
            doc["stack"] = redact_urls(record.stack_info)
        return json.dumps(doc, ensure_ascii=False, default=str, separators=(",", ":"))


_NONE_PAIR = re.compile(r"(?:^|(?<=\s))[A-Za-z_][\w.\-]*=None(?=\s|$)\s?")


def tidy_message(message: str) -> str:
    """A log message as it is printed: without its ``key=None`` pairs (a scan has no read path,
    a clean firing no reason: saying so adds nothing) and on one line, control characters from
    outside shown as escapes (a node's message never drives the terminal a log is read on)."""
    return neutralise(_NONE_PAIR.sub("", message)).rstrip()


class TidyFilter(logging.Filter):
    """A handler filter applying `tidy_message` to each record's message (tracebacks keep their
    lines)."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        tidy = tidy_message(message)
        if tidy != message:
            record.msg, record.args = tidy, None
        return True
