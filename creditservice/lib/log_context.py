"""What every log line of one request carries: its request id and the project it names.

The request middleware (creditservice/lib/request_log.py) opens the context and closes it when the
answer is closed (Django logs a 4xx after the middleware); the JSON formatter
(creditservice/lib/log_format.py) reads it, so a line logged anywhere during the request (a service,
Django, a library) is tied to the request's line by `request_id`.
"""

import uuid
from contextvars import ContextVar
from dataclasses import dataclass

# A caller's id is kept when it is short printable ASCII (a proxy's or a client's trace id); anything
# else (too long, a line break that would forge a log line, non-ASCII) is replaced by one of ours.
REQUEST_ID_MAX_LENGTH = 128
# Project slugs are at most 50 characters; a longer name from a URL is cut, never logged whole.
PROJECT_MAX_LENGTH = 64


@dataclass
class RequestLogContext:
    request_id: str
    project: str | None = None


_current: ContextVar[RequestLogContext | None] = ContextVar("request_log_context", default=None)


def request_id_from(header: str | None) -> str:
    """The caller's X-Request-ID when it is 1-128 printable ASCII characters, else a new uuid4 hex."""
    if header and len(header) <= REQUEST_ID_MAX_LENGTH and header.isascii() and header.isprintable():
        return header
    return uuid.uuid4().hex


def open_context(request_id: str) -> None:
    _current.set(RequestLogContext(request_id=request_id))


def close_context() -> None:
    _current.set(None)


def current() -> RequestLogContext | None:
    return _current.get()


def note_project(slug: str) -> None:
    """Name the project this request is about (wallets.access calls it on every project lookup)."""
    context = _current.get()
    if context is not None and context.project is None:
        context.project = slug[:PROJECT_MAX_LENGTH]
