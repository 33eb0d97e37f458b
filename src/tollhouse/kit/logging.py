"""Structured logs (JSON lines, or coloured human lines in a development terminal) that
never carry a secret.

Every event passes `redact_secrets`: any field whose name says it holds a credential is
masked, whatever the caller put in it. The stdlib loggers (uvicorn, alembic) share the
same renderer so one process writes one format.
"""

from __future__ import annotations

import logging
import re
import sys
from collections.abc import MutableMapping
from typing import IO, Any

import structlog

_SECRET_NAME = re.compile(
    r"(authorization|cookie|password|passwd|secret|token|api[_-]?key|service[_-]?key|"
    r"admin[_-]?key|signature|pepper|credential)",
    re.IGNORECASE,
)
REDACTED = "[redacted]"


def redact_secrets(
    _logger: Any, _method: str, event: MutableMapping[str, Any]
) -> MutableMapping[str, Any]:
    for key, value in list(event.items()):
        if key != "event" and _SECRET_NAME.search(key):
            event[key] = REDACTED
        elif isinstance(value, dict):
            event[key] = {
                k: REDACTED if _SECRET_NAME.search(str(k)) else v for k, v in value.items()
            }
    return event


def configure_logging(
    level: str = "INFO", *, json: bool = True, stream: IO[str] | None = None
) -> None:
    shared: list[Any] = [
        structlog.contextvars.merge_contextvars,
        structlog.processors.add_log_level,
        structlog.processors.TimeStamper(fmt="iso", utc=True),
        redact_secrets,
    ]
    renderer: Any = (
        structlog.processors.JSONRenderer() if json else structlog.dev.ConsoleRenderer(colors=True)
    )
    structlog.configure(
        processors=[
            *shared,
            # Tracebacks without frame locals: locals hold headers, bodies and SQL parameters.
            structlog.processors.ExceptionRenderer(
                structlog.tracebacks.ExceptionDictTransformer(show_locals=False)
            )
            if json
            else structlog.processors.format_exc_info,
            structlog.stdlib.ProcessorFormatter.wrap_for_formatter,
        ],
        logger_factory=structlog.stdlib.LoggerFactory(),
        wrapper_class=structlog.stdlib.BoundLogger,
        cache_logger_on_first_use=False,
    )
    handler = logging.StreamHandler(stream or sys.stdout)
    handler.setFormatter(
        structlog.stdlib.ProcessorFormatter(
            processors=[structlog.stdlib.ProcessorFormatter.remove_processors_meta, renderer],
            foreign_pre_chain=shared,
        )
    )
    root = logging.getLogger()
    root.handlers = [handler]
    root.setLevel(level.upper())
    # Uvicorn's access log prints query strings (which may carry tokens); ours does not.
    logging.getLogger("uvicorn.access").disabled = True
    # httpx logs every outgoing URL at INFO, query string included.
    logging.getLogger("httpx").setLevel(logging.WARNING)
    for name in ("uvicorn", "uvicorn.error"):
        logging.getLogger(name).handlers = []
        logging.getLogger(name).propagate = True
