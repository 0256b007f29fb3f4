"""The environmental licence window's sample case, shared by its chain test and the chaos harness: the solar
park's filing (expediente LAV0045-00-2026), the values its human tasks are completed with, and who completes them."""

from __future__ import annotations

import copy

from lxml import etree

from broker.gelxml.namespaces import DOCUMENTO
from tests.integration.adapter_kit import sample_payload

CHAIN = "ambiental-licencia"
APPLICANT = "CO/PRIV/900654328"
ANLA = "CO/GOB/900467239"
# The solar park's area (the sample polygon's extent): two Wayuu communities inside, no protected area.
AREA = {"latitudNorte": "11.5234", "latitudSur": "11.448", "longitudOeste": "-72.3015", "longitudEste": "-72.1987"}
TASK_VALUES: dict[str, dict[str, str]] = {
    "presentar_daa": {"documentoDAA": "https://vital.anla.gov.co/cargas/2026/11/DAA-Parque-Solar-Alta-Guajira.pdf",
                      "numAlternativas": "3"},
    "elegir_alternativa": {"alternativaElegida": "Alternativa 2: sector Jepira - Kasichi, conexión a Cuestecitas",
                           **AREA},
    "georreferenciar": AREA,
    "pagar": {},
    "visita": {"fechaVisita": "2026-12-09", "observacionesVisita": "Se verificó el área de la alternativa elegida; "
                                                                   "coincide con la cartografía del EIA."},
}
OFFICIALS = {APPLICANT: "Carlos Andrés Mejía Rojas", ANLA: "Ing. Martha Lucía Rincón (evaluadora ANLA)"}


def filing(*, without: str | None = None) -> etree._Element:
    """The sample licence request (the solar park of expediente LAV0045-00-2026), without one support if asked."""
    payload = sample_payload("radicarSolicitudLicencia-solicitud.xml")
    if without is not None:
        for attached in payload.iterfind(f".//{{{DOCUMENTO}}}documentoAdjunto"):
            if attached.findtext(f"{{{DOCUMENTO}}}codTipoDocumentoAdjunto") == without:
                attached.getparent().remove(attached)  # type: ignore[union-attr]
    return payload


def certificate() -> etree._Element:
    """The certificate of existence the sample filing carries, as the applicant sends it again."""
    found = next(d for d in filing().iterfind(f".//{{{DOCUMENTO}}}documentoAdjunto")
                 if d.findtext(f"{{{DOCUMENTO}}}codTipoDocumentoAdjunto") == "CERT_EXISTENCIA")
    return copy.deepcopy(found)
