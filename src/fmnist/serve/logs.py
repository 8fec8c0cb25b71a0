"""What the server logs, and how: uvicorn's plain lines (``--log-format text``, the default) or one
JSON object per line (``--log-format json``) for a log pipeline.

Server events (the bundle ready, reloaded or refused) go to the ``fmnist.serve`` logger beside
uvicorn's own. In JSON, every request is one object too (:func:`request_record`, written by the
``Observe`` middleware) and uvicorn's access lines are off: they would repeat it without the
bundle or the request id."""

from __future__ import annotations

import copy
import json
import logging
import time
from typing import Any

LOGGER = "fmnist.serve"


class JsonFormatter(logging.Formatter):
    """A record as ``{"time", "level", "logger", "message", ...}``; a request's fields come in
    ``record.fields``."""

    def format(self, record: logging.LogRecord) -> str:
        entry = {
            "time": _iso(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
            **getattr(record, "fields", {}),
        }
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def _iso(seconds: float) -> str:
    """UTC, to the millisecond: ``2026-12-02T06:30:00.123Z``."""
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{int(seconds % 1 * 1000):03d}Z"


def log_config(log_format: str, level: str) -> dict[str, Any]:
    """uvicorn's ``log_config`` for ``--log-format`` and ``--log-level``: uvicorn's own, plus the
    ``fmnist.serve`` logger on its handler; in JSON every handler writes JSON."""
    from uvicorn.config import LOGGING_CONFIG  # also registers uvicorn's TRACE level

    config = copy.deepcopy(LOGGING_CONFIG)
    config["loggers"][LOGGER] = {"handlers": ["default"], "level": level.upper(), "propagate": False}
    if log_format == "json":
        config["formatters"] = {"json": {"()": f"{__name__}.JsonFormatter"}}
        for handler in config["handlers"].values():
            handler["formatter"] = "json"
        config["loggers"]["uvicorn.access"] = {"handlers": [], "level": "CRITICAL", "propagate": False}
    return config


def request_record(log: logging.Logger, fields: dict[str, Any]) -> None:
    """One request as one JSON log object: route, method, status, latency, bundle, request id, client."""
    log.info("request", extra={"fields": fields})
