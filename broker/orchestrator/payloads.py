"""GEL-XML payloads from a chain's context, and context values from a reply.

A step's `request` is a list of rules in schema order, each naming an element by a prefixed path
relative to the payload root (`svc:` is the called service's namespace; `per ubi doc fin ent` are the
`Comun` data elements):

    - {gel: per:identificacion/per:codTipoDocumento, from: tipoDocumento}     # an expression over the context
    - {gel: svc:codConvocatoria, value: MCY-2026-02}                         # a constant
    - {gel: doc:hashDocumento/@algoritmo, value: sha256}                     # an attribute of the last element
    - {gel: per:identificacion, each: miembros}          # copies of captured elements (`as: xml` or `xml_list`)

Intermediate elements are shared with the previous rule when it built the same ones; `new: true` starts
a fresh parent (the next item of a repeated group). An empty value, or a field the context does not have,
leaves its element out; the schema decides whether that was allowed. The built payload is validated before it is sent.

A step's `reply` captures values into the context:

    - {ctx: puntaje, gel: svc:puntaje, as: number}
    - {ctx: miembros, gel: svc:hogar/svc:miembros/svc:miembro/per:persona/per:identificacion, as: xml_list}

`as`: text (default), number, integer, boolean, xml (the element, to copy later), xml_list, texts, count.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from lxml import etree

from broker.gelxml.namespaces import COMMON_PREFIXES
from broker.gelxml.registry import SchemaRegistry
from broker.gelxml.validation import schema_fault
from broker.orchestrator.expressions import Expression, compile_expression

__all__ = ["CAPTURE_KINDS", "Capture", "PayloadError", "RequestRule", "build_payload", "capture", "read_fault"]

SERVICE_PREFIX = "svc"
CAPTURE_KINDS = ("text", "number", "integer", "boolean", "xml", "xml_list", "texts", "count")


class PayloadError(ValueError):
    """A request that cannot be built from the context, or does not satisfy its schema."""


@dataclass(frozen=True, slots=True)
class RequestRule:
    gel: str
    source: Expression | None = None
    value: Any = None
    each: str | None = None
    new: bool = False


@dataclass(frozen=True, slots=True)
class Capture:
    ctx: str
    gel: str
    kind: str = "text"


def _prefixes(namespace: str) -> dict[str, str]:
    return {**COMMON_PREFIXES, SERVICE_PREFIX: namespace}


def _clark(step: str, prefixes: Mapping[str, str]) -> str:
    prefix, _, local = step.rpartition(":")
    if prefix not in prefixes:
        raise PayloadError(f"el prefijo {prefix or '(ninguno)'!r} de {step!r} no existe "
                           f"(use {', '.join(sorted(prefixes))})")
    return f"{{{prefixes[prefix]}}}{local}"


def _text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, float):
        return f"{Decimal(str(value)):f}"
    return str(value)


def rule_from(raw: Mapping[str, Any]) -> RequestRule:
    """One `request` rule from YAML; ValueError on a malformed one."""
    unknown = set(raw) - {"gel", "from", "value", "each", "new"}
    if unknown:
        raise ValueError(f"clave desconocida {sorted(unknown)[0]!r} en la regla {dict(raw)}")
    kinds = [k for k in ("from", "value", "each") if k in raw]
    if "gel" not in raw or len(kinds) != 1:
        raise ValueError(f"la regla {dict(raw)} necesita gel y exactamente uno de from, value o each")
    return RequestRule(gel=str(raw["gel"]), source=compile_expression(raw["from"]) if "from" in raw else None,
                       value=raw.get("value"), each=raw.get("each"), new=bool(raw.get("new", False)))


def build_payload(root_tag: str, namespace: str, rules: Sequence[RequestRule], context: Mapping[str, Any],
                  registry: SchemaRegistry) -> etree._Element:
    """The request payload for `context`, validated against the service schema."""
    prefixes = _prefixes(namespace)
    root = etree.Element(root_tag, nsmap={k: v for k, v in prefixes.items()})
    for rule in rules:
        parts = rule.gel.split("/")
        attribute = parts.pop()[1:] if parts[-1].startswith("@") else None
        steps = [_clark(step, prefixes) for step in parts]
        if rule.each is not None:
            items = context.get(rule.each) or []
            if isinstance(items, str):
                items = [items]
            if not isinstance(items, list):
                raise PayloadError(f"el campo {rule.each!r} no guarda elementos para copiar")
            parent = _parent(root, steps[:-1], fresh=rule.new)
            for item in items:
                element = etree.fromstring(item.encode("utf-8") if isinstance(item, str) else item)
                if element.tag != steps[-1]:
                    raise PayloadError(f"el campo {rule.each!r} guarda {etree.QName(element).localname}, "
                                       f"no {rule.gel.split('/')[-1]}")
                parent.append(element)
            continue
        if rule.source is not None and not rule.source.names <= context.keys():
            continue  # a field the case never had (an optional element left out)
        value = rule.value if rule.source is None else rule.source(context)
        if value is None or value == "" or value == []:
            continue
        if attribute is not None:
            _parent(root, steps, fresh=False).set(attribute, _text(value))
            continue
        parent = _parent(root, steps[:-1], fresh=rule.new)
        etree.SubElement(parent, steps[-1]).text = _text(value)
    etree.cleanup_namespaces(root, top_nsmap={k: v for k, v in prefixes.items()})
    language = registry.language
    if not language.validate(root):
        entry = language.error_log[0]  # type: ignore[index]
        raise PayloadError(schema_fault(root, entry).message)
    return root


def _parent(root: etree._Element, steps: Sequence[str], *, fresh: bool) -> etree._Element:
    node = root
    for depth, tag in enumerate(steps):
        last = node[-1] if len(node) else None
        reuse = last is not None and last.tag == tag and not (fresh and depth == len(steps) - 1)
        node = last if reuse and last is not None else etree.SubElement(node, tag)
    return node


def capture_from(raw: Mapping[str, Any]) -> Capture:
    unknown = set(raw) - {"ctx", "gel", "as"}
    if unknown or "ctx" not in raw or "gel" not in raw:
        raise ValueError(f"la captura {dict(raw)} necesita ctx y gel (y opcionalmente as)")
    kind = str(raw.get("as", "text"))
    if kind not in CAPTURE_KINDS:
        raise ValueError(f"as: {kind!r} no es válido (use {', '.join(CAPTURE_KINDS)})")
    return Capture(ctx=str(raw["ctx"]), gel=str(raw["gel"]), kind=kind)


def capture(payload: etree._Element, namespace: str, captures: Sequence[Capture]) -> dict[str, Any]:
    """Context values read from a reply payload; a missing element gives None (count: 0, lists: [])."""
    prefixes = _prefixes(namespace)
    values: dict[str, Any] = {}
    for item in captures:
        path = "/".join(_clark(step, prefixes) for step in item.gel.split("/"))
        found = payload.findall(path)
        values[item.ctx] = _convert(found, item.kind)
    return values


def _convert(found: list[etree._Element], kind: str) -> Any:
    if kind == "count":
        return len(found)
    if kind == "xml_list":
        return [etree.tostring(e, encoding="unicode") for e in found]
    if kind == "texts":
        return [(e.text or "").strip() for e in found]
    if not found:
        return None
    first = found[0]
    if kind == "xml":
        return etree.tostring(first, encoding="unicode")
    text = (first.text or "").strip()
    if kind == "boolean":
        return text in ("true", "1")
    if kind in ("number", "integer"):
        try:
            number = Decimal(text)
        except InvalidOperation:
            return None
        return int(number) if kind == "integer" else float(number)
    return text


def read_fault(payload: etree._Element | None) -> tuple[str, str, bool]:
    """(code, description, retryable) of a `falla` payload."""
    if payload is None:
        return "GEL-CHAIN-EMPTY_FAULT", "falla sin contenido", False
    return ((payload.findtext("{*}codFalla") or "").strip(), (payload.findtext("{*}descripcion") or "").strip(),
            (payload.findtext("{*}reintentable") or "").strip() == "true")
