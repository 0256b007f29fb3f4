"""Python connector: operations implemented by plain Python functions (a vendor SDK, a COM bridge, a script).

Each operation is a callable, or a `"package.module:function"` string imported when the connector is built
(so a typo fails at start-up, not on the first request). The function receives the parameters as keyword
arguments and returns a record (a mapping), a list of records, or None when there is no such record.

Exceptions: a `ConnectorError` raised by the function passes through unchanged; `ConnectionError` (and
unreachable-network `OSError`s) become LegacyUnavailable, `TimeoutError` LegacyTimeout; anything else
becomes LegacyGarbage naming the exception type (the original stays chained for the logs).
"""

from __future__ import annotations

import errno
import importlib
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from adapters.sdk.connectors.base import (
    ConnectorError,
    LegacyGarbage,
    LegacyNotFound,
    LegacyTimeout,
    LegacyUnavailable,
    Record,
    describe_params,
    seconds_text,
    unknown_operation,
)

__all__ = ["CallableConnector", "resolve_callable"]

_UNREACHABLE = frozenset({errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN, errno.ENETDOWN})


def resolve_callable(reference: str | Callable[..., Any]) -> Callable[..., Any]:
    """A callable as given, or the function a `"module:function"` string names (ValueError if it cannot)."""
    if callable(reference):
        return reference
    if not isinstance(reference, str) or reference.count(":") != 1:
        raise ValueError(f"{reference!r} no es una función ni una referencia 'modulo:funcion'.")
    module_name, _, attribute = reference.partition(":")
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise ValueError(f"No se pudo importar el módulo {module_name!r} de {reference!r}: {exc}") from exc
    target: Any = module
    for part in attribute.split("."):
        try:
            target = getattr(target, part)
        except AttributeError:
            raise ValueError(f"El módulo {module_name!r} no tiene {attribute!r}.") from None
    if not callable(target):
        raise ValueError(f"{reference!r} no es una función.")
    return target




class CallableConnector:
    """Operations served by Python functions. `timeout` is the budget the functions are expected to honour
    (the connector cannot interrupt a Python function; it is the number reported by LegacyTimeout)."""

    def __init__(
        self,
        entity: str,
        functions: Mapping[str, str | Callable[..., Any]],
        *,
        timeout: float = 30.0,
        check: str | Callable[[], Any] | None = None,
    ) -> None:
        self.entity = entity
        self.timeout = float(timeout)
        self._functions = {name: resolve_callable(reference) for name, reference in functions.items()}
        self._check = None if check is None else resolve_callable(check)

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self._functions)

    def call(self, operation: str, params: Mapping[str, Any]) -> Sequence[Record]:
        try:
            function = self._functions[operation]
        except KeyError:
            raise unknown_operation("Python", self.entity, operation, self._functions) from None
        answer = self._invoke(function, operation, dict(params))
        if answer is None:
            raise LegacyNotFound(self.entity, what=describe_params(params))
        if isinstance(answer, Mapping):
            return [dict(answer)]
        if isinstance(answer, (list, tuple)) and all(isinstance(item, Mapping) for item in answer):
            return [dict(item) for item in answer]
        raise LegacyGarbage(
            self.entity,
            detail=f"la operación {operation!r} devolvió {type(answer).__name__} en lugar de registros",
        )

    def check(self) -> None:
        if self._check is not None:
            self._invoke(self._check, "check", {})

    def close(self) -> None:
        """Nothing to release."""

    def _invoke(self, function: Callable[..., Any], operation: str, params: dict[str, Any]) -> Any:
        try:
            return function(**params)
        except ConnectorError:
            raise
        except TimeoutError as exc:
            raise LegacyTimeout(self.entity, seconds=seconds_text(self.timeout)) from exc
        except ConnectionError as exc:
            raise LegacyUnavailable(self.entity, detail=type(exc).__name__) from exc
        except OSError as exc:
            if exc.errno in _UNREACHABLE:
                raise LegacyUnavailable(self.entity, detail=type(exc).__name__) from exc
            raise self._garbage(operation, exc) from exc
        except Exception as exc:
            raise self._garbage(operation, exc) from exc

    def _garbage(self, operation: str, exc: BaseException) -> LegacyGarbage:
        return LegacyGarbage(self.entity, detail=f"la operación {operation!r} falló con {type(exc).__name__}")
