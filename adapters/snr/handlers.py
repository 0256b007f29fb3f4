"""consultarPropiedad: for each person asked (up to 20, in the request's order), whether the property
registry holds a current right of theirs over a property, and over which folios (matrícula, municipality,
address, share of the right).

A person the registry does not know owns nothing: that is an answer (`tienePropiedad` false), not a falla.
A right that was transferred (a sold house) is history in the folio and does not count.
"""

from __future__ import annotations

from lxml import etree

from adapters.sdk.package import per_person
from adapters.sdk.runtime import Incoming
from adapters.snr import legacy

__all__ = ["consultar_propiedad"]

_PERSON = legacy.mapping("consultarPropiedad.yaml")
_FOLIO = legacy.mapping("predio.yaml")


def consultar_propiedad(request: Incoming) -> etree._Element:
    assert request.payload is not None
    connector = legacy.connector()
    answer: etree._Element | None = None
    for asked in per_person(request.payload):
        params = _PERSON.solicitud.to_legacy(asked)
        folios = connector.call("predios_vigentes", params)
        person = _PERSON.respuesta.to_gel({**params, "tiene_propiedad": "true" if folios else "false"},
                                          validate=False)
        entry = person[0]  # svc:propiedadPersona
        for folio in folios:
            entry.append(_FOLIO.respuesta.to_gel(folio, validate=False)[0][0])  # its svc:predio
        if answer is None:
            answer = person
        else:
            answer.append(entry)
    assert answer is not None, "the schema asks for at least one per:identificacion"
    return legacy.checked(answer)
