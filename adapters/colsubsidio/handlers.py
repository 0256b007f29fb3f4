"""notificarResultado: hand the notification to Colsubsidio's batch process and acknowledge it.

The request becomes one row of a CSV file written atomically to the caja's `salida/` folder (the file-drop
connector's `notificaciones` operation), in the layout the batch expects (mappings/notificarResultado.yaml,
columns in adapter.yaml). The medium follows the contact data the request carries: e-mail when there is an
address, certified mail to the postal address otherwise, in person at an office when there is neither.
`notificado` true means the batch has the notification; `fechaHoraNotificacion` is when it was handed over.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lxml import etree

from adapters.colsubsidio import legacy
from adapters.sdk.mapping import COLOMBIA
from adapters.sdk.runtime import Incoming

__all__ = ["notificar_resultado"]

_MAPPING = legacy.mapping("notificarResultado.yaml")


def _medium(row: dict[str, Any]) -> str:
    if row.get("CORREO"):
        return "EMAIL"
    if row.get("DIRECCION") or row.get("DIRECCION_RURAL"):
        return "CERTIFICADO"
    return "VENTANILLA"


def notificar_resultado(request: Incoming) -> etree._Element:
    assert request.payload is not None
    row = _MAPPING.solicitud.to_legacy(request.payload)
    row["MEDIO"] = _medium(row)
    row["FECHA_RECIBO"] = f"{datetime.now(COLOMBIA):%d/%m/%Y %H:%M:%S}"
    legacy.connector().call("notificaciones", {"registros": [row], "archivo": f"NOTIF_VIVIENDA_{row['RADICADO']}"})
    return _MAPPING.respuesta.to_gel({"NOTIFICADO": "true", "MEDIO": row["MEDIO"], "FECHA_RECIBO": row["FECHA_RECIBO"]})
