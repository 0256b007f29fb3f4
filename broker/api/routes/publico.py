"""What answers without a token: the citizen's tracking and the API's liveness."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from broker.api.errors import ERROR_RESPONSES, ApiError
from broker.api.models import Seguimiento, Vida
from broker.api.routes.common import StoresDep
from broker.api.tracking import track

router = APIRouter(tags=["público"])
TRACKING_NOT_FOUND = "No encontramos un trámite con ese radicado y ese número de documento."


@router.get("/api/seguimiento", response_model=Seguimiento, summary="Seguimiento de un trámite",
            responses={404: ERROR_RESPONSES[404], 422: ERROR_RESPONSES[422]})
def tracking(
    stores: StoresDep,
    radicado: Annotated[str, Query(description="Radicado que le dieron al iniciar el trámite.", min_length=1,
                                   max_length=64)],
    documento: Annotated[str, Query(description="Número de documento del titular del trámite.", min_length=1,
                                    max_length=20)],
) -> Seguimiento:
    """El estado de su trámite en palabras sencillas: qué entidad lo tiene, qué ha pasado y cuándo se espera."""
    found = track(stores, radicado, documento)
    if found is None:
        raise ApiError(404, "GEL-API-NOT_FOUND", TRACKING_NOT_FOUND)
    return found


@router.get("/salud", response_model=Vida, summary="La API está viva")
def liveness() -> Vida:
    return Vida(estado="ok")
