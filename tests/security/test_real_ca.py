"""A platform whose certification authority is not its own: GEL_CERTS_DIR holds the CA's certificates (no root
key), the CRL, the TSA and certificates imported with `gel certs import`; the gateway runs on it."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from broker.gateway.local import open_platform
from broker.gelxml import GelFault
from broker.gelxml.faults import FaultCode
from broker.gelxml.parsing import parse_untrusted
from broker.security.entities import EntityRegistry
from broker.security.evidence import check_record_evidence
from broker.security.pki import DevPKI, TrustStore
from broker.security.signing import sign_message
from broker.security.verification import verify_message
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


def test_with_several_issuing_cas_each_ones_crl_counts(tmp_path: Path, entities: EntityRegistry) -> None:
    """root-ca.pem and crl.pem each concatenate the CAs': a revocation by the second CA is seen too."""
    first, second = DevPKI(tmp_path / "ca-1"), DevPKI(tmp_path / "ca-2")
    for ca in (first, second):
        ca.initialise(entities)
    second.revoke(ORCHESTRATOR)
    folder = tmp_path / "anclas"
    folder.mkdir()
    for name in ("root-ca.pem", "crl.pem"):
        (folder / name).write_bytes(b"".join((ca.directory / name).read_bytes() for ca in (first, second)))
    trust = TrustStore.from_dir(folder)
    assert len(trust.roots) == 2 and len(trust.crls) == 2
    trusted = verify_message(signed("verificarIdentidad-solicitud.xml", first), trust, window=None)
    assert trusted.signer == ORCHESTRATOR
    revoked = second.credential_for(next(r for r in second.list() if r.entity == ORCHESTRATOR))
    body = sign_message(parse_untrusted((ROOT / "schemas" / "samples" / "valid" / "verificarIdentidad-solicitud.xml")
                                        .read_bytes()), revoked)
    with pytest.raises(GelFault) as refused:
        verify_message(body, trust, window=None)
    assert refused.value.falla.code is FaultCode.AUTH_REVOKED
