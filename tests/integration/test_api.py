"""The API against stores populated for real: each role sees what it should, and an entity never reads another
entity's message bodies or case data through any route."""

from __future__ import annotations

import io
import re
import stat
import zipfile
from collections.abc import Iterator
from pathlib import Path

import pytest
from fastapi.testclient import TestClient

from broker.api import create_app, principal_from_token
from broker.api.auth import Principal
from broker.gelxml import SchemaRegistry
from broker.security.pki import DevPKI
from tests.integration.api_kit import (
    DOC_A,
    DOC_B,
    PAYLOAD_A,
    PAYLOAD_B,
    REGISTRADURIA,
    SECRET_A,
    SECRET_B,
    SISBEN,
    Populated,
    bearer,
    populate,
)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, registry: SchemaRegistry, pki: DevPKI) -> Populated:
    return populate(tmp_path_factory.mktemp("api"), registry, pki)


@pytest.fixture(scope="module")
def client(world: Populated) -> Iterator[TestClient]:
    with TestClient(create_app(world.settings)) as started:
        yield started


def get(client: TestClient, path: str, token: str | None = None, **params: str):  # type: ignore[no-untyped-def]
    return client.get(path, params=params, headers=bearer(token) if token else {})


def test_tokens_are_stored_hashed_in_a_private_file(world: Populated) -> None:
    path = world.settings.api_tokens_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    text = path.read_text(encoding="utf-8")
    assert all(token not in text for token in world.tokens.values())
    assert principal_from_token(world.tokens["registraduria"], world.settings) == Principal(
        role="entidad", entity=REGISTRADURIA, name="Registraduría")
    assert principal_from_token("inventado", world.settings) is None


def test_without_a_token_only_tracking_and_liveness_answer(client: TestClient, world: Populated) -> None:
    assert get(client, "/salud").json() == {"estado": "ok"}
    for path in ("/api/cadenas", "/api/tareas", "/api/mensajes", "/api/salud", "/metrics"):
        answer = get(client, path)
        assert answer.status_code == 401 and answer.json()["codigo"] == "GEL-API-UNAUTHENTICATED"
    wrong = get(client, "/api/cadenas", "token-que-no-existe")
    assert wrong.status_code == 401 and "token" in wrong.json()["descripcion"]
    reserved = get(client, "/api/cadenas", world.tokens["publicador"])
    assert reserved.status_code == 403 and reserved.json()["codigo"] == "GEL-API-FORBIDDEN"


def test_the_operator_sees_everything(client: TestClient, world: Populated) -> None:
    token = world.tokens["operador"]
    assert {c["radicado"] for c in get(client, "/api/cadenas", token).json()} == {world.radicado_a, world.radicado_b}
    assert [c["radicado"] for c in get(client, "/api/cadenas", token, entidad=SISBEN).json()] == [world.radicado_b]
    detail = get(client, f"/api/cadenas/{world.radicado_a}", token).json()
    assert detail["contexto"]["nota"] == SECRET_A and detail["estado"] == "completada"
    [call] = detail["llamadas"]
    assert call["entidad"] == REGISTRADURIA and call["resultado"] == "respondida"
    assert call["duracion_ms"] == pytest.approx(2000.0) and call["id_mensaje_solicitud"]
    assert [e["tipo"] for e in detail["historia"]][-1] == "cadena_terminada"
    page = get(client, "/api/mensajes", token).json()
    assert page["total"] == 2 and {m["id_mensaje"] for m in page["mensajes"]} == {world.message_a, world.message_b}
    assert get(client, "/api/mensajes", token, resultado="rechazado").json()["total"] == 0
    message = get(client, f"/api/mensajes/{world.message_b}", token).json()
    assert message["cuerpo_visible"] and PAYLOAD_B in message["cuerpo"]
    evidence = get(client, f"/api/mensajes/{world.message_a}/evidencia", token)
    assert evidence.headers["content-type"] == "application/zip"
    assert PAYLOAD_A in zipfile.ZipFile(io.BytesIO(evidence.content)).read("mensaje.xml").decode("utf-8")
    health = get(client, "/api/salud", token).json()
    services = {s["servicio"]: s for s in health["servicios"]}
    assert services["verificarIdentidad v1.0"]["conteos"] == {"entregado": 1}
    assert services["verificarIdentidad v1.0"]["duracion_p95_ms"] > 0
    assert any(e["entidad"] == SISBEN and e["ultima_actividad"] for e in health["entidades"])
    metrics = get(client, "/metrics", token)
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'gel_cadenas{cadena="prueba-sisben",estado="en_curso"} 1.0' in metrics.text
    assert 'gel_mensajes_total{codigo_falla="",resultado="entregado"} 2.0' in metrics.text
    assert "gel_mensaje_duracion_ms_bucket" in metrics.text


def test_an_entity_sees_its_own_cases_and_messages_only(client: TestClient, world: Populated) -> None:
    token = world.tokens["registraduria"]
    assert [c["radicado"] for c in get(client, "/api/cadenas", token).json()] == [world.radicado_a]
    own = get(client, f"/api/cadenas/{world.radicado_a}", token).json()
    assert own["contexto"] is None and own["resumen"] is None and own["llamadas"]
    other = get(client, f"/api/cadenas/{world.instance_b}", token)
    assert other.status_code == 404 and other.json()["codigo"] == "GEL-API-NOT_FOUND"
    page = get(client, "/api/mensajes", token).json()
    assert [m["id_mensaje"] for m in page["mensajes"]] == [world.message_a]
    assert get(client, "/api/mensajes", token, entidad=SISBEN).json()["total"] == 0
    mine = get(client, f"/api/mensajes/{world.message_a}", token).json()
    assert mine["cuerpo_visible"] and PAYLOAD_A in mine["cuerpo"]
    assert get(client, f"/api/mensajes/{world.message_b}", token).status_code == 404
    assert get(client, f"/api/mensajes/{world.message_a}/evidencia", token).status_code == 200
    assert get(client, f"/api/mensajes/{world.message_b}/evidencia", token).status_code == 404
    assert get(client, "/metrics", token).status_code == 403
    health = get(client, "/api/salud", token).json()
    assert [s["servicio"] for s in health["servicios"]] == ["verificarIdentidad v1.0"]
    assert [e["entidad"] for e in health["entidades"]] == [REGISTRADURIA]
    assert get(client, "/api/tareas", token, entidad=SISBEN).json() == []


def _candidates(world: Populated) -> dict[str, list[str]]:
    ids = [world.instance_a, world.instance_b, world.radicado_a, world.radicado_b, world.message_a, world.message_b]
    return {
        "radicado_o_id": ids, "id_mensaje": ids,
        "idMensaje": [world.message_a, world.message_b], "entidad": [REGISTRADURIA, SISBEN],
        "radicado": [world.radicado_a, world.radicado_b], "documento": [DOC_A, DOC_B, "0"],
        "cod_servicio": ["verificarIdentidad", "consultarSisben"], "version": ["1.0"],
        "tipo": ["solicitud", "respuesta"],
    }


PUBLISHED_DOCUMENTS = re.compile(r"^/api/catalogo/[^/]+/[^/]+/(esquema|muestras/[^/]+)$")
"""A service's schema and sample messages are its published documentation, the same for every caller."""


def _concrete(path: str, candidates: dict[str, list[str]]) -> list[str]:
    paths = [path]
    for name in re.findall(r"{(\w+)}", path):
        paths = [p.replace(f"{{{name}}}", value) for p in paths for value in candidates[name]]
    return paths


def _texts(response) -> str:  # type: ignore[no-untyped-def]
    if response.headers.get("content-type") == "application/zip":
        archive = zipfile.ZipFile(io.BytesIO(response.content))
        return "".join(archive.read(name).decode("utf-8", errors="replace") for name in archive.namelist())
    return response.text


@pytest.mark.parametrize(("who", "foreign"), [
    ("registraduria", (PAYLOAD_B, SECRET_B, DOC_B)),
    ("sisben", (PAYLOAD_A, SECRET_A, DOC_A, "VIGENTE")),
])
def test_no_route_leaks_another_entitys_payloads_or_case_data(client: TestClient, world: Populated, who: str,
                                                               foreign: tuple[str, ...]) -> None:
    schema = client.get("/openapi.json").json()
    candidates, token, seen = _candidates(world), world.tokens[who], 0
    for path, operations in schema["paths"].items():
        if "get" not in operations:
            continue
        query = [p["name"] for p in operations["get"].get("parameters", []) if p["in"] == "query"]
        paths = _concrete(path, candidates)
        variants: list[dict[str, str]] = [{}]
        for name in query:
            variants += [{name: value} for value in candidates.get(name, [])]
        if "radicado" in query:
            variants += [{"radicado": r, "documento": d}
                         for r in candidates["radicado"] for d in candidates["documento"]]
        for concrete in paths:
            for params in variants:
                answer = client.get(concrete, params=params, headers=bearer(token))
                assert answer.status_code < 500, (concrete, params, answer.text)
                text = "" if PUBLISHED_DOCUMENTS.match(concrete) else _texts(answer)
                leaked = [secret for secret in foreign if secret in text]
                assert not leaked, (concrete, params, leaked)
                seen += 1
    assert seen > 40


def test_tracking_tells_the_citizen_in_plain_words_and_nothing_with_a_wrong_document(client: TestClient,
                                                                                     world: Populated) -> None:
    found = get(client, "/api/seguimiento", radicado=world.radicado_b, documento=DOC_B)
    assert found.status_code == 200
    body = found.json()
    assert body["tramite"] == "Consulta del Sisbén de prueba" and body["estado"] == "En trámite"
    assert body["entidades_a_cargo"] and all("/" not in name for name in body["entidades_a_cargo"])
    assert any("pidió información" in h["texto"] for h in body["hechos"])
    assert SECRET_B not in found.text and DOC_B not in found.text
    wrong_document = get(client, "/api/seguimiento", radicado=world.radicado_b, documento=DOC_A)
    unknown = get(client, "/api/seguimiento", radicado="PRB-2026-999999", documento=DOC_B)
    by_id = get(client, "/api/seguimiento", radicado=world.instance_b, documento=DOC_B)
    assert wrong_document.status_code == unknown.status_code == by_id.status_code == 404
    assert wrong_document.content == unknown.content == by_id.content


def test_token_command_writes_a_usable_token(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import typer
    from typer.testing import CliRunner

    from broker.commands.serve import token_crear
    from broker.settings import Settings, get_settings

    monkeypatch.setenv("GEL_API_TOKENS_FILE", str(tmp_path / "tokens.json"))
    get_settings.cache_clear()
    app = typer.Typer()
    app.command()(token_crear)
    try:
        done = CliRunner().invoke(app, ["--rol", "entidad", "--entidad", SISBEN, "--nombre", "Sisbén"])
        assert done.exit_code == 0, done.output
        token = done.output.strip().splitlines()[-1]
        assert principal_from_token(token, Settings()) == Principal(role="entidad", entity=SISBEN, name="Sisbén")
        refused = CliRunner().invoke(app, ["--rol", "entidad", "--nombre", "sin entidad"])
        assert refused.exit_code == 2 and "GEL-API-INVALID" in refused.output
    finally:
        get_settings.cache_clear()
