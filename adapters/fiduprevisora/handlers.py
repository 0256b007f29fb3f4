"""movilizarSubsidio: pay an assigned subsidy to the oferente's account, once.

The fiduciaria pays a subsidy it administers (sfv_encargos, by radicado and resolution) when it is still
pending and the value asked is the value assigned; the payment (giros) takes the next number of the GIRO
series as its reference (FPV-DES-<year>-<number>) and ACH authorisation. The answer is always read back from
the ledger: a second request for the same radicado finds the first payment and gets the same receipt.

- pending, right value → PAGADO with the payment (reference, value, bank, authorisation, time);
- expired, revoked, or another value → RECHAZADO, the reason in nomEstadoDesembolso, nothing paid;
- a radicado/resolution the fiduciaria does not administer → falla GEL-ADAPTER-NOT_FOUND.
"""

from __future__ import annotations

from datetime import datetime

from lxml import etree

from adapters.fiduprevisora import legacy
from adapters.sdk.connectors import LegacyNotFound
from adapters.sdk.mapping import COLOMBIA
from adapters.sdk.runtime import Incoming

__all__ = ["movilizar_subsidio"]

_MAPPING = legacy.mapping("movilizarSubsidio.yaml")


def movilizar_subsidio(request: Incoming) -> etree._Element:
    assert request.payload is not None
    params = _MAPPING.solicitud.to_legacy(request.payload)
    now = datetime.now(COLOMBIA)
    connector = legacy.connector()
    connector.call("registrar_giro", {**params, "anio": str(now.year), "fecha_compacta": f"{now:%Y%m%d}",
                                      "ahora": f"{now:%d/%m/%Y %H:%M:%S}"})
    found = connector.call("consultar_giro", params)
    if not found:
        raise LegacyNotFound(connector.entity, what=f"el subsidio del radicado {params['radicado']} con la "
                                                    f"resolución {params['resolucion']}")
    return _MAPPING.respuesta.to_gel(found[0])
