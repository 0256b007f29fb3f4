"""Reference connectors (SQL, HTTP, file drop, Python) and `connector_from_config` to build one from an
adapter's configuration.

Configuration (a mapping, e.g. from the adapter's YAML), by `type`:

- `sql`: `url`, `timeout` (s, default 5), `operations: {name: {sql, one, write} | "SQL"}`.
- `http`: `base_url`, `timeout` (s, default 5), `headers`, `check_path`,
  `operations: {name: {method, path, query, body, records}}`, or for a SOAP 1.1 operation
  `{name: {path, soap_action, soap_body, records}}` (`soap_body`: the XML inside soap:Body with
  `{Param}` placeholders; `records`: the local name of each record element in the answer).
- `filedrop`: `root` (relative to the configuration's folder), `encoding` (default utf-8-sig),
  `delimiter` (default `;`), `settle_seconds` (default 2), `max_bytes`, `create` (default false),
  `writes` (operation names, or `{name: [columns] | null}`; default `[escribir]`).
- `python`: `functions: {name: "module:function"}`, `timeout` (s, default 30), `check` ("module:function").

A bad configuration is a ValueError in Spanish that names the offending key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

from adapters.sdk.connectors.base import (
    Connector,
    ConnectorError,
    LegacyGarbage,
    LegacyNotFound,
    LegacyTimeout,
    LegacyUnavailable,
    Record,
)
from adapters.sdk.connectors.filedrop import FileBatch, FileDropConnector
from adapters.sdk.connectors.http import HttpConnector, HttpOperation, SoapOperation
from adapters.sdk.connectors.python import CallableConnector
from adapters.sdk.connectors.sql import SqlConnector, SqlOperation

__all__ = [
    "CONNECTOR_TYPES",
    "CallableConnector",
    "Connector",
    "ConnectorError",
    "FileBatch",
    "FileDropConnector",
    "HttpConnector",
    "HttpOperation",
    "LegacyGarbage",
    "LegacyNotFound",
    "LegacyTimeout",
    "LegacyUnavailable",
    "Record",
    "SoapOperation",
    "SqlConnector",
    "SqlOperation",
    "connector_from_config",
]

CONNECTOR_TYPES = ("sql", "http", "filedrop", "python")

_T = TypeVar("_T")


class _Section:
    """Typed access to one mapping of the configuration, naming the full key in every error."""

    def __init__(self, entity: str, data: Any, path: str, allowed: tuple[str, ...]) -> None:
        self.entity = entity
        self.path = path
        if not isinstance(data, Mapping):
            raise self.error(f"{self._where() or 'la configuración'} debe ser un mapa clave: valor")
        unknown = [str(key) for key in data if key not in allowed]
        if unknown:
            raise self.error(
                f"la clave {self._key(unknown[0])!r} no existe (admitidas: {', '.join(allowed)})"
            )
        self.data: Mapping[str, Any] = data

    def _where(self) -> str:
        return f"la clave {self.path!r}" if self.path else ""

    def _key(self, key: str) -> str:
        return f"{self.path}.{key}" if self.path else key

    def error(self, message: str) -> ValueError:
        return ValueError(f"Configuración del conector de {self.entity}: {message}.")

    def required(self, key: str) -> Any:
        if key not in self.data or self.data[key] is None:
            raise self.error(f"falta la clave obligatoria {self._key(key)!r}")
        return self.data[key]

    def text(self, key: str, default: str | None = None) -> str:
        value = self.data.get(key, default) if default is not None else self.required(key)
        if not isinstance(value, str) or not value.strip():
            raise self.error(f"la clave {self._key(key)!r} debe ser un texto no vacío")
        return value

    def optional_text(self, key: str) -> str | None:
        return None if self.data.get(key) is None else self.text(key)

    def number(self, key: str, default: float, *, minimum: float = 0.0, positive: bool = True) -> float:
        value = self.data.get(key, default)
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < minimum or (
            positive and value <= 0
        ):
            kind = "un número positivo" if positive else f"un número mayor o igual a {minimum:g}"
            raise self.error(f"la clave {self._key(key)!r} debe ser {kind}")
        return float(value)

    def flag(self, key: str, default: bool = False) -> bool:
        value = self.data.get(key, default)
        if not isinstance(value, bool):
            raise self.error(f"la clave {self._key(key)!r} debe ser true o false")
        return value

    def names(self, key: str) -> list[str] | None:
        value = self.data.get(key)
        if value is None:
            return None
        if isinstance(value, str) or not isinstance(value, list) or not all(isinstance(v, str) for v in value):
            raise self.error(f"la clave {self._key(key)!r} debe ser una lista de nombres")
        return value

    def mapping(self, key: str, *, required: bool = True) -> Mapping[str, Any]:
        value = self.required(key) if required else self.data.get(key, {})
        if not isinstance(value, Mapping) or (required and not value):
            raise self.error(f"la clave {self._key(key)!r} debe ser un mapa no vacío")
        return value

    def section(self, key: str, data: Any, allowed: tuple[str, ...]) -> _Section:
        return _Section(self.entity, data, self._key(key), allowed)

    def build(self, key: str, factory: Callable[[], _T]) -> _T:
        """Run a constructor, prefixing its ValueError with the key it came from."""
        try:
            return factory()
        except ValueError as exc:
            raise self.error(f"{self._key(key)}: {exc}") from exc


def _sql(config: _Section) -> SqlConnector:
    operations: dict[str, SqlOperation] = {}
    for name, raw in config.mapping("operations").items():
        spec = config.section(f"operations.{name}", {"sql": raw} if isinstance(raw, str) else raw,
                              ("sql", "one", "write"))
        sql, one, write = spec.text("sql"), spec.flag("one"), spec.flag("write")
        operations[name] = spec.build("sql", partial(SqlOperation, sql, one=one, write=write))
    url, timeout = config.text("url"), config.number("timeout", 5.0)
    return config.build("url", lambda: SqlConnector(config.entity, url, operations, timeout=timeout))


def _http(config: _Section) -> HttpConnector:
    operations: dict[str, HttpOperation | SoapOperation] = {}
    for name, raw in config.mapping("operations").items():
        if isinstance(raw, Mapping) and "soap_body" in raw:
            spec = config.section(f"operations.{name}", raw, ("path", "records", "soap_action", "soap_body"))
            soap_body, element = spec.text("soap_body"), spec.text("records")
            soap_path, action = spec.text("path", "/"), spec.data.get("soap_action") or ""
            if not isinstance(action, str):
                raise spec.error(f"la clave 'operations.{name}.soap_action' debe ser un texto")
            operations[name] = spec.build(
                "soap_body", partial(SoapOperation, soap_body, element, action=action, path=soap_path)
            )
            continue
        spec = config.section(f"operations.{name}", raw, ("method", "path", "query", "body", "records"))
        method, path, query = spec.text("method", "GET"), spec.text("path"), spec.names("query") or []
        body, records = spec.names("body"), spec.optional_text("records")
        operations[name] = spec.build(
            "path", partial(HttpOperation, method=method, path=path, query=query, body=body, records=records)
        )
    headers = dict(config.mapping("headers", required=False))
    if not all(isinstance(k, str) and isinstance(v, str) for k, v in headers.items()):
        raise config.error("la clave 'headers' debe ser un mapa de textos")
    base_url, timeout, check_path = config.text("base_url"), config.number("timeout", 5.0), config.optional_text(
        "check_path"
    )
    return config.build(
        "base_url",
        lambda: HttpConnector(
            config.entity, base_url, operations, timeout=timeout, headers=headers, check_path=check_path
        ),
    )


def _filedrop(config: _Section, base_dir: Path) -> FileDropConnector:
    root = Path(config.text("root")).expanduser()
    if not root.is_absolute():
        root = base_dir / root
    raw_writes = config.data.get("writes", ["escribir"])
    writes: dict[str, list[str] | None]
    if isinstance(raw_writes, list) and all(isinstance(name, str) for name in raw_writes):
        writes = dict.fromkeys(raw_writes)
    elif isinstance(raw_writes, Mapping):
        writes = {}
        for name, columns in raw_writes.items():
            if columns is not None and (
                isinstance(columns, str) or not isinstance(columns, list)
                or not all(isinstance(c, str) for c in columns)
            ):
                raise config.error(f"la clave 'writes.{name}' debe ser una lista de columnas o null")
            writes[str(name)] = columns
    else:
        raise config.error("la clave 'writes' debe ser una lista de operaciones o un mapa operación: columnas")
    encoding, delimiter = config.text("encoding", "utf-8-sig"), config.text("delimiter", ";")
    if len(delimiter) != 1:
        raise config.error("la clave 'delimiter' debe ser un solo carácter (por ejemplo ';')")
    settle = config.number("settle_seconds", 2.0, positive=False)
    max_bytes = int(config.number("max_bytes", 64 * 1024 * 1024))
    create = config.flag("create")
    return config.build(
        "root",
        lambda: FileDropConnector(
            config.entity, root, encoding=encoding, delimiter=delimiter, writes=writes,
            settle_seconds=settle, max_bytes=max_bytes, create=create,
        ),
    )


def _python(config: _Section) -> CallableConnector:
    functions = config.mapping("functions")
    if not all(isinstance(ref, str) for ref in functions.values()):
        raise config.error("la clave 'functions' debe mapear cada operación a 'modulo:funcion'")
    timeout, check = config.number("timeout", 30.0), config.optional_text("check")
    return config.build(
        "functions", lambda: CallableConnector(config.entity, functions, timeout=timeout, check=check)
    )


_ALLOWED: dict[str, tuple[str, ...]] = {
    "sql": ("type", "url", "timeout", "operations"),
    "http": ("type", "base_url", "timeout", "headers", "check_path", "operations"),
    "filedrop": ("type", "root", "encoding", "delimiter", "settle_seconds", "max_bytes", "create", "writes"),
    "python": ("type", "functions", "timeout", "check"),
}


def connector_from_config(entity: str, config: Mapping[str, Any], *, base_dir: Path) -> Connector:
    """Build the connector `config` describes (see the module docstring); relative paths are resolved
    against `base_dir` (the folder of the configuration file)."""
    if not isinstance(config, Mapping):
        raise ValueError(f"Configuración del conector de {entity}: debe ser un mapa clave: valor.")
    kind = config.get("type")
    if kind not in _ALLOWED:
        raise ValueError(
            f"Configuración del conector de {entity}: la clave 'type' debe ser una de "
            f"{', '.join(CONNECTOR_TYPES)} (se recibió {kind!r})."
        )
    section = _Section(entity, config, "", _ALLOWED[kind])
    if kind == "sql":
        return _sql(section)
    if kind == "http":
        return _http(section)
    if kind == "filedrop":
        return _filedrop(section, Path(base_dir))
    return _python(section)
