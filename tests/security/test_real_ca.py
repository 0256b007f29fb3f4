"""A platform whose certification authority is not its own: GEL_CERTS_DIR holds the CA's certificates (no root
key), the CRL, the TSA and certificates imported with `gel certs import`; the gateway runs on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from broker.gateway.local import open_platform
from broker.gelxml import GelFault
from broker.gelxml.faults import FaultCode
from broker.security.entities import EntityRegistry
from broker.security.evidence import check_record_evidence
from broker.security.pki import DevPKI
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.test_gateway import GATEWAY, ORCHESTRATOR, REGISTRADURIA, signed
from tests.security.test_security_cli import gel

CATALOG_FILE = ROOT / "deploy" / "catalog.yaml"


def files_of(pki: DevPKI, entity_id: str) -> tuple[Path, Path]:
    row = next(r for r in pki.list() if r.entity == entity_id and not r.revoked)
    return pki.directory / row.certificate, pki.directory / row.key


@pytest.fixture
def platform_folder(tmp_path: Path, fresh_pki: DevPKI) -> Path:
    """What an operator receives from the CA and the TSA: anchors, CRL, the TSA's certificate and key."""
    folder = tmp_path / "produccion"
    folder.mkdir()
    for name in ("root-ca.pem", "crl.pem", "tsa-cert.pem", "tsa.key"):
        shutil.copy(fresh_pki.directory / name, folder / name)
    return folder


def test_the_gateway_runs_on_imported_certificates_without_the_ca_key(
        fresh_pki: DevPKI, platform_folder: Path, tmp_path: Path) -> None:
    env = {"GEL_CERTS_DIR": str(platform_folder)}
    for entity in (GATEWAY, ORCHESTRATOR):
        certificate, key = files_of(fresh_pki, entity)
        done = gel("certs", "import", entity, "--certificado", str(certificate), "--clave", str(key), env=env)
        assert done.returncode == 0, done.stdout + done.stderr
        assert "Importado el certificado" in done.stdout
    assert not (platform_folder / "root-ca.key").exists()
    imported = DevPKI(platform_folder)
    assert not imported.initialised and {r.entity for r in imported.list()} == {GATEWAY, ORCHESTRATOR}
    assert (platform_folder / imported.list()[0].key).stat().st_mode & 0o777 == 0o600

    settings = Settings(certs_dir=platform_folder, database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE, catalog_file=CATALOG_FILE)
    platform = open_platform(settings, "embedded")
    try:
        body = signed("verificarIdentidad-solicitud.xml", imported)
        platform.send(ORCHESTRATOR, body)
        delivered = platform.receive(REGISTRADURIA)
        assert delivered is not None and delivered.body == body
        [routed] = platform.wait_routed(1)
        assert routed.outcome == "entregado"
        [record] = platform.parts.log.records()
        assert record.outcome == "aceptado" and record.token is not None
        assert platform.parts.log.verify(check_record_evidence(imported.trust_store())).ok
    finally:
        platform.close()


@pytest.mark.parametrize("case", ["key_of_another", "other_ca", "other_entity", "not_pem"])
def test_an_import_that_would_not_verify_is_refused_with_its_code(
        case: str, fresh_pki: DevPKI, platform_folder: Path, tmp_path: Path, entities: EntityRegistry) -> None:
    certificate, key = files_of(fresh_pki, ORCHESTRATOR)
    entity = ORCHESTRATOR
    if case == "key_of_another":
        key = files_of(fresh_pki, GATEWAY)[1]
    elif case == "other_ca":
        stranger = DevPKI(tmp_path / "otra-ca")
        stranger.initialise(entities)
        certificate, key = files_of(stranger, ORCHESTRATOR)
    elif case == "other_entity":
        entity = GATEWAY
    else:
        certificate = tmp_path / "no-es-pem.pem"
        certificate.write_text("esto no es un certificado", encoding="utf-8")
    target = DevPKI(platform_folder)
    entry = entities.get(entity)
    assert entry is not None
    with pytest.raises(GelFault) as refused:
        target.import_credential(entry, certificate.read_bytes(), key.read_bytes())
    assert refused.value.falla.code is FaultCode.PKI_IMPORT
    assert target.list() == []
    done = gel("certs", "import", entity, "--certificado", str(certificate), "--clave", str(key),
               env={"GEL_CERTS_DIR": str(platform_folder)})
    assert done.returncode != 0 and "GEL-PKI-IMPORT" in done.stdout + done.stderr
