"""`gel chains lint`: what can be known about a chain definition before any instance runs it.

The loader (`definition.py`) accepts any well-formed definition; this module checks it against the rest of
the platform and against itself:

- services: every `start`, `call`, `compensate` and `event` names a service version of the schema registry
  and, when a catalog is given, of the catalog, not retired, with the orchestrator in the role the gateway
  will demand (caller of what it calls, provider of what starts it, subscriber of what it waits for) and a
  literal `to`/`from` among the providers;
- payload paths: every `gel` path of a request rule or capture exists in the service schema, from the root
  the message will carry (`entrada…` for requests, `salida…` for replies, `evento…` for events), and ends
  at an element with a value unless whole elements are copied (`each`, `as: xml | xml_list | count`);
- flow: step ids are unique, every jump names a step in the same list or an enclosing one (never into
  another branch of a parallel step), every step is reachable, and the main list ends at an `end` step;
- fields: every name an expression, a `from`, an `each` or a `to` reads is defined somewhere in the chain.
  This is flow-insensitive: a field counts as defined if any part of the chain defines it, whether or not
  it is defined on every path to its use (the engine reports that case at run time, GEL-CHAIN-EXPRESSION).

Compensation rule (an `aviso`): a call to a service with effects (any code not starting with `consultar`
or `verificar`) should say how to undo it when, after it answers, the flow can still reach a step that
fails the chain: a call without `on_fault`, or an `end` with `status: fallida`. Only what follows the call
along its own path counts (next steps, choices, fault and deadline routes, what follows its parallel
step); sibling branches running beside it and faults of expressions or payloads are not considered.
"""

from __future__ import annotations

import difflib
import string
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from enum import StrEnum
from pathlib import Path
from typing import Any, TypeGuard

from xmlschema.validators import XsdElement, XsdGroup

from broker.catalog.access import Catalog, ServiceEntry, ServiceStatus
from broker.gelxml.envelope import ServiceRef
from broker.gelxml.lint import Severity
from broker.gelxml.namespaces import COMMON_PREFIXES
from broker.gelxml.registry import SchemaRegistry, ServiceSchema
from broker.orchestrator.definition import CallSpec, ChainDefinition, Step, load_definition
from broker.orchestrator.expressions import ExpressionError, compile_expression
from broker.orchestrator.payloads import SERVICE_PREFIX, Capture, RequestRule

__all__ = ["BUILT_IN_FIELDS", "Finding", "LintCode", "Severity", "lint_definition", "lint_file"]

DEFAULT_ORCHESTRATOR = "CO/PLAT/900000002"
BUILT_IN_FIELDS = frozenset({
    "radicado", "idCadena", "entidadSolicitante", "fechaHoraRadicacion", "falla_codigo", "falla_descripcion",
    "falla_paso",
})
EFFECT_FREE_PREFIXES = ("consultar", "verificar")
_WHOLE_ELEMENT_CAPTURES = frozenset({"xml", "xml_list", "count"})


class LintCode(StrEnum):
    INVALID = "GEL-CHAIN-LINT-INVALID"
    UNKNOWN_SERVICE = "GEL-CHAIN-LINT-UNKNOWN_SERVICE"
    UNKNOWN_VERSION = "GEL-CHAIN-LINT-UNKNOWN_VERSION"
    NOT_IN_CATALOG = "GEL-CHAIN-LINT-NOT_IN_CATALOG"
    RETIRED = "GEL-CHAIN-LINT-RETIRED"
    DEPRECATED = "GEL-CHAIN-LINT-DEPRECATED"
    NOT_AUTHORISED = "GEL-CHAIN-LINT-NOT_AUTHORISED"
    WRONG_PROVIDER = "GEL-CHAIN-LINT-WRONG_PROVIDER"
    NOT_AN_EVENT = "GEL-CHAIN-LINT-NOT_AN_EVENT"
    UNKNOWN_STEP = "GEL-CHAIN-LINT-UNKNOWN_STEP"
    BAD_JUMP = "GEL-CHAIN-LINT-BAD_JUMP"
    DUPLICATE_ID = "GEL-CHAIN-LINT-DUPLICATE_ID"
    UNREACHABLE = "GEL-CHAIN-LINT-UNREACHABLE"
    IGNORED_NEXT = "GEL-CHAIN-LINT-IGNORED_NEXT"
    UNDEFINED_FIELD = "GEL-CHAIN-LINT-UNDEFINED_FIELD"
    BAD_EXPRESSION = "GEL-CHAIN-LINT-BAD_EXPRESSION"
    BAD_CAPTURE = "GEL-CHAIN-LINT-BAD_CAPTURE"
    BAD_REQUEST_PATH = "GEL-CHAIN-LINT-BAD_REQUEST_PATH"
    MISSING_COMPENSATION = "GEL-CHAIN-LINT-MISSING_COMPENSATION"
    NO_END = "GEL-CHAIN-LINT-NO_END"


@dataclass(frozen=True, slots=True)
class Finding:
    code: LintCode
    severity: Severity
    step: str | None
    message: str

    def format(self) -> str:
        where = f"paso {self.step}" if self.step else "cadena"
        return f"{self.code} [{self.severity}] {where}: {self.message}"

    def to_dict(self) -> dict[str, object]:
        return {"codigo": str(self.code), "severidad": str(self.severity), "paso": self.step,
                "descripcion": self.message}


def lint_file(path: Path, *, registry: SchemaRegistry, catalog: Catalog | None = None,
              orchestrator_id: str = DEFAULT_ORCHESTRATOR) -> list[Finding]:
    """The findings of the definition in `path`; one GEL-CHAIN-LINT-INVALID when it does not load."""
    try:
        definition = load_definition(path)
    except ValueError as exc:
        return [Finding(LintCode.INVALID, Severity.ERROR, None,
                        f"{str(exc).rstrip('.')}. Corrija el archivo: sin cargarlo no se puede revisar nada más.")]
    return lint_definition(definition, registry=registry, catalog=catalog, orchestrator_id=orchestrator_id)


def lint_definition(definition: ChainDefinition, *, registry: SchemaRegistry, catalog: Catalog | None = None,
                    orchestrator_id: str = DEFAULT_ORCHESTRATOR) -> list[Finding]:
    """Every finding about `definition`, errors and warnings, in the order of the definition."""
    return _Linter(definition, registry, catalog, orchestrator_id).run()


# -- payload paths ------------------------------------------------------------------------------------------


def _element_children(decl: Any) -> list[Any]:
    xsd_type = decl.type
    if xsd_type.is_simple() or xsd_type.has_simple_content():
        return []
    content = getattr(xsd_type, "content", None)
    return list(_elements(content)) if isinstance(content, XsdGroup) else []


def _elements(group: Any) -> Iterator[Any]:
    for particle in group:
        if isinstance(particle, XsdElement):
            yield particle
        elif isinstance(particle, XsdGroup):
            yield from _elements(particle)


def _has_value(decl: Any) -> bool:
    return bool(decl.type.is_simple() or decl.type.has_simple_content())


class _Paths:
    """Resolves the prefixed paths of rules and captures against one service's schema."""

    def __init__(self, registry: SchemaRegistry, service: ServiceSchema) -> None:
        self.service = service
        self.schema = registry.decoder(service.namespace)
        self.prefixes = {**COMMON_PREFIXES, SERVICE_PREFIX: service.namespace}
        self.prefix_of = {uri: prefix for prefix, uri in self.prefixes.items()}

    def short(self, clark: str) -> str:
        namespace, _, local = clark[1:].partition("}")
        prefix = self.prefix_of.get(namespace)
        return f"{prefix}:{local}" if prefix else local

    def problem(self, roots: Sequence[str], path: str, *, value: bool) -> str | None:
        """Why `path` does not exist below any of `roots` (Spanish), or None when it exists."""
        problems = [self._problem(root, path, value=value) for root in roots]
        return None if any(p is None for p in problems) else problems[0]

    def _problem(self, root: str, path: str, *, value: bool) -> str | None:
        decl = self.schema.maps.elements.get(self.service.root_tag(root))
        if decl is None:
            return f"el esquema de {self.service.code} {self.service.version} no declara {root}"
        steps = path.split("/")
        attribute = steps.pop()[1:] if steps[-1].startswith("@") else None
        for step in steps:
            prefix, _, local = step.rpartition(":")
            if prefix not in self.prefixes:
                return (f"el paso {step!r} debe tener la forma prefijo:nombre con uno de los prefijos "
                        f"{', '.join(sorted(self.prefixes))}")
            tag = f"{{{self.prefixes[prefix]}}}{local}"
            children = _element_children(decl)
            found = next((child for child in children if child.name == tag), None)
            if found is None:
                here = self.short(decl.name)
                if not children:
                    return f"{here} no tiene elementos hijos, así que {step} no existe dentro de él"
                allowed = ", ".join(dict.fromkeys(self.short(child.name) for child in children))
                return f"{step} no existe dentro de {here} (admite: {allowed})"
            decl = found
        if attribute is not None:
            names = {str(name).rpartition("}")[2] for name in getattr(decl, "attributes", {}) or {}}
            if attribute not in names:
                known = ", ".join(sorted(names)) or "ninguno"
                return f"{self.short(decl.name)} no tiene el atributo {attribute} (tiene: {known})"
            return None
        if value and not _has_value(decl):
            inner = ", ".join(dict.fromkeys(self.short(child.name) for child in _element_children(decl)))
            return f"{self.short(decl.name)} es un elemento compuesto, sin valor propio (contiene: {inner})"
        return None


# -- the linter -----------------------------------------------------------------------------------------------

_ListKey = tuple[str, int]
_MAIN: _ListKey = ("", 0)


@dataclass(frozen=True, slots=True)
class _Place:
    siblings: tuple[str, ...]
    index: int
    lists: tuple[_ListKey, ...]
    """The step's own list first, then every enclosing list out to the main one."""
    parallel: str | None


@dataclass(frozen=True, slots=True)
class _Use:
    """A field a definition reads: who reads it, and whether an unknown one only renders as text."""

    step: str | None
    name: str
    where: str
    severity: Severity = Severity.ERROR


class _Linter:
    def __init__(self, definition: ChainDefinition, registry: SchemaRegistry, catalog: Catalog | None,
                 orchestrator_id: str) -> None:
        self.definition = definition
        self.registry = registry
        self.catalog = catalog
        self.orchestrator = orchestrator_id
        self.index = definition.index
        self.places: dict[str, _Place] = {}
        self.findings: list[Finding] = []
        self._paths: dict[tuple[str, str], _Paths] = {}

    def add(self, code: LintCode, step: str | None, message: str, severity: Severity = Severity.ERROR) -> None:
        self.findings.append(Finding(code, severity, step, message))

    def run(self) -> list[Finding]:
        self._place(self.definition.steps, (_MAIN,), None)
        self.check_ids()
        self.check_start()
        for step, _ in self.definition.walk():
            if step.call is not None:
                self.check_call(step.id, step.call, compensation=False)
            if step.compensate is not None:
                self.check_call(step.id, step.compensate, compensation=True)
            if step.event_service is not None:
                self.check_event(step.id, step.event_service, step.event_from, step.captures)
            if step.next is not None and step.kind in ("choice", "end"):
                self.add(LintCode.IGNORED_NEXT, step.id,
                         f"un paso {step.kind} no sigue a next ({step.next!r}): "
                         + ("va a la primera condición que se cumpla o a otherwise; quite next o conviértalo "
                            "en otherwise." if step.kind == "choice" else "termina la cadena; quite next."),
                         Severity.WARNING)
        self.check_targets()
        self.check_flow()
        self.check_fields()
        return self.findings

    # -- ids ----------------------------------------------------------------------------------------------
    def check_ids(self) -> None:
        seen: set[str] = set()
        for step, _ in self.definition.walk():
            if step.id in seen:
                self.add(LintCode.DUPLICATE_ID, step.id,
                         f"hay más de un paso con id {step.id!r}: los saltos y el historial no sabrían a cuál se "
                         "refieren. Dé a cada paso un id único.")
            seen.add(step.id)

    def _place(self, steps: Sequence[Step], lists: tuple[_ListKey, ...], parallel: str | None) -> None:
        ids = tuple(step.id for step in steps)
        for position, step in enumerate(steps):
            self.places.setdefault(step.id, _Place(ids, position, lists, parallel))
            for number, branch in enumerate(step.branches):
                self._place(branch, ((step.id, number), *lists), step.id)

    # -- services ---------------------------------------------------------------------------------------
    def schema_of(self, step: str | None, ref: ServiceRef, role: str) -> ServiceSchema | None:
        service = self.registry.service(ref.code, ref.version)
        if service is not None:
            return service
        versions = sorted(v for c, v in self.registry.services if c == ref.code)
        if versions:
            self.add(LintCode.UNKNOWN_VERSION, step,
                     f"{role}: el servicio {ref.code} no tiene la versión {ref.version} en el registro de esquemas "
                     f"(versiones publicadas: {', '.join(versions)}). Use una de ellas.")
        else:
            close = difflib.get_close_matches(ref.code, sorted({c for c, _ in self.registry.services}), n=1)
            hint = f" ¿Quiso decir {close[0]}?" if close else ""
            self.add(LintCode.UNKNOWN_SERVICE, step,
                     f"{role}: el servicio {ref.code} no está en el registro de esquemas.{hint} Corrija el código "
                     "o publique primero el esquema del servicio.")
        return None

    def entry_of(self, step: str | None, ref: ServiceRef, role: str) -> ServiceEntry | None:
        if self.catalog is None:
            return None
        entry = self.catalog.get(ref.code, ref.version)
        if entry is None:
            listed = sorted(e.version for e in self.catalog.entries.values() if e.code == ref.code)
            known = f" (el catálogo tiene: {', '.join(listed)})" if listed else ""
            self.add(LintCode.NOT_IN_CATALOG, step,
                     f"{role}: {ref.code} versión {ref.version} no está en el catálogo{known}; la pasarela "
                     "rechazaría el mensaje. Publique la versión en el catálogo o use una publicada.")
            return None
        active = ", ".join(sorted(e.version for e in self.catalog.entries.values()
                                  if e.code == ref.code and e.status is ServiceStatus.ACTIVE)) or "ninguna"
        if entry.status is ServiceStatus.RETIRED:
            self.add(LintCode.RETIRED, step,
                     f"{role}: {ref.code} versión {ref.version} está retirado y la pasarela lo rechaza. "
                     f"Use una versión activa ({active}).")
            return None
        if entry.status is ServiceStatus.DEPRECATED:
            self.add(LintCode.DEPRECATED, step,
                     f"{role}: {ref.code} versión {ref.version} está obsoleto. Migre a una versión activa "
                     f"({active}).", Severity.WARNING)
        return entry

    def paths(self, service: ServiceSchema) -> _Paths:
        found = self._paths.get(service.key)
        if found is None:
            found = self._paths[service.key] = _Paths(self.registry, service)
        return found

    def check_start(self) -> None:
        start = self.definition.start
        if start is None:
            return
        role = f"start ({start.service.code})"
        service = self.schema_of(None, start.service, role)
        if service is None:
            return
        entry = self.entry_of(None, start.service, role)
        if entry is not None and self.orchestrator not in entry.providers:
            self.add(LintCode.NOT_AUTHORISED, None,
                     f"{role}: el orquestador {self.orchestrator} no figura como proveedor de {start.service.code} "
                     f"{start.service.version} en el catálogo, así que no recibirá las solicitudes que inician la "
                     "cadena. Agréguelo a providers.")
        paths = self.paths(service)
        self.check_captures(None, paths, (service.request_root,), start.captures, "start.capture")
        self.check_rules(None, paths, start.reply, (service.response_root,), "start.reply")

    def check_call(self, step: str, call: CallSpec, *, compensation: bool) -> None:
        key = "compensate" if compensation else "call"
        role = f"{key} ({call.service.code})"
        service = self.schema_of(step, call.service, role)
        if service is None:
            return
        entry = self.entry_of(step, call.service, role)
        if entry is not None:
            if self.orchestrator not in entry.callers:
                self.add(LintCode.NOT_AUTHORISED, step,
                         f"{role}: el orquestador {self.orchestrator} no figura entre quienes pueden llamar "
                         f"{call.service.code} {call.service.version} en el catálogo; la pasarela rechazaría la "
                         "solicitud. Agréguelo a callers.")
            if "/" in call.to and call.to not in entry.providers:
                self.add(LintCode.WRONG_PROVIDER, step,
                         f"{role}: {call.to} no presta {call.service.code} {call.service.version} según el "
                         f"catálogo (proveedores: {', '.join(sorted(entry.providers)) or 'ninguno'}). "
                         "Corrija to.")
        paths = self.paths(service)
        self.check_rules(step, paths, call.request, (service.request_root,), f"{key}.request")
        if not compensation:
            self.check_captures(step, paths, (service.response_root,), call.reply, "reply")
        if "/" not in call.to:
            try:
                compile_expression(call.to)
            except ExpressionError as exc:
                self.add(LintCode.BAD_EXPRESSION, step,
                         f"{key}.to: {exc}. Escriba un id de entidad (CO/GOB/899999040) o una expresión que lo "
                         "dé a partir de los campos de la cadena.")

    def check_event(self, step: str, ref: ServiceRef, sender: str | None, captures: Sequence[Capture]) -> None:
        role = f"event ({ref.code})"
        service = self.schema_of(step, ref, role)
        if service is None:
            return
        entry = self.entry_of(step, ref, role)
        if entry is not None:
            if self.orchestrator not in entry.subscribers:
                self.add(LintCode.NOT_AUTHORISED, step,
                         f"{role}: el orquestador {self.orchestrator} no figura entre los suscriptores de "
                         f"{ref.code} {ref.version} en el catálogo, así que la pasarela no le entregará el evento. "
                         "Agréguelo a subscribers.")
            if sender is not None and sender not in entry.providers:
                self.add(LintCode.WRONG_PROVIDER, step,
                         f"{role}: {sender} no es proveedor de {ref.code} {ref.version} y la pasarela no aceptaría "
                         f"sus eventos (proveedores: {', '.join(sorted(entry.providers)) or 'ninguno'}). "
                         "Corrija from.")
        if not service.event_roots:
            self.add(LintCode.NOT_AN_EVENT, step,
                     f"{role}: el esquema de {ref.code} {ref.version} no declara ningún evento "
                     f"(evento{ref.code[0].upper()}{ref.code[1:]}…), así que nunca llegará uno válido. Espere "
                     "el evento de otro servicio o use call.")
            return
        self.check_captures(step, self.paths(service), service.event_roots, captures, "capture")

    def check_rules(self, step: str | None, paths: _Paths, rules: Sequence[RequestRule], roots: Sequence[str],
                    where: str) -> None:
        for rule in rules:
            problem = paths.problem(roots, rule.gel, value=rule.each is None)
            if problem is not None:
                fix = ("una regla from/value debe llegar a un elemento con valor"
                       if rule.each is None else "corrija la ruta")
                self.add(LintCode.BAD_REQUEST_PATH, step,
                         f"{where}: la ruta {rule.gel!r} no sirve en {' o '.join(roots)}: {problem}; {fix}.")

    def check_captures(self, step: str | None, paths: _Paths, roots: Sequence[str], captures: Sequence[Capture],
                       where: str) -> None:
        for item in captures:
            problem = paths.problem(roots, item.gel, value=item.kind not in _WHOLE_ELEMENT_CAPTURES)
            if problem is not None:
                self.add(LintCode.BAD_CAPTURE, step,
                         f"{where} de {item.ctx!r}: la ruta {item.gel!r} no sirve en {' o '.join(roots)}: "
                         f"{problem}. Corrija la ruta (para copiar un elemento compuesto use as: xml, xml_list "
                         "o count).")

    # -- jumps --------------------------------------------------------------------------------------------
    def targets(self, step: Step) -> Iterator[tuple[str, object]]:
        if step.next is not None:
            yield "next", step.next
        for _, target in step.choices:
            yield "choice", target
        if step.otherwise is not None:
            yield "otherwise", step.otherwise
        if step.on_fault is not None:
            yield "on_fault", step.on_fault
        if step.deadline is not None and step.deadline.then is not None:
            yield "deadline.then", step.deadline.then

    def check_targets(self) -> None:
        for step, _ in self.definition.walk():
            for key, target in self.targets(step):
                if not self.known(target):
                    close = difflib.get_close_matches(str(target), list(self.index), n=1)
                    hint = f" ¿Quiso decir {close[0]}?" if close else ""
                    self.add(LintCode.UNKNOWN_STEP, step.id,
                             f"{key}: no hay ningún paso {target!r}.{hint} Use el id de un paso de la cadena.")
                elif self.places[target].lists[0] not in self.places[step.id].lists:
                    self.add(LintCode.BAD_JUMP, step.id,
                             f"{key}: {target!r} está dentro de una rama de un paso parallel a la que {step.id!r} no "
                             "pertenece. Un salto solo puede ir a un paso de la misma lista o de una lista que la "
                             "contiene; para entrar en la rama, salte a su paso parallel.")

    # -- flow ---------------------------------------------------------------------------------------------
    def known(self, target: object) -> TypeGuard[str]:
        return isinstance(target, str) and target in self.index

    def after(self, step_id: str) -> str | None:
        """Where the flow goes when the step is done; None when that ends the main list."""
        step, place = self.index[step_id], self.places[step_id]
        if step.next is not None:
            return str(step.next)
        if place.index + 1 < len(place.siblings):
            return place.siblings[place.index + 1]
        if place.parallel is not None:
            return self.after(place.parallel)
        return None

    def successors(self, step_id: str) -> list[str | None]:
        step = self.index[step_id]
        found: list[str | None]
        if step.kind == "end":
            found = []
        elif step.kind == "choice":
            found = [target for _, target in step.choices]
            if step.otherwise is not None:
                found.append(step.otherwise)
        elif step.kind == "parallel":
            found = [branch[0].id for branch in step.branches]
            found.append(self.after(step_id))
        else:
            found = [self.after(step_id)]
            if step.on_fault is not None:
                found.append(step.on_fault)
            if step.deadline is not None and step.deadline.then is not None:
                found.append(step.deadline.then)
        return [t for t in found if t is None or self.known(t)]

    def reach(self, starts: Iterable[str | None]) -> set[str | None]:
        reached: set[str | None] = set()
        pending = list(starts)
        while pending:
            current = pending.pop()
            if current in reached:
                continue
            reached.add(current)
            if self.known(current):
                pending.extend(self.successors(current))
        return reached

    def check_flow(self) -> None:
        steps = self.definition.steps
        reached = self.reach([steps[0].id])
        self._unreachable(steps, reached)
        if None in reached:
            self.add(LintCode.NO_END, steps[-1].id,
                     f"después de {steps[-1].id!r} la cadena se acaba sin llegar a un paso end: terminará como "
                     "completada sin un resultado propio. Agregue un paso end con el resultado y el resumen.",
                     Severity.WARNING)
        for step, _ in self.definition.walk():
            if (step.call is None or step.compensate is not None
                    or step.call.service.code.startswith(EFFECT_FREE_PREFIXES)):
                continue
            later = self.reach([self.after(step.id)])
            failing = next((s.id for s, _ in self.definition.walk() if s.id in later and self._fails(s.id)), None)
            if failing is not None:
                self.add(LintCode.MISSING_COMPENSATION, step.id,
                         f"{step.call.service.code} tiene efectos y el paso {failing!r}, posterior, puede hacer "
                         "fallar la cadena; sin compensate, el efecto quedaría en firme. Agregue compensate con el "
                         "servicio que lo deshace (o on_fault en los pasos que pueden fallar).", Severity.WARNING)

    def _fails(self, step_id: str) -> bool:
        step = self.index[step_id]
        return (step.kind == "call" and step.on_fault is None) or (step.kind == "end" and step.status == "fallida")

    def _unreachable(self, steps: Sequence[Step], reached: set[str | None]) -> None:
        for step in steps:
            if step.id not in reached:
                self.add(LintCode.UNREACHABLE, step.id,
                         f"ningún camino llega al paso {step.id!r}: nada lo nombra en next, choice, otherwise, "
                         "on_fault o deadline.then y el paso anterior no continúa en él. Enlácelo o quítelo.")
                continue
            for branch in step.branches:
                self._unreachable(branch, reached)

    # -- fields -------------------------------------------------------------------------------------------
    def defined(self) -> set[str]:
        names = set(BUILT_IN_FIELDS) | set(self.definition.inputs)
        if self.definition.start is not None:
            names.update(c.ctx for c in self.definition.start.captures)
        for step, _ in self.definition.walk():
            if step.call is not None:
                names.update(c.ctx for c in step.call.reply)
            names.update(c.ctx for c in step.captures)
            names.update(name for name, _ in step.assignments)
            names.update(step.task_fields)
        return names

    def uses(self) -> Iterator[_Use]:
        start = self.definition.start
        if start is not None:
            yield from _rule_uses(None, start.reply, "start.reply")
        for step, _ in self.definition.walk():
            for key, call in (("call", step.call), ("compensate", step.compensate)):
                if call is None:
                    continue
                yield from _rule_uses(step.id, call.request, f"{key}.request")
                if "/" not in call.to:
                    try:
                        names = compile_expression(call.to).names
                    except ExpressionError:
                        names = frozenset()
                    yield from (_Use(step.id, name, f"{key}.to") for name in sorted(names))
            for condition, _ in step.choices:
                yield from (_Use(step.id, name, f"la condición {condition.source!r}")
                            for name in sorted(condition.names))
            for target, expression in step.assignments:
                yield from (_Use(step.id, name, f"set {target}") for name in sorted(expression.names))
            if step.summary:
                yield from (_Use(step.id, name, "summary", Severity.WARNING) for name in _placeholders(step.summary))

    def check_fields(self) -> None:
        defined = self.defined()
        reported: set[tuple[str | None, str]] = set()
        for use in self.uses():
            if use.name in defined or (use.step, use.name) in reported:
                continue
            reported.add((use.step, use.name))
            close = difflib.get_close_matches(use.name, sorted(defined), n=1)
            hint = f" ¿Quiso decir {close[0]}?" if close else ""
            effect = ("se mostraría tal cual, entre llaves" if use.severity is Severity.WARNING
                      else "la cadena fallaría al llegar aquí")
            self.add(LintCode.UNDEFINED_FIELD, use.step,
                     f"{use.where} usa el campo {use.name!r}, que ninguna parte de la cadena define, y {effect}."
                     f"{hint} Defínalo en inputs, captúrelo (start.capture, reply, capture), calcúlelo con set o "
                     "pídalo en los fields de una tarea.", use.severity)


def _rule_uses(step: str | None, rules: Sequence[RequestRule], where: str) -> Iterator[_Use]:
    for rule in rules:
        if rule.source is not None:
            yield from (_Use(step, name, f"{where} ({rule.gel})") for name in sorted(rule.source.names))
        if rule.each is not None:
            yield _Use(step, str(rule.each), f"{where} ({rule.gel}, each)")


def _placeholders(template: str) -> list[str]:
    try:
        parsed = list(string.Formatter().parse(template))
    except ValueError:
        return []
    names: dict[str, None] = {}
    for _, field_name, _, _ in parsed:
        if field_name:
            root = field_name.split(".", 1)[0].split("[", 1)[0]
            if root and not root.isdigit():
                names[root] = None
    return list(names)

