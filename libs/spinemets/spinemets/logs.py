"""Structured JSON logs with job and series identifiers; one function configures them.

Modules log with ``logging.getLogger(__name__)``. :func:`context` binds identifiers (job id,
series UID) to everything logged inside it. Patient names and IDs must never be passed to a
logger; use :func:`spinemets.phi.patient_key`.
"""

from __future__ import annotations

import contextlib
import contextvars
import io
import json
import logging
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

#: Libraries whose INFO records are chatter (pynetdicom's PDUs, highdicom's "copy attributes of
#: module", fontTools' font subsetting for every PDF report): kept at WARNING.
NOISY_LIBRARIES = ("pynetdicom", "grpc", "highdicom", "fontTools")

_CONTEXT: contextvars.ContextVar[dict[str, str]] = contextvars.ContextVar("log_context", default={})  # noqa: B039


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, service, logger, message, context, extras."""

    def __init__(self, service: str) -> None:
        super().__init__()
        self.service = service

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname,
            "service": self.service,
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_CONTEXT.get())
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):
            entry.update(fields)
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure(service: str, level: str = "INFO", file: Path | None = None) -> None:
    """Send the root logger's records as JSON lines to stderr (or ``file``)."""
    handler: logging.Handler = (
        logging.FileHandler(file) if file is not None else logging.StreamHandler(sys.stderr)
    )
    handler.setFormatter(JsonFormatter(service))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    for noisy in NOISY_LIBRARIES:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, root.level))


@contextlib.contextmanager
def context(**identifiers: str) -> Iterator[None]:
    """Attach identifiers (e.g. ``job="12"``, ``series="1.2.3"``) to every record logged inside."""
    token = _CONTEXT.set({**_CONTEXT.get(), **identifiers})
    try:
        yield
    finally:
        _CONTEXT.reset(token)


def fields(**values: Any) -> dict[str, Any]:
    """Structured extras for one record: ``log.info("done", extra=fields(ms=12))``."""
    return {"fields": values}


@contextlib.contextmanager
def capture(service: str = "test", level: int = logging.INFO) -> Iterator[io.StringIO]:
    """Collect the JSON lines of everything logged inside (formatted as it is logged, in the
    logging thread, so that each line has that thread's identifiers); for tests."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.setFormatter(JsonFormatter(service))
    root, pynetdicom = logging.getLogger(), logging.getLogger("pynetdicom")
    levels = root.level, pynetdicom.level
    root.addHandler(handler)
    root.setLevel(level)
    pynetdicom.setLevel(max(logging.WARNING, level))  # as configure() sets it
    try:
        yield stream
    finally:
        root.removeHandler(handler)
        root.setLevel(levels[0])
        pynetdicom.setLevel(levels[1])


def records(stream: io.StringIO) -> list[dict[str, Any]]:
    """The records captured by :func:`capture`."""
    return [json.loads(line) for line in stream.getvalue().splitlines() if line.strip()]
