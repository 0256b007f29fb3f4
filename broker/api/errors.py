"""API errors: JSON `{codigo, descripcion}` in Spanish with a stable code, whatever raised them."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.routing import Match, Route

__all__ = ["ERROR_RESPONSES", "ApiError", "ErrorBody", "forbidden", "install_error_handlers", "not_found"]

UNAUTHENTICATED = "GEL-API-UNAUTHENTICATED"
FORBIDDEN = "GEL-API-FORBIDDEN"
NOT_FOUND = "GEL-API-NOT_FOUND"
INVALID = "GEL-API-INVALID"
INTERNAL = "GEL-API-INTERNAL"


class ErrorBody(BaseModel):
    model_config = ConfigDict(frozen=True)

    codigo: str = Field(description="Código estable del error (GEL-API-…).")
    descripcion: str = Field(description="Descripción del error para las personas.")


class ApiError(Exception):
    def __init__(self, status: int, codigo: str, descripcion: str, headers: dict[str, str] | None = None,
                 extra: dict[str, Any] | None = None) -> None:
        super().__init__(descripcion)
        self.status, self.codigo, self.descripcion, self.headers = status, codigo, descripcion, headers
        self.extra = extra or {}


def unauthenticated() -> ApiError:
    return ApiError(401, UNAUTHENTICATED, "Se requiere un token de acceso válido (encabezado Authorization: Bearer).",
                    {"WWW-Authenticate": "Bearer"})


def forbidden(detail: str = "Su rol no permite consultar este recurso.") -> ApiError:
    return ApiError(403, FORBIDDEN, detail)


def not_found(what: str) -> ApiError:
    return ApiError(404, NOT_FOUND, f"No se encontró {what}.")


def invalid(detail: str) -> ApiError:
    return ApiError(422, INVALID, detail)


def _body(codigo: str, descripcion: str) -> dict[str, str]:
    return ErrorBody(codigo=codigo, descripcion=descripcion).model_dump()


ERROR_RESPONSES: dict[int | str, dict[str, Any]] = {
    401: {"model": ErrorBody, "description": "Falta el token o no es válido."},
    403: {"model": ErrorBody, "description": "El rol del token no permite esta consulta."},
    404: {"model": ErrorBody, "description": "El recurso no existe o no es visible para quien consulta."},
    422: {"model": ErrorBody, "description": "Parámetros inválidos."},
}


def install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(ApiError)
    async def _api_error(_request: Request, exc: ApiError) -> JSONResponse:
        return JSONResponse({**_body(exc.codigo, exc.descripcion), **exc.extra}, status_code=exc.status,
                            headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def _validation(_request: Request, exc: RequestValidationError) -> JSONResponse:
        problems = "; ".join(
            f"{'.'.join(str(p) for p in error.get('loc', ()))}: {error.get('type', 'inválido')}"
            for error in exc.errors()
        )
        return JSONResponse(_body(INVALID, f"Parámetros inválidos ({problems})."), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        if exc.status_code == 400:
            return JSONResponse(_body(INVALID, "El cuerpo de la solicitud no es JSON válido en UTF-8."),
                                status_code=422)
        codes = {401: UNAUTHENTICATED, 403: FORBIDDEN, 404: NOT_FOUND}
        texts = {404: "No existe ese recurso.", 405: "Método no permitido para este recurso."}
        codigo = codes.get(exc.status_code, INVALID if exc.status_code < 500 else INTERNAL)
        headers = dict(getattr(exc, "headers", None) or {})
        if exc.status_code == 405:
            headers["Allow"] = ", ".join(_allowed_methods(request))
        return JSONResponse(_body(codigo, texts.get(exc.status_code, "La solicitud no se pudo atender.")),
                            status_code=exc.status_code, headers=headers or None)


def _allowed_methods(request: Request) -> list[str]:
    """Every method some route serves at this path (Starlette names only the first matching route's)."""
    methods: set[str] = set()
    for route in request.app.routes:
        if isinstance(route, Route) and route.methods and route.matches(request.scope)[0] != Match.NONE:
            methods |= route.methods
    return sorted(methods)
