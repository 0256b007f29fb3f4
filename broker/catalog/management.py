"""Catalog changes, decided in one place for the API and the command line: who may change a service (its
owner entity's publisher, or an operator), which entities exist, and what a publication must pass."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from broker.catalog.access import ServiceStatus
from broker.catalog.errors import CatalogCode, CatalogError
from broker.catalog.live import open_catalog
from broker.catalog.publication import SAMPLE_KINDS, CheckedPublication, Publication, check_publication
from broker.catalog.store import CatalogStore, ServiceRecord
from broker.gelxml.registry import SchemaRegistry
from broker.security.entities import EntityRegistry, load_entities
from broker.settings import Settings

__all__ = ["Actor", "CatalogManager", "open_manager"]


@dataclass(frozen=True, slots=True)
class Actor:
    """Who asks: `entity` is the entity a publisher acts for; None for an operator, who may change anything."""

    name: str
    entity: str | None = None


@dataclass(frozen=True, slots=True)
class CatalogManager:
    store: CatalogStore
    registry: SchemaRegistry
    entities: EntityRegistry

    def _known(self, ids: Iterable[str], role: str) -> None:
        unknown = sorted({i for i in ids if self.entities.get(i) is None})
        if unknown:
            raise CatalogError(CatalogCode.UNKNOWN_ENTITY, f"{role}: {', '.join(unknown)} no está en el registro de "
                               "entidades de la plataforma. Verifique el identificador (p. ej. CO/GOB/899999007).")

    @staticmethod
    def _may_change(actor: Actor, owner: str, what: str) -> None:
        if actor.entity is not None and actor.entity != owner:
            raise CatalogError(CatalogCode.NOT_OWNER, f"Solo la entidad propietaria ({owner}) o un operador puede "
                               f"{what}; su credencial es de {actor.entity}.")

    def publish(self, publication: Publication, actor: Actor) -> tuple[ServiceRecord, CheckedPublication, bool]:
        """Check and store a publication: (record, the checks' result, whether it is new)."""
        self._may_change(actor, publication.owner, "publicar servicios a su nombre")
        self._known([publication.owner], "Entidad propietaria")
        self._known(publication.providers, "Proveedores")
        self._known(publication.callers, "Consumidores")
        self._known(publication.subscribers, "Suscriptores")
        checked = check_publication(publication, self.registry)
        record, created = self.store.publish(checked, actor=actor.name)
        return record, checked, created

    def set_status(self, code: str, version: str, status: ServiceStatus, actor: Actor) -> ServiceRecord:
        self._may_change(actor, self.store.record(code, version).owner, "cambiar el estado del servicio")
        return self.store.set_status(code, version, status, actor=actor.name)

    def grant(self, code: str, version: str, entity: str, actor: Actor) -> ServiceRecord:
        self._may_change(actor, self.store.record(code, version).owner, "otorgar acceso al servicio")
        self._known([entity], "Consumidor")
        return self.store.grant(code, version, entity, actor=actor.name)

    def schema(self, code: str, version: str) -> bytes:
        """The service's XSD: as published, or the platform's shipped file."""
        published = self.store.schema(code, version)
        if published is not None:
            return published
        shipped = self.registry.service(code, version)
        if shipped is None:
            raise CatalogError(CatalogCode.NOT_FOUND, f"El servicio {code} {version} no tiene esquema registrado.")
        return shipped.path.read_bytes()

    def samples(self, record: ServiceRecord) -> dict[str, bytes]:
        """Sample messages by kind (solicitud, respuesta, evento): as published, or the platform's shipped ones."""
        found = {kind: sample for kind in SAMPLE_KINDS
                 if (sample := self.store.sample(record.code, record.version, kind)) is not None}
        shipped = self.registry.root / "samples" / "valid"
        for kind in SAMPLE_KINDS:
            path = shipped / f"{record.code}-{kind}.xml"
            if kind not in found and record.schema_sha256 is None and path.is_file():
                found[kind] = path.read_bytes()
        return found

    def revoke(self, code: str, version: str, entity: str, actor: Actor) -> ServiceRecord:
        self._may_change(actor, self.store.record(code, version).owner, "revocar acceso al servicio")
        return self.store.revoke(code, version, entity, actor=actor.name)


def open_manager(settings: Settings) -> CatalogManager:
    """The catalog manager over the platform store (seeded from the catalog file on first use)."""
    live = open_catalog(settings)
    return CatalogManager(store=live.store, registry=live.base, entities=load_entities(settings.entities_file))
