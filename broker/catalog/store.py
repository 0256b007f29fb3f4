"""The catalog's system of record: service versions, access rights and every change to them, in the platform
store. `deploy/catalog.yaml` only seeds it (entries the store does not have yet); afterwards services are
published, retired, granted and revoked here, and each change bumps one revision number the gateways watch.
"""

from __future__ import annotations

import datetime as dt
import json
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import Column, Index, Integer, MetaData, String, Table, Text, delete, insert, select, update
from sqlalchemy.engine import Connection
from sqlalchemy.exc import IntegrityError, OperationalError

from broker.catalog.access import Catalog, ServiceEntry, ServiceStatus, load_catalog
from broker.catalog.errors import CatalogCode, CatalogError
from broker.catalog.publication import CheckedPublication
from broker.gelxml.registry import SchemaRegistry
from broker.storage import create_tables, iso, open_engine

__all__ = ["CatalogChange", "CatalogStore", "ServiceRecord"]

_metadata = MetaData()
services = Table(
    "catalog_services", _metadata,
    Column("code", String(128), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("domain", String(64), nullable=False),
    Column("namespace", String(256), nullable=False, unique=True),
    Column("owner", String(64), nullable=False),
    Column("description", Text, nullable=False),
    Column("status", String(16), nullable=False),
    Column("providers", Text, nullable=False),
    Column("subscribers", Text, nullable=False),
    Column("reply_within_seconds", Integer, nullable=True),
    Column("schema_xsd", Text, nullable=True),
    Column("schema_sha256", String(64), nullable=True),
    Column("samples", Text, nullable=False),
    Column("origin", String(16), nullable=False),
    Column("published_at", String(32), nullable=False),
    Column("published_by", String(128), nullable=False),
    Column("updated_at", String(32), nullable=False),
)
grants = Table(
    "catalog_grants", _metadata,
    Column("code", String(128), primary_key=True),
    Column("version", String(16), primary_key=True),
    Column("entity", String(64), primary_key=True),
    Column("granted_at", String(32), nullable=False),
    Column("granted_by", String(128), nullable=False),
)
changes = Table(
    "catalog_changes", _metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("at", String(32), nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(32), nullable=False),
    Column("code", String(128), nullable=False),
    Column("version", String(16), nullable=False),
    Column("detail", Text, nullable=False),
    Index("ix_catalog_changes_service", "code", "version"),
)
revision_table = Table(
    "catalog_revision", _metadata,
    Column("id", Integer, primary_key=True),
    Column("revision", Integer, nullable=False),
)

ORIGIN_FILE, ORIGIN_PUBLISHED = "archivo", "publicado"
_TRANSITIONS = {
    ServiceStatus.ACTIVE: {ServiceStatus.DEPRECATED, ServiceStatus.RETIRED},
    ServiceStatus.DEPRECATED: {ServiceStatus.ACTIVE, ServiceStatus.RETIRED},
    ServiceStatus.RETIRED: set(),
}


@dataclass(frozen=True, slots=True)
class ServiceRecord:
    """One service version as the catalog knows it."""

    code: str
    version: str
    domain: str
    namespace: str
    owner: str
    description: str
    status: ServiceStatus
    providers: tuple[str, ...]
    callers: tuple[str, ...]
    subscribers: tuple[str, ...]
    reply_within_seconds: int | None
    origin: str
    schema_sha256: str | None
    sample_kinds: tuple[str, ...]
    published_at: str
    published_by: str
    updated_at: str

    @property
    def key(self) -> tuple[str, str]:
        return (self.code, self.version)

    def entry(self) -> ServiceEntry:
        return ServiceEntry(code=self.code, version=self.version, status=self.status,
                            providers=frozenset(self.providers), callers=frozenset(self.callers),
                            subscribers=frozenset(self.subscribers), reply_within_seconds=self.reply_within_seconds)


@dataclass(frozen=True, slots=True)
class CatalogChange:
    at: str
    actor: str
    action: str
    code: str
    version: str
    detail: dict[str, Any]


def _now() -> str:
    return iso(dt.datetime.now(dt.UTC))


class CatalogStore:
    """Service versions, grants and their history in the platform store (SQLite or PostgreSQL)."""

    def __init__(self, url: str) -> None:
        self.engine = open_engine(url)
        create_tables(_metadata, self.engine)
        try:
            with self.engine.begin() as connection:
                if connection.execute(select(revision_table.c.revision)).first() is None:
                    connection.execute(insert(revision_table).values(id=1, revision=0))
        except IntegrityError:
            pass  # another process starting at the same moment created it

    def close(self) -> None:
        self.engine.dispose()

    # -- reading -------------------------------------------------------------------------------
    def revision(self) -> int:
        with self.engine.connect() as connection:
            return int(connection.execute(select(revision_table.c.revision).where(revision_table.c.id == 1))
                       .scalar_one())

    def records(self, *, code: str | None = None, version: str | None = None) -> list[ServiceRecord]:
        query = select(services).order_by(services.c.code, services.c.version)
        if code is not None:
            query = query.where(services.c.code == code)
        if version is not None:
            query = query.where(services.c.version == version)
        with self.engine.connect() as connection:
            rows = connection.execute(query).mappings().all()
            granted: dict[tuple[str, str], list[str]] = {}
            grant_query = select(grants.c.code, grants.c.version, grants.c.entity).order_by(grants.c.entity)
            if code is not None:
                grant_query = grant_query.where(grants.c.code == code)
            for row in connection.execute(grant_query):
                granted.setdefault((row.code, row.version), []).append(row.entity)
        return [self._record(row, granted.get((row["code"], row["version"]), [])) for row in rows]

    def record(self, code: str, version: str) -> ServiceRecord:
        found = self.records(code=code, version=version)
        if not found:
            raise CatalogError(CatalogCode.NOT_FOUND, f"El servicio {code} versión {version} no está en el catálogo.")
        return found[0]

    @staticmethod
    def _record(row: Any, callers: Sequence[str]) -> ServiceRecord:
        return ServiceRecord(
            code=row["code"], version=row["version"], domain=row["domain"], namespace=row["namespace"],
            owner=row["owner"], description=row["description"], status=ServiceStatus(row["status"]),
            providers=tuple(json.loads(row["providers"])), callers=tuple(callers),
            subscribers=tuple(json.loads(row["subscribers"])), reply_within_seconds=row["reply_within_seconds"],
            origin=row["origin"], schema_sha256=row["schema_sha256"],
            sample_kinds=tuple(sorted(json.loads(row["samples"]))), published_at=row["published_at"],
            published_by=row["published_by"], updated_at=row["updated_at"])

    def catalog(self) -> Catalog:
        """The authorisation snapshot the gateway enforces."""
        return Catalog(entries={r.key: r.entry() for r in self.records()})

    def published_schemas(self) -> list[tuple[str, str, bytes]]:
        """(namespace, sha256, XSD) of every schema published through the catalog rather than shipped."""
        query = (select(services.c.namespace, services.c.schema_sha256, services.c.schema_xsd)
                 .where(services.c.schema_xsd.is_not(None)).order_by(services.c.namespace))
        with self.engine.connect() as connection:
            return [(r.namespace, r.schema_sha256, r.schema_xsd.encode("utf-8")) for r in connection.execute(query)]

    def schema(self, code: str, version: str) -> bytes | None:
        """The published XSD, or None for a service whose schema ships in the platform's schema folder."""
        with self.engine.connect() as connection:
            text = connection.execute(select(services.c.schema_xsd).where(
                services.c.code == code, services.c.version == version)).scalar_one_or_none()
        return text.encode("utf-8") if text is not None else None

    def sample(self, code: str, version: str, kind: str) -> bytes | None:
        with self.engine.connect() as connection:
            text = connection.execute(select(services.c.samples).where(
                services.c.code == code, services.c.version == version)).scalar_one_or_none()
        found = json.loads(text).get(kind) if text is not None else None
        return found.encode("utf-8") if found is not None else None

    def history(self, code: str | None = None, version: str | None = None, limit: int = 200) -> list[CatalogChange]:
        query = select(changes).order_by(changes.c.id.desc()).limit(limit)
        if code is not None:
            query = query.where(changes.c.code == code)
        if version is not None:
            query = query.where(changes.c.version == version)
        with self.engine.connect() as connection:
            return [CatalogChange(at=r.at, actor=r.actor, action=r.action, code=r.code, version=r.version,
                                  detail=json.loads(r.detail)) for r in connection.execute(query)]

    # -- changing ------------------------------------------------------------------------------
    @staticmethod
    def _changed(connection: Connection, actor: str, action: str, code: str, version: str,
                 **detail: Any) -> None:
        connection.execute(insert(changes).values(at=_now(), actor=actor, action=action, code=code, version=version,
                                                  detail=json.dumps(detail, ensure_ascii=False, sort_keys=True)))
        connection.execute(update(revision_table).where(revision_table.c.id == 1)
                           .values(revision=revision_table.c.revision + 1))

    @staticmethod
    def _grant_rows(code: str, version: str, entities: Iterable[str], actor: str) -> list[dict[str, str]]:
        moment = _now()
        return [{"code": code, "version": version, "entity": e, "granted_at": moment, "granted_by": actor}
                for e in sorted(set(entities))]

    def seed(self, path: Path, registry: SchemaRegistry, *, actor: str = "archivo de catálogo") -> int:
        """Add the file's service versions the store does not have yet; returns how many were added. Processes
        starting together may race: the loser's transaction fails whole, and it looks again."""
        if not path.exists():
            return 0
        catalog = load_catalog(path)
        for attempt in range(5):
            try:
                return self._seed(catalog, path, registry, actor)
            except (IntegrityError, OperationalError):
                if attempt == 4:
                    raise
                time.sleep(0.05 * (attempt + 1))
        return 0

    def _seed(self, catalog: Catalog, path: Path, registry: SchemaRegistry, actor: str) -> int:
        with self.engine.begin() as connection:
            known = {(r.code, r.version) for r in connection.execute(select(services.c.code, services.c.version))}
            added = 0
            for key, entry in sorted(catalog.entries.items()):
                if key in known:
                    continue
                schema = registry.service(*key)
                moment = _now()
                connection.execute(insert(services).values(
                    code=entry.code, version=entry.version, domain=schema.domain if schema else "",
                    namespace=schema.namespace if schema else f"(sin esquema) {entry.code}/{entry.version}",
                    owner=sorted(entry.providers)[0] if entry.providers else "",
                    description=schema.description if schema else "", status=entry.status.value,
                    providers=json.dumps(sorted(entry.providers)), subscribers=json.dumps(sorted(entry.subscribers)),
                    reply_within_seconds=entry.reply_within_seconds, schema_xsd=None, schema_sha256=None,
                    samples="{}", origin=ORIGIN_FILE, published_at=moment, published_by=actor, updated_at=moment))
                rows = self._grant_rows(entry.code, entry.version, entry.callers, actor)
                if rows:
                    connection.execute(insert(grants), rows)
                self._changed(connection, actor, "sembrado", entry.code, entry.version, archivo=str(path))
                added += 1
            return added

    def publish(self, checked: CheckedPublication, *, actor: str) -> tuple[ServiceRecord, bool]:
        """Store a checked publication; (record, created). Publishing the same schema again changes nothing;
        a different schema under a published version is refused: versions are immutable."""
        publication = checked.publication
        with self.engine.begin() as connection:
            existing = connection.execute(select(services.c.schema_sha256, services.c.origin).where(
                services.c.code == checked.code, services.c.version == checked.version)).first()
            if existing is not None:
                if existing.schema_sha256 == checked.schema_sha256:
                    created = False
                else:
                    where = ("ya está publicada con otro esquema" if existing.origin == ORIGIN_PUBLISHED
                             else "ya existe en los esquemas de la plataforma")
                    raise CatalogError(CatalogCode.VERSION_EXISTS, f"La versión {checked.version} de {checked.code} "
                                       f"{where}; las versiones no cambian. Publique una versión nueva (por ejemplo "
                                       f"{_next_minor(checked.version)}) con su propio espacio de nombres.")
            else:
                moment = _now()
                connection.execute(insert(services).values(
                    code=checked.code, version=checked.version, domain=checked.domain, namespace=checked.namespace,
                    owner=publication.owner, description=checked.description, status=ServiceStatus.ACTIVE.value,
                    providers=json.dumps(sorted(set(publication.providers))),
                    subscribers=json.dumps(sorted(set(publication.subscribers))),
                    reply_within_seconds=publication.reply_within_seconds,
                    schema_xsd=publication.schema.decode("utf-8"), schema_sha256=checked.schema_sha256,
                    samples=json.dumps({k: v.decode("utf-8") for k, v in publication.samples.items()},
                                       ensure_ascii=False),
                    origin=ORIGIN_PUBLISHED, published_at=moment, published_by=actor, updated_at=moment))
                rows = self._grant_rows(checked.code, checked.version, publication.callers, actor)
                if rows:
                    connection.execute(insert(grants), rows)
                self._changed(connection, actor, "publicado", checked.code, checked.version,
                              propietario=publication.owner, proveedores=sorted(publication.providers),
                              consumidores=sorted(publication.callers))
                created = True
        return self.record(checked.code, checked.version), created

    def set_status(self, code: str, version: str, status: ServiceStatus, *, actor: str) -> ServiceRecord:
        current = self.record(code, version)
        if status == current.status:
            return current
        if status not in _TRANSITIONS[current.status]:
            raise CatalogError(CatalogCode.STATUS, f"El servicio {code} {version} está {current.status.value}; no "
                               f"puede pasar a {status.value}. Un servicio retirado no vuelve: publique una versión "
                               "nueva.")
        with self.engine.begin() as connection:
            connection.execute(update(services).where(services.c.code == code, services.c.version == version)
                               .values(status=status.value, updated_at=_now()))
            self._changed(connection, actor, "estado", code, version, antes=current.status.value,
                          despues=status.value)
        return self.record(code, version)

    def grant(self, code: str, version: str, entity: str, *, actor: str) -> ServiceRecord:
        current = self.record(code, version)
        if entity not in current.callers:
            with self.engine.begin() as connection:
                connection.execute(insert(grants), self._grant_rows(code, version, [entity], actor))
                self._changed(connection, actor, "acceso_otorgado", code, version, entidad=entity)
        return self.record(code, version)

    def revoke(self, code: str, version: str, entity: str, *, actor: str) -> ServiceRecord:
        current = self.record(code, version)
        if entity in current.callers:
            with self.engine.begin() as connection:
                connection.execute(delete(grants).where(grants.c.code == code, grants.c.version == version,
                                                        grants.c.entity == entity))
                self._changed(connection, actor, "acceso_revocado", code, version, entidad=entity)
        return self.record(code, version)


def _next_minor(version: str) -> str:
    major, _, minor = version.partition(".")
    return f"{major}.{int(minor) + 1}" if minor.isdigit() else version + ".1"
