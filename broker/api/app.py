"""The FastAPI application: `create_app` wires settings, stores, routers and the coded Spanish errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from broker.api import web
from broker.api.errors import install_error_handlers
from broker.api.queries import Stores
from broker.api.routes import cadenas, mensajes, monitoreo, publico
from broker.settings import Settings, get_settings

__all__ = ["ROUTERS", "create_app"]

ROUTERS: list[APIRouter] = [cadenas.router, mensajes.router, monitoreo.router, publico.router, web.router]
"""The JSON API (in the OpenAPI document) and the dashboard and tracking pages (HTML, outside it)."""

DESCRIPTION = (
    "Consulta de la Plataforma de Interoperabilidad GEL: cadenas de trámites, tareas, mensajes, evidencia, "
    "salud de los servicios y seguimiento ciudadano. Autenticación con token Bearer (roles operador y entidad); "
    "el seguimiento ciudadano y /salud no requieren token."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    stores = Stores(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()

    app = FastAPI(title="GEL Broker — API de la plataforma", version="1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.stores = stores
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
