"""The service catalog: discover services and download their schemas and samples (any role); publish, change
status and grant or revoke access (the owner entity's publisher, or an operator)."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Body, Path, Query, Request, Response

from broker.api.auth import CatalogManagerRole, CatalogReader, Principal
from broker.api.errors import ERROR_RESPONSES, ApiError, ErrorBody, not_found
from broker.api.models import (
    Acceso,
    CambioCatalogo,
    CambioEstado,
    Hallazgo,
    Publicacion,
    PublicacionRechazada,
    ResultadoPublicacion,
    ServicioCatalogo,
)
from broker.api.routes.common import AUTHENTICATED_RESPONSES
from broker.catalog import CatalogCode, CatalogError, ServiceStatus
from broker.catalog.management import Actor, CatalogManager
from broker.catalog.publication import Publication
from broker.catalog.store import ServiceRecord

router = APIRouter(prefix="/api/catalogo", tags=["catálogo"], responses=AUTHENTICATED_RESPONSES)

Code = Annotated[str, Path(description="Código del servicio (lowerCamelCase).", min_length=1, max_length=128,
                           pattern=r"^[a-z][A-Za-z0-9]*$")]
Version = Annotated[str, Path(description="Versión mayor.menor.", min_length=3, max_length=16,
                              pattern=r"^\d+\.\d+$")]
_STATUS = {CatalogCode.NOT_FOUND: 404, CatalogCode.NOT_OWNER: 403, CatalogCode.VERSION_EXISTS: 409,
           CatalogCode.STATUS: 409}


def _manager(request: Request) -> CatalogManager:
    manager: CatalogManager = request.app.state.catalog
    return manager


def _sees_grants(principal: Principal, record: ServiceRecord) -> bool:
    return principal.is_operator or principal.entity == record.owner


def _model(manager: CatalogManager, record: ServiceRecord, principal: Principal) -> ServicioCatalogo:
    return ServicioCatalogo(
        cod_servicio=record.code, version=record.version, dominio=record.domain, espacio_nombres=record.namespace,
        estado=record.status.value, entidad_propietaria=record.owner, descripcion=record.description,
        proveedores=list(record.providers), suscriptores=list(record.subscribers),
        consumidores=list(record.callers) if _sees_grants(principal, record) else None,
        plazo_respuesta_segundos=record.reply_within_seconds, muestras=sorted(manager.samples(record)),
        origen=record.origin, publicado_el=record.published_at, actualizado_el=record.updated_at)


def _error(exc: CatalogError) -> ApiError:
    """A catalog refusal as an API error; a refused publication also lists its findings."""
    if exc.findings:
        return ApiError(422, str(exc.code), exc.message,
                        extra={"hallazgos": [Hallazgo(**f).model_dump() for f in exc.findings]})
    return ApiError(_STATUS.get(exc.code, 422), str(exc.code), exc.message)


def _actor(principal: Principal) -> Actor:
    return Actor(name=f"{principal.role}:{principal.name}", entity=None if principal.is_operator else principal.entity)


def _record(manager: CatalogManager, code: str, version: str) -> ServiceRecord:
    try:
        return manager.store.record(code, version)
    except CatalogError:
        raise not_found(f"el servicio {code} {version} en el catálogo") from None


@router.get("", response_model=list[ServicioCatalogo], summary="Servicios del catálogo")
def list_services(
    principal: CatalogReader, request: Request,
    estado: Annotated[ServiceStatus | None, Query(description="Solo en este estado.")] = None,
    entidad: Annotated[str | None, Query(description="Propietaria o proveedora.", max_length=64)] = None,
    texto: Annotated[str | None, Query(description="Texto en el código o la descripción.", max_length=100)] = None,
) -> list[ServicioCatalogo]:
    """Descubra los servicios de intercambio publicados: código, versión, estado, proveedores y descripción."""
    manager = _manager(request)
    wanted = (texto or "").lower()
    return [_model(manager, r, principal) for r in manager.store.records()
            if (estado is None or r.status == estado) and (entidad is None or entidad in (r.owner, *r.providers))
            and (not wanted or wanted in r.code.lower() or wanted in r.description.lower())]


@router.post("", status_code=201, response_model=ResultadoPublicacion, summary="Publicar una versión de servicio",
             responses={200: {"model": ResultadoPublicacion, "description": "Ya estaba publicada igual."},
                        409: {"model": ErrorBody, "description": "La versión ya existe con otro esquema."},
                        422: {"model": PublicacionRechazada, "description": "El esquema o una muestra no pasa."}})
def publish(principal: CatalogManagerRole, request: Request, response: Response,
            publicacion: Annotated[Publicacion, Body()]) -> ResultadoPublicacion:
    """El esquema debe pasar `gel schemas lint` y compilar con el lenguaje; las muestras deben ser mensajes
    válidos del servicio. La pasarela aplica la publicación en segundos. Una versión publicada no cambia."""
    manager = _manager(request)
    try:
        record, checked, created = manager.publish(Publication(
            schema=publicacion.esquema.encode("utf-8"), owner=publicacion.entidad_propietaria,
            providers=tuple(publicacion.proveedores) or (publicacion.entidad_propietaria,),
            callers=tuple(publicacion.consumidores), subscribers=tuple(publicacion.suscriptores),
            reply_within_seconds=publicacion.plazo_respuesta_segundos, description=publicacion.descripcion,
            samples={k: v.encode("utf-8") for k, v in publicacion.muestras.items()}), _actor(principal))
    except CatalogError as exc:
        raise _error(exc) from None
    if not created:
        response.status_code = 200
    return ResultadoPublicacion(creado=created, servicio=_model(manager, record, principal),
                                avisos=[Hallazgo(**w) for w in checked.warnings])


@router.get("/{cod_servicio}/{version}", response_model=ServicioCatalogo, summary="Una versión de servicio",
            responses={404: ERROR_RESPONSES[404]})
def get_service(principal: CatalogReader, request: Request, cod_servicio: Code, version: Version) -> ServicioCatalogo:
    manager = _manager(request)
    return _model(manager, _record(manager, cod_servicio, version), principal)


@router.get("/{cod_servicio}/{version}/esquema", response_class=Response, summary="Descargar el esquema XSD",
            responses={200: {"content": {"application/xml": {}}}, 404: ERROR_RESPONSES[404]})
def get_schema(_principal: CatalogReader, request: Request, cod_servicio: Code, version: Version) -> Response:
    manager = _manager(request)
    record = _record(manager, cod_servicio, version)
    content = manager.schema(record.code, record.version)
    name = record.namespace.rstrip("/").split("/")[-2] + ".xsd" if "/" in record.namespace else "esquema.xsd"
    return Response(content, media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{name}"'})


@router.get("/{cod_servicio}/{version}/muestras/{tipo}", response_class=Response, summary="Descargar una muestra",
            responses={200: {"content": {"application/xml": {}}}, 404: ERROR_RESPONSES[404]})
def get_sample(_principal: CatalogReader, request: Request, cod_servicio: Code, version: Version,
               tipo: Annotated[Literal["solicitud", "respuesta", "evento"], Path(description="Tipo de mensaje.")]
               ) -> Response:
    manager = _manager(request)
    sample = manager.samples(_record(manager, cod_servicio, version)).get(tipo)
    if sample is None:
        raise not_found(f"una muestra {tipo} de {cod_servicio} {version}")
    return Response(sample, media_type="application/xml",
                    headers={"Content-Disposition": f'attachment; filename="{cod_servicio}-{tipo}.xml"'})


@router.get("/{cod_servicio}/{version}/historial", response_model=list[CambioCatalogo],
            summary="Historial de cambios de una versión", responses={404: ERROR_RESPONSES[404]})
def get_history(principal: CatalogReader, request: Request, cod_servicio: Code,
                version: Version) -> list[CambioCatalogo]:
    """Quién publicó, cambió el estado u otorgó o revocó acceso, y cuándo (operador y entidad propietaria)."""
    manager = _manager(request)
    record = _record(manager, cod_servicio, version)
    if not _sees_grants(principal, record):
        raise ApiError(403, "GEL-API-FORBIDDEN", "Solo el operador y la entidad propietaria ven el historial.")
    return [CambioCatalogo(fecha=c.at, actor=c.actor, accion=c.action, detalle=c.detail)
            for c in manager.store.history(record.code, record.version)]


def _change(principal: Principal, request: Request, action: str, code: str, version: str,
            argument: Any) -> ServicioCatalogo:
    manager = _manager(request)
    _record(manager, code, version)
    actor = _actor(principal)
    try:
        if action == "estado":
            record = manager.set_status(code, version, argument, actor)
        elif action == "otorgar":
            record = manager.grant(code, version, argument, actor)
        else:
            record = manager.revoke(code, version, argument, actor)
    except CatalogError as exc:
        raise _error(exc) from None
    return _model(manager, record, principal)


_CHANGE_RESPONSES: dict[int | str, dict[str, Any]] = {404: ERROR_RESPONSES[404],
                                                      409: {"model": ErrorBody, "description": "Cambio no permitido."}}


@router.put("/{cod_servicio}/{version}/estado", response_model=ServicioCatalogo, summary="Cambiar el estado",
            responses=_CHANGE_RESPONSES)
def put_status(principal: CatalogManagerRole, request: Request, cod_servicio: Code, version: Version,
               cambio: Annotated[CambioEstado, Body()]) -> ServicioCatalogo:
    """obsoleto: sigue atendiendo y los consumidores reciben aviso; retirado: la pasarela lo rechaza."""
    return _change(principal, request, "estado", cod_servicio, version, cambio.estado)


@router.post("/{cod_servicio}/{version}/accesos", response_model=ServicioCatalogo, summary="Otorgar acceso",
             responses=_CHANGE_RESPONSES)
def grant_access(principal: CatalogManagerRole, request: Request, cod_servicio: Code, version: Version,
                 acceso: Annotated[Acceso, Body()]) -> ServicioCatalogo:
    """Autoriza a una entidad a llamar esta versión (por defecto nadie puede)."""
    return _change(principal, request, "otorgar", cod_servicio, version, acceso.entidad)


@router.delete("/{cod_servicio}/{version}/accesos", response_model=ServicioCatalogo, summary="Revocar acceso",
               responses=_CHANGE_RESPONSES)
def revoke_access(principal: CatalogManagerRole, request: Request, cod_servicio: Code, version: Version,
                  entidad: Annotated[str, Query(description="Entidad a la que se revoca el acceso.", min_length=3,
                                                max_length=64, pattern=r"^[A-Z]{2}/[A-Z]+/\d+$")]
                  ) -> ServicioCatalogo:
    return _change(principal, request, "revocar", cod_servicio, version, entidad)
