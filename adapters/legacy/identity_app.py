"""A stand-in for the identity registry's legacy JSON service, with fault injection for tests and the demo.

Endpoints (legacy style: Spanish capitalised field names, dd/mm/yyyy dates, status letters):

- `GET /ciudadanos/{tipo}/{numero}`: one citizen, or 404 `{"error": "NO EXISTE"}`.
- `GET /ciudadanos?municipio=...`: `{"total": n, "datos": {"ciudadanos": [...]}}` (a search).
- `POST /novedades` with `{"TipoDoc", "NumeroDoc", "Novedad"}`: `{"radicado": "...", "estado": "RECIBIDA"}`.
- `POST /soap/identidad`: the same lookup as a SOAP 1.1 service (`ConsultarCiudadano` with `TipoDoc` and
  `NumeroDoc`; the answer holds zero or one `Ciudadano`; a malformed request gets a soap:Client fault).
- `GET /salud`: `{"estado": "ok"}`.
- `POST /_modo` with `{"modo": "normal" | "lento" | "basura" | "error500", "segundos": 3}`: how every other
  endpoint behaves from now on (lento: sleeps first; basura: HTML with 200; error500: HTTP 500, a
  soap:Server fault on the SOAP endpoint).

`serve()` (or `python -m adapters.legacy.identity_app PORT [--modo MODO]`) runs it in the foreground;
`start_background()` runs it in a thread on a free port and returns a handle whose `stop()` shuts it down
cleanly (uvicorn's `should_exit`).
"""

from __future__ import annotations

import asyncio
import itertools
import json
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from fastapi import FastAPI, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse
from lxml import etree
from pydantic import BaseModel, Field

from adapters.legacy.server import BackgroundServer, serve_background, serve_foreground
from broker.gelxml.faults import GelFault
from broker.gelxml.parsing import parse_untrusted

__all__ = ["SAMPLE_PEOPLE", "BackgroundServer", "Mode", "create_app", "serve", "start_background"]

Mode = Literal["normal", "lento", "basura", "error500"]

SAMPLE_PEOPLE: tuple[dict[str, str], ...] = (
    {
        "TipoDoc": "C.C.", "NumeroDoc": "1020304050", "Nombres": "MARÍA FERNANDA", "Apellidos": "GÓMEZ RUIZ",
        "FechaNacimiento": "12/04/1990", "Estado": "V", "Municipio": "Bogotá D.C.",
    },
    {
        "TipoDoc": "C.C.", "NumeroDoc": "79123456", "Nombres": "JOSÉ ANTONIO", "Apellidos": "PEÑA CASTAÑO",
        "FechaNacimiento": "03/11/1968", "Estado": "V", "Municipio": "Medellín",
    },
    {
        "TipoDoc": "T.I.", "NumeroDoc": "1001234567", "Nombres": "VALENTINA", "Apellidos": "GÓMEZ RUIZ",
        "FechaNacimiento": "25/07/2009", "Estado": "V", "Municipio": "Bogotá D.C.",
    },
    {
        "TipoDoc": "C.C.", "NumeroDoc": "41555666", "Nombres": "ROSA ELENA", "Apellidos": "DÍAZ DE MORA",
        "FechaNacimiento": "30/01/1941", "Estado": "F", "Municipio": "Tunja",
    },
)

SOAP11 = "http://schemas.xmlsoap.org/soap/envelope/"
IDENTITY_NS = "urn:registraduria:identidad"

_GARBAGE = (
    "<html><head><title>Error</title></head><body><h1>Servicio temporalmente fuera de línea</h1>"
    "<p>Intente más tarde. Cod. ORA-03113</p></body></html>"
)


class _ModeRequest(BaseModel):
    modo: Mode
    segundos: float = Field(default=3.0, ge=0, le=120)


class _Novelty(BaseModel):
    TipoDoc: str
    NumeroDoc: str
    Novedad: str


@dataclass
class _State:
    mode: Mode = "normal"
    seconds: float = 3.0


def create_app(people: Iterable[dict[str, Any]], *, mode: Mode = "normal", seconds: float = 3.0) -> FastAPI:
    """The legacy identity service over `people` (dicts with at least TipoDoc and NumeroDoc)."""
    registry = {(str(p["TipoDoc"]), str(p["NumeroDoc"])): dict(p) for p in people}
    state = _State(mode=mode, seconds=seconds)
    counter = itertools.count(1)
    app = FastAPI(title="Registro de identidad (sistema heredado, simulado)", docs_url=None, redoc_url=None)
    app.state.legacy = state

    @app.middleware("http")
    async def inject_faults(request: Request, call_next: Callable[[Request], Awaitable[Response]]) -> Response:
        if request.url.path == "/_modo" or state.mode == "normal":
            return await call_next(request)
        if state.mode == "lento":
            await asyncio.sleep(state.seconds)
            return await call_next(request)
        if state.mode == "basura":
            return HTMLResponse(_GARBAGE, status_code=200)
        if request.url.path.startswith("/soap/"):
            return _soap_fault("soap:Server", "ORA-03113: fin de archivo en el canal de comunicación")
        return JSONResponse({"error": "ERROR INTERNO"}, status_code=500)

    @app.get("/salud")
    async def health() -> dict[str, str]:
        return {"estado": "ok"}

    @app.get("/ciudadanos/{tipo}/{numero}")
    async def citizen(tipo: str, numero: str) -> JSONResponse:
        person = registry.get((tipo, numero))
        if person is None:
            return JSONResponse({"error": "NO EXISTE", "TipoDoc": tipo, "NumeroDoc": numero}, status_code=404)
        return JSONResponse(person)

    @app.get("/ciudadanos")
    async def search(municipio: str | None = None) -> dict[str, Any]:
        found = [p for p in registry.values() if municipio is None or p.get("Municipio") == municipio]
        return {"total": len(found), "datos": {"ciudadanos": found}}

    @app.post("/novedades")
    async def novelty(body: _Novelty) -> JSONResponse:
        if (body.TipoDoc, body.NumeroDoc) not in registry:
            return JSONResponse({"error": "NO EXISTE"}, status_code=404)
        return JSONResponse({"radicado": f"NOV-{next(counter):06d}", "estado": "RECIBIDA"}, status_code=201)

    @app.post("/soap/identidad")
    async def soap_identity(request: Request) -> Response:
        try:
            envelope = parse_untrusted(await request.body())
        except GelFault as exc:
            return _soap_fault("soap:Client", exc.falla.message)
        fields = {etree.QName(node).localname: (node.text or "").strip() for node in envelope.iter()
                  if isinstance(node.tag, str)}
        if "ConsultarCiudadano" not in fields or not fields.get("NumeroDoc"):
            return _soap_fault("soap:Client", "Se esperaba ConsultarCiudadano con TipoDoc y NumeroDoc")
        person = registry.get((fields.get("TipoDoc", ""), fields["NumeroDoc"]))
        root = etree.Element(etree.QName(SOAP11, "Envelope"), nsmap={"soap": SOAP11})
        body = etree.SubElement(root, etree.QName(SOAP11, "Body"))
        answer = etree.SubElement(
            body, etree.QName(IDENTITY_NS, "ConsultarCiudadanoResponse"), nsmap={"r": IDENTITY_NS}
        )
        if person is not None:
            citizen = etree.SubElement(answer, etree.QName(IDENTITY_NS, "Ciudadano"))
            for name, value in person.items():
                etree.SubElement(citizen, etree.QName(IDENTITY_NS, name)).text = str(value)
        return Response(etree.tostring(root, xml_declaration=True, encoding="utf-8"), media_type="text/xml")

    @app.post("/_modo")
    async def set_mode(body: _ModeRequest) -> dict[str, Any]:
        state.mode = body.modo
        state.seconds = body.segundos
        return {"modo": state.mode, "segundos": state.seconds}

    return app


def _soap_fault(code: str, message: str) -> Response:
    root = etree.Element(etree.QName(SOAP11, "Envelope"), nsmap={"soap": SOAP11})
    fault = etree.SubElement(etree.SubElement(root, etree.QName(SOAP11, "Body")), etree.QName(SOAP11, "Fault"))
    etree.SubElement(fault, "faultcode").text = code
    etree.SubElement(fault, "faultstring").text = message
    return Response(
        etree.tostring(root, xml_declaration=True, encoding="utf-8"), status_code=500, media_type="text/xml"
    )


def serve(
    port: int,
    people: Iterable[dict[str, Any]] = SAMPLE_PEOPLE,
    mode: Mode = "normal",
    *,
    host: str = "127.0.0.1",
    seconds: float = 3.0,
) -> None:
    """Run the service in the foreground until interrupted (Ctrl+C)."""
    serve_foreground(create_app(people, mode=mode, seconds=seconds), port, host=host)


def start_background(
    people: Iterable[dict[str, Any]] = SAMPLE_PEOPLE,
    *,
    mode: Mode = "normal",
    seconds: float = 3.0,
    host: str = "127.0.0.1",
    port: int = 0,
    startup_timeout: float = 10.0,
) -> BackgroundServer:
    """Serve in a daemon thread (port 0: a free port) and return once it accepts connections."""
    return serve_background(create_app(people, mode=mode, seconds=seconds), name="identidad", host=host, port=port,
                            startup_timeout=startup_timeout)


def main(argv: list[str] | None = None) -> None:
    import argparse

    parser = argparse.ArgumentParser(description="Servicio heredado simulado del registro de identidad.")
    parser.add_argument("port", type=int, help="puerto TCP")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--modo", default="normal", choices=["normal", "lento", "basura", "error500"])
    parser.add_argument("--segundos", type=float, default=3.0, help="espera del modo lento")
    parser.add_argument("--datos", type=Path, help="JSON con los ciudadanos (p. ej. var/legacy/registraduria.json, "
                        "de python -m adapters.legacy.seed); sin él, las personas de las muestras")
    args = parser.parse_args(argv)
    people = json.loads(args.datos.read_text(encoding="utf-8")) if args.datos else SAMPLE_PEOPLE
    serve(args.port, people, args.modo, host=args.host, seconds=args.segundos)


if __name__ == "__main__":
    main()
