"""Chain instances and human tasks."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path, Query

from broker.api.auth import Viewer
from broker.api.errors import ERROR_RESPONSES, not_found
from broker.api.models import CadenaDetalle, CadenaResumen, Tarea
from broker.api.queries import chain_detail, chain_list, open_tasks
from broker.api.routes.common import AUTHENTICATED_RESPONSES, StoresDep

router = APIRouter(prefix="/api", tags=["cadenas"], responses=AUTHENTICATED_RESPONSES)


@router.get("/cadenas", response_model=list[CadenaResumen], summary="Instancias de cadenas de trámites")
def list_chains(
    principal: Viewer,
    stores: StoresDep,
    cadena: Annotated[str | None, Query(description="Nombre de la cadena.", max_length=64)] = None,
    estado: Annotated[str | None, Query(description="Estado de la instancia.", max_length=16)] = None,
    entidad: Annotated[str | None, Query(description="Entidad que tiene el trámite ahora.", max_length=64)] = None,
    vencidas: Annotated[bool | None, Query(description="Solo vencidas (true) o solo a tiempo (false).")] = None,
    limite: Annotated[int, Query(ge=1, le=1000, description="Número máximo de instancias.")] = 100,
) -> list[CadenaResumen]:
    """Instancias, de la más reciente a la más antigua. Una entidad ve solo aquellas en que participa."""
    return chain_list(stores, principal, chain=cadena, status=estado, holder=entidad, late=vencidas, limit=limite)


@router.get("/cadenas/{radicado_o_id}", response_model=CadenaDetalle, summary="Una instancia y su línea de tiempo",
            responses={404: ERROR_RESPONSES[404]})
def get_chain(
    principal: Viewer,
    stores: StoresDep,
    radicado_o_id: Annotated[str, Path(description="Radicado o idCadena de la instancia.", max_length=64)],
) -> CadenaDetalle:
    """Estado, responsables, plazo e historia; el contexto del trámite solo para el rol operador."""
    detail = chain_detail(stores, principal, radicado_o_id)
    if detail is None:
        raise not_found(f"la instancia {radicado_o_id}")
    return detail


@router.get("/tareas", response_model=list[Tarea], summary="Tareas humanas abiertas")
def list_tasks(
    principal: Viewer,
    stores: StoresDep,
    entidad: Annotated[str | None, Query(description="Entidad responsable (solo operador).", max_length=64)] = None,
) -> list[Tarea]:
    """Tareas abiertas; una entidad ve solo las suyas."""
    return open_tasks(stores, principal, entity=entidad)
