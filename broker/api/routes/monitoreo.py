"""Operational health (X-Road style) and Prometheus metrics."""

from __future__ import annotations

import datetime as dt
from typing import Annotated

from fastapi import APIRouter, Query, Response

from broker.api.auth import Operator, Viewer
from broker.api.metrics import render_metrics
from broker.api.models import Salud
from broker.api.queries import health
from broker.api.routes.common import AUTHENTICATED_RESPONSES, StoresDep

router = APIRouter(tags=["monitoreo"], responses=AUTHENTICATED_RESPONSES)
PROMETHEUS_TEXT = "text/plain; version=0.0.4; charset=utf-8"


@router.get("/api/salud", response_model=Salud, summary="Salud de los servicios")
def service_health(
    principal: Viewer,
    stores: StoresDep,
    ventana_min: Annotated[int, Query(ge=1, le=43_200, description="Ventana en minutos (por defecto una hora).")] = 60,
) -> Salud:
    """Por servicio: último éxito, última falla, conteos por resultado y duración p50/p95/máxima; por entidad,
    su última actividad. Una entidad ve solo el tráfico en que es parte."""
    return health(stores, principal, window=dt.timedelta(minutes=ventana_min))


@router.get("/metrics", response_class=Response, summary="Métricas de Prometheus",
            responses={200: {"content": {"text/plain": {}}, "description": "Formato de exposición de Prometheus."}})
def metrics(_principal: Operator, stores: StoresDep) -> Response:
    """Mensajes por resultado y falla, duración, cadenas por estado, vencidas y tareas abiertas (rol operador)."""
    return Response(render_metrics(stores), media_type=PROMETHEUS_TEXT)
