"""notificarResultado: hand the notification to Compensar's batch process and acknowledge it.

The request becomes one row of a CSV file written atomically to the caja's `salida/` folder (the file-drop
connector's `notificaciones` operation), in Compensar's layout (mappings/notificarResultado.yaml, columns in
adapter.yaml). The channel follows the contact data the request carries: e-mail (E) when there is an
address, certified mail (C) to the postal address otherwise, in person (P) when there is neither.
`notificado` true means the batch has the notification; `fechaHoraNotificacion` is when it was handed over.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from lxml import etree

from adapters.compensar import legacy
from adapters.sdk.mapping import COLOMBIA
from adapters.sdk.runtime import Incoming

__all__ = ["notificar_resultado"]

_MAPPING = legacy.mapping("notificarResultado.yaml")


def _channel(row: dict[str, Any]) -> str:
    if row.get("email"):
        return "E"
    if row.get("direccion") or row.get("direccion_rural"):
        return "C"
    return "P"


def notificar_resultado(request: Incoming) -> etree._Element:
    assert request.payload is not None
    row = _MAPPING.solicitud.to_legacy(request.payload)
    row["canal"] = _channel(row)
    row["fecha_registro"] = f"{datetime.now(COLOMBIA):%Y-%m-%d %H:%M:%S}"
    legacy.connector().call("notificaciones", {"registros": [row], "archivo": f"notificaciones_{row['radicado']}"})
    return _MAPPING.respuesta.to_gel({"notificado": "true", "canal": row["canal"],
                                      "fecha_registro": row["fecha_registro"]})
