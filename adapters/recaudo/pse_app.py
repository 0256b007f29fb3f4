"""A stand-in for the payment gateway's legacy JSON service (ACH Colombia - PSE), over seeded transactions.

Endpoints (the gateway's own style: Spanish lowerCamelCase fields, money as Colombian text `187.450.300,00`,
dates `dd/mm/yyyy hh:mm:ss`, states `OK` / `PENDING` / `FAILED`):

- `GET /api/v2/transacciones/{referencia}`: the transactions of a payment reference, the one that counts
  first (an approved one if any, else the most recent attempt):
  `{"referencia": "...", "total": n, "datos": {"transacciones": [...]}}`; 404 `{"error": "REFERENCIA NO EXISTE"}`
  when the gateway never saw the reference.
- `GET /salud`: `{"estado": "ok"}`.

`start_background(transactions)` serves it in a thread on a free port and returns a handle whose `stop()`
shuts it down; `python -m adapters.recaudo.pse_app PORT [recaudo.json]` serves it in the foreground.
"""

from __future__ import annotations

import json
import socket
import sys
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

import uvicorn
from fastapi import FastAPI
from fastapi.responses import JSONResponse

__all__ = ["PseServer", "create_app", "start_background"]

_RANK = {"OK": 0, "PENDING": 1, "FAILED": 2}


def _when(transaction: dict[str, Any]) -> datetime:
    return datetime.strptime(str(transaction["fechaTransaccion"]), "%d/%m/%Y %H:%M:%S")


def create_app(transactions: Iterable[dict[str, Any]]) -> FastAPI:
    by_reference: dict[str, list[dict[str, Any]]] = {}
    for transaction in transactions:
        by_reference.setdefault(str(transaction["referencia"]), []).append(dict(transaction))
    app = FastAPI(title="ACH Colombia - PSE (sistema heredado, simulado)", docs_url=None, redoc_url=None)

    @app.get("/salud")
    async def health() -> dict[str, str]:
        return {"estado": "ok"}

    @app.get("/api/v2/transacciones/{referencia}")
    async def transactions_of(referencia: str) -> JSONResponse:
        found = by_reference.get(referencia)
        if not found:
            return JSONResponse({"error": "REFERENCIA NO EXISTE", "referencia": referencia}, status_code=404)
        ordered = sorted(found, key=lambda t: (_RANK.get(str(t["estado"]), 9), -_when(t).timestamp()))
        return JSONResponse({"referencia": referencia, "total": len(ordered), "datos": {"transacciones": ordered}})

    return app


@dataclass(frozen=True, slots=True)
class PseServer:
    url: str
    port: int
    server: uvicorn.Server
    thread: threading.Thread

    def stop(self, timeout: float = 5.0) -> None:
        self.server.should_exit = True
        self.thread.join(timeout)
        if self.thread.is_alive():
            self.server.force_exit = True
            self.thread.join(timeout)


def _config(app: FastAPI, host: str, port: int) -> uvicorn.Config:
    return uvicorn.Config(app, host=host, port=port, log_level="warning", access_log=False, lifespan="off",
                          timeout_graceful_shutdown=2)


def start_background(transactions: Iterable[dict[str, Any]], *, host: str = "127.0.0.1", port: int = 0,
                     startup_timeout: float = 10.0) -> PseServer:
    """Serve in a daemon thread (port 0: a free port) and return once it accepts connections."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.bind((host, port))
    bound = sock.getsockname()[1]
    server = uvicorn.Server(_config(create_app(transactions), host, bound))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name=f"pse-app-{bound}", daemon=True)
    thread.start()
    deadline = time.monotonic() + startup_timeout
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise RuntimeError(f"El servicio simulado de PSE no arrancó en el puerto {bound}.")
        time.sleep(0.01)
    return PseServer(url=f"http://{host}:{bound}", port=bound, server=server, thread=thread)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("uso: python -m adapters.recaudo.pse_app PUERTO [recaudo.json]")
    source = Path(args[1]) if len(args) > 1 else Path("var/legacy/recaudo.json")
    transactions = json.loads(source.read_text(encoding="utf-8"))
    uvicorn.Server(_config(create_app(transactions), "127.0.0.1", int(args[0]))).run()


if __name__ == "__main__":
    main()
