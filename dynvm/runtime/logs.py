"""One log format for dynvm, gunicorn and the access log: ISO 8601 times with zone.

`text` is one line per record, `json` one JSON object per line (for log
shippers). Every record carries the HTTP request id (dynvm.core.trace), so
`grep <id>` follows a request from the access log through the build.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from datetime import datetime
from typing import Any

from dynvm.core.trace import RequestIdFilter

FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s [%(request_id)s] %(message)s"
# The access line without gunicorn's own bracketed time: the formatter adds ours.
ACCESS_FORMAT = ('%(h)s "%(r)s" %(s)s %(b)s %(M)sms "%(a)s" '
                 'request_id=%({x-dynvm-request-id}o)s')


def iso_time(created: float) -> str:
    """Local time, ISO 8601 with milliseconds and the zone offset."""
    return datetime.fromtimestamp(created).astimezone().isoformat(timespec="milliseconds")


class IsoFormatter(logging.Formatter):
    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:
        return iso_time(record.created)


# gunicorn's access atoms, as fields of a JSON access line (name: atom, whether a number).
ACCESS_FIELDS = {"client": ("h", False), "method": ("m", False), "path": ("U", False),
                 "query": ("q", False), "protocol": ("H", False), "status": ("s", True),
                 "bytes": ("B", True), "duration_ms": ("M", True), "user_agent": ("a", False),
                 "referer": ("f", False)}


def access_fields(atoms: Mapping[str, Any]) -> dict[str, Any]:
    """The access line's parts (query and referer already masked by the access logger);
    an absent part is left out, a number is a number."""
    out: dict[str, Any] = {}
    for name, (atom, number) in ACCESS_FIELDS.items():
        value = atoms.get(atom)
        if value in (None, "-", ""):
            continue
        if number:
            try:
                value = int(value)
            except (TypeError, ValueError):
                continue
        out[name] = value
    return out


class JsonFormatter(logging.Formatter):
    """One JSON object per line; exceptions ride along as text. An access line also
    carries its parts as fields (`client`, `method`, `path`, `status`, `duration_ms`, ...)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": iso_time(record.created),
            "level": record.levelname,
            "logger": record.name,
            "pid": record.process,
            "request_id": getattr(record, "request_id", "-"),
            "message": record.getMessage(),
        }
        if record.name == "gunicorn.access" and isinstance(record.args, Mapping):
            out.update(access_fields(record.args))
        if record.exc_info:
            out["exception"] = self.formatException(record.exc_info)
        return json.dumps(out, default=str)


def formatter(fmt: str) -> logging.Formatter:
    if fmt not in FORMATS:
        raise ValueError(f"unknown log format {fmt!r}; expected one of {', '.join(FORMATS)}")
    return JsonFormatter() if fmt == "json" else IsoFormatter(TEXT_FORMAT)


def dict_config(fmt: str, level: str = "INFO") -> dict[str, Any]:
    """A logging.config dict for gunicorn's `logconfig_dict`: one stream, one format."""
    formatter(fmt)  # validate
    factory = "dynvm.runtime.logs.JsonFormatter" if fmt == "json" else "dynvm.runtime.logs.IsoFormatter"
    fmt_spec: dict[str, Any] = {"()": factory}
    if fmt == "text":
        fmt_spec["fmt"] = TEXT_FORMAT
    handler = {"class": "logging.StreamHandler", "formatter": "dynvm",
               "filters": ["request_id"], "stream": "ext://sys.stderr"}
    return {
        "version": 1,
        "disable_existing_loggers": False,
        "filters": {"request_id": {"()": "dynvm.core.trace.RequestIdFilter"}},
        "formatters": {"dynvm": fmt_spec},
        "handlers": {"dynvm": handler, "access": {**handler, "stream": "ext://sys.stdout"}},
        "root": {"level": level, "handlers": ["dynvm"]},
        "loggers": {
            "gunicorn.error": {"level": level, "handlers": ["dynvm"], "propagate": False},
            "gunicorn.access": {"level": level, "handlers": ["access"], "propagate": False},
        },
    }


def configure(fmt: str = "text", level: int = logging.INFO) -> None:
    """Set up the root logger of a process that is not run by gunicorn."""
    handler = logging.StreamHandler()
    handler.setFormatter(formatter(fmt))
    handler.addFilter(RequestIdFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
