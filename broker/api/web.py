"""Server-rendered pages: the operators' dashboard (/tablero, role operador) and the citizens' tracking page
(/seguimiento, public). Everything a person reads here is in Spanish (es-CO), dates in Colombian time.

The router reads the app's `Stores` (`app.state.stores`, shared with the JSON API): the orchestrator's store,
the gateway's operational records, entity names and the definitions cases were started with; the chain
library (`chains_dir`) adds the chains, their titles and flows. The app may put its `Settings` in
`app.state.settings` (otherwise the process settings are used). The citizen's page renders
`tracking.citizen_view`, the same presentation /api/seguimiento returns.
Operators sign in with their API token, kept in an HttpOnly, SameSite=Strict cookie and checked again on
every request with `broker.api.auth.principal_from_token`.
"""

from __future__ import annotations

import datetime as dt
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, quote

from fastapi import APIRouter, Depends, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from jinja2 import Environment, FileSystemLoader, select_autoescape
from sqlalchemy import and_, func, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import SQLAlchemyError

from broker.api.auth import Principal, principal_from_token
from broker.api.queries import Stores, health
from broker.api.tracking import RUNNING, legal_deadline, track
from broker.catalog.management import CatalogManager
from broker.gateway.records import operational_records
from broker.orchestrator import store as orchestrator_tables
from broker.orchestrator.definition import ChainDefinition, Step, latest, load_library
from broker.orchestrator.durations import Duration
from broker.orchestrator.engine import STATUS_NAMES
from broker.orchestrator.store import InstanceRow, OrchestratorStore
from broker.settings import Settings, get_settings
from broker.storage import iso

__all__ = ["COOKIE", "TokenCheck", "router", "token_checker"]

COOKIE = "gel_tablero"
COLOMBIA = dt.timezone(dt.timedelta(hours=-5), "COT")
CHART_HOURS = 12
_HERE = Path(__file__).resolve().parent
_STATIC = _HERE / "static"
_SESSION_SECONDS = 8 * 3600
_FORM_LIMIT = 8192
_TRACKING_FAILURES = 10
_TRACKING_WINDOW = 900.0
_SECURITY_HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
}

KIND_NAMES = {"call": "Consulta a una entidad", "parallel": "Verificaciones en paralelo", "choice": "Decisión",
              "set": "Cálculo", "task": "Tarea de un funcionario", "event": "Espera de un aviso",
              "wait": "Espera", "end": "Fin del trámite"}
UNIT_NAMES = {"s": ("segundo", "segundos"), "m": ("minuto", "minutos"), "h": ("hora", "horas"), "d": ("día", "días"),
              "dh": ("día hábil", "días hábiles")}


TokenCheck = Callable[[str, Settings], Principal | None]


def token_checker() -> TokenCheck:
    """The API's token check (a dependency, so tests and other deployments may override it)."""
    return principal_from_token


router = APIRouter(include_in_schema=False)


# -- sources ----------------------------------------------------------------------------------------------
@dataclass
class _Sources:
    """The app's stores, the chain library, and the tracking page's failed-attempt counts."""

    settings: Settings
    stores: Stores
    library: dict[tuple[str, int], ChainDefinition]
    failures: dict[str, deque[float]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    @property
    def store(self) -> OrchestratorStore:
        return self.stores.orchestrator

    @property
    def records(self) -> Engine:
        return self.stores.operational

    def entity_name(self, entity_id: str | None) -> str:
        if not entity_id:
            return "—"
        try:
            return self.stores.entity_name(entity_id)
        except (OSError, ValueError):
            return entity_id

    def definition(self, row: InstanceRow) -> ChainDefinition | None:
        """The library's definition of the case's version (no query), else the one the orchestrator stored."""
        return (self.library.get((row.chain, row.version)) or self.stores.definition(row)
                or latest(self.library, row.chain))

    def chain_title(self, chain: str) -> str:
        found = latest(self.library, chain)
        return found.title if found is not None else chain


_sources_lock = threading.Lock()


def _settings_of(request: Request) -> Settings:
    found = getattr(request.app.state, "settings", None)
    return found if isinstance(found, Settings) else get_settings()


def sources(request: Request) -> _Sources:
    """The app's stores (opened once, shared with the JSON API) and the chain library."""
    settings = _settings_of(request)
    stores: Stores = request.app.state.stores
    with _sources_lock:
        cached: _Sources | None = getattr(request.app.state, "web_sources", None)
        if cached is not None and cached.settings is settings and cached.stores is stores:
            return cached
        try:
            library = load_library(settings.chains_dir)
        except (OSError, ValueError):
            library = {}
        made = _Sources(settings=settings, stores=stores, library=library)
        request.app.state.web_sources = made
        return made


# -- formatting -------------------------------------------------------------------------------------------
def parse_moment(value: str | dt.datetime | None) -> dt.datetime | None:
    if value is None or value == "":
        return None
    moment = value if isinstance(value, dt.datetime) else dt.datetime.fromisoformat(value)
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=dt.UTC)


def fecha(value: str | dt.datetime | None, *, with_time: bool = True) -> str:
    """dd/mm/aaaa hh:mm in Colombian time; '—' for nothing."""
    moment = parse_moment(value)
    if moment is None:
        return "—"
    local = moment.astimezone(COLOMBIA)
    return local.strftime("%d/%m/%Y %H:%M" if with_time else "%d/%m/%Y")


def duracion(seconds: float | dt.timedelta | None) -> str:
    """A span as people say it: '45 s', '12 min', '3 h 20 min', '2 d 4 h'."""
    if seconds is None:
        return "—"
    total = int(seconds.total_seconds() if isinstance(seconds, dt.timedelta) else seconds)
    total = max(total, 0)
    days, rest = divmod(total, 86400)
    hours, rest = divmod(rest, 3600)
    minutes, secs = divmod(rest, 60)
    if days:
        return f"{days} d {hours} h" if hours else f"{days} d"
    if hours:
        return f"{hours} h {minutes} min" if minutes else f"{hours} h"
    if minutes:
        return f"{minutes} min"
    return f"{secs} s"


def plazo_duracion(duration: Duration | None) -> str:
    """'30 días hábiles', '1 hora'."""
    if duration is None:
        return "—"
    one, many = UNIT_NAMES.get(duration.unit, (duration.unit, duration.unit))
    return f"{duration.amount:g} {one if duration.amount == 1 else many}"


def plazo_texto(step: Step) -> str:
    return plazo_duracion(step.deadline.within if step.deadline is not None else None)


def resultado(outcome: str | None) -> str:
    return outcome.replace("_", " ").capitalize() if outcome else "—"


def _environment() -> Environment:
    env = Environment(loader=FileSystemLoader(_HERE / "templates"), autoescape=select_autoescape(["html"]),
                      trim_blocks=True, lstrip_blocks=True)
    env.filters["fecha"] = fecha
    env.filters["dia"] = lambda value: fecha(value, with_time=False)
    env.filters["duracion"] = duracion
    env.filters["resultado"] = resultado
    env.filters["estado"] = lambda status: STATUS_NAMES.get(status, status)
    env.filters["plazo"] = plazo_duracion
    env.filters["miles"] = lambda number: f"{int(number):,}".replace(",", ".")
    return env


_ENV = _environment()


def _page(template: str, *, status_code: int = 200, private: bool = True, **values: Any) -> HTMLResponse:
    html = _ENV.get_template(template).render(**values)
    response = HTMLResponse(html, status_code=status_code, headers=_SECURITY_HEADERS)
    if private:
        response.headers["Cache-Control"] = "no-store"
    return response


def _now() -> dt.datetime:
    return dt.datetime.now(dt.UTC)


# -- static -----------------------------------------------------------------------------------------------
@router.get("/estaticos/gel.css")
def stylesheet() -> FileResponse:
    return FileResponse(_STATIC / "gel.css", media_type="text/css",
                        headers={"Cache-Control": "public, max-age=3600", **_SECURITY_HEADERS})


# -- operator session -------------------------------------------------------------------------------------
def _safe_next(target: str | None) -> str:
    """Only a path of the dashboard: never another site (no open redirect)."""
    if target and target.startswith("/tablero") and not target.startswith("//") and "\\" not in target:
        return target
    return "/tablero"


def _login_redirect(request: Request, reason: str) -> RedirectResponse:
    target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    response = RedirectResponse(f"/tablero/ingreso?motivo={reason}&siguiente={quote(target, safe='')}",
                                status_code=303)
    if reason == "rol":
        response.delete_cookie(COOKIE, path="/tablero")
    return response


def _operator(request: Request, check: TokenCheck, settings: Settings) -> Principal | RedirectResponse:
    token = request.cookies.get(COOKIE)
    if not token:
        return _login_redirect(request, "sesion")
    principal = check(token, settings)
    if principal is None:
        return _login_redirect(request, "vencida")
    if principal.role != "operador":
        return _login_redirect(request, "rol")
    return principal


LOGIN_REASONS = {
    "sesion": "Para ver el tablero, ingrese con su token de acceso de operador.",
    "vencida": "Su sesión ya no es válida. Ingrese de nuevo con su token de acceso.",
    "rol": "Su token no tiene el rol de operador; el tablero es solo para operadores de cadenas.",
    "salida": "Cerró la sesión. Puede ingresar de nuevo cuando lo necesite.",
}


@router.get("/tablero/ingreso", response_class=HTMLResponse)
def login_form(request: Request, motivo: str | None = None, siguiente: str | None = None) -> HTMLResponse:
    return _page("ingreso.html", aviso=LOGIN_REASONS.get(motivo or ""), siguiente=_safe_next(siguiente),
                 error=None)


async def _form(request: Request) -> dict[str, str]:
    body = await request.body()
    if len(body) > _FORM_LIMIT:
        return {}
    parsed = parse_qs(body.decode("utf-8", errors="replace"), keep_blank_values=True)
    return {key: values[0] for key, values in parsed.items() if values}


@router.post("/tablero/ingreso", response_class=HTMLResponse)
async def login(request: Request, check: TokenCheck = Depends(token_checker)) -> Response:
    form = await _form(request)
    token, target = form.get("token", "").strip(), _safe_next(form.get("siguiente"))
    settings = _settings_of(request)
    principal = check(token, settings) if token and check is not None else None
    if check is None:
        error = "El servicio de autenticación no está disponible. Informe al administrador de la plataforma."
    elif principal is None:
        error = "El token de acceso no es válido. Revíselo e intente de nuevo."
    elif principal.role != "operador":
        error = "Este token no tiene el rol de operador; el tablero es solo para operadores de cadenas."
    else:
        response = RedirectResponse(target, status_code=303)
        response.set_cookie(COOKIE, token, max_age=_SESSION_SECONDS, path="/tablero", httponly=True,
                            samesite="strict", secure=request.url.scheme == "https")
        return response
    return _page("ingreso.html", status_code=401, aviso=None, siguiente=target, error=error)


@router.post("/tablero/salir")
def logout() -> RedirectResponse:
    response = RedirectResponse("/tablero/ingreso?motivo=salida", status_code=303)
    response.delete_cookie(COOKIE, path="/tablero")
    return response


# -- dashboard: overview ----------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class ChainSummary:
    chain: str
    title: str
    running: int
    completed: int
    failed: int
    late: int


@dataclass(frozen=True, slots=True)
class LateCase:
    radicado: str
    chain: str
    chain_title: str
    holders: tuple[str, ...]
    deadline: dt.datetime | None
    overdue: dt.timedelta | None
    step_titles: tuple[str, ...]


@dataclass(frozen=True, slots=True)
class HourBar:
    label: str
    total: int
    faults: int


def late_case(src: _Sources, row: InstanceRow, now: dt.datetime) -> LateCase | None:
    """The case when it is past a deadline (flagged by the orchestrator or past due by the clock)."""
    definition = src.definition(row)
    deadlines = [d for d in (parse_moment(row.due_at), legal_deadline(row, definition)) if d is not None]
    passed = sorted(d for d in deadlines if d <= now)
    if not row.late and not passed:
        return None
    first = passed[0] if passed else None
    index = definition.index if definition is not None else {}
    return LateCase(
        radicado=row.radicado, chain=row.chain, chain_title=src.chain_title(row.chain),
        holders=tuple(src.entity_name(h) for h in row.holders), deadline=first,
        overdue=(now - first) if first is not None else None,
        step_titles=tuple(index[s].title if s in index else s for s in row.steps))


def _running(src: _Sources, chain: str | None = None, limit: int = 2000) -> list[InstanceRow]:
    rows: list[InstanceRow] = []
    for status in RUNNING:
        rows += src.store.search(chain=chain, status=status, limit=limit)
    return rows


def late_cases(src: _Sources, now: dt.datetime, chain: str | None = None) -> list[LateCase]:
    found = [case for row in _running(src, chain) if (case := late_case(src, row, now)) is not None]
    return sorted(found, key=lambda c: c.overdue or dt.timedelta(0), reverse=True)


def chain_summaries(src: _Sources, late: Sequence[LateCase]) -> list[ChainSummary]:
    counts = src.store.counts()
    names = {name for name, _ in src.library} | {chain for chain, _ in counts}
    late_by_chain: dict[str, int] = {}
    for case in late:
        late_by_chain[case.chain] = late_by_chain.get(case.chain, 0) + 1
    return [ChainSummary(chain=name, title=src.chain_title(name),
                         running=sum(counts.get((name, s), 0) for s in RUNNING),
                         completed=counts.get((name, "completada"), 0), failed=counts.get((name, "fallida"), 0),
                         late=late_by_chain.get(name, 0))
            for name in sorted(names)]


def traffic(src: _Sources, now: dt.datetime, hours: int = CHART_HOURS) -> list[HourBar]:
    """Messages and faults per hour (Colombian time) over the last `hours`, oldest first."""
    end = now.astimezone(dt.UTC).replace(minute=0, second=0, microsecond=0) + dt.timedelta(hours=1)
    start = end - dt.timedelta(hours=hours)
    records = operational_records.c
    hour = func.substr(records.completed_at, 1, 13)
    query = (select(hour, records.outcome, func.count())
             .where(and_(records.completed_at >= iso(start), records.completed_at < iso(end)))
             .group_by(hour, records.outcome))
    totals: dict[str, list[int]] = {}
    try:
        with src.records.connect() as connection:
            for key, outcome, count in connection.execute(query).all():
                bucket = totals.setdefault(str(key), [0, 0])
                bucket[0] += int(count)
                if outcome in ("rechazado", "sin_respuesta"):
                    bucket[1] += int(count)
    except SQLAlchemyError:
        totals = {}
    bars = []
    for index in range(hours):
        moment = start + dt.timedelta(hours=index)
        total, faults = totals.get(moment.strftime("%Y-%m-%dT%H"), [0, 0])
        bars.append(HourBar(label=moment.astimezone(COLOMBIA).strftime("%H:00"), total=total, faults=faults))
    return bars


@dataclass(frozen=True, slots=True)
class Chart:
    width: int
    height: int
    bars: tuple[dict[str, Any], ...]
    ticks: tuple[dict[str, Any], ...]
    maximum: int


def chart(bars: Sequence[HourBar]) -> Chart:
    """Geometry of the hourly bar chart (drawn as inline SVG by the template)."""
    width, height, left, bottom, top = 760, 220, 44, 28, 12
    plot_h = height - bottom - top
    maximum = max([b.total for b in bars] + [1])
    step = (width - left - 8) / max(len(bars), 1)
    shapes = []
    for i, bar in enumerate(bars):
        total_h = plot_h * bar.total / maximum
        fault_h = plot_h * bar.faults / maximum
        x = left + i * step + step * 0.15
        shapes.append({
            "x": round(x, 1), "w": round(step * 0.7, 1), "label": bar.label, "label_x": round(x + step * 0.35, 1),
            "ok_y": round(top + plot_h - total_h, 1), "ok_h": round(total_h - fault_h, 1),
            "fault_y": round(top + plot_h - fault_h, 1), "fault_h": round(fault_h, 1),
            "total": bar.total, "faults": bar.faults,
        })
    ticks = tuple({"y": round(top + plot_h - plot_h * v / maximum, 1), "value": v}
                  for v in sorted({0, maximum // 2, maximum}))
    return Chart(width=width, height=height, bars=tuple(shapes), ticks=ticks, maximum=maximum)


@router.get("/tablero", response_class=HTMLResponse)
def dashboard(request: Request, check: TokenCheck = Depends(token_checker)) -> Response:
    src = sources(request)
    principal = _operator(request, check, src.settings)
    if isinstance(principal, RedirectResponse):
        return principal
    now = _now()
    late = late_cases(src, now)
    bars = traffic(src, now)
    total, faults = sum(b.total for b in bars), sum(b.faults for b in bars)
    status = health(src.stores, principal, window=dt.timedelta(hours=1), now=now)
    return _page("tablero.html", principal=principal, now=now, chains=chain_summaries(src, late), late=late,
                 bars=bars, chart=chart(bars), total=total, faults=faults,
                 fault_rate=(100.0 * faults / total) if total else 0.0, hours=CHART_HOURS,
                 queues_read=status.colas_leidas, connections=status.conexiones)


# -- dashboard: the service catalog -----------------------------------------------------------------------
CATALOG_WINDOW = dt.timedelta(hours=24)


@router.get("/tablero/catalogo", response_class=HTMLResponse)
def catalog_page(request: Request, estado: str | None = None,
                 check: TokenCheck = Depends(token_checker)) -> Response:
    src = sources(request)
    principal = _operator(request, check, src.settings)
    if isinstance(principal, RedirectResponse):
        return principal
    now = _now()
    manager: CatalogManager = request.app.state.catalog
    records = [r for r in manager.store.records() if estado in (None, "", r.status.value)]
    stats = {s.servicio: s for s in health(src.stores, principal, window=CATALOG_WINDOW, now=now).servicios}
    rows = [{"record": r, "owner": src.entity_name(r.owner), "providers": [src.entity_name(e) for e in r.providers],
             "stats": stats.get(f"{r.code} v{r.version}")} for r in records]
    return _page("catalogo.html", principal=principal, now=now, rows=rows, estado=estado or "",
                 changes=[c for c in manager.store.history(limit=200) if c.action != "sembrado"][:10])


# -- dashboard: one chain ---------------------------------------------------------------------------------
@dataclass(frozen=True, slots=True)
class FlowRow:
    step: Step
    depth: int
    branch: int | None
    holder: str
    waiting: int
    median_wait: float | None


def _flatten(steps: Sequence[Step], depth: int = 0,
             branch: int | None = None) -> Iterator[tuple[Step, int, int | None]]:
    for step in steps:
        yield step, depth, branch
        for number, inner in enumerate(step.branches, start=1):
            yield from _flatten(inner, depth + 1, number)


def _waiting(rows: Sequence[InstanceRow], now: dt.datetime) -> dict[str, list[float]]:
    """Per step, how long each running case has been at it (seconds)."""
    found: dict[str, list[float]] = {}
    for row in rows:
        for token in row.state.get("tokens", {}).values():
            if token.get("phase") == "uniendo":
                continue
            since = parse_moment(token.get("since"))
            found.setdefault(token["step"], []).append((now - since).total_seconds() if since else 0.0)
    return found


def flow(src: _Sources, definition: ChainDefinition, rows: Sequence[InstanceRow], now: dt.datetime) -> list[FlowRow]:
    waits = _waiting(rows, now)
    return [FlowRow(step=step, depth=depth, branch=branch,
                    holder=src.entity_name(step.holder) if step.holder and "/" in step.holder
                    else ("Entidad que radicó" if step.holder else "—"),
                    waiting=len(waits.get(step.id, [])),
                    median_wait=statistics.median(waits[step.id]) if waits.get(step.id) else None)
            for step, depth, branch in _flatten(definition.steps)]


@router.get("/tablero/cadenas/{cadena}", response_class=HTMLResponse)
def chain_page(cadena: str, request: Request, estado: str | None = None,
               check: TokenCheck = Depends(token_checker)) -> Response:
    src = sources(request)
    principal = _operator(request, check, src.settings)
    if isinstance(principal, RedirectResponse):
        return principal
    definition = latest(src.library, cadena)
    if definition is None:
        return _page("no_encontrado.html", status_code=404, principal=principal,
                     mensaje=f"No existe una cadena llamada «{cadena}».")
    now = _now()
    running = _running(src, cadena)
    status = estado if estado in STATUS_NAMES else None
    cases = src.store.search(chain=cadena, status=status, limit=200)
    late = {c.radicado: c for c in late_cases(src, now, cadena)}
    index = definition.index
    listed = [{"row": row, "late": late.get(row.radicado), "holders": [src.entity_name(h) for h in row.holders],
               "steps": [index[s].title if s in index else s for s in row.steps]} for row in cases]
    return _page("cadena.html", principal=principal, now=now, definition=definition,
                 flow=flow(src, definition, running, now), cases=listed, estado=status, statuses=STATUS_NAMES,
                 kinds=KIND_NAMES, plazo=plazo_texto, running=len(running), late_count=len(late))


# -- dashboard: one case ----------------------------------------------------------------------------------
def describe(event: Mapping[str, Any], src: _Sources, index: Mapping[str, Step]) -> str:
    """One history event as an operator reads it."""
    def title(step_id: Any) -> str:
        return f"«{index[step_id].title}»" if step_id in index else f"«{step_id}»"
    kind, step = event.get("kind"), event.get("step")
    entity = src.entity_name(event.get("entidad"))
    match kind:
        case "cadena_iniciada":
            return f"Se radicó el trámite (cadena {event.get('cadena')}, versión {event.get('version')})."
        case "paso_iniciado":
            return f"Comenzó el paso {title(step)}."
        case "decision":
            return f"Decisión en {title(step)}: sigue {title(event.get('siguiente'))}."
        case "datos_calculados":
            return f"Se calcularon datos en {title(step)}: {', '.join(event.get('campos', []))}."
        case "solicitud_enviada":
            return f"Se envió la solicitud {event.get('servicio')} a {entity} (intento {event.get('intento', 1)})."
        case "respuesta_recibida":
            late = " Llegó después del plazo del paso." if event.get("tarde") else ""
            return f"Respondió {entity} en {title(step)}.{late}"
        case "reintento_programado":
            return (f"Falla {event.get('codigo')} en {title(step)}; nuevo intento (n.º {event.get('intento')}) "
                    f"en {duracion(event.get('espera_s', 0))}.")
        case "falla":
            return f"Falla {event.get('codigo')} en {title(step)}: {event.get('descripcion')}"
        case "plazo_vencido":
            if event.get("alcance") == "cadena":
                return "Venció el plazo legal del trámite."
            return f"Venció el plazo del paso {title(step)} ({entity})."
        case "ramas_unidas":
            return f"Terminaron todas las verificaciones de {title(step)}."
        case "ramas_abandonadas":
            return (f"Se dejaron de esperar las demás verificaciones de {title(step)}; "
                    f"sigue {title(event.get('hacia'))}.")
        case "respuesta_ignorada":
            return "Llegó una respuesta que ya no se esperaba (no cambia el trámite)."
        case "tarea_abierta":
            return f"Se abrió la tarea {title(step)} para {entity}."
        case "tarea_completada":
            return f"Tarea {title(step)} completada por {event.get('por')}."
        case "evento_recibido":
            return f"Se recibió el aviso de {entity} en {title(step)}."
        case "evento_ignorado":
            return f"Se recibió un aviso de {entity} que el trámite no esperaba."
        case "temporizador_cumplido":
            return f"Terminó la espera de {title(step)}."
        case "solicitud_invalida":
            return f"No se pudo armar la solicitud de {title(step)}: {event.get('detalle')}"
        case "compensacion_iniciada":
            return "Se inició la reversión de los pasos ya hechos."
        case "compensacion_enviada":
            return f"Se pidió a {entity} revertir {title(step)}."
        case "compensacion_hecha":
            return f"Se revirtió {title(step)}."
        case "compensacion_fallida":
            return f"No se pudo revertir {title(step)}."
        case "cadena_terminada":
            return (f"Terminó el trámite: {STATUS_NAMES.get(str(event.get('estado')), event.get('estado'))} "
                    f"({resultado(event.get('resultado'))}).")
    return str(kind).replace("_", " ").capitalize() + (f" en {title(step)}" if step else "") + "."


def requests_of(src: _Sources, row: InstanceRow, index: Mapping[str, Step], now: dt.datetime) -> list[dict[str, Any]]:
    table = orchestrator_tables.messages
    with src.store.engine.connect() as connection:
        found = connection.execute(select(table).where(table.c.instance == row.id).order_by(table.c.sent_at)).all()
    listed = []
    for message in found:
        sent, answered = parse_moment(message.sent_at), parse_moment(message.answered_at)
        step = index.get(message.step)
        service = step.call.service if step is not None and step.call is not None else None
        listed.append({
            "step": step.title if step is not None else message.step,
            "service": str(service) if service is not None else "—",
            "entity": src.entity_name(message.recipient), "sent": sent, "answered": answered,
            "took": (answered - sent) if sent and answered else None,
            "waiting": (now - sent) if sent and not answered else None,
        })
    return listed


def step_deadlines(row: InstanceRow, index: Mapping[str, Step], src: _Sources,
                   now: dt.datetime) -> list[dict[str, Any]]:
    listed = []
    for token in row.state.get("tokens", {}).values():
        due = parse_moment(token.get("due"))
        if due is None:
            continue
        step = index.get(token["step"])
        listed.append({"step": step.title if step is not None else token["step"],
                       "entity": src.entity_name(step.holder if step is not None else None),
                       "due": due, "late": bool(token.get("late")) or due <= now})
    return sorted(listed, key=lambda d: d["due"])


@router.get("/tablero/casos/{radicado}", response_class=HTMLResponse)
def case_page(radicado: str, request: Request, check: TokenCheck = Depends(token_checker)) -> Response:
    src = sources(request)
    principal = _operator(request, check, src.settings)
    if isinstance(principal, RedirectResponse):
        return principal
    row = src.store.get(radicado)
    if row is None:
        return _page("no_encontrado.html", status_code=404, principal=principal,
                     mensaje=f"No existe un caso con el radicado «{radicado}».")
    now = _now()
    definition = src.definition(row)
    index = definition.index if definition is not None else {}
    history = [{"at": parse_moment(e["at"]), "kind": e["kind"], "text": describe(e, src, index)}
                for e in src.store.history(row.id)]
    tasks = [{"task": t, "entity": src.entity_name(t.entity)} for t in src.store.tasks(instance=row.id)]
    return _page("caso.html", principal=principal, now=now, row=row,
                 chain_title=definition.title if definition else row.chain,
                 deadline=legal_deadline(row, definition), late=late_case(src, row, now) if row.status in RUNNING
                 else None, history=history, requests=requests_of(src, row, index, now),
                 deadlines=step_deadlines(row, index, src, now), tasks=tasks,
                 holders=[src.entity_name(h) for h in row.holders],
                 steps=[index[s].title if s in index else s for s in row.steps])


# -- citizens' tracking -----------------------------------------------------------------------------------
NOT_FOUND = ("No encontramos un trámite con esos datos. Revise el número de radicado y el número de documento "
             "e intente de nuevo.")
TOO_MANY = "Hizo demasiadas consultas sin resultado. Espere unos minutos e intente de nuevo."


def _too_many(src: _Sources, client: str, *, failed: bool = False) -> bool:
    moment = time.monotonic()
    with src.lock:
        recent = src.failures.setdefault(client, deque())
        while recent and moment - recent[0] > _TRACKING_WINDOW:
            recent.popleft()
        if failed:
            recent.append(moment)
        return len(recent) >= _TRACKING_FAILURES


@router.get("/seguimiento", response_class=HTMLResponse)
def tracking_form() -> HTMLResponse:
    return _page("seguimiento.html", radicado="", seguimiento=None, error=None)


@router.post("/seguimiento", response_class=HTMLResponse)
async def tracking(request: Request) -> HTMLResponse:
    src = sources(request)
    form = await _form(request)
    radicado = form.get("radicado", "").strip().upper()[:40]
    document = form.get("documento", "")[:40]
    client = request.client.host if request.client else "desconocido"
    if _too_many(src, client):
        return _page("seguimiento.html", status_code=429, radicado=radicado, seguimiento=None, error=TOO_MANY)
    found = track(src.stores, radicado, document)
    if found is None:
        _too_many(src, client, failed=True)
        return _page("seguimiento.html", status_code=404, radicado=radicado, seguimiento=None, error=NOT_FOUND)
    return _page("seguimiento.html", radicado=radicado, seguimiento=found, error=None)
