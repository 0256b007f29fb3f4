"""The data-element catalogue: every global element of the `Comun` schemas with its metadata."""

from __future__ import annotations

from dataclasses import asdict, dataclass

from lxml import etree

from broker.gelxml.namespaces import METADATOS, XSD
from broker.gelxml.registry import SchemaKind, SchemaRegistry

__all__ = ["DataElement", "data_elements"]

_XS = f"{{{XSD}}}"
_GEL = f"{{{METADATOS}}}"


@dataclass(frozen=True, slots=True)
class DataElement:
    """One GEL-XML data element and the standard's metadata about it."""

    qualified_name: str
    namespace: str
    name: str
    type: str
    documentation: str
    source: str
    uses: str
    incorporated: str
    validation: str
    requires: tuple[str, ...]
    required_by: tuple[str, ...]

    def to_dict(self) -> dict[str, object]:
        data = asdict(self)
        return {
            "nombreCalificado": data["qualified_name"],
            "espacioNombres": data["namespace"],
            "nombre": data["name"],
            "tipo": data["type"],
            "documentacion": data["documentation"],
            "fuente": data["source"],
            "usos": data["uses"],
            "fechaIncorporacion": data["incorporated"],
            "validacion": data["validation"],
            "requiere": list(data["requires"]),
            "requeridoPor": list(data["required_by"]),
        }


def _text(node: etree._Element | None) -> str:
    return " ".join((node.text or "").split()) if node is not None else ""


def data_elements(registry: SchemaRegistry) -> list[DataElement]:
    """The catalogue, ordered by namespace and name."""
    found: list[DataElement] = []
    for schema_file in registry.files:
        if schema_file.kind != SchemaKind.COMMON:
            continue
        root = etree.parse(str(schema_file.path)).getroot()
        prefix = next((p for p, uri in root.nsmap.items() if uri == schema_file.namespace and p), "")
        for element in root.iterfind(f"{_XS}element"):
            meta = element.find(f"{_XS}annotation/{_XS}appinfo/{_GEL}metadatos")

            def field(name: str, meta: etree._Element | None = meta) -> str:
                return _text(meta.find(f"{_GEL}{name}")) if meta is not None else ""

            name = element.get("name", "")
            found.append(DataElement(
                qualified_name=f"{prefix}:{name}" if prefix else name,
                namespace=schema_file.namespace,
                name=name,
                type=element.get("type", "(tipo anónimo)"),
                documentation=_text(element.find(f"{_XS}annotation/{_XS}documentation")),
                source=field("fuente"),
                uses=field("usos"),
                incorporated=field("fechaIncorporacion"),
                validation=field("validacion"),
                requires=tuple(field("requiere").split()),
                required_by=tuple(field("requeridoPor").split()),
            ))
    return sorted(found, key=lambda d: (d.namespace, d.name))
