"""The hub's log: plain text (as people read it) or one JSON object per line (for a log
collector), to standard error and, when ``log_file`` is set, to a file rotated by size.

:func:`configure` is called once by ``labhub serve`` and ``labhub demo`` before the server
starts. It sets up the root logger and makes uvicorn's own loggers (``uvicorn``,
``uvicorn.error``, ``uvicorn.access``) write through the same handlers (uvicorn is then
run with ``log_config=None``, so it installs none of its own), so every line of the hub
has one format. A JSON line carries ``time`` (ISO 8601, UTC), ``level``,
``logger`` and ``message``; ``exception`` when there was one; and any ``extra=`` fields a
call gave (``log.info("...", extra={"job": "backup"})``). docs/operations.md shows both.
"""

from __future__ import annotations

import json
import logging
import logging.handlers
import sys
from datetime import UTC, datetime
from typing import Any, TextIO

from labhub.settings import Settings

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
MB = 1024 * 1024
# Loggers uvicorn configures itself: they are made to use the hub's handlers instead.
UVICORN_LOGGERS = ("uvicorn", "uvicorn.error", "uvicorn.access")
# The attributes every LogRecord has: what is left on a record is an ``extra=`` field.
_RECORD_FIELDS = frozenset(logging.makeLogRecord({}).__dict__) | {"message", "asctime",
                                                                   "taskName"}
_HANDLER_MARK = "_labhub_handler"  # handlers configure() added (and removes next time)


class JsonFormatter(logging.Formatter):
    """One JSON object per record, on one line."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(
                timespec="milliseconds").replace("+00:00", "Z"),
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        elif record.exc_text:
            entry["exception"] = record.exc_text
        if record.stack_info:
            entry["stack"] = self.formatStack(record.stack_info)
        for key, value in record.__dict__.items():
            if key not in _RECORD_FIELDS and not key.startswith("_") and key not in entry:
                entry[key] = value
        return json.dumps(entry, ensure_ascii=False, default=str)


def formatter(settings: Settings) -> logging.Formatter:
    """The formatter ``settings.log_format`` asks for."""
    if settings.log_format == "json":
        return JsonFormatter()
    return logging.Formatter(TEXT_FORMAT)


def configure(settings: Settings, *, stream: TextIO | None = None) -> list[logging.Handler]:
    """Send the hub's log (and uvicorn's) to standard error (``stream``) and, when
    ``settings.log_file`` is set, to that file, rotated at ``log_file_max_mb`` MB with
    ``log_file_keep`` old files kept. Called again, it replaces what it set up before.
    Returns the handlers it installed. A log file that cannot be opened (its folder
    missing, no permission) is an OSError naming the path, before the hub starts."""
    level = settings.log_level.upper()
    shape = formatter(settings)
    handlers: list[logging.Handler] = [logging.StreamHandler(stream or sys.stderr)]
    if settings.log_file is not None:
        path = settings.log_file.expanduser()
        try:
            handlers.append(logging.handlers.RotatingFileHandler(
                path, maxBytes=settings.log_file_max_mb * MB,
                backupCount=settings.log_file_keep, encoding="utf-8"))
        except OSError as exc:
            raise OSError(exc.errno, f"the log file {str(path)!r} (setting log_file) "
                          f"cannot be opened: {exc.strerror}") from None
    for handler in handlers:
        handler.setFormatter(shape)
        setattr(handler, _HANDLER_MARK, True)
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, _HANDLER_MARK, False)]:
        root.removeHandler(old)
        old.close()
    for handler in handlers:
        root.addHandler(handler)
    root.setLevel(level)
    for name in UVICORN_LOGGERS:
        uvicorn_logger = logging.getLogger(name)
        uvicorn_logger.handlers.clear()
        uvicorn_logger.propagate = True  # to the root's handlers, in the hub's format
        # ... at the hub's level: a uvicorn configured before in this process (its own
        # log config sets levels, and dictConfig disables loggers) leaves none of that.
        uvicorn_logger.setLevel(logging.NOTSET)
        uvicorn_logger.disabled = False
    return handlers


__all__ = ["JsonFormatter", "configure", "formatter"]
