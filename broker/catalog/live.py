"""The catalog as a running component sees it: the store's current revision, with the schemas published
through the catalog compiled into the language. Cheap to ask often: the store is read again only when its
revision number changed, checked at most every `refresh_seconds`; the language is recompiled only when the
set of published schemas changed. A recompilation happens off to the side: callers keep the previous
snapshot until the new one is ready.
"""

from __future__ import annotations

import hashlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import structlog

from broker.catalog.access import Catalog, RequestLookup, ServiceEntry
from broker.catalog.publication import layout_path, materialise
from broker.catalog.store import CatalogStore
from broker.gelxml import load_registry
from broker.gelxml.envelope import Header
from broker.gelxml.registry import SchemaRegistry
from broker.settings import Settings

__all__ = ["CatalogSnapshot", "LiveCatalog", "open_catalog"]

log = structlog.get_logger("gel.catalog")


@dataclass(frozen=True, slots=True)
class CatalogSnapshot:
    revision: int
    catalog: Catalog
    registry: SchemaRegistry
    schemas_key: str


class LiveCatalog:
    """Authorisation and language that follow the catalog store; drop-in for a static `Catalog`."""

    def __init__(self, store: CatalogStore, base: SchemaRegistry, workspace: Path, *,
                 refresh_seconds: float = 2.0, clock: Callable[[], float] = time.monotonic) -> None:
        self.store = store
        self.base = base
        self.workspace = workspace
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._lock = threading.Lock()
        self._snapshot = self._load(None)
        self._checked_at = clock()

    # -- the snapshot --------------------------------------------------------------------------
    def _registry_for(self, schemas: list[tuple[str, str, bytes]], previous: CatalogSnapshot | None
                      ) -> tuple[SchemaRegistry, str]:
        key = hashlib.sha256("|".join(f"{ns}={sha}" for ns, sha, _ in schemas).encode()).hexdigest()[:24]
        if previous is not None and previous.schemas_key == key:
            return previous.registry, key
        if not schemas:
            return self.base, key
        folder = materialise([(layout_path(ns), xsd) for ns, _, xsd in schemas], self.base.root,
                             self.workspace / key)
        registry = SchemaRegistry(self.base.root, published=(folder,))
        _ = registry.language
        return registry, key

    def _load(self, previous: CatalogSnapshot | None) -> CatalogSnapshot:
        revision = self.store.revision()
        catalog = self.store.catalog()
        registry, key = self._registry_for(self.store.published_schemas(), previous)
        return CatalogSnapshot(revision=revision, catalog=catalog, registry=registry, schemas_key=key)

    def refresh(self) -> CatalogSnapshot:
        """Read the store again now if its revision changed (a caller already refreshing makes this a no-op)."""
        if not self._lock.acquire(blocking=False):
            return self._snapshot
        try:
            self._checked_at = self._clock()
            current = self._snapshot
            if self.store.revision() != current.revision:
                self._snapshot = self._load(current)
                log.info("catalog.reloaded", revision=self._snapshot.revision,
                         services=len(self._snapshot.catalog.entries))
        except Exception as exc:  # a store hiccup must not stop routing on the last good catalog
            log.warning("catalog.reload_failed", reason=str(exc))
        finally:
            self._lock.release()
        return self._snapshot

    def current(self) -> CatalogSnapshot:
        if self._clock() - self._checked_at >= self.refresh_seconds:
            return self.refresh()
        return self._snapshot

    # -- the static catalog's interface --------------------------------------------------------
    @property
    def registry(self) -> SchemaRegistry:
        return self.current().registry

    @property
    def entries(self) -> dict[tuple[str, str], ServiceEntry]:
        return self.current().catalog.entries

    def get(self, code: str, version: str) -> ServiceEntry | None:
        return self.current().catalog.get(code, version)

    def notice(self, header: Header) -> str | None:
        return self.current().catalog.notice(header)

    def recipients(self, header: Header, *, platform_id: str | None) -> tuple[str, ...]:
        return self.current().catalog.recipients(header, platform_id=platform_id)

    def authorise(self, header: Header, *, routed_request: RequestLookup,
                  platform_id: str | None = None) -> ServiceEntry | None:
        return self.current().catalog.authorise(header, routed_request=routed_request, platform_id=platform_id)


def open_catalog(settings: Settings, registry: SchemaRegistry | None = None) -> LiveCatalog:
    """The platform's catalog: the store in the platform database, seeded from `settings.catalog_file`."""
    base = registry or load_registry(settings.schemas_dir)
    store = CatalogStore(settings.database_url)
    store.seed(settings.catalog_file, base)
    return LiveCatalog(store, base, settings.published_schemas_dir, refresh_seconds=settings.catalog_refresh_seconds)
