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
import sys
from collections.abc import Iterable
from datetime import datetime
from pathlib import Path
from typing import Any

from fastapi import FastAPI
from fastapi.responses import JSONResponse

from adapters.legacy.server import BackgroundServer, serve_background, serve_foreground

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


PseServer = BackgroundServer


def start_background(transactions: Iterable[dict[str, Any]], *, host: str = "127.0.0.1", port: int = 0,
                     startup_timeout: float = 10.0) -> BackgroundServer:
    """Serve in a daemon thread (port 0: a free port) and return once it accepts connections."""
    return serve_background(create_app(transactions), name="PSE", host=host, port=port,
                            startup_timeout=startup_timeout)


def main(argv: list[str] | None = None) -> None:
    args = sys.argv[1:] if argv is None else argv
    if not args:
        raise SystemExit("uso: python -m adapters.recaudo.pse_app PUERTO [recaudo.json]")
    source = Path(args[1]) if len(args) > 1 else Path("var/legacy/recaudo.json")
    transactions = json.loads(source.read_text(encoding="utf-8"))
    serve_foreground(create_app(transactions), int(args[0]))


if __name__ == "__main__":
    main()
