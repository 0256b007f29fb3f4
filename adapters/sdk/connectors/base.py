"""The connector contract: how an adapter reaches its entity's legacy system.

A connector runs named *operations* (a parameterised SQL query, an HTTP call, a file exchange, a Python
function) with parameters that come from the mapped GEL-XML request, and returns legacy records (plain
dicts with the legacy system's own field names). It says what went wrong with an exception whose `falla`
is coded: `LegacyUnavailable` (down, refused, 5xx: the SDK retries with backoff), `LegacyTimeout` (too slow:
retried too), `LegacyGarbage` (an answer that cannot be read: permanent), `LegacyNotFound` (no such record:
permanent, becomes a coded `falla` to the caller).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol, runtime_checkable

from broker.gelxml import Falla, GelFault
from broker.gelxml.faults import FaultCode, fault

__all__ = [
    "Connector",
    "ConnectorError",
    "LegacyGarbage",
    "LegacyNotFound",
    "LegacyTimeout",
    "LegacyUnavailable",
    "Record",
    "describe_params",
    "seconds_text",
    "unknown_operation",
]

Record = dict[str, Any]


def describe_params(params: Mapping[str, Any], names: Iterable[str] | None = None) -> str:
    """`NumeroDoc=1020304050, TipoDoc=C.C.`: what was looked for, for a not-found falla."""
    chosen = params.keys() if names is None else [n for n in names if n in params]
    shown = [f"{name}={params[name]}" for name in chosen]
    return ", ".join(shown) if shown else "la consulta"


def unknown_operation(kind: str, entity: str, operation: str, known: Iterable[str]) -> ValueError:
    """The configuration error for an operation the connector was not given."""
    listed = ", ".join(known) or "ninguna"
    return ValueError(f"El conector {kind} de {entity} no tiene la operación {operation!r} (configuradas: {listed}).")


def seconds_text(timeout: float) -> str:
    """Seconds as a Colombian reader writes them: `0,5`."""
    return f"{timeout:g}".replace(".", ",")


class ConnectorError(Exception):
    """A legacy-system failure with its coded `falla` (Spanish, for the caller) and whether to retry."""

    code: FaultCode = FaultCode.ADAPTER_LEGACY_GARBAGE
    retryable: bool = False

    def __init__(self, entity: str, **params: Any) -> None:
        self.gel_fault: GelFault = fault(self.code, entity=entity, **params)
        super().__init__(self.gel_fault.falla.message)

    @property
    def falla(self) -> Falla:
        return self.gel_fault.falla


class LegacyUnavailable(ConnectorError):
    """Refused connection, DNS failure, HTTP 5xx, database down. Params: detail."""

    code = FaultCode.ADAPTER_LEGACY_UNAVAILABLE
    retryable = True


class LegacyTimeout(ConnectorError):
    """No answer within the connector's timeout. Params: seconds."""

    code = FaultCode.ADAPTER_LEGACY_TIMEOUT
    retryable = True


class LegacyGarbage(ConnectorError):
    """An answer that is not what the operation promises (bad JSON, wrong columns, unparsable file).
    Params: detail."""

    code = FaultCode.ADAPTER_LEGACY_GARBAGE


class LegacyNotFound(ConnectorError):
    """The legacy system has no record for the request. Params: what."""

    code = FaultCode.ADAPTER_NOT_FOUND


@runtime_checkable
class Connector(Protocol):
    """One legacy system. Implementations: sql, http, filedrop, python (adapters/sdk/connectors/)."""

    entity: str
    """The entity id whose system this is (named in every fault)."""

    def call(self, operation: str, params: Mapping[str, Any]) -> Sequence[Record]:
        """Run `operation` with `params`; the records it yields (empty when none). Raises ConnectorError."""
        ...

    def check(self) -> None:
        """Prove the legacy system answers (for `gel adapter check`); raises ConnectorError if not."""
        ...

    def close(self) -> None:
        ...
