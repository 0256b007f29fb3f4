"""Hardened parsing of untrusted bytes into an lxml tree.

Cheap byte-level checks run before libxml2 sees the input (size, encoding, DOCTYPE/ENTITY, XInclude);
the parser itself loads no DTD, resolves no entity and touches no network; depth is capped both by
libxml2's own limit while parsing and by the configured limit right after. Every rejection is a
`GelFault` with a coded `falla`, never a bare exception.
"""

from __future__ import annotations

import re
import threading
from dataclasses import dataclass
from functools import lru_cache

from lxml import etree

from broker.gelxml.faults import FaultCode, Location, fault
from broker.gelxml.namespaces import XINCLUDE

__all__ = ["DEFAULT_LIMITS", "ParseLimits", "parse_untrusted"]


@dataclass(frozen=True, slots=True)
class ParseLimits:
    """Caps applied to every untrusted document."""

    max_bytes: int = 1_048_576
    max_depth: int = 64


DEFAULT_LIMITS = ParseLimits()

_BOMS = (
    (b"\x00\x00\xfe\xff", "UTF-32"),
    (b"\xff\xfe\x00\x00", "UTF-32"),
    (b"\xfe\xff", "UTF-16"),
    (b"\xff\xfe", "UTF-16"),
)
_DECLARED_ENCODING = re.compile(rb"""^\s*<\?xml[^>]*?encoding\s*=\s*["']([A-Za-z0-9._-]+)["']""")
_FORBIDDEN_MARKUP = (b"<!DOCTYPE", b"<!ENTITY")

_MALFORMED_ES = (
    ("Premature end of data", "el documento termina antes de cerrar todos sus elementos (¿está truncado?)"),
    ("Opening and ending tag mismatch", "una etiqueta de cierre no corresponde a la de apertura"),
    ("Start tag expected", "no empieza con un elemento XML"),
    ("Document is empty", "no contiene ningún elemento XML"),
    ("Extra content at the end of the document", "hay contenido después del elemento raíz"),
    ("EndTag: '</' not found", "falta una etiqueta de cierre"),
    ("Couldn't find end of Start Tag", "una etiqueta de apertura no está cerrada"),
    ("AttValue", "un atributo no tiene el valor entre comillas"),
    ("attributes construct error", "un atributo está mal escrito"),
    ("Attribute", "un atributo está repetido o mal escrito"),
    ("xmlParseEntityRef", "hay un carácter & que no forma una referencia válida (escríbalo &amp;)"),
    ("StartTag: invalid element name", "un nombre de elemento no es válido"),
    ("Char 0x", "contiene un carácter no permitido en XML"),
    ("PCDATA invalid Char", "contiene un carácter no permitido en XML"),
    ("Namespace prefix", "usa un prefijo de espacio de nombres no declarado"),
    ("Input is not proper UTF-8", "no es UTF-8 válido"),
)


class _ThreadParsers(threading.local):
    """lxml parsers are not thread-safe: one hardened parser per thread."""

    def __init__(self) -> None:
        self.parser = etree.XMLParser(
            resolve_entities=False,
            no_network=True,
            load_dtd=False,
            dtd_validation=False,
            huge_tree=False,
            remove_blank_text=False,
            collect_ids=False,
        )


_parsers = _ThreadParsers()


@lru_cache(maxsize=16)
def _too_deep(max_depth: int) -> etree.XPath:
    return etree.XPath("boolean(/" + "*/" * max_depth + "*)")


def _line_of(data: bytes, offset: int) -> Location:
    line = data.count(b"\n", 0, offset) + 1
    column = offset - (data.rfind(b"\n", 0, offset) + 1) + 1
    return Location(line=line, column=column)


def _check_encoding(data: bytes) -> None:
    for bom, name in _BOMS:
        if data.startswith(bom):
            raise fault(FaultCode.PARSE_ENCODING, detail=f"llegó codificado en {name}")
    nul = data.find(b"\x00")
    if nul >= 0:
        raise fault(
            FaultCode.PARSE_ENCODING,
            location=_line_of(data, nul),
            detail="contiene bytes nulos (¿UTF-16 sin declaración o un archivo binario?)",
        )
    declared = _DECLARED_ENCODING.match(data[:200])
    if declared and declared.group(1).lower() not in (b"utf-8", b"utf8"):
        raise fault(
            FaultCode.PARSE_ENCODING,
            location=Location(line=1, column=1),
            detail=f"declara encoding=\"{declared.group(1).decode('ascii')}\"",
        )
    try:
        data.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise fault(
            FaultCode.PARSE_ENCODING,
            location=_line_of(data, exc.start),
            detail=f"el byte 0x{data[exc.start]:02x} no es UTF-8 válido",
        ) from None


def _malformed_detail(message: str) -> str:
    for needle, spanish in _MALFORMED_ES:
        if needle in message:
            return spanish
    return f"error de sintaxis ({message.split(', line')[0]})"


def parse_untrusted(data: bytes, limits: ParseLimits = DEFAULT_LIMITS) -> etree._Element:
    """Parse bytes from outside the platform, or raise `GelFault` saying why they are refused."""
    if not data.strip():
        raise fault(FaultCode.PARSE_EMPTY)
    if len(data) > limits.max_bytes:
        raise fault(FaultCode.PARSE_TOO_LARGE, size=len(data), limit=limits.max_bytes)
    _check_encoding(data)
    for markup in _FORBIDDEN_MARKUP:
        at = data.find(markup)
        if at >= 0:
            raise fault(FaultCode.PARSE_DTD, location=_line_of(data, at))
    xinclude = data.find(XINCLUDE.encode())
    if xinclude >= 0:
        raise fault(FaultCode.PARSE_XINCLUDE, location=_line_of(data, xinclude))
    try:
        root = etree.fromstring(data, _parsers.parser)
    except etree.XMLSyntaxError as exc:
        location = Location(line=exc.lineno, column=(exc.offset or 0) + 1)
        if getattr(exc, "code", None) == etree.ErrorTypes.ERR_RESOURCE_LIMIT or "Excessive depth" in str(exc.msg):
            raise fault(FaultCode.PARSE_TOO_DEEP, location=location, limit=limits.max_depth) from None
        raise fault(FaultCode.PARSE_MALFORMED, location=location, detail=_malformed_detail(str(exc.msg))) from None
    if _too_deep(limits.max_depth)(root):
        raise fault(FaultCode.PARSE_TOO_DEEP, limit=limits.max_depth)
    return root
