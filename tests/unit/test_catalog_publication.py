"""Publishing services: what a publication must pass, and what the catalog store keeps and refuses."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from broker.catalog import CatalogCode, CatalogError, ServiceStatus
from broker.catalog.live import LiveCatalog
from broker.catalog.management import Actor, CatalogManager
from broker.catalog.publication import Publication, read_manifest
from broker.catalog.store import CatalogStore
from broker.gelxml import GelFault, SchemaRegistry, check_message
from broker.security.entities import EntityRegistry
from tests.conftest import ROOT

FIXTURE = ROOT / "docs" / "ejemplos" / "publicacion"
SNR, ORCHESTRATOR, COLSUBSIDIO = "CO/GOB/899999007", "CO/PLAT/900000002", "CO/CCF/860007336"
OPERATOR = Actor(name="operador:prueba")
CODE = "consultarCertificadoTradicion"


@pytest.fixture
def manager(tmp_path: Path, registry: SchemaRegistry, entities: EntityRegistry) -> CatalogManager:
    store = CatalogStore(f"sqlite:///{tmp_path / 'gel.db'}")
    store.seed(ROOT / "deploy" / "catalog.yaml", registry)
    return CatalogManager(store=store, registry=registry, entities=entities)


@pytest.fixture
def publication() -> Publication:
    return read_manifest(FIXTURE / "publicacion.yaml")


def refused(code: CatalogCode, call, *args) -> CatalogError:  # type: ignore[no-untyped-def]
    with pytest.raises(CatalogError) as caught:
        call(*args)
    assert caught.value.code == code, caught.value
    return caught.value


def test_the_file_seeds_the_store_once_and_the_snapshot_matches_it(manager: CatalogManager,
                                                                   registry: SchemaRegistry) -> None:
    records = manager.store.records()
    assert {r.key for r in records} == set(registry.services)
    assert manager.store.seed(ROOT / "deploy" / "catalog.yaml", registry) == 0
    assert manager.store.record("verificarIdentidad", "1.0").callers == (
        "CO/EPS/800251440", "CO/IPS/860015536", ORCHESTRATOR)
    assert manager.store.catalog().get("consultarSisben", "1.0").callers == frozenset({ORCHESTRATOR})


def test_a_conforming_publication_is_stored_with_its_grants_and_is_idempotent(
        manager: CatalogManager, publication: Publication) -> None:
    before = manager.store.revision()
    record, checked, created = manager.publish(publication, OPERATOR)
    assert checked.schema_sha256 == record.schema_sha256 and checked.warnings == ()
    assert created and (record.code, record.version, record.domain) == (CODE, "1.0", "Registro")
    assert record.status is ServiceStatus.ACTIVE and record.callers == (ORCHESTRATOR,)
    assert record.reply_within_seconds == 120 and record.sample_kinds == ("respuesta", "solicitud")
    assert "Superintendencia de Notariado" in record.description
    assert manager.store.revision() == before + 1
    assert manager.schema(CODE, "1.0") == publication.schema
    assert manager.samples(record)["solicitud"] == publication.samples["solicitud"]
    again, _, created_again = manager.publish(publication, OPERATOR)
    assert not created_again and again == record and manager.store.revision() == before + 1


def test_a_schema_breaking_the_conventions_is_refused_with_the_lint_findings(
        manager: CatalogManager, publication: Publication) -> None:
    broken = publication.schema.replace(b'elementFormDefault="qualified"', b'elementFormDefault="unqualified"')
    broken = broken.replace(b'name="numAnotaciones"', b'name="NumAnotaciones"')
    error = refused(CatalogCode.SCHEMA_REFUSED, manager.publish, replace(publication, schema=broken, samples={}),
                    OPERATOR)
    codes = {f["codigo"] for f in error.findings}
    assert {"GEL-LINT-QUALIFIED", "GEL-LINT-ELEMENT_NAME"} <= codes
    assert all(f["linea"] for f in error.findings if f["codigo"] == "GEL-LINT-ELEMENT_NAME")
    assert manager.store.records(code=CODE) == []


def test_a_schema_outside_the_gel_namespaces_is_refused(manager: CatalogManager, publication: Publication) -> None:
    foreign = publication.schema.replace(b"http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Registro/",
                                         b"http://example.org/")
    error = refused(CatalogCode.SCHEMA_REFUSED, manager.publish, replace(publication, schema=foreign), OPERATOR)
    assert error.findings[0]["codigo"] == "GEL-LINT-NAMESPACE"


def test_an_invalid_or_mismatched_sample_is_refused(manager: CatalogManager, publication: Publication) -> None:
    bad = publication.samples["solicitud"].replace(b"051-123456", b"matricula sin formato")
    error = refused(CatalogCode.SAMPLE_INVALID, manager.publish,
                    replace(publication, samples={"solicitud": bad}), OPERATOR)
    assert error.findings[0]["codigo"] == "GEL-VALID-PATTERN" and error.findings[0]["archivo"] == "muestra solicitud"
    swapped = {"respuesta": publication.samples["solicitud"]}
    refused(CatalogCode.SAMPLE_INVALID, manager.publish, replace(publication, samples=swapped), OPERATOR)


def test_versions_are_immutable_and_shipped_versions_cannot_be_replaced(
        manager: CatalogManager, publication: Publication) -> None:
    manager.publish(publication, OPERATOR)
    changed = publication.schema.replace(b"Matr\xc3\xadcula consultada.", b"Matr\xc3\xadcula que se consult\xc3\xb3.")
    error = refused(CatalogCode.VERSION_EXISTS, manager.publish, replace(publication, schema=changed, samples={}),
                    OPERATOR)
    assert "1.1" in error.message
    sisben = (ROOT / "schemas" / "Planeacion" / "ConsultarSisben" / "1.0" / "ConsultarSisben.xsd").read_bytes()
    refused(CatalogCode.VERSION_EXISTS, manager.publish,
            Publication(schema=sisben + b"\n", owner="CO/GOB/899999011", providers=("CO/GOB/899999011",)), OPERATOR)


def test_only_the_owner_or_an_operator_changes_a_service_and_entities_must_exist(
        manager: CatalogManager, publication: Publication) -> None:
    refused(CatalogCode.NOT_OWNER, manager.publish, publication, Actor(name="x", entity=COLSUBSIDIO))
    refused(CatalogCode.UNKNOWN_ENTITY, manager.publish, replace(publication, callers=("CO/GOB/1",)), OPERATOR)
    manager.publish(publication, Actor(name="publicador:snr", entity=SNR))
    refused(CatalogCode.NOT_OWNER, manager.grant, CODE, "1.0", COLSUBSIDIO, Actor(name="x", entity=COLSUBSIDIO))
    refused(CatalogCode.UNKNOWN_ENTITY, manager.grant, CODE, "1.0", "CO/CCF/1", OPERATOR)
    assert manager.grant(CODE, "1.0", COLSUBSIDIO, Actor(name="p", entity=SNR)).callers == (COLSUBSIDIO, ORCHESTRATOR)
    assert manager.revoke(CODE, "1.0", ORCHESTRATOR, OPERATOR).callers == (COLSUBSIDIO,)
    actions = [c.action for c in manager.store.history(CODE, "1.0")]
    assert actions == ["acceso_revocado", "acceso_otorgado", "publicado"]


def test_status_moves_forward_and_a_retired_version_stays_retired(manager: CatalogManager) -> None:
    assert manager.set_status("consultarSisben", "1.0", ServiceStatus.DEPRECATED, OPERATOR).status is (
        ServiceStatus.DEPRECATED)
    assert manager.set_status("consultarSisben", "1.0", ServiceStatus.ACTIVE, OPERATOR).status is ServiceStatus.ACTIVE
    manager.set_status("consultarSisben", "1.0", ServiceStatus.RETIRED, OPERATOR)
    refused(CatalogCode.STATUS, manager.set_status, "consultarSisben", "1.0", ServiceStatus.ACTIVE, OPERATOR)
    refused(CatalogCode.NOT_FOUND, manager.set_status, "noExiste", "1.0", ServiceStatus.RETIRED, OPERATOR)


def test_the_live_catalog_follows_the_store_and_compiles_published_schemas(
        manager: CatalogManager, publication: Publication, tmp_path: Path) -> None:
    now = [0.0]
    live = LiveCatalog(manager.store, manager.registry, tmp_path / "publicados", refresh_seconds=5,
                       clock=lambda: now[0])
    request = publication.samples["solicitud"]
    with pytest.raises(GelFault):
        check_message(request, live.registry)
    manager.publish(publication, OPERATOR)
    assert live.get(CODE, "1.0") is None, "not re-read before the refresh interval"
    now[0] = 5.0
    assert live.get(CODE, "1.0") is not None and live.get(CODE, "1.0").callers == frozenset({ORCHESTRATOR})
    assert check_message(request, live.registry).root is not None
    registry = live.registry
    manager.revoke(CODE, "1.0", ORCHESTRATOR, OPERATOR)
    now[0] = 10.0
    assert live.get(CODE, "1.0").callers == frozenset()
    assert live.registry is registry, "the language is not recompiled when no schema changed"


def test_a_manifest_names_what_is_wrong(tmp_path: Path) -> None:
    manifest = tmp_path / "m.yaml"
    manifest.write_text("esquema: no-existe.xsd\nentidadPropietaria: CO/GOB/899999007\n", encoding="utf-8")
    error = refused(CatalogCode.MANIFEST, read_manifest, manifest)
    assert "no-existe.xsd" in error.message
    manifest.write_text("esquema: x.xsd\nduenio: yo\n", encoding="utf-8")
    assert "duenio" in refused(CatalogCode.MANIFEST, read_manifest, manifest).message


def test_the_command_line_publishes_and_names_every_finding_of_a_refusal(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from typer.testing import CliRunner

    from broker.cli import app
    from broker.settings import get_settings

    monkeypatch.setenv("GEL_DATABASE_URL", f"sqlite:///{tmp_path / 'gel.db'}")
    monkeypatch.setenv("GEL_PUBLISHED_SCHEMAS_DIR", str(tmp_path / "publicados"))
    get_settings.cache_clear()
    bad = tmp_path / "malo"
    bad.mkdir()
    for name in ("solicitud.xml", "respuesta.xml", "publicacion.yaml"):
        (bad / name).write_bytes((FIXTURE / name).read_bytes())
    schema = (FIXTURE / "ConsultarCertificadoTradicion.xsd").read_text(encoding="utf-8")
    (bad / "ConsultarCertificadoTradicion.xsd").write_text(
        schema.replace('<xs:documentation xml:lang="es">Matrícula consultada.</xs:documentation>', ""),
        encoding="utf-8")
    try:
        refused = CliRunner().invoke(app, ["catalog", "publish", str(bad / "publicacion.yaml")])
        assert refused.exit_code == 1
        assert "GEL-CAT-SCHEMA_REFUSED" in refused.output and "GEL-LINT-DOCUMENTATION" in refused.output
        assert "Traceback" not in refused.output
        published = CliRunner().invoke(app, ["catalog", "publish", str(FIXTURE / "publicacion.yaml")])
        assert published.exit_code == 0 and "Publicado" in published.output, published.output
        listed = CliRunner().invoke(app, ["catalog", "list", "--json", "--entidad", SNR])
        codes = {s["codServicio"] for s in json.loads(listed.output)}
        assert codes == {CODE, "consultarPropiedad"}
        retired = CliRunner().invoke(app, ["catalog", "status", CODE, "1.0", "retirado"])
        assert retired.exit_code == 0 and "retirado" in retired.output
        back = CliRunner().invoke(app, ["catalog", "status", CODE, "1.0", "activo"])
        assert back.exit_code == 1 and "GEL-CAT-STATUS" in back.output
    finally:
        get_settings.cache_clear()


def test_processes_starting_together_seed_the_catalog_once(tmp_path: Path, registry: SchemaRegistry) -> None:
    import threading

    url = f"sqlite:///{tmp_path / 'gel.db'}"
    stores = [CatalogStore(url) for _ in range(4)]
    added: list[int] = []
    barrier = threading.Barrier(len(stores))

    def seed(store: CatalogStore) -> None:
        barrier.wait()
        added.append(store.seed(ROOT / "deploy" / "catalog.yaml", registry))

    threads = [threading.Thread(target=seed, args=(s,)) for s in stores]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sorted(added) == [0, 0, 0, len(registry.services)]
    assert len(stores[0].records()) == len(registry.services)
    assert len(stores[0].history(limit=1000)) == len(registry.services), "each version seeded exactly once"
