"""GEL-XML: the common language. Parse untrusted bytes, validate envelope and payload, build messages,
report coded faults."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from broker.gelxml.envelope import (
    Header,
    MessageType,
    ServiceRef,
    build_message,
    message_digest,
    new_header,
    payload_of,
    read_header,
    reply_header,
    serialize,
)
from broker.gelxml.faults import Falla, FaultCode, GelFault, Location, Stage, falla, fault
from broker.gelxml.parsing import DEFAULT_LIMITS, ParseLimits, parse_untrusted
from broker.gelxml.registry import SchemaRegistry, ServiceSchema
from broker.gelxml.validation import ValidatedMessage, validate_message

__all__ = [
    "DEFAULT_LIMITS",
    "Falla",
    "FaultCode",
    "GelFault",
    "Header",
    "Location",
    "MessageType",
    "ParseLimits",
    "SchemaRegistry",
    "ServiceRef",
    "ServiceSchema",
    "Stage",
    "ValidatedMessage",
    "build_message",
    "check_message",
    "falla",
    "fault",
    "load_registry",
    "message_digest",
    "new_header",
    "parse_untrusted",
    "payload_of",
    "read_header",
    "reply_header",
    "serialize",
    "validate_message",
]


@lru_cache(maxsize=8)
def load_registry(schemas_dir: Path) -> SchemaRegistry:
    """The registry for a schema folder, built once per process."""
    return SchemaRegistry(schemas_dir)


def check_message(data: bytes, registry: SchemaRegistry, limits: ParseLimits = DEFAULT_LIMITS) -> ValidatedMessage:
    """Parse and validate one message as it arrived; raise `GelFault` when it must be refused."""
    return validate_message(parse_untrusted(data, limits), registry)
