"""`gel chains …`, `gel tasks …` and `gel orchestrator`: start and follow chain instances, complete human
tasks, and run the orchestrator on the bus."""

from __future__ import annotations

import datetime as dt
import json
import signal
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Annotated, Any

import typer
import yaml
from rich.table import Table

from broker.commands.output import console, fail, print_json
from broker.commands.simulate import simulate_command
from broker.gelxml import GelFault
from broker.orchestrator.engine import STATUS_NAMES
from broker.orchestrator.store import OrchestratorStore
from broker.settings import get_settings

app = typer.Typer(help="Cadenas de trámites: definiciones (chains/*.yaml), instancias y su historia.",
                  no_args_is_help=True)
app.command("simulate")(simulate_command)
tasks_app = typer.Typer(help="Tareas humanas de las cadenas (p. ej. la visita técnica de la autoridad ambiental).",
                        no_args_is_help=True)

EVENT_LABELS = {
    "cadena_iniciada": "Cadena iniciada", "paso_iniciado": "Paso iniciado", "solicitud_enviada": "Solicitud enviada",
    "respuesta_recibida": "Respuesta recibida", "falla": "Falla", "reintento_programado": "Reintento programado",
    "decision": "Decisión", "datos_calculados": "Datos calculados", "ramas_unidas": "Ramas unidas",
    "ramas_abandonadas": "Ramas abandonadas", "tarea_abierta": "Tarea abierta", "tarea_completada": "Tarea completada",
    "evento_recibido": "Evento recibido", "temporizador_cumplido": "Temporizador cumplido",
    "plazo_vencido": "Plazo vencido", "compensacion_iniciada": "Compensación iniciada",
    "compensacion_enviada": "Compensación enviada", "compensacion_hecha": "Compensación hecha",
    "compensacion_fallida": "Compensación fallida", "cadena_terminada": "Cadena terminada",
    "solicitud_invalida": "Solicitud inválida", "respuesta_ignorada": "Respuesta ignorada",
    "evento_ignorado": "Evento ignorado",
}
JsonOption = Annotated[bool, typer.Option("--json", help="Salida en JSON para otros programas.")]


def _offline():  # type: ignore[no-untyped-def]
    """The orchestrator's store and runtime without the bus: what is decided here is signed into its outbox,
    and the running `gel orchestrator` publishes it (it also lints the definitions when it starts)."""
    from broker.orchestrator.bus import open_orchestrator
    from broker.transport.embedded import EmbeddedTransport

    settings = get_settings()
    try:
        return open_orchestrator(settings, EmbeddedTransport("gel-cli"), lint=False)
    except (ValueError, OSError) as exc:
        fail("GEL-CHAIN-CONFIG", str(exc), "revise GEL_CHAINS_DIR y gel chains lint")


@contextmanager
def _store() -> Iterator[OrchestratorStore]:
    """The orchestrator's store alone, for commands that only read it."""
    from broker.storage import open_engine

    engine = open_engine(get_settings().orchestrator_database_url)
    try:
        yield OrchestratorStore(engine)
    finally:
        engine.dispose()


def _when(moment: str | None) -> str:
    if not moment:
        return "—"
    local = dt.datetime.fromisoformat(moment).astimezone(dt.timezone(dt.timedelta(hours=-5)))
    return local.strftime("%Y-%m-%d %H:%M:%S")


def _read_input(path: Path) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as exc:
        fail("GEL-CHAIN-INPUT", f"no se pudo leer {path}: {exc}", "use un archivo YAML o JSON {campo: valor}")
    if not isinstance(data, dict):
        fail("GEL-CHAIN-INPUT", f"{path} debe ser un objeto {{campo: valor}}")
    return data


@app.command("lint")
def lint(
    paths: Annotated[list[Path] | None, typer.Argument(
        help="Definiciones a revisar (por defecto, todas las de GEL_CHAINS_DIR).")] = None,
    as_json: JsonOption = False,
) -> None:
    """Revisa definiciones de cadena antes de ponerlas en marcha: servicios y versiones que no existen o que
    el catálogo no autoriza, rutas GEL-XML que no están en el esquema, pasos inalcanzables o saltos a otra
    rama, campos del contexto que nada define, pasos con efectos sin compensación. Sale con 1 si hay errores."""
    from broker.catalog.live import open_catalog
    from broker.gelxml.lint import Severity
    from broker.orchestrator.lint import lint_file

    settings = get_settings()
    files = [p for path in (paths or [settings.chains_dir])
             for p in (sorted(path.rglob("*.yaml")) if path.is_dir() else [path])]
    if not files:
        fail("GEL-CHAIN-LINT-NO_FILES", f"no hay definiciones de cadena en {', '.join(map(str, paths or []))}")
    live = open_catalog(settings)
    snapshot = live.current()
    live.store.close()
    registry, catalog = snapshot.registry, snapshot.catalog
    report = {str(path): lint_file(path, registry=registry, catalog=catalog) for path in files}
    errors = sum(1 for found in report.values() for f in found if f.severity == Severity.ERROR)
    if as_json:
        print_json({path: [f.to_dict() for f in found] for path, found in report.items()})
    else:
        for path, found in report.items():
            console.print(f"[bold]{path}[/]: " + ("sin hallazgos" if not found else f"{len(found)} hallazgos"),
                          soft_wrap=True)
            for finding in found:
                console.print("  " + finding.format(), markup=False, soft_wrap=True)
        warnings = sum(len(found) for found in report.values()) - errors
        console.print(f"{errors} errores, {warnings} avisos en {len(files)} definiciones.")
    raise typer.Exit(1 if errors else 0)


@app.command("start")
def start(
    chain: Annotated[str, typer.Argument(help="Código de la cadena (p. ej. vivienda-oferta).")],
    input_file: Annotated[Path, typer.Option("--input", help="Datos de inicio (YAML o JSON: campo: valor).",
                                             exists=True, dir_okay=False)],
    by: Annotated[str | None, typer.Option("--por", help="Entidad que inicia el trámite.")] = None,
    as_json: JsonOption = False,
) -> None:
    """Inicia una instancia de la cadena con los datos del archivo y muestra su radicado. Las solicitudes a
    las entidades quedan en la bandeja de salida del orquestador; `gel orchestrator` las publica."""
    inputs = _read_input(input_file)
    if by:
        inputs.setdefault("entidadSolicitante", by)
    node = _offline()
    try:
        row = node.orchestrator.start(chain, inputs, started_by=by)
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    finally:
        node.store.close()
    if as_json:
        print_json({"idCadena": row.id, "radicado": row.radicado, "estado": row.status})
        return
    console.print(f"Cadena {chain} iniciada: radicado [bold]{row.radicado}[/] (id {row.id}), "
                  f"estado {STATUS_NAMES.get(row.status, row.status).lower()}. Sus solicitudes quedan en la bandeja de "
                  "salida del orquestador hasta que gel orchestrator las publique; siga el trámite con "
                  f"gel chains status {row.radicado}.", soft_wrap=True)


@app.command("status")
def status(key: Annotated[str, typer.Argument(help="Id de la instancia o radicado.")], as_json: JsonOption = False
           ) -> None:
    """Muestra dónde está una instancia: quién la tiene, sus plazos y la historia de cada paso."""
    with _store() as store:
        row = store.get(key)
        if row is None:
            fail("GEL-CHAIN-NOT_FOUND", f"No hay ninguna instancia de cadena con id o radicado {key}.",
                 "consulte gel chains list")
        history = store.history(row.id)
        open_tasks = store.tasks(instance=row.id)
    if as_json:
        print_json({"idCadena": row.id, "radicado": row.radicado, "cadena": row.chain, "version": row.version,
                    "estado": row.status, "resultado": row.outcome, "resumen": row.summary, "vencida": row.late,
                    "entidades": list(row.holders), "pasos": list(row.steps), "plazo": row.due_at,
                    "historia": history, "tareas": [t.id for t in open_tasks]})
        return
    late = " [red](plazo vencido)[/]" if row.late else ""
    console.print(f"[bold]{row.radicado}[/] — {row.chain} v{row.version} — {STATUS_NAMES.get(row.status, row.status)}"
                  f"{late}", soft_wrap=True)
    if row.outcome:
        console.print(f"Resultado: {row.outcome}. {row.summary or ''}", soft_wrap=True)
    if row.holders:
        console.print(f"En manos de: {', '.join(row.holders)} (pasos: {', '.join(row.steps)}); "
                      f"próximo plazo: {_when(row.due_at)}", soft_wrap=True)
    for task in open_tasks:
        console.print(f"Tarea abierta n.º {task.id}: {task.title} — {task.entity}", soft_wrap=True)
    table = Table(title="Historia", show_lines=False)
    for column in ("Hora (COT)", "Evento", "Paso", "Detalle"):
        table.add_column(column)
    for event in history:
        detail = {k: v for k, v in event.items() if k not in ("at", "kind", "step")}
        table.add_row(_when(event["at"]), EVENT_LABELS.get(event["kind"], event["kind"]), event["step"] or "",
                      ", ".join(f"{k}={v}" for k, v in detail.items()))
    console.print(table)


@app.command("list")
def list_instances(
    chain: Annotated[str | None, typer.Option("--cadena", help="Solo esta cadena.")] = None,
    state: Annotated[str | None, typer.Option("--estado", help="en_curso, compensando, completada o fallida.")] = None,
    late: Annotated[bool, typer.Option("--vencidas", help="Solo las que vencieron un plazo.")] = False,
    holder: Annotated[str | None, typer.Option("--entidad", help="Solo las que esperan a esta entidad.")] = None,
    limit: Annotated[int, typer.Option("--limite", help="Cuántas mostrar (las más recientes).")] = 50,
    as_json: JsonOption = False,
) -> None:
    """Lista las instancias de cadena: estado, quién las tiene y si van tarde frente al plazo legal."""
    with _store() as store:
        rows = store.search(chain=chain, status=state, late=True if late else None, holder=holder, limit=limit)
    if as_json:
        print_json([{"idCadena": r.id, "radicado": r.radicado, "cadena": r.chain, "estado": r.status,
                     "resultado": r.outcome, "vencida": r.late, "entidades": list(r.holders),
                     "iniciada": r.started_at} for r in rows])
        return
    table = Table(title=f"Instancias de cadena ({len(rows)})")
    for column in ("Radicado", "Cadena", "Estado", "Resultado", "En manos de", "Plazo", "Iniciada"):
        table.add_column(column)
    for r in rows:
        table.add_row(r.radicado, f"{r.chain} v{r.version}", STATUS_NAMES.get(r.status, r.status), r.outcome or "",
                      ", ".join(r.holders), ("[red]vencido[/]" if r.late else _when(r.due_at)), _when(r.started_at))
    console.print(table)


@tasks_app.command("list")
def list_tasks(
    entity: Annotated[str | None, typer.Option("--entidad", help="Solo las tareas de esta entidad.")] = None,
    everything: Annotated[bool, typer.Option("--todas", help="También las completadas y canceladas.")] = False,
    as_json: JsonOption = False,
) -> None:
    """Lista las tareas humanas abiertas: qué hay que hacer, en qué trámite, qué entidad y hasta cuándo."""
    with _store() as store:
        rows = store.tasks(entity=entity, status=None if everything else "abierta")
        radicados = {r.instance: (i.radicado if (i := store.get(r.instance)) else "") for r in rows}
    if as_json:
        print_json([{"tarea": r.id, "radicado": radicados[r.instance], "titulo": r.title, "entidad": r.entity,
                     "campos": list(r.fields), "estado": r.status, "plazo": r.due_at} for r in rows])
        return
    table = Table(title=f"Tareas ({len(rows)})")
    for column in ("N.º", "Radicado", "Tarea", "Entidad", "Campos a llenar", "Estado", "Plazo"):
        table.add_column(column)
    for r in rows:
        table.add_row(str(r.id), radicados[r.instance], r.title, r.entity, ", ".join(r.fields), r.status,
                      _when(r.due_at))
    console.print(table)


def _value(text: str) -> Any:
    lowered = text.strip().lower()
    if lowered in ("true", "sí", "si"):
        return True
    if lowered in ("false", "no"):
        return False
    try:
        return json.loads(text) if lowered[:1].isdigit() or lowered[:1] == "-" else text
    except json.JSONDecodeError:
        return text


@tasks_app.command("complete")
def complete_task(
    task: Annotated[int, typer.Argument(help="Número de la tarea (gel tasks list).")],
    entity: Annotated[str, typer.Option("--entidad", help="Entidad del funcionario que la completa.")],
    official: Annotated[str, typer.Option("--funcionario", help="Nombre o usuario del funcionario.")],
    data: Annotated[list[str] | None, typer.Option("--dato", help="campo=valor (repetible).")] = None,
) -> None:
    """Completa una tarea humana con los datos que pide; la cadena continúa. Solo un funcionario de la
    entidad a la que corresponde la tarea puede completarla, y queda registrado quién lo hizo."""
    values: dict[str, Any] = {}
    for item in data or []:
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            fail("GEL-CHAIN-TASK_FIELDS", f"--dato {item!r} no tiene la forma campo=valor")
        values[name.strip()] = _value(value)
    node = _offline()
    try:
        closed = node.orchestrator.complete_task(task, values, entity=entity, official=official)
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message, "consulte gel tasks list")
    finally:
        node.store.close()
    console.print(f"Tarea n.º {closed.id} ({closed.title}) completada por {closed.completed_by}.", soft_wrap=True)


def orchestrator() -> None:
    """Ejecuta el orquestador de cadenas (entidad CO/PLAT/900000002) en RabbitMQ: inicia las cadenas que
    le radican, envía cada paso por su bandeja de salida, recibe las respuestas y dispara plazos y
    temporizadores. Se detiene con Ctrl+C o SIGTERM; al volver, cada instancia sigue donde iba."""
    from broker.orchestrator.bus import ORCHESTRATOR_ID, open_orchestrator
    from broker.transport.abc import TransportError
    from broker.transport.provisioning import ProvisioningError, load_credentials
    from broker.transport.rabbitmq import RabbitMQTransport

    settings = get_settings()
    try:
        url = load_credentials(settings.rabbitmq_credentials_file, vhost=settings.rabbitmq_vhost).url(
            settings.amqp_url, ORCHESTRATOR_ID)
        transport = RabbitMQTransport(url, user_label=f"gel-orquestador:{ORCHESTRATOR_ID}")
    except ProvisioningError as exc:
        fail("GEL-ORCH-CREDENTIALS", str(exc), "ejecute gel topology apply en el nodo de RabbitMQ")
    except TransportError as exc:
        fail("GEL-ORCH-TRANSPORT", f"no fue posible conectar con RabbitMQ: {exc}",
             "revise GEL_AMQP_URL y GEL_RABBITMQ_VHOST")
    try:
        node = open_orchestrator(settings, transport)
    except (ValueError, OSError) as exc:
        transport.close()
        fail("GEL-CHAIN-CONFIG", str(exc), "revise GEL_CHAINS_DIR y gel chains lint")
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    try:
        node.start()
    except GelFault as exc:
        node.close()
        transport.close()
        fail(str(exc.falla.code), exc.falla.message)
    chains = ", ".join(sorted(f"{n} v{v}" for n, v in node.orchestrator.library)) or "ninguna"
    console.print(f"Orquestador en marcha (cadenas: {chains}). Ctrl+C para detenerlo.", soft_wrap=True)
    stop.wait()
    node.adapter.wait_idle(timeout=10)
    node.close()
    transport.close()
    console.print("Orquestador detenido.")
