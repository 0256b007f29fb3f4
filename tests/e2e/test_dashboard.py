"""The operator's dashboard and the citizen's tracking page, clicked through in headless Chromium."""

from __future__ import annotations

import re
from typing import Any

import pytest

from tests.e2e.conftest import Site, shoot

pytestmark = pytest.mark.e2e

HEADER = "Plataforma de Interoperabilidad — GEL Broker"


def log_in(page: Any, site: Site, token: str, start: str = "/tablero") -> None:
    page.goto(start)
    page.get_by_label("Token de acceso").fill(token)
    page.get_by_role("button", name="Ingresar").click()
    page.wait_for_load_state()  # the click returns once the redirect commits; the page may still be rendering


def cell(page: Any, chain: str, column: str) -> str:
    return str(page.locator(f'#resumen-cadenas tr[data-cadena="{chain}"] td[data-col="{column}"]').inner_text())


def test_the_dashboard_asks_for_an_operator_token_first(page: Any, site: Site) -> None:
    page.goto("/tablero")
    assert page.url.startswith(f"{site.url}/tablero/ingreso")
    assert page.get_by_text("Para ver el tablero, ingrese con su token de acceso de operador.").is_visible()
    assert page.get_by_text(HEADER).is_visible()
    shoot(page, site, "01-ingreso")
    page.get_by_label("Token de acceso").fill("token-inventado")
    page.get_by_role("button", name="Ingresar").click()
    assert page.get_by_role("alert").inner_text().startswith("El token de acceso no es válido")
    page.get_by_label("Token de acceso").fill(site.entity_token)
    page.get_by_role("button", name="Ingresar").click()
    assert "no tiene el rol de operador" in page.get_by_role("alert").inner_text()
    shoot(page, site, "02-ingreso-rol-equivocado")
    assert page.context.cookies() == []


def test_an_operator_sees_the_chains_opens_one_and_follows_a_late_case(page: Any, site: Site) -> None:
    log_in(page, site, site.operator_token)
    assert page.url == f"{site.url}/tablero"
    cookie = next(c for c in page.context.cookies() if c["name"] == "gel_tablero")
    assert cookie["httpOnly"] and cookie["sameSite"] == "Strict"
    assert page.get_by_role("heading", name="Cadenas de trámites").is_visible()
    chain = "vivienda-postulacion"
    assert (cell(page, chain, "en_curso"), cell(page, chain, "completadas"), cell(page, chain, "fallidas"),
            cell(page, chain, "vencidas")) == ("2", "2", "1", "1")
    assert cell(page, "ambiental-licencia", "en_curso") == "0"
    figures = page.locator(".cifras").first.inner_text()
    assert "84 mensajes procesados" in figures and "9 con falla" in figures and "10,7 %" in figures
    assert page.locator("#grafica-trafico rect.barra-falla").count() == 3
    late_rows = page.locator("#casos-vencidos tbody tr")
    assert late_rows.count() == 1
    late_row = late_rows.first.inner_text()
    assert site.cases.late in late_row and "Superintendencia de Notariado y Registro" in late_row
    assert re.search(r"\d+ d", late_row)
    assert "no se puede saber quién está conectado" in page.locator("#conexiones-no-disponibles").inner_text()
    shoot(page, site, "03-tablero")

    page.get_by_role("link", name="Catálogo de servicios").click()
    assert page.url.endswith("/tablero/catalogo")
    identity = page.locator('#catalogo tr[data-servicio="verificarIdentidad"]').inner_text()
    assert "Activo" in identity and "Registraduría Nacional del Estado Civil" in identity
    assert "84" in identity and "\t9\t" in identity and "2 min" in identity
    assert "Obsoleto" in page.locator('#catalogo tr[data-servicio="consultarSisben"]').inner_text()
    assert "estado: activo → obsoleto" in page.locator("#cambios-catalogo").inner_text()
    page.get_by_label("Estado").select_option("obsoleto")
    page.get_by_role("button", name="Filtrar").click()
    assert page.locator("#catalogo tbody tr").count() == 1
    shoot(page, site, "03b-catalogo")
    page.get_by_role("link", name="Resumen de cadenas").click()

    page.get_by_role("link", name="Ventanilla Única de Subsidios de Vivienda — postulación").click()
    assert page.url.endswith(f"/tablero/cadenas/{chain}")
    assert page.locator('#flujo tr[data-paso="propiedad"] td[data-col="en_espera"]').inner_text() == "2"
    assert page.locator('#flujo tr[data-paso="identidad"] td[data-col="en_espera"]').inner_text() == "0"
    assert page.locator("#casos tbody tr").count() == 5
    assert page.locator("#casos tr.vencido").count() == 1
    shoot(page, site, "04-cadena")

    page.get_by_role("link", name=site.cases.late).first.click()
    assert page.url.endswith(f"/tablero/casos/{site.cases.late}")
    assert page.locator("#aviso-vencido").inner_text().startswith("Caso vencido")
    history = page.locator("#historia").inner_text()
    assert "Se radicó el trámite" in history
    assert "Venció el plazo del paso «Consultar propiedad de inmuebles del hogar»" in history
    assert "Respondió Registraduría Nacional del Estado Civil" in history
    requests = page.locator("#solicitudes").inner_text()
    assert "5 min" in requests and "Sin respuesta" in requests
    assert re.search(r"\d\d/\d\d/20\d\d \d\d:\d\d", history)
    shoot(page, site, "05-caso-vencido")

    page.goto(f"/tablero/casos/{site.cases.assigned}")
    assert "Subsidio asignado: Resolución FNV-0042-2026" in page.locator(".ficha").inner_text()
    assert "Terminó el trámite: Completada (Asignado)" in page.locator("#historia").inner_text()
    shoot(page, site, "06-caso-asignado")

    page.get_by_role("button", name="Cerrar sesión").click()
    assert "Cerró la sesión" in page.locator(".aviso").inner_text()
    page.goto(f"/tablero/casos/{site.cases.assigned}")
    assert "/tablero/ingreso" in page.url


def test_a_citizen_follows_a_case_with_the_right_document_and_learns_nothing_with_a_wrong_one(
        page: Any, site: Site) -> None:
    page.goto("/seguimiento")
    assert page.get_by_role("heading", name="Consulte el estado de su trámite").is_visible()
    page.get_by_label("Número de radicado").fill(site.cases.running)
    page.get_by_label("Número de documento").fill("1.098.765.432")
    page.get_by_role("button", name="Consultar").click()
    answer = page.locator("#respuesta").inner_text()
    assert "Ventanilla Única de Subsidios de Vivienda — postulación" in answer
    assert page.locator("#estado-tramite").inner_text() == "En trámite"
    assert "Superintendencia de Notariado y Registro" in answer and "Fecha límite prevista" in answer
    assert "1098765432" not in page.content() and "MARÍA" not in page.content()
    shoot(page, site, "07-seguimiento-encontrado")

    neutral = "No encontramos un trámite con esos datos"
    page.get_by_label("Número de radicado").fill(site.cases.running)
    page.get_by_label("Número de documento").fill("1020304050")
    page.get_by_role("button", name="Consultar").click()
    wrong_document = page.get_by_role("alert").inner_text()
    assert wrong_document.startswith(neutral)
    shoot(page, site, "08-seguimiento-no-encontrado")
    page.get_by_label("Número de radicado").fill("VUV-1999-999999")
    page.get_by_label("Número de documento").fill("1020304050")
    page.get_by_role("button", name="Consultar").click()
    assert page.get_by_role("alert").inner_text() == wrong_document
    assert page.locator(".resultado").count() == 0
