"""File-drop connector: batch exchange through shared folders (e.g. a caja de compensación's system).

Folders under `root`:

- `entrada/`: files the legacy system drops for us; `take()` yields the complete ones as `FileBatch`es.
- `salida/`: files we write for the legacy system, one per `call()`, atomically (temporary hidden name in
  the same folder, fsync, `os.replace`): the legacy reader never sees half a file.
- `procesados/`: batches acknowledged with `FileBatch.done()`.
- `errores/`: batches refused (`FileBatch.failed(reason)`, or unreadable when taken), each with a
  `<name>.motivo.txt` saying why in Spanish. No file is ever lost or silently skipped.

A file in `entrada/` is taken only once it has settled: hidden and temporary names (`.x`, `*.tmp`,
`*.part`, `~$x`) are ignored, its modification time must be at least `settle_seconds` old, and its size
and mtime must not change while it is read. CSV files (default `;`-separated, UTF-8 with or without BOM,
as Colombian Excel exports them) give one record per row keyed by the header; XML files (parsed with the
platform's hardened parser) give one record per child element of the root, fields by local name.
"""

from __future__ import annotations

import contextlib
import csv
import io
import os
import re
import time
import uuid
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from pathlib import Path
from typing import Any

from lxml import etree

from adapters.sdk.connectors.base import LegacyGarbage, LegacyUnavailable, Record, unknown_operation
from broker.gelxml.faults import GelFault
from broker.gelxml.parsing import ParseLimits, parse_untrusted
from broker.logs import get_logger

__all__ = ["FOLDERS", "FileBatch", "FileDropConnector", "element_record"]

FOLDERS = ("entrada", "salida", "procesados", "errores")
_IGNORED_SUFFIXES = (".tmp", ".temp", ".part", ".partial", ".crdownload", ".swp", "~")
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]+")
_DEFAULT_MAX_BYTES = 64 * 1024 * 1024


@dataclass(frozen=True, slots=True)
class FileBatch:
    """A complete file taken from `entrada/` with its records; settle it with `done()` or `failed()`."""

    path: Path
    records: tuple[Record, ...]
    _owner: FileDropConnector = field(repr=False, compare=False)

    @property
    def name(self) -> str:
        return self.path.name

    def done(self) -> Path:
        """Move the file to `procesados/` (atomically); its new path."""
        return self._owner._move(self.path, "procesados")

    def failed(self, reason: str) -> Path:
        """Move the file to `errores/` with a `<name>.motivo.txt` holding `reason` (Spanish); its new path."""
        return self._owner._reject(self.path, reason)


class _Unreadable(Exception):
    """A file in entrada/ that cannot be read as a batch; the message (Spanish) goes to its .motivo.txt."""


class FileDropConnector:
    """Folder exchange with a legacy system. One consumer per `entrada/` folder."""

    def __init__(
        self,
        entity: str,
        root: str | os.PathLike[str],
        *,
        encoding: str = "utf-8-sig",
        delimiter: str = ";",
        writes: Mapping[str, Sequence[str] | None] | Iterable[str] = ("escribir",),
        settle_seconds: float = 2.0,
        max_bytes: int = _DEFAULT_MAX_BYTES,
        create: bool = False,
    ) -> None:
        if len(delimiter) != 1:
            raise ValueError(f"El separador debe ser un solo carácter; se recibió {delimiter!r}.")
        try:
            "".encode(encoding)
        except LookupError:
            raise ValueError(f"La codificación {encoding!r} no existe.") from None
        if settle_seconds < 0 or max_bytes <= 0:
            raise ValueError("settle_seconds no puede ser negativo y max_bytes debe ser positivo.")
        self.entity = entity
        self.root = Path(root)
        self.encoding = encoding
        self.delimiter = delimiter
        self.settle_seconds = float(settle_seconds)
        self.max_bytes = int(max_bytes)
        if isinstance(writes, Mapping):
            self._writes = {name: None if cols is None else tuple(cols) for name, cols in writes.items()}
        else:
            self._writes = dict.fromkeys(writes)
        self._log = get_logger(entidad=entity, conector="filedrop")
        if create:
            for folder in FOLDERS:
                (self.root / folder).mkdir(parents=True, exist_ok=True)

    def folder(self, name: str) -> Path:
        if name not in FOLDERS:
            raise ValueError(f"Carpeta desconocida {name!r}; las carpetas son {', '.join(FOLDERS)}.")
        return self.root / name

    @property
    def operations(self) -> tuple[str, ...]:
        return tuple(self._writes)

    # -- writing ------------------------------------------------------------------------------------

    def call(self, operation: str, params: Mapping[str, Any]) -> Sequence[Record]:
        """Write one CSV file to `salida/`. `params` is either one record, or `{"registros": [...]}` with an
        optional `"archivo"` name prefix. The answer is `[{"archivo": file name}]`."""
        if operation not in self._writes:
            raise unknown_operation("de carpetas", self.entity, operation, self._writes)
        if "registros" in params:
            rows = params["registros"]
            if isinstance(rows, (str, bytes, Mapping)) or not isinstance(rows, Iterable):
                raise ValueError("'registros' debe ser una lista de registros.")
            records = list(rows)
            prefix = str(params.get("archivo") or operation)
        else:
            records = [dict(params)]
            prefix = operation
        if not all(isinstance(record, Mapping) for record in records):
            raise ValueError("Cada registro por escribir debe ser un diccionario campo → valor.")
        columns = self._writes[operation] or _columns(records)
        unknown = sorted({key for record in records for key in record} - set(columns))
        if unknown:
            raise ValueError(f"La operación {operation!r} no escribe los campos: {', '.join(unknown)}.")
        stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
        name = f"{_UNSAFE.sub('_', prefix).strip('_') or 'lote'}_{stamp}_{uuid.uuid4().hex[:8]}.csv"
        buffer = io.StringIO(newline="")
        writer = csv.writer(buffer, delimiter=self.delimiter, lineterminator="\r\n")
        writer.writerow(columns)
        for record in records:
            writer.writerow(["" if record.get(col) is None else str(record.get(col)) for col in columns])
        try:
            data = buffer.getvalue().encode(self.encoding)
        except UnicodeEncodeError as exc:
            raise LegacyGarbage(
                self.entity,
                detail=f"un dato no se puede escribir con la codificación {self.encoding} del sistema ({exc.reason})",
            ) from exc
        self._write_atomically(self.folder("salida") / name, data)
        self._log.info("archivo_escrito", archivo=name, registros=len(records))
        return [{"archivo": name}]

    def _write_atomically(self, target: Path, data: bytes) -> None:
        temporary = target.with_name(f".{target.name}.{uuid.uuid4().hex[:8]}.tmp")
        try:
            with open(temporary, "xb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(temporary, target)
            _fsync_directory(target.parent)
        except OSError as exc:
            with contextlib.suppress(OSError):
                temporary.unlink()
            raise LegacyUnavailable(
                self.entity, detail=f"no se pudo escribir en la carpeta {target.parent.name}/ ({exc.strerror})"
            ) from exc

    # -- reading ------------------------------------------------------------------------------------

    def take(self, pattern: str = "*.csv") -> Iterator[FileBatch]:
        """The settled files of `entrada/` matching `pattern`, oldest first. Unreadable ones are moved to
        `errores/` with their reason instead of being yielded. A batch not settled stays for the next take."""
        entrada = self.folder("entrada")
        try:
            candidates = [path for path in entrada.glob(pattern) if _eligible(path)]
        except OSError as exc:
            raise LegacyUnavailable(
                self.entity, detail=f"no se pudo leer la carpeta entrada/ ({exc.strerror})"
            ) from exc
        dated: list[tuple[float, str, Path]] = []
        for path in candidates:
            with contextlib.suppress(FileNotFoundError):
                dated.append((path.stat().st_mtime, path.name, path))
        for _mtime, _name, path in sorted(dated):
            batch = self._read(path)
            if batch is not None:
                yield batch

    def _read(self, path: Path) -> FileBatch | None:
        try:
            before = path.stat()
            if time.time() - before.st_mtime < self.settle_seconds:
                return None
            if before.st_size > self.max_bytes:
                raise _Unreadable(f"el archivo pesa {before.st_size} bytes y el máximo es {self.max_bytes} bytes")
            data = path.read_bytes()
            after = path.stat()
        except FileNotFoundError:
            return None
        except _Unreadable as exc:
            self._reject(path, str(exc))
            return None
        except OSError as exc:
            self._reject(path, f"no se pudo leer el archivo ({exc.strerror})")
            return None
        if (after.st_size, after.st_mtime_ns) != (before.st_size, before.st_mtime_ns) or len(data) != after.st_size:
            return None  # still being written: next time
        try:
            records = self._parse(path, data)
        except _Unreadable as exc:
            self._reject(path, str(exc))
            return None
        return FileBatch(path=path, records=tuple(records), _owner=self)

    def _parse(self, path: Path, data: bytes) -> list[Record]:
        if not data.strip():
            raise _Unreadable("el archivo está vacío")
        suffix = path.suffix.lower()
        if suffix in (".csv", ".txt"):
            return self._parse_csv(data)
        if suffix == ".xml":
            return _parse_xml(data, self.max_bytes)
        raise _Unreadable(f"el formato {suffix or '(sin extensión)'} no está soportado: entregue CSV o XML")

    def _parse_csv(self, data: bytes) -> list[Record]:
        nul = data.find(b"\x00")
        if nul >= 0 and "16" not in self.encoding and "32" not in self.encoding:
            line = data.count(b"\n", 0, nul) + 1
            raise _Unreadable(
                f"la línea {line} contiene bytes nulos: ¿se guardó como «Texto Unicode» "
                "(UTF-16) o es un archivo binario? Guárdelo como «CSV UTF-8»"
            )
        try:
            decoded = data.decode(self.encoding)
        except UnicodeDecodeError as exc:
            line = data.count(b"\n", 0, exc.start) + 1
            utf8 = self.encoding.lower().replace("_", "-") in ("utf-8", "utf-8-sig", "utf8")
            name, hint = ("UTF-8", " (guárdelo como «CSV UTF-8»)") if utf8 else (self.encoding, "")
            raise _Unreadable(
                f"la línea {line} no está en {name}: el byte 0x{data[exc.start]:02x} no es válido{hint}"
            ) from None
        reader = csv.reader(io.StringIO(decoded.lstrip("\ufeff"), newline=""), delimiter=self.delimiter, strict=True)
        try:
            header = next(reader, None)
            if header is None or not any(cell.strip() for cell in header):
                raise _Unreadable("la primera línea debe ser el encabezado con los nombres de las columnas")
            names = [cell.strip() for cell in header]
            if len(names) == 1 and any(sep in names[0] for sep in ",;\t" if sep != self.delimiter):
                raise _Unreadable(f"el archivo no está separado por {self.delimiter!r}; revise el separador")
            for position, column in enumerate(names, start=1):
                if not column:
                    raise _Unreadable(f"la columna {position} del encabezado no tiene nombre")
            duplicated = sorted({column for column in names if names.count(column) > 1})
            if duplicated:
                raise _Unreadable(f"el encabezado repite las columnas {', '.join(duplicated)}")
            records: list[Record] = []
            for row in reader:
                if not any(cell.strip() for cell in row):
                    continue
                if len(row) != len(names):
                    raise _Unreadable(
                        f"la línea {reader.line_num} tiene {len(row)} campos y el encabezado tiene {len(names)}"
                    )
                records.append(dict(zip(names, row, strict=True)))
        except csv.Error as exc:
            raise _Unreadable(f"la línea {reader.line_num} no es CSV válido: {_csv_problem(str(exc))}") from None
        return records

    # -- settling -----------------------------------------------------------------------------------

    def _move(self, path: Path, folder: str) -> Path:
        target_dir = self.folder(folder)
        target = _free_name(target_dir, path.name)
        try:
            os.replace(path, target)
            _fsync_directory(target_dir)
        except FileNotFoundError:
            if not path.exists():
                raise RuntimeError(
                    f"El archivo {path.name} ya no está en {path.parent.name}/: ya fue procesado o movido."
                ) from None
            raise LegacyUnavailable(self.entity, detail=f"no existe la carpeta {folder}/") from None
        except OSError as exc:
            raise LegacyUnavailable(
                self.entity, detail=f"no se pudo mover {path.name} a {folder}/ ({exc.strerror})"
            ) from exc
        return target

    def _reject(self, path: Path, reason: str) -> Path:
        target = self._move(path, "errores")
        stamp = datetime.now().astimezone().isoformat(timespec="seconds")
        note = f"Archivo: {path.name}\nFecha: {stamp}\nMotivo: {reason}\n"
        motive = target.with_name(f"{target.name}.motivo.txt")
        self._write_atomically(motive, note.encode(self.encoding, errors="replace"))
        self._log.warning("archivo_rechazado", archivo=path.name, destino=target.name, motivo=reason)
        return target

    # -- checks -------------------------------------------------------------------------------------

    def check(self) -> None:
        for name in FOLDERS:
            folder = self.root / name
            if not folder.is_dir():
                raise LegacyUnavailable(self.entity, detail=f"no existe la carpeta {name}/")
            probe = folder / f".gel-verificacion-{uuid.uuid4().hex[:8]}.tmp"
            try:
                probe.write_bytes(b"ok")
                probe.unlink()
            except OSError as exc:
                raise LegacyUnavailable(
                    self.entity, detail=f"no se puede escribir en la carpeta {name}/ ({exc.strerror})"
                ) from exc

    def close(self) -> None:
        """Nothing to release: every file is opened and closed within a call."""


_CSV_PROBLEMS = (
    ("unexpected end of data", "una comilla (\") abre un campo que nunca se cierra"),
    ("EOF inside string", "una comilla (\") abre un campo que nunca se cierra"),
    ("expected after", "hay una comilla (\") suelta dentro de un campo entre comillas"),
    ("new-line character", "hay un salto de línea dentro de un campo sin comillas"),
    ("field larger than field limit", "un campo es demasiado largo"),
)


def _csv_problem(message: str) -> str:
    for needle, spanish in _CSV_PROBLEMS:
        if needle in message:
            return spanish
    return f"error de formato ({message})"


def _columns(records: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    seen: dict[str, None] = {}
    for record in records:
        for key in record:
            seen.setdefault(str(key), None)
    return tuple(seen)


def _eligible(path: Path) -> bool:
    name = path.name
    if name.startswith((".", "~$")) or name.lower().endswith(_IGNORED_SUFFIXES):
        return False
    try:
        return path.is_file()
    except OSError:
        return False


def _free_name(folder: Path, name: str) -> Path:
    """`folder/name`, or a stamped variant when a file of that name is already there (never overwrite)."""
    target = folder / name
    if not target.exists():
        return target
    dot = name.find(".", 1)
    stem, suffix = (name[:dot], name[dot:]) if dot > 0 else (name, "")
    stamp = datetime.now().strftime("%Y%m%d-%H%M%S")
    return folder / f"{stem}.{stamp}-{uuid.uuid4().hex[:6]}{suffix}"


def _fsync_directory(folder: Path) -> None:
    """Make a rename durable (POSIX); a no-op where directories cannot be opened (Windows)."""
    try:
        descriptor = os.open(folder, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(descriptor)
    except OSError:
        pass
    finally:
        os.close(descriptor)


def _local(node: etree._Element) -> str:
    return etree.QName(node).localname


def _value(node: etree._Element) -> Any:
    children = [child for child in node if isinstance(child.tag, str)]
    if not children and not node.attrib:
        return node.text or ""
    return element_record(node)


def element_record(node: etree._Element) -> Record:
    """An XML element as a record: its attributes and child elements by local name (nested elements become
    dicts, repeated ones lists, leaves their text)."""
    fields: Record = {etree.QName(key).localname: value for key, value in node.attrib.items()}
    for child in node:
        if not isinstance(child.tag, str):
            continue
        name, value = _local(child), _value(child)
        if name in fields:
            existing = fields[name]
            fields[name] = [*existing, value] if isinstance(existing, list) else [existing, value]
        else:
            fields[name] = value
    return fields


def _parse_xml(data: bytes, max_bytes: int) -> list[Record]:
    try:
        root = parse_untrusted(data, ParseLimits(max_bytes=max_bytes))
    except GelFault as exc:
        where = exc.falla.location
        line = f" (línea {where.line})" if where is not None and where.line is not None else ""
        raise _Unreadable(f"{exc.falla.message.rstrip('.')}{line}") from None
    return [element_record(child) for child in root if isinstance(child.tag, str)]
