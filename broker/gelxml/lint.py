"""`gel schemas lint`: conformance rules for GEL-XML schemas (in the spirit of NIEM's NDR rules).

A service developer's schema must read like the rest of the language before the catalog accepts it:
versioned GEL-XML namespace, qualified elements, lowerCamelCase names, `tipo`/`enum` type names,
`entrada`/`salida` roots, Spanish documentation everywhere, the standard's metadata on every data
element, and no wildcards in payloads.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from datetime import date
from enum import StrEnum
from pathlib import Path

from lxml import etree

from broker.gelxml.faults import GelFault, source_line
from broker.gelxml.namespaces import GEL_PREFIX, METADATOS, XSD
from broker.gelxml.parsing import ParseLimits, parse_untrusted
from broker.gelxml.registry import SchemaKind, classify_namespace

__all__ = ["Finding", "LintCode", "Severity", "lint_paths", "lint_schema"]

_XS = f"{{{XSD}}}"
_GEL = f"{{{METADATOS}}}"
_XML_LANG = "{http://www.w3.org/XML/1998/namespace}lang"
_LOWER_CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
_METADATA_FIELDS = ("fuente", "usos", "fechaIncorporacion", "validacion", "requiere", "requeridoPor")
_SCHEMA_LIMITS = ParseLimits(max_bytes=8 * 1_048_576, max_depth=128)
_SAFE_PARSER = etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False)


class Severity(StrEnum):
    ERROR = "error"
    WARNING = "aviso"


class LintCode(StrEnum):
    PARSE = "GEL-LINT-PARSE"
    NOT_SCHEMA = "GEL-LINT-NOT_SCHEMA"
    COMPILE = "GEL-LINT-COMPILE"
    NAMESPACE = "GEL-LINT-NAMESPACE"
    NAMESPACE_VERSION = "GEL-LINT-NAMESPACE_VERSION"
    QUALIFIED = "GEL-LINT-QUALIFIED"
    ELEMENT_NAME = "GEL-LINT-ELEMENT_NAME"
    TYPE_NAME = "GEL-LINT-TYPE_NAME"
    ENUM_NAME = "GEL-LINT-ENUM_NAME"
    DOCUMENTATION = "GEL-LINT-DOCUMENTATION"
    LANGUAGE = "GEL-LINT-LANGUAGE"
    METADATA = "GEL-LINT-METADATA"
    METADATA_DATE = "GEL-LINT-METADATA_DATE"
    METADATA_REGEX = "GEL-LINT-METADATA_REGEX"
    METADATA_MISMATCH = "GEL-LINT-METADATA_MISMATCH"
    METADATA_REFERENCE = "GEL-LINT-METADATA_REFERENCE"
    ROOTS = "GEL-LINT-ROOTS"
    WILDCARD = "GEL-LINT-WILDCARD"
    COD_NOM = "GEL-LINT-COD_NOM"


@dataclass(frozen=True, slots=True)
class Finding:
    code: LintCode
    severity: Severity
    message: str
    path: Path
    line: int | None = None

    def format(self) -> str:
        return f"{self.path}:{self.line or 0}: {self.code} [{self.severity}] {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {
            "archivo": str(self.path),
            "linea": self.line,
            "codigo": str(self.code),
            "severidad": str(self.severity),
            "descripcion": self.message,
        }


class _Checker:
    def __init__(self, path: Path, root: etree._Element, known_data_elements: set[str]) -> None:
        self.path = path
        self.root = root
        self.known = known_data_elements
        self.findings: list[Finding] = []
        self.namespace = root.get("targetNamespace", "")
        self.kind = classify_namespace(self.namespace)

    def add(self, code: LintCode, message: str, node: etree._Element | None = None,
            severity: Severity = Severity.ERROR) -> None:
        line = source_line(node)
        self.findings.append(Finding(code, severity, message, self.path, line))

    def run(self) -> list[Finding]:
        self.check_namespace()
        if self.root.get("elementFormDefault") != "qualified":
            self.add(LintCode.QUALIFIED, 'El esquema debe declarar elementFormDefault="qualified".', self.root)
        if not self.documentation_of(self.root):
            self.add(LintCode.DOCUMENTATION,
                     "El esquema no tiene documentación general (xs:annotation/xs:documentation).",
                     self.root, Severity.WARNING)
        self.check_elements()
        self.check_types()
        if self.kind in (SchemaKind.COMMON, SchemaKind.SERVICE):
            for wildcard in self.root.iter(f"{_XS}any", f"{_XS}anyAttribute"):
                self.add(LintCode.WILDCARD, f"Las cargas útiles no admiten {etree.QName(wildcard).localname}: "
                         "declare cada elemento explícitamente.", wildcard)
        if self.kind == SchemaKind.SERVICE:
            self.check_service_roots()
        if self.kind == SchemaKind.COMMON:
            for element in self.root.iterfind(f"{_XS}element"):
                self.check_metadata(element)
        self.check_cod_nom()
        return self.findings

    def check_namespace(self) -> None:
        if not self.namespace:
            self.add(LintCode.NAMESPACE, "El esquema no declara targetNamespace.", self.root)
        elif not self.namespace.startswith(GEL_PREFIX):
            self.add(LintCode.NAMESPACE, f"El espacio de nombres {self.namespace} no sigue el patrón "
                     f"{GEL_PREFIX}<Area>/…", self.root)
        elif self.kind == SchemaKind.FOREIGN:
            self.add(LintCode.NAMESPACE_VERSION, f"El espacio de nombres {self.namespace} de un servicio debe "
                     "tener la forma …/<Dominio>/<Servicio>/<mayor>.<menor> (por ejemplo …/Vivienda/"
                     "VerificarIdentidad/1.0).", self.root)

    @staticmethod
    def documentation_of(node: etree._Element) -> list[etree._Element]:
        return [d for d in node.iterfind(f"{_XS}annotation/{_XS}documentation") if (d.text or "").strip()]

    def check_elements(self) -> None:
        for element in self.root.iter(f"{_XS}element"):
            name = element.get("name") or element.get("ref", "").split(":")[-1]
            if element.get("name") is not None and not _LOWER_CAMEL.match(name):
                self.add(LintCode.ELEMENT_NAME, f"El elemento {name} debe nombrarse en lowerCamelCase "
                         "(por ejemplo primerApellido).", element)
            docs = self.documentation_of(element)
            if not docs:
                self.add(LintCode.DOCUMENTATION, f"El elemento {name} no tiene documentación en español "
                         "(xs:annotation/xs:documentation).", element)
            elif all(d.get(_XML_LANG) not in ("es", "es-CO") for d in docs):
                self.add(LintCode.LANGUAGE, f'La documentación de {name} debe declarar xml:lang="es".',
                         element, Severity.WARNING)

    def check_types(self) -> None:
        for node in self.root.iter(f"{_XS}complexType", f"{_XS}simpleType"):
            name = node.get("name")
            if name is None:
                continue
            is_enum = node.find(f"{_XS}restriction/{_XS}enumeration") is not None
            if is_enum and not name.startswith("enum"):
                self.add(LintCode.ENUM_NAME, f"El tipo {name} es una enumeración: su nombre debe empezar por "
                         "'enum' (por ejemplo enumCodSexoAlf1).", node)
            elif not is_enum and not name.startswith("tipo"):
                self.add(LintCode.TYPE_NAME, f"El tipo {name} debe empezar por 'tipo' (por ejemplo "
                         "tipoDatoTelefono).", node)

    def check_service_roots(self) -> None:
        service = self.namespace.rstrip("/").split("/")[-2]
        names = [el.get("name", "") for el in self.root.iterfind(f"{_XS}element")]
        for name, node in zip(names, self.root.iterfind(f"{_XS}element"), strict=True):
            if not (name in (f"entrada{service}", f"salida{service}") or name.startswith(f"evento{service}")):
                self.add(LintCode.ROOTS, f"El elemento global {name} no está permitido: un esquema de servicio "
                         f"solo declara entrada{service}, salida{service} y evento{service}…", node)
        for required in (f"entrada{service}", f"salida{service}"):
            if required not in names:
                self.add(LintCode.ROOTS, f"Falta el elemento raíz {required} del servicio.", self.root)

    def check_metadata(self, element: etree._Element) -> None:
        name = element.get("name", "?")
        meta = element.find(f"{_XS}annotation/{_XS}appinfo/{_GEL}metadatos")
        if meta is None:
            self.add(LintCode.METADATA, f"El elemento de datos {name} no tiene los metadatos del estándar "
                     "(xs:appinfo/gel:metadatos).", element)
            return
        values: dict[str, str] = {}
        for field_name in _METADATA_FIELDS:
            node = meta.find(f"{_GEL}{field_name}")
            if node is None:
                self.add(LintCode.METADATA, f"A los metadatos de {name} les falta gel:{field_name}.", meta)
                continue
            values[field_name] = (node.text or "").strip()
        for required in ("fuente", "usos"):
            if values.get(required) == "":
                self.add(LintCode.METADATA, f"El metadato gel:{required} de {name} está vacío.", meta)
        if "fechaIncorporacion" in values:
            try:
                date.fromisoformat(values["fechaIncorporacion"])
            except ValueError:
                self.add(LintCode.METADATA_DATE, f"gel:fechaIncorporacion de {name} debe ser una fecha "
                         f"AAAA-MM-DD, no '{values['fechaIncorporacion']}'.", meta)
        self.check_validation_regex(element, name, values.get("validacion"))
        for relation in ("requiere", "requeridoPor"):
            for ref in values.get(relation, "").split():
                if ref not in self.known:
                    self.add(LintCode.METADATA_REFERENCE, f"gel:{relation} de {name} nombra {ref}, que no es un "
                             "elemento de datos conocido.", meta, Severity.WARNING)

    def check_validation_regex(self, element: etree._Element, name: str, regex: str | None) -> None:
        if not regex:
            return
        from elementpath.regex import translate_pattern

        try:
            re.compile(translate_pattern(regex))
        except Exception:
            self.add(LintCode.METADATA_REGEX, f"gel:validacion de {name} no es una expresión regular XSD "
                     f"válida: {regex}", element)
            return
        pattern = self.pattern_facet(element)
        if pattern is not None and pattern != regex:
            self.add(LintCode.METADATA_MISMATCH, f"gel:validacion de {name} ({regex}) no coincide con el "
                     f"patrón del tipo ({pattern}).", element, Severity.WARNING)

    def pattern_facet(self, element: etree._Element) -> str | None:
        facet = element.find(f"{_XS}simpleType/{_XS}restriction/{_XS}pattern")
        type_name = element.get("type", "").split(":")[-1]
        if facet is None and type_name:
            facet = self.root.find(f"{_XS}simpleType[@name='{type_name}']/{_XS}restriction/{_XS}pattern")
        return facet.get("value") if facet is not None else None

    def check_cod_nom(self) -> None:
        names: dict[str, etree._Element] = {}
        for element in self.root.iter(f"{_XS}element"):
            name = element.get("name") or element.get("ref", "").split(":")[-1]
            names.setdefault(name, element)
        for name, node in names.items():
            if name.startswith("nom") and len(name) > 3 and name[3].isupper() and "cod" + name[3:] not in names:
                self.add(LintCode.COD_NOM, f"{name} aparece sin su código cod{name[3:]}: los valores codificados "
                         "van en pares cod/nom.", node, Severity.WARNING)


def _data_elements(roots: Iterable[etree._Element]) -> set[str]:
    known: set[str] = set()
    for root in roots:
        namespace = root.get("targetNamespace", "")
        prefixes = [p for p, uri in root.nsmap.items() if uri == namespace and p]
        for element in root.iterfind(f"{_XS}element"):
            for prefix in prefixes:
                known.add(f"{prefix}:{element.get('name')}")
    return known


def _schema_files(paths: Iterable[Path]) -> Iterator[Path]:
    for path in paths:
        if path.is_dir():
            yield from (p for p in sorted(path.rglob("*.xsd")) if "samples" not in p.parts)
        else:
            yield path


def lint_schema(path: Path, known_data_elements: set[str] | None = None) -> list[Finding]:
    """Every finding for one schema file."""
    try:
        root = parse_untrusted(path.read_bytes(), _SCHEMA_LIMITS)
    except OSError as exc:
        return [Finding(LintCode.PARSE, Severity.ERROR, f"No se pudo leer el archivo: {exc.strerror}.", path)]
    except GelFault as exc:
        location = exc.falla.location
        return [Finding(LintCode.PARSE, Severity.ERROR, f"{exc.falla.code}: {exc.falla.message}", path,
                        location.line if location else None)]
    if root.tag != f"{_XS}schema":
        return [Finding(LintCode.NOT_SCHEMA, Severity.ERROR, "El archivo no es un esquema XSD (xs:schema).", path, 1)]
    findings = _Checker(path, root, known_data_elements or _data_elements([root])).run()
    try:
        etree.XMLSchema(etree.parse(str(path), _SAFE_PARSER))
    except etree.XMLSchemaParseError as exc:
        findings.append(Finding(LintCode.COMPILE, Severity.ERROR, f"El esquema no compila: {exc}", path))
    return findings


def lint_paths(paths: Iterable[Path], reference: Iterable[Path] = ()) -> list[Finding]:
    """Lint every schema under `paths`; `reference` schemas only supply known data element names."""
    files = list(_schema_files(paths))
    roots = []
    for path in [*files, *_schema_files(reference)]:
        try:
            roots.append(parse_untrusted(path.read_bytes(), _SCHEMA_LIMITS))
        except (OSError, GelFault):
            continue
    known = _data_elements(r for r in roots if classify_namespace(r.get("targetNamespace", "")) == SchemaKind.COMMON)
    findings: list[Finding] = []
    for path in files:
        findings.extend(lint_schema(path, known))
    return findings
