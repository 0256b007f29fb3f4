"""The demo's main act: the housing window run by the orchestrator. Cajas de compensación radicate a batch of
households' applications; the orchestrator cross-checks each with the Registraduría, the SNR, the Sisbén and
Fonvivienda through the gateway, has Fonvivienda score and assign, and has the caja notify the result; the
entities' adapters answer from their seeded legacy systems."""

from __future__ import annotations

import datetime as dt
import statistics
import time
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass

from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from adapters.legacy.applications import HousingApplication, housing_applications
from broker.commands.demo_legacy import LegacySide
from broker.commands.output import console
from broker.gateway.local import LocalPlatform
from broker.gelxml.envelope import MessageType, ServiceRef, build_message, new_header, serialize
from broker.orchestrator.bus import ORCHESTRATOR_ID, OrchestratorNode
from broker.orchestrator.store import InstanceRow
from broker.security.pki import DevPKI
from broker.security.signing import sign_element
from broker.storage import iso

__all__ = ["WindowResult", "run_window"]

CAJAS = ("CO/CCF/860007336", "CO/CCF/860066942")
OUTCOME_LABELS = {"asignado": "Subsidio asignado", "no_elegible": "No elegible (notificado de inmediato)",
                  "no_asignado": "Elegible sin recursos", "fallida": "Fallida"}


@dataclass(frozen=True, slots=True)
class WindowResult:
    rows: tuple[InstanceRow, ...]
    applications: tuple[HousingApplication, ...]
    seconds: float
    surprises: int


def _radicate(platform: LocalPlatform, pki: DevPKI, caja: str, application: HousingApplication) -> str:
    header = new_header(sender=caja, recipient=ORCHESTRATOR_ID, service=ServiceRef("radicarPostulacion", "1.0"),
                        user=f"{application.doc_type}-{application.doc_number}",
                        subject="Postulación al subsidio familiar de vivienda")
    message = build_message(header, application.payload)
    platform.send(caja, serialize(sign_element(message, pki.credential(caja))))
    return header.message_id


def run_window(platform: LocalPlatform, node: OrchestratorNode, side: LegacySide, pki: DevPKI, count: int,
               *, timeout: float = 600.0) -> WindowResult:
    say = console.print
    applications = tuple(housing_applications(count))
    say(f"\n[bold]1. Ventanilla Única de Subsidios de Vivienda[/]: {count} hogares se postulan por su caja de "
        "compensación; el orquestador cruza la información con la Registraduría, la SNR, el Sisbén y Fonvivienda, "
        "Fonvivienda califica y asigna, y la caja notifica el resultado.", soft_wrap=True)
    store = node.orchestrator.store
    since = iso(dt.datetime.now(dt.UTC))
    started = time.perf_counter()
    request_ids: dict[str, HousingApplication] = {}
    columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
    with Progress(*columns, console=console, transient=False) as progress:
        sending = progress.add_task("Radicando postulaciones", total=count)
        for number, application in enumerate(applications):
            request_ids[_radicate(platform, pki, CAJAS[number % 2], application)] = application
            progress.advance(sending)
        finishing = progress.add_task("Trámites terminados   ", total=count)
        deadline = time.monotonic() + timeout
        rows: list[InstanceRow] = []
        while time.monotonic() < deadline:
            rows = [r for r in store.search(chain="vivienda-postulacion", limit=count * 2) if r.started_at >= since]
            done = [r for r in rows if r.status in ("completada", "fallida")]
            refused = _refused(side, request_ids)
            progress.update(finishing, completed=len(done) + len(refused))
            if len(done) + len(refused) >= count:
                break
            time.sleep(0.25)
    seconds = time.perf_counter() - started
    finished = tuple(r for r in rows if r.status in ("completada", "fallida"))
    refused = _refused(side, request_ids)
    for (code, text), times in Counter(refused).most_common():
        say(f"   [red]La ventanilla no radicó {times} postulaciones: {code} {text}[/]", soft_wrap=True)
    surprises = _summary(finished, applications, seconds, count - len(refused)) + len(refused)
    if finished:
        _timeline(node, next((r for r in finished if r.outcome == "asignado"), finished[0]))
    return WindowResult(finished, applications, seconds, surprises)


def _refused(side: LegacySide, request_ids: dict[str, HousingApplication]) -> list[tuple[str, str]]:
    """The fallas the cajas got instead of a radicado (code, text)."""
    found = []
    for caja in CAJAS:
        for message in side.received.get(caja, []):
            if message.header.message_type is MessageType.FAULT and message.header.correlation_id in request_ids:
                payload = message.payload
                found.append(((payload.findtext("{*}codFalla") or "") if payload is not None else "",
                              (payload.findtext("{*}descripcion") or "") if payload is not None else ""))
    return found


def _elapsed(row: InstanceRow) -> float:
    start = dt.datetime.fromisoformat(row.started_at)
    end = dt.datetime.fromisoformat(row.ended_at or row.updated_at)
    return (end - start).total_seconds()


def _summary(rows: Sequence[InstanceRow], applications: Sequence[HousingApplication], seconds: float,
             count: int) -> int:
    say = console.print
    by_document = {a.doc_number: a for a in applications}
    outcomes = Counter(r.outcome or r.status for r in rows)
    table = Table(title=f"Resultado de {count} postulaciones ({seconds:.1f} s)")
    for column in ("Resultado", "Hogares", "Tiempo típico (p50)", "Más lento"):
        table.add_column(column)
    for outcome, hogares in sorted(outcomes.items(), key=lambda item: -item[1]):
        times = [_elapsed(r) for r in rows if (r.outcome or r.status) == outcome]
        table.add_row(OUTCOME_LABELS.get(outcome, outcome), str(hogares), f"{statistics.median(times):.2f} s",
                      f"{max(times):.2f} s")
    console.print(table)
    reasons = Counter((r.summary or "").removeprefix("No elegible: ") for r in rows if r.outcome == "no_elegible")
    for reason, hogares in reasons.most_common():
        say(f"   • no elegible porque {reason}: {hogares}", soft_wrap=True)
    matches = sum(1 for r in rows if _agrees(r, by_document))
    say(f"   Coinciden con lo que dicen los sistemas heredados sembrados: {matches} de {len(rows)}.", soft_wrap=True)
    missing = count - len(rows)
    if missing:
        say(f"   [red]{missing} trámites no terminaron a tiempo.[/]")
    return missing + (len(rows) - matches)


def _agrees(row: InstanceRow, by_document: dict[str, HousingApplication]) -> bool:
    application = by_document.get(str(row.state.get("context", {}).get("numDocumento")))
    if application is None:
        return False
    if application.expected == "elegible":
        return row.outcome == "asignado"
    return row.outcome in ("no_elegible", "no_asignado")


def _timeline(node: OrchestratorNode, row: InstanceRow) -> None:
    say = console.print
    say(f"\n   Historia del trámite {row.radicado} ({row.outcome}): quién tuvo el caso y cuánto tardó cada entidad",
        soft_wrap=True)
    history = node.orchestrator.store.history(row.id)
    sent: dict[str, tuple[str, dt.datetime]] = {}
    for event in history:
        at = dt.datetime.fromisoformat(event["at"])
        if event["kind"] == "solicitud_enviada":
            sent[event["idMensaje"]] = (event["step"], at)
        elif event["kind"] == "respuesta_recibida":
            match = next(((s, t) for _m, (s, t) in sent.items() if s == event["step"]), None)
            if match is not None:
                say(f"     {event['step']:22} {event.get('entidad') or '':20} respondió en "
                    f"{(at - match[1]).total_seconds() * 1000:7.1f} ms", soft_wrap=True)
        elif event["kind"] == "decision":
            say(f"     {event['step']:22} decisión → {event['siguiente']}", soft_wrap=True)
    say(f"     {row.summary or ''}", soft_wrap=True)

