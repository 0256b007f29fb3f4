"""Coded refusals of the catalog (publication, status changes, access rights), in Spanish for publishers."""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum
from typing import Any

__all__ = ["CatalogCode", "CatalogError"]


class CatalogCode(StrEnum):
    MANIFEST = "GEL-CAT-MANIFEST"
    SCHEMA_REFUSED = "GEL-CAT-SCHEMA_REFUSED"
    SAMPLE_INVALID = "GEL-CAT-SAMPLE_INVALID"
    VERSION_EXISTS = "GEL-CAT-VERSION_EXISTS"
    NOT_FOUND = "GEL-CAT-NOT_FOUND"
    UNKNOWN_ENTITY = "GEL-CAT-UNKNOWN_ENTITY"
    NOT_OWNER = "GEL-CAT-NOT_OWNER"
    STATUS = "GEL-CAT-STATUS"


class CatalogError(Exception):
    """A catalog operation refused: stable code, Spanish description, and lint findings when there are some."""

    def __init__(self, code: CatalogCode, message: str, findings: Sequence[dict[str, Any]] = ()) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.findings = tuple(findings)
