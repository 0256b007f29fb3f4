"""What every router needs: the stores of the running app and UTC time parameters."""

from __future__ import annotations

import datetime as dt
from typing import Annotated, Any

from fastapi import Depends, Request

from broker.api.errors import ERROR_RESPONSES, invalid
from broker.api.queries import Stores

__all__ = ["AUTHENTICATED_RESPONSES", "StoresDep", "utc"]

AUTHENTICATED_RESPONSES: dict[int | str, dict[str, Any]] = {code: ERROR_RESPONSES[code] for code in (401, 403, 422)}


def _stores(request: Request) -> Stores:
    stores: Stores = request.app.state.stores
    return stores


StoresDep = Annotated[Stores, Depends(_stores)]


def utc(moment: dt.datetime | None, name: str) -> dt.datetime | None:
    """A query time as aware UTC (a time without zone is taken as UTC)."""
    if moment is None:
        return None
    try:
        aware = moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)
        return aware.astimezone(dt.UTC)
    except (OverflowError, ValueError) as exc:
        raise invalid(f"La fecha de «{name}» está fuera del rango admitido.") from exc
