"""Schema registry: discovers the GEL-XML schemas under a folder and compiles them once.

Services are found by their namespace (`…/schemas/<Dominio>/<Servicio>/<major>.<minor>`), so a service
is published by dropping its XSD in place; there is no manifest to keep in step. The whole language is
compiled into one lxml `XMLSchema` (a driver schema importing the envelope, the platform documents and
every service), so validating a message is a single pass in C.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path
from typing import Any

from lxml import etree

from broker.gelxml.namespaces import ACUSE, FALLA, GEL_PREFIX, MENSAJE, XSD, qname

__all__ = ["SchemaCompileError", "SchemaFile", "SchemaKind", "SchemaRegistry", "ServiceSchema", "classify_namespace"]

_SERVICE_NS = re.compile(
    re.escape(GEL_PREFIX) + r"(?P<domain>[A-Z][A-Za-z0-9]*)/(?P<service>[A-Z][A-Za-z0-9]*)/(?P<version>\d+\.\d+)$"
)
_ROOT_PREFIXES = ("entrada", "salida", "evento")


class SchemaCompileError(Exception):
    """The schemas under a folder do not compile into one language: an operator error, not a message fault."""


class SchemaKind:
    COMMON = "comun"
    PLATFORM = "plataforma"
    SERVICE = "servicio"
    FOREIGN = "ajeno"


def classify_namespace(namespace: str) -> str:
    if namespace.startswith(GEL_PREFIX + "Comun/"):
        return SchemaKind.COMMON
    if namespace.startswith(GEL_PREFIX + "Plataforma/"):
        return SchemaKind.PLATFORM
    if _SERVICE_NS.match(namespace):
        return SchemaKind.SERVICE
    return SchemaKind.FOREIGN


@dataclass(frozen=True, slots=True)
class SchemaFile:
    path: Path
    namespace: str
    kind: str


@dataclass(frozen=True, slots=True)
class ServiceSchema:
    """A service payload schema: code, version and the roots it declares."""

    code: str
    version: str
    domain: str
    namespace: str
    path: Path
    description: str
    request_root: str
    response_root: str
    event_roots: tuple[str, ...]

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.version)

    def root_tag(self, local: str) -> str:
        return qname(self.namespace, local)


def _documentation(tree: etree._ElementTree) -> str:
    doc = tree.getroot().find(f"{{{XSD}}}annotation/{{{XSD}}}documentation")
    return " ".join((doc.text or "").split()) if doc is not None else ""


def _read_service(path: Path, tree: etree._ElementTree, namespace: str) -> ServiceSchema:
    match = _SERVICE_NS.match(namespace)
    assert match is not None
    service_folder = match.group("service")
    code = service_folder[0].lower() + service_folder[1:]
    globals_ = [el.get("name", "") for el in tree.getroot().iterfind(f"{{{XSD}}}element")]
    events = tuple(sorted(n for n in globals_ if n.startswith("evento" + service_folder)))
    return ServiceSchema(
        code=code,
        version=match.group("version"),
        domain=match.group("domain"),
        namespace=namespace,
        path=path,
        description=_documentation(tree),
        request_root="entrada" + service_folder,
        response_root="salida" + service_folder,
        event_roots=events,
    )


class SchemaRegistry:
    """Every schema under `root`, the services among them, and the compiled language.

    `published` folders add service schemas published through the catalog (laid out like `root`, importing
    the common schemas through links); their common and platform schemas are the ones under `root`.
    """

    def __init__(self, root: Path, published: tuple[Path, ...] = ()) -> None:
        self.root = root.resolve()
        self.published = tuple(p.resolve() for p in published)
        self._lock = threading.Lock()
        self.files: tuple[SchemaFile, ...] = tuple(self._discover(self.root)) + tuple(
            f for folder in self.published for f in self._discover(folder) if f.kind == SchemaKind.SERVICE)
        services: dict[tuple[str, str], ServiceSchema] = {}
        self._by_namespace: dict[str, ServiceSchema] = {}
        for schema_file in self.files:
            if schema_file.kind != SchemaKind.SERVICE:
                continue
            service = _read_service(schema_file.path, etree.parse(str(schema_file.path)), schema_file.namespace)
            if service.key in services:
                other = services[service.key].path
                raise ValueError(f"service {service.code} {service.version} declared twice: {other} and {service.path}")
            services[service.key] = service
            self._by_namespace[service.namespace] = service
        self.services = dict(sorted(services.items()))

    @staticmethod
    def _discover(root: Path) -> Iterator[SchemaFile]:
        for path in sorted(root.rglob("*.xsd")):
            if "samples" in path.relative_to(root).parts:
                continue
            namespace = etree.parse(str(path)).getroot().get("targetNamespace", "")
            yield SchemaFile(path=path, namespace=namespace, kind=classify_namespace(namespace))

    def service(self, code: str, version: str) -> ServiceSchema | None:
        return self.services.get((code, version))

    def service_for_namespace(self, namespace: str) -> ServiceSchema | None:
        return self._by_namespace.get(namespace)

    def schema_for_namespace(self, namespace: str) -> SchemaFile | None:
        return next((f for f in self.files if f.namespace == namespace), None)

    def driver_xsd(self) -> bytes:
        """A schema importing the envelope, the platform documents and every service, by absolute URI."""
        root = etree.Element(qname(XSD, "schema"), nsmap={"xs": XSD})
        wanted = [MENSAJE, FALLA, ACUSE, *(s.namespace for s in self.services.values())]
        for namespace in wanted:
            schema_file = self.schema_for_namespace(namespace)
            if schema_file is None:
                raise ValueError(f"no schema under {self.root} declares {namespace}")
            imp = etree.SubElement(root, qname(XSD, "import"))
            imp.set("namespace", namespace)
            imp.set("schemaLocation", schema_file.path.as_uri())
        return etree.tostring(root, xml_declaration=True, encoding="UTF-8", pretty_print=True)

    @cached_property
    def language(self) -> etree.XMLSchema:
        """The compiled GEL-XML language (compiled on first use, then shared)."""
        with self._lock:
            driver = etree.fromstring(self.driver_xsd(), base_url=(self.root / "driver.xsd").as_uri())
            try:
                return etree.XMLSchema(driver)
            except etree.XMLSchemaParseError as exc:
                raise SchemaCompileError(
                    f"los esquemas de {self.root} no compilan: {exc}. Ejecute gel schemas lint para ver el detalle."
                ) from None

    def decoder(self, namespace: str) -> Any:
        """An `xmlschema` schema for a namespace, for decoding payloads to dicts and introspection."""
        import xmlschema

        schema_file = self.schema_for_namespace(namespace)
        if schema_file is None:
            raise KeyError(namespace)
        cache: dict[str, Any] = self.__dict__.setdefault("_decoders", {})
        if namespace not in cache:
            cache[namespace] = xmlschema.XMLSchema(str(schema_file.path))
        return cache[namespace]

    def decode(self, payload: etree._Element) -> dict[str, Any]:
        """A payload element as a Python dict (xmlschema's decoding, namespace prefixes stripped)."""
        namespace = etree.QName(payload).namespace or ""
        decoded = self.decoder(namespace).decode(payload, strip_namespaces=True, validation="skip")
        return dict(decoded) if isinstance(decoded, dict) else {"valor": decoded}
