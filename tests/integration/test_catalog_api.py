"""The catalog through the API: discovery and downloads for every role, publication and access management
for the owner's publisher and operators, coded refusals with the lint findings, grants hidden from others."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient
from lxml import etree

from broker.api import create_app
from broker.api.auth import create_token
from broker.catalog.publication import read_manifest
from broker.security.pki import DevPKI
from broker.settings import Settings
from tests.conftest import ENTITIES_FILE, ROOT
from tests.integration.api_kit import bearer

MANIFEST = ROOT / "docs" / "ejemplos" / "publicacion" / "publicacion.yaml"
SNR, COLSUBSIDIO, ORCHESTRATOR = "CO/GOB/899999007", "CO/CCF/860007336", "CO/PLAT/900000002"
CODE = "consultarCertificadoTradicion"
BASE = f"/api/catalogo/{CODE}/1.0"


@pytest.fixture
def client(tmp_path: Path, pki: DevPKI) -> Iterator[tuple[TestClient, dict[str, str]]]:
    settings = Settings(database_url=f"sqlite:///{tmp_path / 'gel.db'}",
                        orchestrator_database_url=f"sqlite:///{tmp_path / 'orq.db'}",
                        api_tokens_file=tmp_path / "tokens.json", certs_dir=pki.directory,
                        schemas_dir=ROOT / "schemas", entities_file=ENTITIES_FILE,
                        published_schemas_dir=tmp_path / "publicados")
    tokens = {
        "operador": create_token(settings.api_tokens_file, role="operador", entity=None, name="Mesa"),
        "snr": create_token(settings.api_tokens_file, role="publicador", entity=SNR, name="Publicador SNR"),
        "colsubsidio": create_token(settings.api_tokens_file, role="publicador", entity=COLSUBSIDIO, name="Caja"),
        "entidad": create_token(settings.api_tokens_file, role="entidad", entity=COLSUBSIDIO, name="Caja lectora"),
    }
    with TestClient(create_app(settings)) as started:
        yield started, tokens


def publication_body(**changes: object) -> dict[str, object]:
    publication = read_manifest(MANIFEST)
    body: dict[str, object] = {
        "esquema": publication.schema.decode("utf-8"), "entidad_propietaria": publication.owner,
        "proveedores": list(publication.providers), "consumidores": list(publication.callers),
        "plazo_respuesta_segundos": publication.reply_within_seconds,
        "muestras": {k: v.decode("utf-8") for k, v in publication.samples.items()},
    }
    return {**body, **changes}


def test_every_role_discovers_services_but_only_operators_and_owners_see_who_may_call(client) -> None:  # type: ignore[no-untyped-def]
    http, tokens = client
    assert http.get("/api/catalogo").status_code == 401
    listed = http.get("/api/catalogo", headers=bearer(tokens["entidad"]), params={"texto": "sisb"}).json()
    assert [s["cod_servicio"] for s in listed] == ["consultarSisben"]
    assert listed[0]["consumidores"] is None and listed[0]["estado"] == "activo"
    assert listed[0]["muestras"] == ["respuesta", "solicitud"]
    as_operator = http.get("/api/catalogo/consultarSisben/1.0", headers=bearer(tokens["operador"])).json()
    assert as_operator["consumidores"] == [ORCHESTRATOR]
    property_owner = http.get("/api/catalogo/consultarPropiedad/1.0", headers=bearer(tokens["snr"])).json()
    assert property_owner["consumidores"] == [ORCHESTRATOR]
    schema = http.get("/api/catalogo/consultarSisben/1.0/esquema", headers=bearer(tokens["entidad"]))
    assert schema.headers["content-type"].startswith("application/xml")
    assert etree.fromstring(schema.content).get("targetNamespace", "").endswith("/ConsultarSisben/1.0")
    sample = http.get("/api/catalogo/consultarSisben/1.0/muestras/solicitud", headers=bearer(tokens["entidad"]))
    assert b"entradaConsultarSisben" in sample.content
    assert http.get("/api/catalogo/consultarSisben/1.0/muestras/evento",
                    headers=bearer(tokens["entidad"])).json()["codigo"] == "GEL-API-NOT_FOUND"
    assert http.get("/api/catalogo/noExiste/1.0", headers=bearer(tokens["entidad"])).status_code == 404


def test_the_owners_publisher_publishes_and_the_service_is_downloadable(client) -> None:  # type: ignore[no-untyped-def]
    http, tokens = client
    readers = http.post("/api/catalogo", json=publication_body(), headers=bearer(tokens["entidad"]))
    assert readers.status_code == 403
    stranger = http.post("/api/catalogo", json=publication_body(), headers=bearer(tokens["colsubsidio"]))
    assert stranger.status_code == 403 and stranger.json()["codigo"] == "GEL-CAT-NOT_OWNER"
    created = http.post("/api/catalogo", json=publication_body(), headers=bearer(tokens["snr"]))
    assert created.status_code == 201, created.text
    assert created.json()["creado"] and created.json()["servicio"]["dominio"] == "Registro"
    again = http.post("/api/catalogo", json=publication_body(), headers=bearer(tokens["snr"]))
    assert again.status_code == 200 and not again.json()["creado"]
    schema = http.get(f"{BASE}/esquema", headers=bearer(tokens["entidad"]))
    assert schema.content == read_manifest(MANIFEST).schema
    assert 'filename="ConsultarCertificadoTradicion.xsd"' in schema.headers["content-disposition"]
    response = http.get(f"{BASE}/muestras/respuesta", headers=bearer(tokens["entidad"]))
    assert b"salidaConsultarCertificadoTradicion" in response.content


def test_a_refused_publication_lists_each_finding_with_its_code_and_line(client) -> None:  # type: ignore[no-untyped-def]
    http, tokens = client
    body = publication_body()
    broken = str(body["esquema"]).replace('name="numAnotaciones"', 'name="Num_Anotaciones"')
    refused = http.post("/api/catalogo", json={**body, "esquema": broken, "muestras": {}},
                        headers=bearer(tokens["snr"]))
    assert refused.status_code == 422
    answer = refused.json()
    assert answer["codigo"] == "GEL-CAT-SCHEMA_REFUSED" and "convenciones" in answer["descripcion"]
    finding = next(f for f in answer["hallazgos"] if f["codigo"] == "GEL-LINT-ELEMENT_NAME")
    assert finding["linea"] > 1 and "Num_Anotaciones" in finding["descripcion"]
    assert http.get(BASE, headers=bearer(tokens["snr"])).status_code == 404, "nothing stored"
    different = str(body["esquema"]).replace("Matrícula consultada.", "Matrícula que se consultó.")
    http.post("/api/catalogo", json=body, headers=bearer(tokens["snr"]))
    conflict = http.post("/api/catalogo", json={**body, "esquema": different, "muestras": {}},
                         headers=bearer(tokens["snr"]))
    assert conflict.status_code == 409 and conflict.json()["codigo"] == "GEL-CAT-VERSION_EXISTS"


def test_access_and_status_are_managed_by_the_owner_and_recorded(client) -> None:  # type: ignore[no-untyped-def]
    http, tokens = client
    http.post("/api/catalogo", json=publication_body(consumidores=[]), headers=bearer(tokens["snr"]))
    foreign = http.post(f"{BASE}/accesos", json={"entidad": COLSUBSIDIO}, headers=bearer(tokens["colsubsidio"]))
    assert foreign.status_code == 403 and foreign.json()["codigo"] == "GEL-CAT-NOT_OWNER"
    granted = http.post(f"{BASE}/accesos", json={"entidad": COLSUBSIDIO}, headers=bearer(tokens["snr"])).json()
    assert granted["consumidores"] == [COLSUBSIDIO]
    unknown = http.post(f"{BASE}/accesos", json={"entidad": "CO/GOB/123"}, headers=bearer(tokens["snr"]))
    assert unknown.status_code == 422 and unknown.json()["codigo"] == "GEL-CAT-UNKNOWN_ENTITY"
    revoked = http.delete(f"{BASE}/accesos", params={"entidad": COLSUBSIDIO}, headers=bearer(tokens["operador"]))
    assert revoked.json()["consumidores"] == []
    retired = http.put(f"{BASE}/estado", json={"estado": "retirado"}, headers=bearer(tokens["snr"]))
    assert retired.json()["estado"] == "retirado"
    back = http.put(f"{BASE}/estado", json={"estado": "activo"}, headers=bearer(tokens["snr"]))
    assert back.status_code == 409 and back.json()["codigo"] == "GEL-CAT-STATUS"
    history = http.get(f"{BASE}/historial", headers=bearer(tokens["snr"])).json()
    assert [h["accion"] for h in history] == ["estado", "acceso_revocado", "acceso_otorgado", "publicado"]
    assert history[1]["actor"] == "operador:Mesa" and history[1]["detalle"] == {"entidad": COLSUBSIDIO}
    assert http.get(f"{BASE}/historial", headers=bearer(tokens["colsubsidio"])).status_code == 403
