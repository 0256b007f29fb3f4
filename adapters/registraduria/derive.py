"""Fields the legacy identity service does not hold but the GEL-XML answer needs."""

from __future__ import annotations

import unicodedata
from collections.abc import Mapping
from typing import Any


def _normal(text: object) -> str:
    decomposed = unicodedata.normalize("NFKD", str(text or ""))
    return " ".join("".join(c for c in decomposed if not unicodedata.combining(c)).upper().split())


def name_match(params: Mapping[str, Any], record: dict[str, Any]) -> dict[str, Any]:
    """`Coincide`: whether the names the caller declared are the registered ones (accents and case aside).
    A request that declares no names matches trivially."""
    declared = [(params.get(field), record.get(field)) for field in ("Nombres", "Apellidos") if params.get(field)]
    record["Coincide"] = "true" if all(_normal(a) == _normal(b) for a, b in declared) else "false"
    return record
