"""Validation of a parsed `mensaje`: the envelope and its payload against the language, then the
header-to-payload rules no XSD can express. Errors come back as coded, Spanish, located faults."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any, cast

from lxml import etree

from broker.gelxml.envelope import Header, MessageType, payload_of, read_header
from broker.gelxml.faults import Falla, FaultCode, GelFault, Location, falla, source_line
from broker.gelxml.namespaces import ACUSE, ENTIDAD, FALLA, MENSAJE, PREFIXES, qname
from broker.gelxml.registry import SchemaRegistry, ServiceSchema

__all__ = ["HEADER_RULE_CODES", "ValidatedMessage", "nit_check_digit", "readable_path", "validate_message"]

MAX_PROBLEMS = 50
HEADER_RULE_CODES = frozenset({
    FaultCode.VALID_UNKNOWN_SERVICE,
    FaultCode.VALID_SERVICE_MISMATCH,
    FaultCode.VALID_MISSING_CORRELATION,
    FaultCode.VALID_MISSING_REQUEST_HASH,
    FaultCode.VALID_NIT_CHECK_DIGIT,
})
"""Codes for rules no XSD can express: a message failing only these is schema-valid."""
_PREFIX_OF = {uri: prefix for prefix, uri in PREFIXES.items()}
_CLARK = re.compile(r"\{([^}]*)\}([\w.-]+)")
_ELEMENT = re.compile(r"^Element '([^']+)'(?:, attribute '([^']+)')?: ")
_VALUE = re.compile(r"The value '(.*?)' is not")
_PATTERN = re.compile(r"pattern '(.*)'\.$")
_SET = re.compile(r"set \{(.*)\}\.$")
_ATOMIC = re.compile(r"'(.*?)' is not a valid value of the (?:atomic|local atomic|list) type '?([^']*)'?")
_EXPECTED = re.compile(r"Expected is(?: one of)? \( (.*) \)\.")
_LENGTH = re.compile(r"length of '(\d+)'; this (exceeds|underruns) the allowed (?:maximum|minimum) length of '(\d+)'")
_NIT_WEIGHTS = (3, 7, 13, 17, 19, 23, 29, 37, 41, 43, 47, 53, 59, 67, 71)


@dataclass(frozen=True, slots=True)
class ValidatedMessage:
    """A message that passed validation: its tree, header, payload and service."""

    root: etree._Element
    header: Header
    payload: etree._Element
    service: ServiceSchema | None


def nit_check_digit(number: str) -> int:
    """The DIAN check digit of a NIT (modulo 11 with the DIAN weights)."""
    total = sum(int(d) * w for d, w in zip(reversed(number), _NIT_WEIGHTS, strict=False)) % 11
    return total if total in (0, 1) else 11 - total


def _short(clark: str) -> str:
    """`{ns}local` as `prefix:local` for the common namespaces, `local` otherwise."""

    def one(match: re.Match[str]) -> str:
        prefix = _PREFIX_OF.get(match.group(1))
        return f"{prefix}:{match.group(2)}" if prefix else match.group(2)

    return _CLARK.sub(one, clark)


def readable_path(element: etree._Element) -> str:
    """An XPath of local names with positions where siblings share a name: /mensaje/cuerpo/…/x[2]."""
    steps: list[str] = []
    node: etree._Element | None = element
    while node is not None:
        name = etree.QName(node).localname
        parent = node.getparent()
        if parent is not None:
            same = [c for c in parent if c.tag == node.tag]
            if len(same) > 1:
                name = f"{name}[{same.index(node) + 1}]"
        steps.append(name)
        node = parent
    return "/" + "/".join(reversed(steps))


def _locate(root: etree._Element, entry: etree._LogEntry) -> Location:
    xpath: str | None = None
    line = entry.line or None
    try:
        found = root.getroottree().xpath(entry.path) if entry.path else []
    except etree.XPathError:
        found = []
    if isinstance(found, list) and found and isinstance(found[0], etree._Element):
        element = found[0]
        xpath = readable_path(element)
        line = element.sourceline or line
    return Location(line=line, column=entry.column or None, xpath=xpath)


def schema_fault(root: etree._Element, entry: etree._LogEntry) -> Falla:
    """Translate one libxml2 schema error into a coded Spanish fault."""
    location = _locate(root, entry)
    message = entry.message
    head = _ELEMENT.match(message)
    element = _short(head.group(1)) if head else "el documento"
    attribute = head.group(2) if head else None
    rest = message[head.end():] if head else message
    kind = entry.type_name

    if attribute is not None:
        detail = f"el atributo {attribute} " + (
            "no está permitido" if "not allowed" in rest
            else "es obligatorio y falta" if "required but missing" in rest
            else f"tiene un valor no válido ({_short(rest)})"
        )
        return falla(FaultCode.VALID_ATTRIBUTE, location=location, element=element, detail=detail)
    if kind == "SCHEMAV_CVC_PATTERN_VALID":
        value = _VALUE.search(rest)
        pattern = _PATTERN.search(rest)
        return falla(
            FaultCode.VALID_PATTERN, location=location, element=element,
            value=f"'{value.group(1)}'" if value else "indicado", pattern=pattern.group(1) if pattern else "?",
        )
    if kind == "SCHEMAV_CVC_ENUMERATION_VALID":
        value = _VALUE.search(rest)
        allowed = _SET.search(rest)
        return falla(
            FaultCode.VALID_ENUMERATION, location=location, element=element,
            value=f"'{value.group(1)}'" if value else "indicado",
            allowed=allowed.group(1).replace("'", "") if allowed else "?",
        )
    if kind in ("SCHEMAV_CVC_MAXLENGTH_VALID", "SCHEMAV_CVC_MINLENGTH_VALID", "SCHEMAV_CVC_LENGTH_VALID"):
        length = _LENGTH.search(rest)
        detail = (
            f"tiene {length.group(1)} caracteres y el {'máximo' if length.group(2) == 'exceeds' else 'mínimo'} "
            f"es {length.group(3)}" if length else _short(rest)
        )
        return falla(FaultCode.VALID_LENGTH, location=location, element=element, detail=detail)
    if kind == "SCHEMAV_ELEMENT_CONTENT":
        expected = _EXPECTED.search(rest)
        expected_text = _short(expected.group(1)) if expected else ""
        if "Missing child element" in rest:
            return falla(
                FaultCode.VALID_MISSING_ELEMENT, location=location, element=element,
                expected=expected_text or "otro elemento",
            )
        return falla(
            FaultCode.VALID_UNEXPECTED_ELEMENT, location=location, element=element,
            expected=f"; se esperaba {expected_text}" if expected_text else "",
        )
    if kind == "SCHEMAV_CVC_ELT_1":
        return falla(FaultCode.VALID_UNKNOWN_PAYLOAD, location=location, element=element)
    atomic = _ATOMIC.search(rest)
    if kind.startswith("SCHEMAV_CVC_DATATYPE_VALID") and atomic:
        return falla(
            FaultCode.VALID_VALUE, location=location, element=element,
            value=f"'{atomic.group(1)}'", type=_short(atomic.group(2)),
        )
    if "facet" in rest:
        value = _VALUE.search(rest)
        return falla(
            FaultCode.VALID_VALUE, location=location, element=element,
            value=f"'{value.group(1)}'" if value else "indicado", type=_short(rest.split("]")[0] + "]"),
        )
    return falla(FaultCode.VALID_SCHEMA, location=location, detail=f"{element}: {_short(rest)}")


def _raise_all(faults: list[Falla]) -> None:
    if faults:
        first, *others = faults
        raise GelFault(Falla(
            code=first.code, message=first.message, stage=first.stage, location=first.location,
            retryable=first.retryable, problems=tuple(others[: MAX_PROBLEMS - 1]),
        ))


def _expected_roots(header: Header, service: ServiceSchema | None) -> tuple[str, ...]:
    match header.message_type:
        case MessageType.FAULT:
            return (qname(FALLA, "falla"),)
        case MessageType.RECEIPT:
            return (qname(ACUSE, "acuse"),)
        case MessageType.REQUEST if service:
            return (service.root_tag(service.request_root),)
        case MessageType.RESPONSE if service:
            return (service.root_tag(service.response_root),)
        case MessageType.EVENT if service:
            return tuple(service.root_tag(r) for r in service.event_roots)
    return ()


def _header_faults(root: etree._Element, header: Header, payload: etree._Element,
                   registry: SchemaRegistry) -> tuple[ServiceSchema | None, list[Falla]]:
    faults: list[Falla] = []
    service = registry.service(header.service.code, header.service.version)
    service_node = root.find(f"{{{MENSAJE}}}encabezado/{{{MENSAJE}}}servicio")
    header_location = Location(
        line=source_line(service_node),
        xpath="/mensaje/encabezado/servicio",
    )
    carries_service_payload = header.message_type in (MessageType.REQUEST, MessageType.RESPONSE, MessageType.EVENT)
    if service is None and carries_service_payload:
        faults.append(falla(
            FaultCode.VALID_UNKNOWN_SERVICE, location=header_location,
            service=header.service.code, version=header.service.version,
        ))
    else:
        expected = _expected_roots(header, service)
        if payload.tag not in expected:
            faults.append(falla(
                FaultCode.VALID_SERVICE_MISMATCH,
                location=Location(line=source_line(payload), xpath=readable_path(payload)),
                found=etree.QName(payload).localname,
                message_type=header.message_type.value,
                service=header.service.code,
                version=header.service.version,
                expected=" o ".join(etree.QName(t).localname for t in expected) or "un evento declarado",
            ))
    enc_path = "/mensaje/encabezado"
    if header.message_type.is_reply and header.correlation_id is None:
        faults.append(falla(
            FaultCode.VALID_MISSING_CORRELATION, location=Location(xpath=enc_path),
            message_type=header.message_type.value,
        ))
    if header.message_type is MessageType.RESPONSE and header.request_hash is None:
        faults.append(falla(FaultCode.VALID_MISSING_REQUEST_HASH, location=Location(xpath=enc_path)))
    for nit in payload.iter(qname(ENTIDAD, "nit")):
        number = nit.findtext(qname(ENTIDAD, "numNit")) or ""
        digit = nit.findtext(qname(ENTIDAD, "digitoVerificacion")) or ""
        if number.isdigit() and digit.isdigit() and nit_check_digit(number) != int(digit):
            faults.append(falla(
                FaultCode.VALID_NIT_CHECK_DIGIT,
                location=Location(line=source_line(nit), xpath=readable_path(nit)),
                found=digit, nit=number, expected=nit_check_digit(number),
            ))
    return service, faults


def _schema_valid_header(root: etree._Element) -> Header:
    """The header of a schema-valid message. xs:dateTime admits instants Python's datetime cannot hold
    (hour 24, years before 1 or after 9999): such a fechaHoraEnvio is refused as an invalid value."""
    try:
        return read_header(root)
    except ValueError:
        sent = root.find(f"{qname(MENSAJE, 'encabezado')}/{qname(MENSAJE, 'fechaHoraEnvio')}")
        raise GelFault(falla(
            FaultCode.VALID_VALUE,
            location=Location(line=source_line(sent),
                              xpath="/mensaje/encabezado/fechaHoraEnvio"),
            element="msj:fechaHoraEnvio", value=f"'{(sent.text or '').strip() if sent is not None else ''}'",
            type="msj:tipoFechaHoraZona (años 0001 a 9999, horas 00 a 23)",
        )) from None


def validate_message(root: etree._Element, registry: SchemaRegistry) -> ValidatedMessage:
    """Validate a parsed message, or raise `GelFault` listing every problem found."""
    if root.tag != qname(MENSAJE, "mensaje"):
        raise GelFault(falla(
            FaultCode.VALID_ROOT,
            location=Location(line=source_line(root), xpath=readable_path(root)),
            found=f"<{etree.QName(root).localname}>", expected=MENSAJE,
        ))
    language = registry.language
    if not language.validate(root):
        errors = list(cast(Iterable[Any], language.error_log))
        _raise_all([schema_fault(root, entry) for entry in errors[:MAX_PROBLEMS]])
    header = _schema_valid_header(root)
    payload = payload_of(root)
    assert payload is not None
    service, faults = _header_faults(root, header, payload, registry)
    _raise_all(faults)
    return ValidatedMessage(root=root, header=header, payload=payload, service=service)
