"""LOG_FORMAT=json: one JSON object per line, for a log shipper to index without parsing text.

Keys: timestamp (UTC, ISO 8601), level, logger, message, request_id and project (inside a request),
then the fields the line was logged with (`extra=`, e.g. the request line's method, path, status,
duration_ms, api_key) and `exception` for a traceback. Only plain values (text, numbers, booleans,
None) are taken from `extra`: an object such as the HttpRequest that Django attaches to its
django.request lines would be written as its repr, which holds the query string (it may carry a
secret).
"""

import json
import logging
from datetime import UTC, datetime

from . import log_context

# Attributes every LogRecord has; anything else on a record came from `extra=`.
_RECORD_ATTRIBUTES = frozenset(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime"}
_PLAIN = (str, int, float, bool, type(None))


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, object] = {
            "timestamp": datetime.fromtimestamp(record.created, UTC).isoformat(timespec="milliseconds"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        context = log_context.current()
        if context is not None:
            line["request_id"] = context.request_id
            if context.project is not None:
                line["project"] = context.project
        for key, value in vars(record).items():
            if key not in _RECORD_ATTRIBUTES and not key.startswith("_") and isinstance(value, _PLAIN):
                line[key] = value
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            line["exception"] = record.exc_text
        if record.stack_info:
            line["stack"] = self.formatStack(record.stack_info)
        return json.dumps(line, ensure_ascii=False, default=str)
