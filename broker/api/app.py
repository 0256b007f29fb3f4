"""The FastAPI application: `create_app` wires settings, stores, routers and the coded Spanish errors."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI

from broker.api import web
from broker.api.errors import install_error_handlers
from broker.api.queries import Stores
from broker.api.routes import cadenas, catalogo, mensajes, monitoreo, publico
from broker.catalog.management import open_manager
from broker.settings import Settings, get_settings

__all__ = ["ROUTERS", "create_app"]

ROUTERS: list[APIRouter] = [catalogo.router, cadenas.router, mensajes.router, monitoreo.router, publico.router,
                            web.router]
"""The JSON API (in the OpenAPI document) and the dashboard and tracking pages (HTML, outside it)."""

DESCRIPTION = (
    "Plataforma de Interoperabilidad GEL: catálogo de servicios (publicar, descubrir, descargar esquemas y "
    "muestras, accesos), cadenas de trámites, tareas, mensajes, evidencia, salud de los servicios y seguimiento "
    "ciudadano. Autenticación con token Bearer (roles operador, entidad y publicador); "
    "el seguimiento ciudadano y /salud no requieren token."
)


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    stores = Stores(settings)
    catalog = open_manager(settings)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        stores.close()
        catalog.store.close()

    app = FastAPI(title="GEL Broker — API de la plataforma", version="1.0", description=DESCRIPTION,
                  lifespan=lifespan)
    app.state.settings = settings
    app.state.stores = stores
    app.state.catalog = catalog
    install_error_handlers(app)
    for router in ROUTERS:
        app.include_router(router)
    return app
