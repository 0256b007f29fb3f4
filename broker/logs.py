"""structlog, configured once: JSON lines for services, readable lines in a terminal."""

from __future__ import annotations

import logging
import sys
from collections.abc import MutableMapping
from typing import Any

import structlog

_configured = False
PLATFORM_FIELDS = {"message_id": "idMensaje", "chain_id": "idCadena", "entity": "entidad", "stage": "etapa"}
"""Every log line names these by the platform's own field names, whatever the code called them."""


def platform_fields(_logger: Any, _method: str, event: MutableMapping[str, Any]) -> MutableMapping[str, Any]:
    """structlog processor: message_id → idMensaje, chain_id → idCadena, entity → entidad, stage → etapa."""
    for key, name in PLATFORM_FIELDS.items():
        if key in event:
            event.setdefault(name, event.pop(key))
    return event


def configure_logging(log_format: str = "auto", level: str = "INFO") -> None:
    """Configure structlog and the standard library logger; later calls are no-ops."""
    global _configured
    if _configured:
        return
    as_json = log_format == "json" or (log_format == "auto" and not sys.stderr.isatty())
    renderer: Any = structlog.processors.JSONRenderer() if as_json else structlog.dev.ConsoleRenderer(colors=False)
    structlog.configure(
        processors=[
            structlog.contextvars.merge_contextvars,
            platform_fields,
            structlog.processors.add_log_level,
            structlog.processors.TimeStamper(fmt="iso", utc=True),
            structlog.processors.StackInfoRenderer(),
            structlog.processors.format_exc_info,
            renderer,
        ],
        wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level.upper())),
        logger_factory=structlog.PrintLoggerFactory(file=sys.stderr),
        cache_logger_on_first_use=True,
    )
    logging.basicConfig(level=level.upper(), stream=sys.stderr, format="%(levelname)s %(name)s %(message)s")
    for chatty in ("pika", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(logging.WARNING)
    _configured = True


def get_logger(**bound: Any) -> Any:
    """A logger bound with context such as idMensaje, idCadena, entidad and etapa."""
    return structlog.get_logger(**bound)


def quieten(level: str = "ERROR") -> None:
    """Raise the threshold for a command whose output is its own narrative (`gel demo`)."""
    configure_logging()
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.getLevelName(level)))
    logging.getLogger().setLevel(level)
    for chatty in ("pika", "httpx", "httpcore"):
        logging.getLogger(chatty).setLevel(level)
