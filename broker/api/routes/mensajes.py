"""Messages: search over operational records, one message's metadata (and body for its parties), evidence."""

from __future__ import annotations

import datetime as dt
import tempfile
from pathlib import Path as FilePath
from typing import Annotated

from fastapi import APIRouter, Path, Query, Response

from broker.api.auth import Viewer
from broker.api.errors import ERROR_RESPONSES, not_found
from broker.api.models import MensajeDetalle, PaginaMensajes
from broker.api.queries import message_detail, message_page
from broker.api.routes.common import AUTHENTICATED_RESPONSES, StoresDep, utc
from broker.gelxml import GelFault
from broker.security.evidence import export_evidence, find_record

router = APIRouter(prefix="/api/mensajes", tags=["mensajes"], responses=AUTHENTICATED_RESPONSES)
MessageId = Annotated[str, Path(description="idMensaje.", min_length=1, max_length=64, pattern=r"^[A-Za-z0-9._:-]+$")]


@router.get("", response_model=PaginaMensajes, summary="Buscar mensajes")
def search_messages(
    principal: Viewer,
    stores: StoresDep,
    id_mensaje: Annotated[str | None, Query(alias="idMensaje", description="idMensaje.", max_length=64)] = None,
    entidad: Annotated[str | None, Query(description="Remitente o destinatario.", max_length=64)] = None,
    servicio: Annotated[str | None, Query(description="Código del servicio.", max_length=128)] = None,
    desde: Annotated[dt.datetime | None, Query(description="Desde (ISO-8601; sin zona se toma UTC).")] = None,
    hasta: Annotated[dt.datetime | None, Query(description="Hasta (ISO-8601; sin zona se toma UTC).")] = None,
    resultado: Annotated[str | None, Query(description="entregado, reenviado, rechazado o sin_respuesta.",
                                           max_length=16)] = None,
    desplazamiento: Annotated[int, Query(ge=0, le=1_000_000, description="Tramos a omitir.")] = 0,
    limite: Annotated[int, Query(ge=1, le=500, description="Tamaño de la página.")] = 50,
) -> PaginaMensajes:
    """Tramos de mensajes (registros operacionales); una entidad ve solo aquellos en que es parte."""
    return message_page(stores, principal, message_id=id_mensaje, entity=entidad, service=servicio,
                        since=utc(desde, "desde"), until=utc(hasta, "hasta"), outcome=resultado,
                        offset=desplazamiento, limit=limite)


@router.get("/{id_mensaje}", response_model=MensajeDetalle, summary="Un mensaje",
            responses={404: ERROR_RESPONSES[404]})
def get_message(principal: Viewer, stores: StoresDep, id_mensaje: MessageId) -> MensajeDetalle:
    """Metadatos del mensaje; su contenido solo para el operador y para quien lo envió o lo recibió."""
    detail = message_detail(stores, principal, id_mensaje)
    if detail is None:
        raise not_found(f"el mensaje {id_mensaje}")
    return detail


@router.get("/{id_mensaje}/evidencia", response_class=Response, summary="Paquete de evidencia del mensaje",
            responses={200: {"content": {"application/zip": {}}, "description": "Zip verificable con xmlsec1 y "
                                                                                 "openssl."},
                       404: ERROR_RESPONSES[404]})
def get_evidence(principal: Viewer, stores: StoresDep, id_mensaje: MessageId) -> Response:
    """El zip de evidencia (mensaje, sello de tiempo, registro encadenado); para el operador o una parte."""
    try:
        record = find_record(stores.log, id_mensaje)
    except GelFault as exc:
        raise not_found(f"el mensaje {id_mensaje}") from exc
    if not principal.is_operator and principal.entity not in (record.sender, record.recipient):
        raise not_found(f"el mensaje {id_mensaje}")
    with tempfile.TemporaryDirectory() as folder:
        path = export_evidence(stores.log, str(record.seq), FilePath(folder) / "evidencia.zip",
                               stores.settings.certs_dir)
        content = path.read_bytes()
    name = f"evidencia-{record.seq}.zip"
    return Response(content, media_type="application/zip",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})
