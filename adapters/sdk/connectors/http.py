"""HTTP connector: configured calls to a legacy JSON web service, with httpx (one pooled sync client).

An operation names a method and a path template (`/ciudadanos/{TipoDoc}/{NumeroDoc}`) whose placeholders
are filled from the parameters, each URL-quoted as a single path segment (a value cannot add segments or a
query string); `query` names parameters sent in the query string, `body` names parameters sent as a JSON
object, and `records` is a dotted path to where the records live in the JSON answer.

How answers map to faults: refused/unreachable or HTTP 5xx/429 → LegacyUnavailable; no answer in time or
HTTP 408 → LegacyTimeout; HTTP 404/410 → LegacyNotFound; any other 4xx, a redirection, a body that is not
JSON or a JSON of an unexpected shape → LegacyGarbage.

SOAP 1.1 services are reached with `SoapOperation`s on the same connector: a soap:Body template whose
`{Param}` placeholders are filled with XML-escaped values, the answer parsed with the platform's hardened
parser and its record elements read by local name; a soap:Server fault is LegacyUnavailable, a soap:Client
fault LegacyGarbage.
"""

from __future__ import annotations

import json
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import quote
from xml.sax.saxutils import escape

import httpx
from lxml import etree

from adapters.sdk.connectors.base import (
    ConnectorError,
    LegacyGarbage,
    LegacyNotFound,
    LegacyTimeout,
    LegacyUnavailable,
    Record,
    describe_params,
    seconds_text,
    unknown_operation,
)
from adapters.sdk.connectors.filedrop import element_record
from broker.gelxml.faults import GelFault
from broker.gelxml.parsing import parse_untrusted

__all__ = ["HttpConnector", "HttpOperation", "SoapOperation"]

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"

_METHODS = frozenset({"GET", "POST", "PUT", "PATCH", "DELETE"})


def _placeholders(path: str) -> tuple[str, ...]:
    """The `{name}` placeholders of a path or SOAP template; anything fancier than a bare name is refused."""
    names: list[str] = []
    try:
        parsed = list(string.Formatter().parse(path))
    except ValueError as exc:
        raise ValueError(f"La plantilla {path!r} tiene llaves mal cerradas: {exc}") from None
    for _literal, name, spec, conversion in parsed:
        if name is None:
            continue
        if not name.isidentifier() or spec or conversion:
            raise ValueError(
                f"La plantilla {path!r} tiene el marcador {{{name}}} no válido: use solo {{NombreDeParametro}}."
            )
        names.append(name)
    return tuple(names)


@dataclass(frozen=True, slots=True)
class HttpOperation:
    """One configured HTTP call. Lists given for `query`/`body` are stored as tuples."""

    method: str = "GET"
    path: str = "/"
    query: Sequence[str] = ()
    body: Sequence[str] | None = None
    records: str | None = None
    path_params: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        method = str(self.method).upper()
        if method not in _METHODS:
            raise ValueError(f"Método HTTP no admitido: {self.method!r} (use {', '.join(sorted(_METHODS))}).")
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError(f"La ruta {self.path!r} debe empezar por '/'.")
        if isinstance(self.query, str) or (self.body is not None and isinstance(self.body, str)):
            raise ValueError("'query' y 'body' son listas de nombres de parámetros.")
        object.__setattr__(self, "method", method)
        object.__setattr__(self, "query", tuple(self.query))
        object.__setattr__(self, "body", None if self.body is None else tuple(self.body))
        object.__setattr__(self, "path_params", _placeholders(self.path))
        if self.records is not None and (not self.records or any(not part for part in self.records.split("."))):
            raise ValueError(f"La ruta de registros {self.records!r} no es válida (ejemplo: 'datos.ciudadanos').")


@dataclass(frozen=True, slots=True)
class SoapOperation:
    """A SOAP 1.1 call: `body` is the XML that goes inside soap:Body, with `{Param}` placeholders filled
    with XML-escaped parameter values; `records` is the local name of the response elements that are records
    (each read by local name, like a file-drop XML record). A response without them yields no records."""

    body: str
    records: str
    action: str = ""
    path: str = "/"
    body_params: tuple[str, ...] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if not isinstance(self.path, str) or not self.path.startswith("/"):
            raise ValueError(f"La ruta {self.path!r} debe empezar por '/'.")
        if not isinstance(self.records, str) or not self.records.strip():
            raise ValueError("Una operación SOAP debe nombrar en 'records' el elemento de cada registro.")
        names = _placeholders(self.body)
        object.__setattr__(self, "body_params", names)
        try:
            etree.fromstring(_envelope(self.body.format_map(dict.fromkeys(names, "x"))))
        except etree.XMLSyntaxError as exc:
            raise ValueError(f"El cuerpo SOAP no es XML bien formado: {exc}") from None


def _envelope(body: str) -> bytes:
    return (
        f'<?xml version="1.0" encoding="utf-8"?>\n<soap:Envelope xmlns:soap="{SOAP11}"><soap:Body>{body}'
        "</soap:Body></soap:Envelope>"
    ).encode()


def _local(node: etree._Element) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""


def _segment(value: Any) -> str:
    """One path segment: everything quoted, and '.'/'..' escaped so a value cannot climb the path."""
    segment = quote(str(value), safe="")
    return segment.replace(".", "%2E") if segment in (".", "..") else segment




class HttpConnector:
    """A legacy JSON web service. Thread-safe; connections are pooled by one httpx.Client."""

    def __init__(
        self,
        entity: str,
        base_url: str,
        operations: Mapping[str, HttpOperation | SoapOperation],
        *,
        timeout: float = 5.0,
        headers: Mapping[str, str] | None = None,
        check_path: str | None = None,
    ) -> None:
        if not timeout or timeout <= 0:
            raise ValueError("El tiempo de espera del conector HTTP debe ser un número positivo de segundos.")
        if not base_url.startswith(("http://", "https://")):
            raise ValueError(f"La URL base {base_url!r} debe empezar por http:// o https://.")
        if check_path is not None and not check_path.startswith("/"):
            raise ValueError(f"La ruta de verificación {check_path!r} debe empezar por '/'.")
        for name, operation in operations.items():
            if not isinstance(operation, (HttpOperation, SoapOperation)):
                raise ValueError(f"La operación {name!r} no es una HttpOperation ni una SoapOperation.")
        self.entity = entity
        self.timeout = float(timeout)
        self.base_url = base_url
        self.check_path = check_path
        self._operations = dict(operations)
        self._client = httpx.Client(
            base_url=base_url,
            timeout=httpx.Timeout(self.timeout),
            headers={"Accept": "application/json", **(headers or {})},
            follow_redirects=False,
        )

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self._operations)

    def call(self, operation: str, params: Mapping[str, Any]) -> Sequence[Record]:
        try:
            spec = self._operations[operation]
        except KeyError:
            raise unknown_operation("HTTP", self.entity, operation, self._operations) from None
        if isinstance(spec, SoapOperation):
            return self._call_soap(spec, operation, params)
        missing = [name for name in spec.path_params if params.get(name) in (None, "")]
        if missing:
            raise ValueError(f"La operación {operation!r} necesita los parámetros: {', '.join(missing)}.")
        path = spec.path.format_map({name: _segment(params[name]) for name in spec.path_params})
        query = {name: str(params[name]) for name in spec.query if params.get(name) is not None}
        content: bytes | None = None
        headers: dict[str, str] = {}
        if spec.body is not None:
            body = {name: params[name] for name in spec.body if name in params}
            content = json.dumps(body, ensure_ascii=False, default=str).encode("utf-8")
            headers["Content-Type"] = "application/json; charset=utf-8"
        response = self._send(spec.method, path, params=query, content=content, headers=headers)
        self._raise_for_status(response, operation, lambda: describe_params(params, (*spec.path_params, *spec.query)))
        if not response.content.strip():
            return []
        try:
            answer = json.loads(response.content)
        except ValueError:
            raise LegacyGarbage(
                self.entity, detail=f"la operación {operation!r} recibió una respuesta que no es JSON"
            ) from None
        return self._records(answer, spec.records, operation)

    def _call_soap(self, spec: SoapOperation, operation: str, params: Mapping[str, Any]) -> list[Record]:
        missing = [name for name in spec.body_params if params.get(name) is None]
        if missing:
            raise ValueError(f"La operación {operation!r} necesita los parámetros: {', '.join(missing)}.")
        values = {name: escape(str(params[name]), {'"': "&quot;", "'": "&apos;"}) for name in spec.body_params}
        headers = {
            "Content-Type": "text/xml; charset=utf-8",
            "SOAPAction": f'"{spec.action}"',
            "Accept": "text/xml, application/soap+xml",
        }
        response = self._send(
            "POST", spec.path, content=_envelope(spec.body.format_map(values)), headers=headers
        )
        body = self._soap_body(response, operation) if response.content.strip() else None
        if body is None:
            self._raise_for_status(response, operation, lambda: describe_params(params, spec.body_params))
            raise LegacyGarbage(self.entity, detail=f"la operación {operation!r} recibió una respuesta vacía")
        fault = next((node for node in body if _local(node) == "Fault"), None)
        if fault is not None:
            code = next((node.text or "" for node in fault if _local(node) == "faultcode"), "").strip()
            if code.rsplit(":", 1)[-1].startswith("Server"):
                raise LegacyUnavailable(self.entity, detail=f"falla SOAP {code or 'del servidor'}")
            raise LegacyGarbage(self.entity, detail=f"la operación {operation!r} recibió la falla SOAP {code}")
        self._raise_for_status(response, operation, lambda: describe_params(params, spec.body_params))
        return [element_record(node) for node in body.iter() if _local(node) == spec.records]

    def _soap_body(self, response: httpx.Response, operation: str) -> etree._Element | None:
        """The soap:Body of an answer, or None when the answer is not a SOAP envelope (an HTTP error page
        is then judged by its status)."""
        try:
            root = parse_untrusted(response.content)
        except GelFault as exc:
            if not response.is_success:
                return None
            raise LegacyGarbage(
                self.entity, detail=f"la operación {operation!r} recibió XML no válido ({exc.falla.code})"
            ) from None
        body = next((node for node in root if _local(node) == "Body"), None)
        if _local(root) != "Envelope" or body is None:
            if not response.is_success:
                return None
            raise LegacyGarbage(self.entity, detail=f"la operación {operation!r} no recibió un sobre SOAP")
        return body

    def check(self) -> None:
        response = self._send("GET", self.check_path or "/")
        if response.status_code >= 500:
            raise LegacyUnavailable(self.entity, detail=f"HTTP {response.status_code}")
        if self.check_path is not None and not response.is_success:
            raise LegacyGarbage(self.entity, detail=f"la verificación recibió HTTP {response.status_code}")

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> HttpConnector:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    def _send(self, method: str, path: str, **kwargs: Any) -> httpx.Response:
        try:
            return self._client.request(method, path, **kwargs)
        except httpx.TimeoutException as exc:
            raise LegacyTimeout(self.entity, seconds=seconds_text(self.timeout)) from exc
        except httpx.ConnectError as exc:
            raise LegacyUnavailable(self.entity, detail="no se pudo conectar con el servicio") from exc
        except (httpx.DecodingError, httpx.TooManyRedirects) as exc:
            raise LegacyGarbage(self.entity, detail="la respuesta HTTP no se pudo leer") from exc
        except httpx.TransportError as exc:
            raise LegacyUnavailable(self.entity, detail="la conexión con el servicio se interrumpió") from exc

    def _raise_for_status(self, response: httpx.Response, operation: str, what: Any) -> None:
        status = response.status_code
        if 200 <= status < 300:
            return
        error: ConnectorError
        if status in (404, 410):
            error = LegacyNotFound(self.entity, what=what())
        elif status == 408:
            error = LegacyTimeout(self.entity, seconds=seconds_text(self.timeout))
        elif status >= 500 or status == 429:
            error = LegacyUnavailable(self.entity, detail=f"HTTP {status}")
        else:
            error = LegacyGarbage(self.entity, detail=f"la operación {operation!r} recibió HTTP {status}")
        raise error

    def _records(self, answer: Any, records: str | None, operation: str) -> list[Record]:
        found = answer
        if records is not None:
            for part in records.split("."):
                if isinstance(found, Mapping) and part in found:
                    found = found[part]
                elif isinstance(found, list) and part.isdigit() and int(part) < len(found):
                    found = found[int(part)]
                else:
                    raise LegacyGarbage(
                        self.entity, detail=f"la respuesta de {operation!r} no trae {records!r}"
                    )
        if found is None:
            return []
        if isinstance(found, Mapping):
            return [dict(found)]
        if isinstance(found, list) and all(isinstance(item, Mapping) for item in found):
            return [dict(item) for item in found]
        raise LegacyGarbage(
            self.entity, detail=f"la respuesta de {operation!r} no es un registro ni una lista de registros"
        )
