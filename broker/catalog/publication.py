"""Publishing a service: the manifest a developer writes, and the checks a publication must pass.

A publication brings one GEL-XML service schema (its namespace names domain, service and version, and it
declares the `entrada…`/`salida…` roots), the entities that provide it, who may call it, its response
deadline and sample messages. The schema must pass `gel schemas lint` without errors and compile together
with the whole language; each sample must be a message the gateway would accept for that service.
"""

from __future__ import annotations

import hashlib
import os
import tempfile
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from broker.catalog.errors import CatalogCode, CatalogError
from broker.gelxml import GelFault, check_message
from broker.gelxml.envelope import read_header
from broker.gelxml.lint import Severity, lint_schema
from broker.gelxml.parsing import ParseLimits, parse_untrusted
from broker.gelxml.registry import SchemaCompileError, SchemaKind, SchemaRegistry, ServiceSchema, classify_namespace

__all__ = [
    "SAMPLE_KINDS",
    "CheckedPublication",
    "Publication",
    "check_publication",
    "layout_path",
    "materialise",
    "read_manifest",
]

SAMPLE_KINDS = ("solicitud", "respuesta", "evento")
_SHARED_FOLDERS = ("Comun", "Plataforma")
_SCHEMA_LIMITS = ParseLimits(max_bytes=2 * 1_048_576, max_depth=128)


@dataclass(frozen=True, slots=True)
class Publication:
    """What a service developer submits."""

    schema: bytes
    owner: str
    providers: tuple[str, ...]
    callers: tuple[str, ...] = ()
    subscribers: tuple[str, ...] = ()
    reply_within_seconds: int | None = None
    description: str | None = None
    samples: Mapping[str, bytes] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class CheckedPublication:
    """A publication that passed every check, with what its schema declares."""

    publication: Publication
    code: str
    version: str
    domain: str
    namespace: str
    description: str
    schema_sha256: str
    warnings: tuple[dict[str, Any], ...]

    @property
    def schema_path(self) -> str:
        return layout_path(self.namespace)


def layout_path(namespace: str) -> str:
    """Where a service schema lives under a schema root: `<Dominio>/<Servicio>/<versión>/<Servicio>.xsd`."""
    domain, service, version = namespace.rstrip("/").split("/")[-3:]
    return f"{domain}/{service}/{version}/{service}.xsd"


def materialise(schemas: Iterable[tuple[str, bytes]], base_root: Path, folder: Path) -> Path:
    """Write published schemas under `folder` laid out like the platform's, with the shared schemas linked in,
    so their relative imports (`../../../Comun/…`) resolve. Returns `folder`."""
    folder.mkdir(parents=True, exist_ok=True)
    for shared in _SHARED_FOLDERS:
        link = folder / shared
        if not link.exists():
            link.symlink_to(base_root / shared, target_is_directory=True)
    for relative, content in schemas:
        target = folder / relative
        target.parent.mkdir(parents=True, exist_ok=True)
        temporary = target.with_name(f".{target.name}.{os.getpid()}.tmp")
        temporary.write_bytes(content)
        temporary.replace(target)
    return folder


def _finding(code: str, message: str, line: int | None = None, where: str = "esquema") -> dict[str, Any]:
    return {"archivo": where, "linea": line, "codigo": code, "severidad": str(Severity.ERROR),
            "descripcion": message}


def _namespace_of(schema: bytes) -> str:
    try:
        root = parse_untrusted(schema, _SCHEMA_LIMITS)
    except GelFault as exc:
        raise CatalogError(CatalogCode.SCHEMA_REFUSED, "El esquema no es XML bien formado.",
                           [_finding(str(exc.falla.code), exc.falla.message,
                                     exc.falla.location.line if exc.falla.location else None)]) from None
    namespace = root.get("targetNamespace", "")
    if classify_namespace(namespace) != SchemaKind.SERVICE:
        raise CatalogError(CatalogCode.SCHEMA_REFUSED, "El esquema no declara el espacio de nombres de un servicio "
                           "GEL-XML (…/schemas/<Dominio>/<Servicio>/<mayor>.<menor>).",
                           [_finding("GEL-LINT-NAMESPACE", f"targetNamespace «{namespace or '(vacío)'}» no es el de "
                                     "un servicio.", 1)])
    return namespace


def _check_samples(publication: Publication, service: ServiceSchema, registry: SchemaRegistry) -> None:
    for kind, sample in publication.samples.items():
        where = f"muestra {kind}"
        if kind not in SAMPLE_KINDS:
            raise CatalogError(CatalogCode.SAMPLE_INVALID, f"Muestra «{kind}» desconocida: use "
                               f"{', '.join(SAMPLE_KINDS)}.")
        try:
            message = check_message(sample, registry)
        except GelFault as exc:
            line = exc.falla.location.line if exc.falla.location else None
            raise CatalogError(CatalogCode.SAMPLE_INVALID, f"La {where} no es un mensaje válido: {exc.falla.message}",
                               [_finding(str(exc.falla.code), exc.falla.message, line, where)]) from None
        header = read_header(message.root)
        if (header.service.code, header.service.version) != service.key or header.message_type.value != kind:
            raise CatalogError(CatalogCode.SAMPLE_INVALID, f"La {where} es un mensaje {header.message_type.value} de "
                               f"{header.service.code} {header.service.version}; se esperaba {kind} de "
                               f"{service.code} {service.version}.")


def check_publication(publication: Publication, base: SchemaRegistry) -> CheckedPublication:
    """Lint the schema, compile it with the language, check the samples; raise `CatalogError` with findings."""
    namespace = _namespace_of(publication.schema)
    relative = layout_path(namespace)
    with tempfile.TemporaryDirectory(prefix="gel-publicacion-") as workspace:
        folder = materialise([(relative, publication.schema)], base.root, Path(workspace))
        path = folder / relative
        findings = lint_schema(path)
        errors = [f for f in findings if f.severity == Severity.ERROR]
        as_dicts = [{**f.to_dict(), "archivo": relative} for f in findings]
        if errors:
            raise CatalogError(CatalogCode.SCHEMA_REFUSED, f"El esquema no cumple las convenciones GEL-XML "
                               f"({len(errors)} errores). Corríjalos y publique de nuevo.",
                               [d for d in as_dicts if d["severidad"] == str(Severity.ERROR)])
        try:
            registry = SchemaRegistry(base.root, published=(folder,))
        except ValueError as exc:
            raise CatalogError(CatalogCode.VERSION_EXISTS, f"{exc}. Publique una versión nueva.") from None
        service = registry.service_for_namespace(namespace)
        assert service is not None
        try:
            _ = registry.language
        except SchemaCompileError as exc:
            raise CatalogError(CatalogCode.SCHEMA_REFUSED, "El esquema no compila junto con el lenguaje GEL-XML.",
                               [_finding("GEL-LINT-COMPILE", str(exc))]) from None
        _check_samples(publication, service, registry)
        description = publication.description or service.description
    return CheckedPublication(
        publication=publication, code=service.code, version=service.version, domain=service.domain,
        namespace=namespace, description=description,
        schema_sha256=hashlib.sha256(publication.schema).hexdigest(),
        warnings=tuple(d for d in as_dicts if d["severidad"] != str(Severity.ERROR)))


def _entities(value: Any, name: str) -> tuple[str, ...]:
    if value is None:
        return ()
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise CatalogError(CatalogCode.MANIFEST, f"«{name}» debe ser una lista de identificadores de entidad.")
    return tuple(value)


def read_manifest(path: Path) -> Publication:
    """A publication from a YAML manifest; `esquema` and `muestras` are files relative to the manifest."""
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        raise CatalogError(CatalogCode.MANIFEST, f"No se pudo leer el manifiesto {path}: {exc}") from None
    if not isinstance(data, dict):
        raise CatalogError(CatalogCode.MANIFEST, f"El manifiesto {path} debe ser un mapa YAML.")
    unknown = set(data) - {"esquema", "entidadPropietaria", "proveedores", "consumidores", "suscriptores",
                           "plazoRespuestaSegundos", "descripcion", "muestras"}
    if unknown:
        raise CatalogError(CatalogCode.MANIFEST, f"Campos desconocidos en el manifiesto: {', '.join(sorted(unknown))}.")
    for required in ("esquema", "entidadPropietaria"):
        if not isinstance(data.get(required), str):
            raise CatalogError(CatalogCode.MANIFEST, f"Falta «{required}» en el manifiesto {path}.")

    def read(relative: str, what: str) -> bytes:
        try:
            return (path.parent / relative).read_bytes()
        except OSError as exc:
            raise CatalogError(CatalogCode.MANIFEST, f"No se pudo leer {what} {relative}: {exc.strerror}.") from None

    samples = data.get("muestras") or {}
    if not isinstance(samples, dict):
        raise CatalogError(CatalogCode.MANIFEST, "«muestras» debe ser un mapa tipo → archivo (solicitud, respuesta, "
                           "evento).")
    deadline = data.get("plazoRespuestaSegundos")
    if deadline is not None and (not isinstance(deadline, int) or isinstance(deadline, bool) or deadline <= 0):
        raise CatalogError(CatalogCode.MANIFEST, "«plazoRespuestaSegundos» debe ser un entero positivo.")
    owner = data["entidadPropietaria"]
    return Publication(
        schema=read(data["esquema"], "el esquema"), owner=owner,
        providers=_entities(data.get("proveedores"), "proveedores") or (owner,),
        callers=_entities(data.get("consumidores"), "consumidores"),
        subscribers=_entities(data.get("suscriptores"), "suscriptores"),
        reply_within_seconds=deadline, description=data.get("descripcion"),
        samples={str(kind): read(str(name), f"la muestra {kind}") for kind, name in samples.items()})

