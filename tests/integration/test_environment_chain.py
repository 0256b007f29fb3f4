"""The environmental licence window (chains/ambiental-licencia.yaml) end to end: the applicant files its licence
requests at the orchestrator, which drives ANLA, the PSE gateway, MinInterior, Parques Nacionales and the
citizens' notification channel through the gateway; every entity answers through its shipped adapter from its
seeded legacy system, e-mail reaches a real SMTP server, and the human tasks are completed by the entity each
belongs to. The applicant's own system answers ANLA's requests for missing information."""

from __future__ import annotations

import sqlite3
import threading
import time
from collections.abc import Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from lxml import etree

from adapters.legacy.seed_ambiental_salud import RECONCILED_PAYMENTS, SAMPLE_EXPEDIENTE, pse_transactions
from adapters.legacy.world import AMBIENTAL
from adapters.sdk.runtime import Adapter, Incoming
from adapters.sdk.store import AdapterStore
from broker.gelxml import FaultCode, GelFault, MessageType, SchemaRegistry
from broker.gelxml.namespaces import DOCUMENTO, GEL_PREFIX
from broker.orchestrator.durations import parse_duration
from broker.orchestrator.store import InstanceRow
from broker.security.pki import DevPKI
from tests.integration.adapter_kit import Inbox, text
from tests.integration.ambiental_kit import ANLA, APPLICANT, CHAIN, OFFICIALS, TASK_VALUES, certificate, filing
from tests.integration.chain_kit import FINISHED, ChainScene, chain_scene, inbox_requests, only_chain

EMAIL = "notificaciones@energiaandina.com.co"
RIA = GEL_PREFIX + "Ambiental/RequerirInformacionAdicional/1.0"
COLOMBIA = timezone(timedelta(hours=-5))


@dataclass
class ApplicantSystem:
    """The applicant's system on the bus: answers ANLA's requirements (with the certificate when that is what is
    missing; the environmental study cannot be sent at once) and keeps what the orchestrator answered it."""

    requirements: list[Incoming] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def requerir(self, request: Incoming) -> etree._Element:
        assert request.payload is not None
        with self.lock:
            self.requirements.append(request)
        root = etree.Element(f"{{{RIA}}}salidaRequerirInformacionAdicional", nsmap={"ria": RIA, "doc": DOCUMENTO})
        answers = etree.SubElement(root, f"{{{RIA}}}respuestas")
        for item in request.payload.iterfind(f"{{{RIA}}}requerimientos/{{{RIA}}}requerimiento"):
            answer = etree.SubElement(answers, f"{{{RIA}}}respuesta")
            etree.SubElement(answer, f"{{{RIA}}}numeral").text = item.findtext(f"{{{RIA}}}numeral")
            asked = item.findtext(f"{{{RIA}}}descripcion") or ""
            if "certificado de existencia" in asked:
                etree.SubElement(answer, f"{{{RIA}}}texto").text = "Se aporta el certificado vigente."
                answer.append(certificate())
            else:
                etree.SubElement(answer, f"{{{RIA}}}texto").text = ("El estudio de impacto ambiental se encuentra en "
                                                                    "elaboración y se radicará más adelante.")
        etree.SubElement(root, f"{{{RIA}}}fechaHoraRespuesta").text = datetime.now(COLOMBIA).isoformat(
            timespec="seconds")
        return root


@dataclass
class Run:
    scene: ChainScene
    applicant: ApplicantSystem
    inbox: Inbox
    cases: dict[str, InstanceRow]
    refusals: list[str]
    seconds: float


@pytest.fixture(scope="module", params=["embedded", pytest.param("rabbitmq", marks=pytest.mark.rabbitmq)])
def scene(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory, pki: DevPKI,
          registry: SchemaRegistry) -> Iterator[tuple[ChainScene, ApplicantSystem, Inbox]]:
    folder = tmp_path_factory.mktemp(f"ambiental-{request.param}")
    credentials = request.getfixturevalue("rabbitmq_platform")[1] if request.param == "rabbitmq" else None
    chains = only_chain(folder, CHAIN)
    with chain_scene(request.param, folder, pki=pki, registry=registry, adapters=AMBIENTAL,
                     credentials=credentials, chains_dir=chains) as running:
        applicant, inbox = ApplicantSystem(), Inbox()
        adapter = Adapter(APPLICANT, running.platform.transport(APPLICANT), pki.credential(APPLICANT),
                          pki.trust_store(), AdapterStore(f"sqlite:///{folder / 'solicitante.db'}"),
                          {("requerirInformacionAdicional", "1.0"): applicant.requerir}, on_message=inbox,
                          relay_interval=0.2)
        adapter.start()
        try:
            yield running, applicant, inbox
        finally:
            adapter.wait_idle(timeout=5)
            adapter.stop()
            adapter.store.close()


def _complete_open_tasks(scene: ChainScene, refusals: list[str]) -> None:
    """Each open task: first tried by the other entity (refused), then completed by its own."""
    orchestrator = scene.node.orchestrator
    for task in orchestrator.store.tasks():
        intruder = ANLA if task.entity == APPLICANT else APPLICANT
        try:
            orchestrator.complete_task(task.id, TASK_VALUES[task.step], entity=intruder, official=OFFICIALS[intruder])
        except GelFault as exc:
            refusals.append(str(exc.falla.code))
        else:
            pytest.fail(f"{intruder} completed {task.step}, a task of {task.entity}")
        orchestrator.complete_task(task.id, TASK_VALUES[task.step], entity=task.entity,
                                   official=OFFICIALS[task.entity])


@pytest.fixture(scope="module")
def run(scene: tuple[ChainScene, ApplicantSystem, Inbox]) -> Run:
    """Three filings of the solar park: complete; without the environmental study (the applicant cannot send
    it: desistimiento); without the certificate of existence (sent on ANLA's requirement: the case goes on)."""
    running, applicant, inbox = scene
    began = time.monotonic()
    filed = {
        "completa": running.request(APPLICANT, "radicarSolicitudLicencia", filing()),
        "sin_eia": running.request(APPLICANT, "radicarSolicitudLicencia", filing(without="EIA")),
        "sin_certificado": running.request(APPLICANT, "radicarSolicitudLicencia",
                                                filing(without="CERT_EXISTENCIA")),
    }
    refusals: list[str] = []
    deadline = time.monotonic() + 90
    rows: list[InstanceRow] = []
    while time.monotonic() < deadline:
        _complete_open_tasks(running, refusals)
        rows = running.instances(CHAIN)
        if len(rows) == len(filed) and all(r.status in FINISHED for r in rows):
            break
        time.sleep(0.2)
    else:
        pytest.fail(f"not all finished: {sorted((r.radicado, r.status, r.steps) for r in rows)}")
    replies = {m.header.correlation_id: m for m in _answers(inbox, len(filed))}
    cases = {}
    for name, message_id in filed.items():
        reply = replies[message_id]
        assert reply.header.message_type is MessageType.RESPONSE, text(reply, "descripcion")
        cases[name] = next(r for r in rows if r.radicado == text(reply, "radicado"))
    return Run(running, applicant, inbox, cases, refusals, time.monotonic() - began)


def _answers(inbox: Inbox, count: int) -> list[Incoming]:
    """The orchestrator's answers to the filings (not its receipts)."""
    def answers() -> list[Incoming]:
        return [m for m in inbox.messages if str(m.header.service).startswith("radicarSolicitudLicencia")
                and m.header.message_type in (MessageType.RESPONSE, MessageType.FAULT)]

    with inbox.changed:
        inbox.changed.wait_for(lambda: len(answers()) >= count, timeout=30)
        return answers()


def _history(run: Run, case: str) -> list[dict[str, Any]]:
    return run.scene.node.orchestrator.store.history(run.cases[case].id)


def _sent(run: Run, case: str) -> list[str]:
    return [e["step"] for e in _history(run, case) if e["kind"] == "solicitud_enviada"]


def test_each_filing_was_answered_with_its_radicado_and_the_anla_expediente(run: Run) -> None:
    replies = _answers(run.inbox, 3)
    assert len(replies) == 3
    for reply in replies:
        assert text(reply, "numExpediente") == SAMPLE_EXPEDIENTE
        assert text(reply, "codEstadoSolicitud") == "RADICADA"
        assert (text(reply, "radicado") or "").startswith("VUA-")
    assert {case: row.outcome for case, row in run.cases.items()} == {
        "completa": "otorgada", "sin_eia": "desistida", "sin_certificado": "otorgada"}
    assert not any(row.late for row in run.cases.values())
    assert run.seconds < 60


def test_the_human_tasks_were_done_by_their_entities_and_refused_to_the_others(run: Run) -> None:
    store = run.scene.node.orchestrator.store
    done = store.tasks(status="completada", instance=run.cases["completa"].id)
    assert [(t.step, t.entity) for t in done] == [
        ("presentar_daa", APPLICANT), ("elegir_alternativa", ANLA), ("pagar", APPLICANT), ("visita", ANLA)]
    assert all(t.completed_by == f"{OFFICIALS[t.entity]} ({t.entity})" for t in done)
    visit = next(t for t in done if t.step == "visita")
    assert visit.due_at is not None
    legal_term = parse_duration("15dh").after(datetime.fromisoformat(visit.created_at))
    assert abs((datetime.fromisoformat(visit.due_at) - legal_term).total_seconds()) < 2
    assert run.refusals and set(run.refusals) == {FaultCode.CHAIN_TASK_FORBIDDEN}
    assert not store.tasks(status="abierta")


def test_the_granted_licence_is_in_anla_with_its_payment_publications_and_concept(run: Run) -> None:
    row = run.cases["completa"]
    context = row.state["context"]
    payment = next(p for p in RECONCILED_PAYMENTS if p[0] == context["referenciaPago"])
    assert context["valorCobro"] == payment[2] == "187450300.00"
    assert context["pagado"] is True and context["numAutorizacionPago"] == payment[1]
    assert any(t["cus"] == payment[1] and t["estado"] == "OK" for t in pse_transactions())
    assert context["presenciaComunidades"] is True and context["requiereConsultaPrevia"] is True
    assert any("Jepira" in c for c in context["comunidades"]) and context["traslapa"] is False
    assert context["viable"] is True and context["codDecision"] == "OTORGAR"
    world = run.scene.world
    assert world.others is not None
    with closing(sqlite3.connect(world.others.anla_db)) as anla:
        acts = anla.execute("SELECT tipo_acto, num_acto FROM actos WHERE num_expediente = ? ORDER BY tipo_acto",
                            (SAMPLE_EXPEDIENTE,)).fetchall()
        published = dict(anla.execute("SELECT num_acto, num_boletin FROM publicaciones WHERE num_expediente = ?",
                                      (SAMPLE_EXPEDIENTE,)).fetchall())
        extract = anla.execute("SELECT extracto FROM publicaciones WHERE num_acto = ?",
                               (context["numAuto"],)).fetchone()[0]
    # One act of each kind, asked for by two cases and by retries alike, and the ones the chain reported.
    assert acts == [("AUTO", context["numAuto"]), ("CONCEPTO", context["numConcepto"]),
                    ("RESOLUCION", context["numResolucion"])]
    assert published == {context["numAuto"]: context["numBoletinAuto"],
                         context["numResolucion"]: context["numBoletinResolucion"]}
    assert "Energía Andina del Cauca" in extract and SAMPLE_EXPEDIENTE in extract
    assert row.summary == (f"Licencia otorgada: Resolución {context['numResolucion']} por 30 años "
                           f"(Gaceta {context['numBoletinResolucion']})")
    folder = world.folder / "almacenes"
    assert len(inbox_requests(folder / "recaudo.db", "registrarPago")) == 2  # the two cases that went on
    assert len(inbox_requests(folder / "mininterior.db", "consultarPresenciaComunidades")) == 2


def test_the_flow_of_the_granted_licence(run: Run) -> None:
    history = _history(run, "completa")
    sent = _sent(run, "completa")
    assert sent[:5] == ["liquidar", "notificar_cobro", "registrar_pago", "auto_inicio", "publicar_auto"]
    assert sorted(sent[5:7]) == ["areas_protegidas", "comunidades"]
    assert sent[7:] == ["concepto", "resolucion", "notificar_resolucion", "publicar_resolucion"]
    kinds = [(e["kind"], e["step"]) for e in history]
    # both consultations left before either answered, and the visit waited for both
    first_answer = min(kinds.index(("respuesta_recibida", s)) for s in ("comunidades", "areas_protegidas"))
    assert max(kinds.index(("solicitud_enviada", s)) for s in ("comunidades", "areas_protegidas")) < first_answer
    assert kinds.index(("ramas_unidas", "informacion_entidades")) < kinds.index(("paso_iniciado", "visita"))
    decisions = [e for e in history if e["kind"] == "decision"]
    assert {"step": "revisar_daa", "siguiente": "presentar_daa"}.items() <= decisions[1].items()
    assert kinds[-1] == ("cadena_terminada", None)


def test_the_applicant_received_the_charge_and_the_resolution_by_email(run: Run) -> None:
    mailbox = run.scene.world.mailbox
    assert mailbox is not None
    granted = {run.cases["completa"].radicado, run.cases["sin_certificado"].radicado}
    messages = mailbox.wait_for(EMAIL, count=5)
    by_case: dict[str, list[str]] = {}
    for message in messages:
        by_case.setdefault(str(message["X-GEL-Radicado"]), []).append(str(message["Subject"]))
    for radicado in granted:
        assert sorted(by_case[radicado]) == [
            f"Su trámite {radicado}: cobro por el servicio de evaluación",
            f"Su trámite {radicado}: la ANLA decidió la solicitud de licencia ambiental"]
    resolution = next(m for m in messages if m["X-GEL-Radicado"] == run.cases["completa"].radicado
                      and "decidió" in str(m["Subject"]))
    body = resolution.get_content().replace("\r\n", "\n")  # SMTP carries CRLF line ends
    context = run.cases["completa"].state["context"]
    assert body.startswith("Señor(a) CARLOS ANDRÉS MEJÍA ROJAS:\n") and "decidió otorgar la licencia" in body
    assert context["numResolucion"] in body and "30 años" in body
    assert resolution["To"].addresses[0].display_name == "CARLOS ANDRÉS MEJÍA ROJAS"
    charge = next(m for m in messages if m["X-GEL-Radicado"] == run.cases["completa"].radicado
                  and "cobro" in str(m["Subject"]))
    assert "ANLA-LIQ-2026-004512" in charge.get_content() and "$187450300.00" in charge.get_content()


def test_a_missing_study_is_required_once_then_the_request_is_desisted(run: Run) -> None:
    desisted = run.cases["sin_eia"]
    assert _sent(run, "sin_eia") == ["requerir", "desistida"]
    required = [r for r in run.applicant.requirements if r.header.radicado == desisted.radicado]
    assert len(required) == 1
    assert text(required[0], "numActo") == f"OF-{desisted.radicado}"
    assert "estudio de impacto ambiental" in (text(required[0], "descripcion") or "")
    assert desisted.summary == f"Desistida: la solicitud no se completó tras el oficio OF-{desisted.radicado}"
    mailbox = run.scene.world.mailbox
    assert mailbox is not None
    notices = [m for m in mailbox.messages(EMAIL) if m["X-GEL-Radicado"] == desisted.radicado]
    assert [str(m["Subject"]) for m in notices] == [f"Su trámite {desisted.radicado}: solicitud archivada por "
                                                    "desistimiento"]


def test_a_certificate_sent_on_requirement_completes_the_request(run: Run) -> None:
    completed = run.cases["sin_certificado"]
    assert _sent(run, "sin_certificado")[:2] == ["requerir", "liquidar"]
    required = next(r for r in run.applicant.requirements if r.header.radicado == completed.radicado)
    assert text(required, "numeral") == "1" and "certificado de existencia" in (text(required, "descripcion") or "")
    context = completed.state["context"]
    assert "CERT_EXISTENCIA" in context["tiposDocumento"] and context["requerimientosHechos"] == 1
    assert completed.summary == run.cases["completa"].summary
