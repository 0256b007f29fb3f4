"""Access rules and the gateway's authorisation decision. Deny by default.

A request (`solicitud`) is allowed when its service version is in the catalog and not retired, its sender
is a listed caller and its recipient a listed provider. An event must come from a provider and go to a
listed subscriber, or to the platform itself, which publishes it to every subscriber (fan-out). Replies
are not in the catalog: a `respuesta` or `falla` must answer a request the platform routed from its
recipient to its sender; an `acuse` may acknowledge any request, response or event so routed. The
caller looks routed messages up with `routed_request` (the message log knows every one).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path

import yaml

from broker.gelxml.envelope import Header, MessageType
from broker.gelxml.faults import FaultCode, Location, fault

__all__ = ["DEPRECATED_NOTICE", "Catalog", "RequestLookup", "ServiceEntry", "ServiceStatus", "load_catalog"]

_SERVICE_PATH = Location(xpath="/mensaje/encabezado/servicio")
DEPRECATED_NOTICE = "GEL-AUTHZ-DEPRECATED"


class ServiceStatus(StrEnum):
    ACTIVE = "activo"
    DEPRECATED = "obsoleto"
    RETIRED = "retirado"


@dataclass(frozen=True, slots=True)
class ServiceEntry:
    code: str
    version: str
    status: ServiceStatus
    providers: frozenset[str]
    callers: frozenset[str]
    subscribers: frozenset[str] = frozenset()
    reply_within_seconds: int | None = None
    """How long a provider has to answer a request before the caller gets GEL-ROUTE-REPLY_TIMEOUT."""

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.version)


RequestLookup = Callable[[str], tuple[str, str, MessageType] | None]
"""idMensaje → (sender, recipient, type) of a message the platform routed, or None."""

_ANSWERABLE = {
    MessageType.RESPONSE: frozenset({MessageType.REQUEST}),
    MessageType.FAULT: frozenset({MessageType.REQUEST}),
    MessageType.RECEIPT: frozenset({MessageType.REQUEST, MessageType.RESPONSE, MessageType.EVENT}),
}


@dataclass(frozen=True, slots=True)
class Catalog:
    entries: dict[tuple[str, str], ServiceEntry]

    def get(self, code: str, version: str) -> ServiceEntry | None:
        return self.entries.get((code, version))

    def notice(self, header: Header) -> str | None:
        """The warning a message of a deprecated (`obsoleto`) service version carries to its recipient, so both
        the provider (on the request) and the caller (on the reply) learn that they must migrate."""
        entry = self.get(header.service.code, header.service.version)
        if entry is None or entry.status is not ServiceStatus.DEPRECATED:
            return None
        active = ", ".join(sorted(e.version for e in self.entries.values()
                                  if e.code == entry.code and e.status is ServiceStatus.ACTIVE)) or "ninguna aún"
        return (f"{DEPRECATED_NOTICE}: el servicio {entry.code} versión {entry.version} está obsoleto y será "
                f"retirado; migre a una versión activa ({active}).")

    def recipients(self, header: Header, *, platform_id: str | None) -> tuple[str, ...]:
        """Where an authorised message goes: its recipient, or every subscriber of an event sent to the platform."""
        if header.message_type is MessageType.EVENT and header.recipient == platform_id:
            entry = self.get(header.service.code, header.service.version)
            return tuple(sorted(entry.subscribers)) if entry else ()
        return (header.recipient,)

    def authorise(self, header: Header, *, routed_request: RequestLookup,
                  platform_id: str | None = None) -> ServiceEntry | None:
        """Raise a GEL-AUTHZ-* fault unless `header` may pass; return the service entry for requests/events."""
        if header.message_type.is_reply:
            self._authorise_reply(header, routed_request)
            return None
        service, version = header.service.code, header.service.version
        entry = self.get(service, version)
        if entry is None:
            raise fault(FaultCode.AUTHZ_UNKNOWN_SERVICE, location=_SERVICE_PATH, service=service, version=version)
        if entry.status is ServiceStatus.RETIRED:
            active = ", ".join(sorted(e.version for e in self.entries.values()
                                      if e.code == service and e.status is not ServiceStatus.RETIRED)) or "ninguna"
            raise fault(FaultCode.AUTHZ_RETIRED, location=_SERVICE_PATH, service=service, version=version,
                        active=active)
        if header.message_type is MessageType.EVENT:
            if header.sender not in entry.providers:
                raise fault(FaultCode.AUTHZ_DENIED, location=_SERVICE_PATH, caller=header.sender,
                            service=service, version=version)
            if header.recipient == platform_id and not entry.subscribers:
                raise fault(FaultCode.AUTHZ_NO_SUBSCRIBERS, location=_SERVICE_PATH, service=service, version=version)
            if header.recipient != platform_id and header.recipient not in entry.subscribers:
                raise fault(FaultCode.AUTHZ_DENIED, location=_SERVICE_PATH, caller=header.recipient,
                            service=service, version=version)
            return entry
        if header.sender not in entry.callers:
            raise fault(FaultCode.AUTHZ_DENIED, location=_SERVICE_PATH, caller=header.sender, service=service,
                        version=version)
        if header.recipient not in entry.providers:
            raise fault(FaultCode.AUTHZ_WRONG_PROVIDER, location=Location(xpath="/mensaje/encabezado/entidadDestino"),
                        recipient=header.recipient, service=service, version=version,
                        providers=", ".join(sorted(entry.providers)))
        return entry

    @staticmethod
    def _authorise_reply(header: Header, routed_request: RequestLookup) -> None:
        request = routed_request(header.correlation_id or "")
        if (request is None or request[:2] != (header.recipient, header.sender)
                or request[2] not in _ANSWERABLE.get(header.message_type, frozenset())):
            raise fault(FaultCode.AUTHZ_UNSOLICITED_REPLY, location=Location(xpath="/mensaje/encabezado/idCorrelacion"),
                        message_type=header.message_type.value, correlation=header.correlation_id or "(ninguno)",
                        recipient=header.recipient, sender=header.sender)


def load_catalog(path: Path) -> Catalog:
    """Read the catalog file; a malformed entry is a configuration error naming its position."""
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    entries: dict[tuple[str, str], ServiceEntry] = {}
    for index, item in enumerate(data.get("services", []), start=1):
        try:
            entry = ServiceEntry(
                code=str(item["code"]), version=str(item["version"]),
                status=ServiceStatus(item.get("status", "activo")),
                providers=frozenset(item.get("providers", [])), callers=frozenset(item.get("callers", [])),
                subscribers=frozenset(item.get("subscribers", [])),
                reply_within_seconds=int(item["reply_within_seconds"]) if "reply_within_seconds" in item else None,
            )
        except (KeyError, ValueError) as exc:
            raise ValueError(f"{path}: el servicio n.º {index} no es válido ({exc})") from None
        if entry.key in entries:
            raise ValueError(f"{path}: el servicio {entry.code} {entry.version} aparece dos veces")
        entries[entry.key] = entry
    return Catalog(entries=entries)
