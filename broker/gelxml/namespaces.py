"""Namespace URIs of GEL-XML and of the standards the platform builds on."""

from typing import Final

GEL_PREFIX: Final = "http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/"

MENSAJE: Final = GEL_PREFIX + "Plataforma/Mensaje"
FALLA: Final = GEL_PREFIX + "Plataforma/Falla"
ACUSE: Final = GEL_PREFIX + "Plataforma/Acuse"
METADATOS: Final = GEL_PREFIX + "Metadatos"

PERSONAL: Final = GEL_PREFIX + "Comun/Personal"
UBICACION: Final = GEL_PREFIX + "Comun/Ubicacion"
DOCUMENTO: Final = GEL_PREFIX + "Comun/Documento"
FINANCIERO: Final = GEL_PREFIX + "Comun/Financiero"
ENTIDAD: Final = GEL_PREFIX + "Comun/Entidad"

XSD: Final = "http://www.w3.org/2001/XMLSchema"
DSIG: Final = "http://www.w3.org/2000/09/xmldsig#"
XINCLUDE: Final = "http://www.w3.org/2001/XInclude"
SHA256_URI: Final = "http://www.w3.org/2001/04/xmlenc#sha256"

COMMON_PREFIXES: Final[dict[str, str]] = {
    "per": PERSONAL,
    "ubi": UBICACION,
    "doc": DOCUMENTO,
    "fin": FINANCIERO,
    "ent": ENTIDAD,
}
"""The prefixes by which mappings and chain definitions name the `Comun` data elements."""

PREFIXES: Final[dict[str, str]] = {
    "msj": MENSAJE,
    "fal": FALLA,
    "acu": ACUSE,
    "gel": METADATOS,
    "per": PERSONAL,
    "ubi": UBICACION,
    "doc": DOCUMENTO,
    "fin": FINANCIERO,
    "ent": ENTIDAD,
    "xs": XSD,
    "ds": DSIG,
}


def qname(namespace: str, local: str) -> str:
    """Clark notation `{namespace}local`, the form lxml uses for tags."""
    return f"{{{namespace}}}{local}"
