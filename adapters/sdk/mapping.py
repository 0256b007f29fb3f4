"""Declarative mapping between legacy records and GEL-XML payloads.

An adapter translates between its entity's own records (plain dicts with the legacy system's field names)
and the GEL-XML payload of one service, as declared in a YAML file:

```yaml
service: verificarIdentidad
version: "1.0"
namespaces: {vid: "http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Identidad/VerificarIdentidad/1.0"}
solicitud:            # entrada<Service> <-> the legacy lookup parameters
  - {gel: per:identificacion/per:codTipoDocumento, legacy: TipoDoc, codes: tipo_documento}
  - {gel: per:identificacion/per:numDocumento, legacy: NumeroDoc, required: true}
respuesta:            # salida<Service> <-> the legacy record
  - {gel: svc:codEstadoDocumento, nom: svc:nomEstadoDocumento, legacy: Estado, codes: estado_documento}
  - {gel: [per:nombreCompleto/per:primerApellido, per:nombreCompleto/per:segundoApellido],
     legacy: Apellidos, split: apellidos}
  - {gel: per:fechaNacimiento, legacy: FechaNacimiento, date: "%d/%m/%Y"}
  - {gel: svc:coincidenciaNombre, value: true}
codes:
  tipo_documento: {CC: "C.C.", TI: "T.I."}
  estado_documento: {VIGENTE: {legacy: "V", nom: "Vigente"}}
```

Prefixes: `per`, `ubi`, `doc`, `fin` and `ent` are the `Comun` data elements, `svc` is the mapped service's
own namespace, and `namespaces:` may add more. Paths are relative to the payload root; a last step
`@name` addresses an attribute. Every path is checked against the service schema when the file is loaded.

Rule kinds (at most one per rule; none means a plain rename):

- `codes: <table>`: GEL code <-> legacy code through a table of `codes:`; with `nom: <path>` the GEL name of
  the code is written too (and read when the code is absent). Unknown codes are `GEL-MAP-UNKNOWN_CODE`.
- `split: nombres | apellidos`: one legacy field <-> two GEL elements. Given names split into the first
  name and the rest; surnames are compound-aware (`DE LA TORRE GÓMEZ` -> `DE LA TORRE` + `GÓMEZ`). The
  reverse joins the parts with single spaces.
- `date: <strptime format>`: legacy text <-> `xs:date` (or `xs:dateTime`, read and written in Colombian
  time, UTC-05:00). `date`/`datetime` objects in a record are taken as they are.
- `number: co | plain`: `39.000.000,00` or `39000000.00` <-> `xs:decimal`, with the decimals the schema
  allows (two for money); `int`, `float` and `Decimal` values are taken as they are.
- `dane: municipio | departamento`: name (accent, case and punctuation insensitive) <-> DANE code; the
  reverse gives the official name. `nom:` may name the GEL element for the official name. A municipality
  rule whose GEL parent also holds `ubi:codDepartamento` (and no rule fills it) writes it from the code.
- `value: <constant>`: a constant written on the GEL side and never read back.

`default:` is the legacy value used when the source value is missing or empty, in both directions;
`required: true` turns a missing value into `GEL-MAP-REQUIRED` (so does a missing value for an element the
schema makes mandatory). `to_legacy` returns every mapped legacy field, `None` when the payload has no
value; converted values are text except code table entries, which keep their YAML type.

The DANE table (`adapters/sdk/data/divipola.csv`, columns
`cod_departamento;nom_departamento;cod_municipio;nom_municipio`, UTF-8) is PARTIAL: the 32 departments and
Bogotá D.C. with every department capital, the municipalities used in the schema samples and about 150
other large or well-known municipalities, of the roughly 1,100 in DIVIPOLA. A well-formed 5-digit code of
a known department is accepted as it is even when the table lacks it. To use the full table, download the
DIVIPOLA municipality list from the DANE geoportal (geoportal.dane.gov.co, "Consulta DIVIPOLA", export to
Excel/CSV), keep the four columns above in that order with their names as the header, save it as UTF-8
with `;` separators and codes as text (keep the leading zeros: `05001`), and either replace the shipped
file or point the `GEL_DIVIPOLA_CSV` environment variable at it.
"""

from __future__ import annotations

import csv
import os
import re
import unicodedata
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import date, datetime, time, timedelta, timezone
from decimal import Decimal, InvalidOperation
from functools import cache
from importlib import resources
from pathlib import Path
from typing import Any, cast

import yaml
from lxml import etree

from broker.gelxml.envelope import payload_of
from broker.gelxml.faults import FaultCode, Location, fault
from broker.gelxml.namespaces import COMMON_PREFIXES, MENSAJE, UBICACION, XSD, qname
from broker.gelxml.registry import SchemaRegistry
from broker.gelxml.validation import readable_path

__all__ = [
    "COLOMBIA",
    "GEL_SIDE",
    "SOURCE_SIDE",
    "AmbiguousMunicipality",
    "CodeTable",
    "Divipola",
    "MappingError",
    "Municipality",
    "Rule",
    "Section",
    "ServiceMapping",
    "UnknownMunicipality",
    "department_code",
    "department_name",
    "divipola",
    "join_names",
    "load_mapping",
    "mapping_from_dict",
    "municipality_code",
    "municipality_name",
    "split_given_names",
    "split_surnames",
]

COLOMBIA = timezone(timedelta(hours=-5), "COT")
SOURCE_SIDE = "sistema de origen"
GEL_SIDE = "mensaje GEL-XML"
SERVICE_PREFIX = "svc"


class MappingError(ValueError):
    """A mapping file that cannot be used (Spanish message naming the file and, when it applies, the rule)."""


# Names


_PARTICLES = frozenset({
    "de", "del", "la", "las", "los", "lo", "da", "das", "do", "dos", "di", "du", "le",
    "san", "santa", "santo", "van", "von", "der", "den", "ten", "ter",
})
_CONNECTORS = frozenset({"y"})


def _first_group(words: Sequence[str], *, connectors: bool) -> int:
    """How many leading words form the first name or surname: particles stick to the word after them."""
    i = 0
    while i < len(words) - 1 and words[i].casefold() in _PARTICLES:
        i += 1
    i += 1
    while connectors and i + 1 < len(words) and words[i].casefold() in _CONNECTORS:
        i += 1
        while i < len(words) - 1 and words[i].casefold() in _PARTICLES:
            i += 1
        i += 1
    return i


def _split(text: str, *, connectors: bool) -> tuple[str, str | None]:
    words = text.split()
    if not words:
        raise ValueError("no hay nombres ni apellidos que separar: el texto está vacío")
    n = _first_group(words, connectors=connectors)
    return " ".join(words[:n]), " ".join(words[n:]) or None


def split_surnames(text: str) -> tuple[str, str | None]:
    """First and second surname of a full surname text.

    Particles (de, del, de la, de los, la, san, santa, van, von…) belong to the surname after them and `y`
    joins two words into one surname; hyphenated surnames are one word: `DE LA TORRE GÓMEZ` ->
    (`DE LA TORRE`, `GÓMEZ`), `GÓMEZ DE LA TORRE` -> (`GÓMEZ`, `DE LA TORRE`), `PÉREZ` -> (`PÉREZ`, None).
    """
    return _split(text, connectors=True)


def split_given_names(text: str) -> tuple[str, str | None]:
    """First given name and the rest: `MARÍA FERNANDA` -> (`MARÍA`, `FERNANDA`), `JUAN` -> (`JUAN`, None)."""
    return _split(text, connectors=False)


def join_names(*parts: str | None) -> str:
    """The parts joined by single spaces, empty parts dropped."""
    return " ".join(word for part in parts if part for word in part.split())


# DANE DIVIPOLA


@dataclass(frozen=True, slots=True)
class Municipality:
    code: str
    name: str
    department_code: str
    department_name: str


class UnknownMunicipality(LookupError):
    """No municipality (or department) in the DANE table matches the name or code."""


class AmbiguousMunicipality(LookupError):
    """Several municipalities share the name; the department must be given too."""

    def __init__(self, name: str, candidates: Sequence[Municipality]) -> None:
        self.candidates = tuple(candidates)
        listed = ", ".join(f"{m.name} ({m.department_name}, {m.code})" for m in self.candidates)
        super().__init__(f"hay varios municipios llamados {name!r}: {listed}; indique también el departamento")


_QUALIFIERS = frozenset({"dc", "dt", "dtch", "dei", "deip"})
_MUNICIPALITY_ALIASES: Mapping[str, str] = {
    "santa fe de bogota": "11001",
    "bogota distrito capital": "11001",
    "cartagena": "13001",
    "mompox": "13468",
    "mompos": "13468",
    "lorica": "23417",
    "ubate": "25843",
    "villa de san diego de ubate": "25843",
    "san juan de pasto": "52001",
    "tumaco": "52835",
    "cucuta": "54001",
    "san juan de giron": "68307",
    "tolu": "70820",
    "el espinal": "73268",
    "mariquita": "73443",
    "santiago de cali": "76001",
    "buga": "76111",
    "san andres isla": "88001",
}
_DEPARTMENT_ALIASES: Mapping[str, str] = {
    "bogota": "11",
    "distrito capital": "11",
    "guajira": "44",
    "valle": "76",
    "san andres": "88",
    "san andres providencia santa catalina": "88",
    "san andres providencia": "88",
}


def _plain(text: str) -> str:
    return "".join(c for c in unicodedata.normalize("NFKD", text) if not unicodedata.combining(c)).casefold()


def _place_key(text: str) -> str:
    """A place name reduced for comparison: no accents, case or punctuation, no `D.C.`-style qualifiers."""
    words = re.findall(r"[a-z0-9]+", _plain(text))
    return " ".join(w for w in words if len(w) > 1 and w not in _QUALIFIERS)


@dataclass(frozen=True)
class Divipola:
    """The DANE political-administrative division table: municipalities and departments by code and name."""

    municipalities: Mapping[str, Municipality]
    departments: Mapping[str, str]
    _by_name: Mapping[str, tuple[str, ...]] = field(repr=False)
    _department_by_name: Mapping[str, str] = field(repr=False)

    @classmethod
    def read(cls, path: Path) -> Divipola:
        with path.open(encoding="utf-8-sig", newline="") as handle:
            rows = list(csv.DictReader(handle, delimiter=";"))
        expected = ["cod_departamento", "nom_departamento", "cod_municipio", "nom_municipio"]
        if not rows or list(rows[0].keys()) != expected:
            raise ValueError(f"la tabla DANE {path} debe tener las columnas {';'.join(expected)}")
        return cls.build(
            Municipality(
                code=row["cod_municipio"].strip().zfill(5),
                name=row["nom_municipio"].strip(),
                department_code=row["cod_departamento"].strip().zfill(2),
                department_name=row["nom_departamento"].strip(),
            )
            for row in rows
        )

    @classmethod
    def build(cls, municipalities: Iterator[Municipality] | Sequence[Municipality]) -> Divipola:
        by_code: dict[str, Municipality] = {}
        departments: dict[str, str] = {}
        by_name: dict[str, list[str]] = {}
        for m in municipalities:
            by_code[m.code] = m
            departments[m.department_code] = m.department_name
            by_name.setdefault(_place_key(m.name), []).append(m.code)
            by_name.setdefault(f"{_place_key(m.name)} {_place_key(m.department_name)}", []).append(m.code)
        for alias, code in _MUNICIPALITY_ALIASES.items():
            if code in by_code and alias not in by_name:
                by_name[alias] = [code]
        department_by_name = {_place_key(name): code for code, name in departments.items()}
        for alias, code in _DEPARTMENT_ALIASES.items():
            if code in departments:
                department_by_name.setdefault(alias, code)
        return cls(
            municipalities=by_code,
            departments=dict(sorted(departments.items())),
            _by_name={key: tuple(dict.fromkeys(codes)) for key, codes in by_name.items()},
            _department_by_name=department_by_name,
        )

    def municipality_code(self, name: str | int) -> str:
        """The 5-digit code of a municipality name (`Bogotá D.C.`, `BOGOTA`, `Rionegro, Antioquia`) or code."""
        text = str(name).strip()
        if re.fullmatch(r"[0-9]{4,5}", text):
            code = text.zfill(5)
            if code[:2] in self.departments:
                return code
            raise UnknownMunicipality(f"el código {text!r} no corresponde a un departamento de la tabla DANE")
        codes = self._by_name.get(_place_key(text), ())
        if len(codes) > 1:
            raise AmbiguousMunicipality(text, [self.municipalities[c] for c in codes])
        if not codes:
            raise UnknownMunicipality(f"el municipio {text!r} no aparece en la tabla DANE")
        return codes[0]

    def municipality_name(self, code: str | int) -> str:
        """The official DIVIPOLA name of a municipality code."""
        found = self.municipalities.get(str(code).strip().zfill(5))
        if found is None:
            raise UnknownMunicipality(f"el código de municipio {code!r} no aparece en la tabla DANE")
        return found.name

    def department_code(self, name: str | int) -> str:
        """The 2-digit code of a department name (`Cundinamarca`, `Bogotá, D.C.`) or code."""
        text = str(name).strip()
        if re.fullmatch(r"[0-9]{1,2}", text):
            code = text.zfill(2)
            if code in self.departments:
                return code
        elif (found := self._department_by_name.get(_place_key(text))) is not None:
            return found
        raise UnknownMunicipality(f"el departamento {text!r} no aparece en la tabla DANE")

    def department_name(self, code: str | int) -> str:
        found = self.departments.get(str(code).strip().zfill(2))
        if found is None:
            raise UnknownMunicipality(f"el código de departamento {code!r} no aparece en la tabla DANE")
        return found


@cache
def divipola() -> Divipola:
    """The DANE table in use: `GEL_DIVIPOLA_CSV` when set, the partial table shipped with the SDK otherwise."""
    override = os.environ.get("GEL_DIVIPOLA_CSV")
    if override:
        return Divipola.read(Path(override))
    with resources.as_file(resources.files("adapters.sdk.data") / "divipola.csv") as path:
        return Divipola.read(path)


def municipality_code(name: str | int) -> str:
    """The 5-digit DANE code of a municipality; raises UnknownMunicipality or AmbiguousMunicipality."""
    return divipola().municipality_code(name)


def municipality_name(code: str | int) -> str:
    """The official DIVIPOLA name of a 5-digit municipality code; raises UnknownMunicipality."""
    return divipola().municipality_name(code)


def department_code(name: str | int) -> str:
    return divipola().department_code(name)


def department_name(code: str | int) -> str:
    return divipola().department_name(code)


# Schema view


_XS_INTEGER = qname(XSD, "integer")


@dataclass(frozen=True, slots=True)
class _Leaf:
    """The simple type of a mapped element or attribute."""

    kind: str
    type_name: str
    fraction_digits: int | None
    enumeration: tuple[str, ...] | None
    xsd_type: Any = field(compare=False, repr=False)

    def problem(self, text: str) -> str | None:
        """Why `text` is not a valid value of the type (Spanish), or None when it is."""
        if self.xsd_type.is_valid(text):
            return None
        if self.enumeration:
            return f"debe ser uno de {', '.join(self.enumeration)}"
        patterns = getattr(getattr(self.xsd_type, "patterns", None), "regexps", None)
        if patterns:
            return f"debe cumplir el patrón {' | '.join(patterns)} del tipo {self.type_name}"
        return f"no es un valor válido del tipo {self.type_name}"


@dataclass(frozen=True, slots=True)
class _Target:
    """A resolved GEL path: element steps (Clark names) from the payload root, maybe an attribute."""

    path: str
    steps: tuple[str, ...]
    attribute: str | None
    mandatory: bool
    leaf: _Leaf

    @property
    def key(self) -> tuple[tuple[str, ...], str | None]:
        return (self.steps, self.attribute)


class _Problem(Exception):
    """A rule-level problem: a load error message, or a conversion fault code with its parameters."""

    def __init__(self, message: str = "", code: FaultCode | None = None, **params: object) -> None:
        super().__init__(message)
        self.code = code
        self.params: dict[str, Any] = params


def _walk(group: Any, optional: bool) -> Iterator[tuple[Any, bool]]:
    """Element particles of a model group in document order, each with whether it may be absent."""
    from xmlschema.validators import XsdElement, XsdGroup

    optional = optional or group.min_occurs == 0 or (group.model == "choice" and len(group) > 1)
    for particle in group:
        if isinstance(particle, XsdElement):
            yield particle, optional or particle.min_occurs == 0
        elif isinstance(particle, XsdGroup):
            yield from _walk(particle, optional)


def _children(decl: Any) -> list[tuple[Any, bool]]:
    xsd_type = decl.type
    if xsd_type.is_simple() or xsd_type.has_simple_content():
        return []
    content = getattr(xsd_type, "content", None)
    return list(_walk(content, False)) if content is not None and hasattr(content, "model") else []


def _may_be_empty(decl: Any, depth: int = 0) -> bool:
    xsd_type = decl.type
    if depth > 16 or xsd_type.is_simple() or xsd_type.has_simple_content():
        return False
    attributes = getattr(xsd_type, "attributes", {}) or {}
    if any(getattr(a, "use", None) == "required" for a in attributes.values()):
        return False
    return all(optional or _may_be_empty(child, depth + 1) for child, optional in _children(decl))


class _SchemaView:
    """The parts of a service schema a mapping needs: path resolution, leaf types, child order."""

    def __init__(self, schema: Any, root_tag: str, prefixes: Mapping[str, str], prefix_of: Mapping[str, str]) -> None:
        self.schema = schema
        self.root = schema.maps.elements[root_tag]
        self.prefixes = prefixes
        self.prefix_of = prefix_of
        self._integer = schema.maps.types[_XS_INTEGER]

    def short(self, clark: str) -> str:
        parsed = etree.QName(clark)
        prefix = self.prefix_of.get(parsed.namespace or "")
        return f"{prefix}:{parsed.localname}" if prefix else parsed.localname

    def _clark(self, step: str) -> str:
        prefix, sep, local = step.partition(":")
        if not sep or not prefix or not local:
            raise _Problem(f"el paso {step!r} debe tener la forma prefijo:nombre (p. ej. per:numDocumento)")
        namespace = self.prefixes.get(prefix)
        if namespace is None:
            known = ", ".join(sorted(self.prefixes))
            raise _Problem(f"el prefijo {prefix!r} no está declarado (prefijos conocidos: {known})")
        return qname(namespace, local)

    def decl_at(self, steps: Sequence[str]) -> Any:
        decl = self.root
        for step in steps:
            decl = next(child for child, _ in _children(decl) if child.name == step)
        return decl

    def layout(self, steps: Sequence[str]) -> dict[str, int]:
        order: dict[str, int] = {}
        for position, (child, _) in enumerate(_children(self.decl_at(steps))):
            order.setdefault(child.name, position)
        return order

    def empty_containers(self, steps: Sequence[str]) -> tuple[str, ...]:
        """Mandatory children of the element at `steps` that are valid when empty (lists with no items)."""
        return tuple(
            child.name for child, optional in _children(self.decl_at(steps))
            if not optional and _may_be_empty(child)
        )

    def resolve(self, path: str) -> _Target:
        text = path.strip()
        if not text:
            raise _Problem("la ruta gel está vacía")
        raw_steps = [s.strip() for s in text.split("/")]
        attribute: str | None = None
        if raw_steps[-1].startswith("@"):
            attribute = raw_steps.pop()[1:]
        if not raw_steps:
            raise _Problem(f"la ruta {path!r} no nombra ningún elemento")
        decl = self.root
        mandatory = True
        steps: list[str] = []
        for raw in raw_steps:
            tag = self._clark(raw)
            children = _children(decl)
            found = next(((child, optional) for child, optional in children if child.name == tag), None)
            if found is None:
                here = self.short(decl.name)
                if not children:
                    raise _Problem(f"{here} no tiene elementos hijos, así que la ruta {path!r} no existe")
                allowed = ", ".join(dict.fromkeys(self.short(c.name) for c, _ in children))
                raise _Problem(f"el elemento {raw} no existe dentro de {here} (admite: {allowed})")
            decl, optional = found
            mandatory = mandatory and not optional
            steps.append(tag)
        if attribute is not None:
            attributes = getattr(decl.type, "attributes", {}) or {}
            attr = attributes.get(attribute)
            if attr is None:
                raise _Problem(f"el elemento {self.short(decl.name)} no tiene el atributo {attribute!r}")
            return _Target(
                path=text, steps=tuple(steps), attribute=attribute,
                mandatory=mandatory and attr.use == "required", leaf=self._leaf(attr.type),
            )
        if not (decl.type.is_simple() or decl.type.has_simple_content()):
            raise _Problem(
                f"{self.short(decl.name)} es un elemento compuesto; la regla debe llegar a un elemento con valor "
                f"(uno de: {', '.join(self.short(c.name) for c, _ in _children(decl))})"
            )
        simple = decl.type if decl.type.is_simple() else decl.type.content
        return _Target(path=text, steps=tuple(steps), attribute=None, mandatory=mandatory, leaf=self._leaf(simple))

    def _leaf(self, simple: Any) -> _Leaf:
        primitive = getattr(getattr(simple, "primitive_type", None), "local_name", None) or "string"
        if primitive == "decimal":
            kind = "integer" if simple.is_derived(self._integer) else "decimal"
        elif primitive in ("date", "dateTime", "boolean"):
            kind = primitive
        else:
            kind = "text"
        facet = simple.get_facet(qname(XSD, "fractionDigits")) if hasattr(simple, "get_facet") else None
        enumeration = getattr(simple, "enumeration", None)
        return _Leaf(
            kind=kind,
            type_name=getattr(simple, "prefixed_name", None) or "anónimo",
            fraction_digits=int(facet.value) if facet is not None else None,
            enumeration=tuple(str(v) for v in enumeration) if enumeration else None,
            xsd_type=simple,
        )


# Rules


@dataclass(frozen=True, slots=True)
class CodeTable:
    """A `codes:` table: GEL code -> legacy code, and GEL code -> GEL name when the table gives names."""

    name: str
    legacy: Mapping[str, Any]
    names: Mapping[str, str]

    def gel_code(self, legacy_value: Any) -> str | None:
        wanted = _text(legacy_value)
        for code, legacy in self.legacy.items():
            if _text(legacy) == wanted:
                return code
        folded = wanted.casefold()
        return next((code for code, legacy in self.legacy.items() if _text(legacy).casefold() == folded), None)

    def code_for_name(self, name: str) -> str | None:
        folded = _plain(name.strip())
        return next((code for code, nom in self.names.items() if _plain(nom) == folded), None)


def _text(value: Any) -> str:
    """The XML text of a scalar value."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, datetime | date):
        return value.isoformat()
    if isinstance(value, Decimal):
        return f"{value:f}"
    return str(value).strip()


def _empty(value: Any) -> bool:
    return value is None or (isinstance(value, str) and not value.strip())


_CO_NUMBER = re.compile(r"-?(?:[0-9]{1,3}(?:\.[0-9]{3})+|[0-9]+)(?:,[0-9]+)?")
_PLAIN_NUMBER = re.compile(r"-?[0-9]+(?:\.[0-9]+)?")
_XS_DATE = re.compile(r"(-?[0-9]{4,}-[0-9]{2}-[0-9]{2})(?:Z|[+-][0-9]{2}:[0-9]{2})?")


@dataclass(frozen=True, slots=True)
class Rule:
    """One line of a mapping section: how a legacy field and one or more GEL elements correspond."""

    number: int
    kind: str
    gel: tuple[_Target, ...]
    legacy: str | None = None
    nom: _Target | None = None
    codes: CodeTable | None = None
    split: str | None = None
    date_format: str | None = None
    number_style: str | None = None
    dane: str | None = None
    value: str | None = None
    default: Any = None
    required: bool = False
    department: _Target | None = None

    @property
    def gel_path(self) -> str:
        return " + ".join(t.path for t in self.gel)

    @property
    def field_name(self) -> str:
        return self.legacy or self.gel_path

    @property
    def targets(self) -> tuple[_Target, ...]:
        return tuple(t for t in (*self.gel, self.nom, self.department) if t is not None)

    def gel_texts(self, value: Any) -> list[tuple[_Target, str]]:
        """The GEL texts for a non-empty legacy value. Raises _Problem with a MAP fault code."""
        first = self.gel[0]
        match self.kind:
            case "value":
                assert self.value is not None
                return [(first, self.value)]
            case "rename":
                return [(first, _text(value))]
            case "codes":
                assert self.codes is not None
                code = self.codes.gel_code(value)
                if code is None:
                    known = ", ".join(_text(v) for v in self.codes.legacy.values())
                    raise _Problem(code=FaultCode.MAP_UNKNOWN_CODE, value=value, known=known)
                pairs = [(first, code)]
                if self.nom is not None:
                    pairs.append((self.nom, self.codes.names[code]))
                return pairs
            case "split":
                parts = (split_surnames if self.split == "apellidos" else split_given_names)(join_names(_text(value)))
                return [(t, p) for t, p in zip(self.gel, parts, strict=True) if p]
            case "date":
                return [(first, self._gel_date(value))]
            case "number":
                return [(first, self._gel_number(value))]
            case "dane":
                return self._gel_dane(value)
        raise AssertionError(self.kind)

    def legacy_value(self, texts: Sequence[str | None], nom: str | None) -> Any:
        """The legacy value of the GEL texts read for `gel` (and `nom`). Raises _Problem with a MAP code."""
        text = texts[0]
        match self.kind:
            case "rename":
                return text
            case "codes":
                assert self.codes is not None
                code = text if text is not None else self.codes.code_for_name(nom or "")
                if code is None or code not in self.codes.legacy:
                    known = ", ".join(self.codes.legacy)
                    raise _Problem(code=FaultCode.MAP_UNKNOWN_CODE, value=text if text is not None else nom,
                                   known=known)
                return self.codes.legacy[code]
            case "split":
                return join_names(*texts)
            case "date":
                assert text is not None
                return self._legacy_date(text)
            case "number":
                assert text is not None
                return self._legacy_number(text)
            case "dane":
                assert text is not None or nom is not None
                return self._legacy_dane(text, nom)
        raise AssertionError(self.kind)

    def _gel_date(self, value: Any) -> str:
        assert self.date_format is not None
        if isinstance(value, datetime):
            moment = value
        elif isinstance(value, date):
            moment = datetime.combine(value, time())
        else:
            try:
                moment = datetime.strptime(_text(value), self.date_format)
            except ValueError:
                raise _Problem(code=FaultCode.MAP_BAD_DATE, value=value, format=self.date_format) from None
        if self.gel[0].leaf.kind == "date":
            return moment.date().isoformat()
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=COLOMBIA)
        return moment.isoformat()

    def _legacy_date(self, text: str) -> str:
        assert self.date_format is not None
        iso = "xs:date (AAAA-MM-DD)" if self.gel[0].leaf.kind == "date" else "xs:dateTime (ISO 8601)"
        try:
            if self.gel[0].leaf.kind == "date":
                match = _XS_DATE.fullmatch(text)
                if match is None:
                    raise ValueError(text)
                moment = datetime.combine(date.fromisoformat(match.group(1)), time())
            else:
                moment = datetime.fromisoformat(text)
                if moment.tzinfo is not None:
                    moment = moment.astimezone(COLOMBIA)
        except ValueError:
            raise _Problem(code=FaultCode.MAP_BAD_DATE, value=text, format=iso) from None
        return moment.strftime(self.date_format)

    def _places(self) -> int | None:
        leaf = self.gel[0].leaf
        if leaf.kind == "integer":
            return 0
        if leaf.fraction_digits is not None:
            return leaf.fraction_digits
        return 2 if self.number_style == "co" else None

    def _gel_number(self, value: Any) -> str:
        if isinstance(value, bool):
            raise _Problem(code=FaultCode.MAP_BAD_NUMBER, value=value)
        if isinstance(value, int | Decimal):
            number = Decimal(value)
        elif isinstance(value, float):
            number = Decimal(repr(value))
        else:
            text = _text(value)
            if self.number_style == "co":
                text = text.removeprefix("$").strip()
                if not _CO_NUMBER.fullmatch(text):
                    raise _Problem(code=FaultCode.MAP_BAD_NUMBER, value=value)
                text = text.replace(".", "").replace(",", ".")
            elif not _PLAIN_NUMBER.fullmatch(text):
                raise _Problem(code=FaultCode.MAP_BAD_NUMBER, value=value)
            number = Decimal(text)
        if not number.is_finite():
            raise _Problem(code=FaultCode.MAP_BAD_NUMBER, value=value)
        places = self._places()
        if places is None:
            return f"{number:f}"
        exact = number.quantize(Decimal(1).scaleb(-places))
        if exact != number:
            raise _Problem(
                code=FaultCode.MAP_BAD_VALUE, value=value,
                detail=f"{self.gel[0].path} admite {places} decimales" if places else
                f"{self.gel[0].path} solo admite números enteros",
            )
        return f"{exact:f}"

    def _legacy_number(self, text: str) -> str:
        try:
            number = Decimal(text)
        except InvalidOperation:
            raise _Problem(code=FaultCode.MAP_BAD_NUMBER, value=text) from None
        if not number.is_finite():
            raise _Problem(code=FaultCode.MAP_BAD_NUMBER, value=text)
        if self.number_style == "plain":
            return f"{number:f}"
        places = self._places()
        if places is None:
            places = max(0, -int(number.as_tuple().exponent))
        grouped = f"{number:,.{places}f}"
        return grouped.translate(str.maketrans(",.", ".,"))

    def _gel_dane(self, value: Any) -> list[tuple[_Target, str]]:
        table = divipola()
        first = self.gel[0]
        try:
            if self.dane == "departamento":
                code = table.department_code(value)
                pairs = [(first, code)]
                if self.nom is not None:
                    pairs.append((self.nom, table.department_name(code)))
                return pairs
            code = table.municipality_code(value)
        except AmbiguousMunicipality as exc:
            raise _Problem(code=FaultCode.MAP_BAD_VALUE, value=value, detail=str(exc)) from None
        except UnknownMunicipality as exc:
            if self.dane == "departamento":
                raise _Problem(code=FaultCode.MAP_BAD_VALUE, value=value, detail=str(exc)) from None
            raise _Problem(code=FaultCode.MAP_UNKNOWN_MUNICIPALITY, value=value) from None
        pairs = [(first, code)]
        if self.nom is not None:
            try:
                pairs.append((self.nom, table.municipality_name(code)))
            except UnknownMunicipality:
                raise _Problem(code=FaultCode.MAP_UNKNOWN_MUNICIPALITY, value=value) from None
        if self.department is not None:
            pairs.append((self.department, code[:2]))
        return pairs

    def _legacy_dane(self, text: str | None, nom: str | None) -> str:
        table = divipola()
        try:
            if self.dane == "departamento":
                return table.department_name(text if text is not None else table.department_code(nom or ""))
            return table.municipality_name(text if text is not None else table.municipality_code(nom or ""))
        except AmbiguousMunicipality as exc:
            raise _Problem(code=FaultCode.MAP_BAD_VALUE, value=nom, detail=str(exc)) from None
        except UnknownMunicipality as exc:
            if self.dane == "departamento":
                raise _Problem(code=FaultCode.MAP_BAD_VALUE, value=text or nom, detail=str(exc)) from None
            raise _Problem(code=FaultCode.MAP_UNKNOWN_MUNICIPALITY, value=text or nom) from None


# Sections


def _find(payload: etree._Element, target: _Target) -> tuple[str | None, str]:
    """The text at `target` (None when absent or empty) and the XPath where it is or would be."""
    node = payload
    for depth, tag in enumerate(target.steps):
        child = node.find(tag)
        if child is None:
            missing = "/".join(etree.QName(t).localname for t in target.steps[depth:])
            suffix = f"/@{target.attribute}" if target.attribute else ""
            return None, f"{readable_path(node)}/{missing}{suffix}"
        node = child
    raw = node.get(target.attribute) if target.attribute else node.text
    xpath = readable_path(node) + (f"/@{target.attribute}" if target.attribute else "")
    text = raw.strip() if raw is not None else ""
    return (text or None), xpath


def _put(root: etree._Element, target: _Target, text: str) -> None:
    node = root
    for tag in target.steps:
        child = node.find(tag)
        node = child if child is not None else etree.SubElement(node, tag)
    if target.attribute:
        node.set(target.attribute, text)
    else:
        node.text = text


def _fill(node: etree._Element, steps: tuple[str, ...], empties: Mapping[tuple[str, ...], tuple[str, ...]]) -> None:
    for tag in empties.get(steps, ()):
        if node.find(tag) is None:
            etree.SubElement(node, tag)
    for child in node:
        _fill(child, (*steps, child.tag), empties)


def _arrange(node: etree._Element, steps: tuple[str, ...], layout: Mapping[tuple[str, ...], Mapping[str, int]]) -> None:
    order = layout.get(steps)
    if order:
        node[:] = sorted(node, key=lambda child: order.get(child.tag, len(order)))
    for child in node:
        _arrange(child, (*steps, child.tag), layout)


_EXPECTED = re.compile(r"Expected is(?: one of)? \( (.*) \)")
_CLARK = re.compile(r"\{[^}]*\}[\w.-]+")
_ELEMENT = re.compile(r"^Element '([^']+)'")
_MISSING_ATTRIBUTE = re.compile(r"^Element '([^']+)': The attribute '([^']+)' is required but missing")


@dataclass(frozen=True, slots=True)
class Section:
    """One direction-neutral half of a mapping: the request (`solicitud`) or the response (`respuesta`)."""

    kind: str
    mapping: str
    root_tag: str
    rules: tuple[Rule, ...]
    nsmap: Mapping[str, str] = field(compare=False, hash=False, repr=False)
    layout: Mapping[tuple[str, ...], Mapping[str, int]] = field(compare=False, hash=False, repr=False)
    empties: Mapping[tuple[str, ...], tuple[str, ...]] = field(compare=False, hash=False, repr=False)
    prefix_of: Mapping[str, str] = field(compare=False, hash=False, repr=False)
    registry: SchemaRegistry = field(compare=False, hash=False, repr=False)

    @property
    def legacy_fields(self) -> tuple[str, ...]:
        """The legacy field names this section reads or writes, in rule order."""
        return tuple(dict.fromkeys(r.legacy for r in self.rules if r.legacy))

    def to_legacy(self, payload: etree._Element) -> dict[str, Any]:
        """The legacy record for a payload (or for a whole `mensaje`, whose payload is taken)."""
        if payload.tag == qname(MENSAJE, "mensaje"):
            inner = payload_of(payload)
            if inner is None:
                raise ValueError("el mensaje no tiene contenido en cuerpo")
            payload = inner
        if payload.tag != self.root_tag:
            raise ValueError(
                f"la sección {self.kind} del mapeo {self.mapping} lee {self._short(self.root_tag)}, "
                f"no {self._short(str(payload.tag))}"
            )
        record: dict[str, Any] = {}
        for rule in self.rules:
            if rule.legacy is None:
                continue
            found = [_find(payload, t) for t in rule.gel]
            texts = [text for text, _ in found]
            nom, _ = _find(payload, rule.nom) if rule.nom is not None else (None, "")
            xpath = found[0][1]
            if all(t is None for t in texts) and nom is None:
                if not _empty(rule.default):
                    record[rule.legacy] = rule.default
                    continue
                if rule.required or rule.gel[0].mandatory:
                    raise fault(
                        FaultCode.MAP_REQUIRED, location=Location(xpath=xpath),
                        field=rule.gel_path, side=GEL_SIDE, mapping=self.mapping,
                    )
                record[rule.legacy] = None
                continue
            try:
                record[rule.legacy] = rule.legacy_value(texts, nom)
            except _Problem as problem:
                assert problem.code is not None
                raise fault(
                    problem.code, location=Location(xpath=xpath),
                    field=rule.gel_path, mapping=self.mapping, **problem.params,
                ) from None
        return record

    def to_gel(self, record: Mapping[str, Any], *, validate: bool = True) -> etree._Element:
        """The payload root for a legacy record, children in schema order; checked against the schema."""
        root = etree.Element(self.root_tag, nsmap=dict(self.nsmap))
        for rule in self.rules:
            for target, text in self._gel_texts(rule, record):
                _put(root, target, text)
        _fill(root, (), self.empties)
        _arrange(root, (), self.layout)
        if validate:
            self._check(root)
        return root

    def _gel_texts(self, rule: Rule, record: Mapping[str, Any]) -> list[tuple[_Target, str]]:
        value: Any = None
        if rule.kind != "value":
            assert rule.legacy is not None
            value = record.get(rule.legacy)
            if _empty(value):
                value = rule.default
            if _empty(value):
                if rule.required or rule.gel[0].mandatory:
                    raise fault(FaultCode.MAP_REQUIRED, field=rule.legacy, side=SOURCE_SIDE, mapping=self.mapping)
                return []
        try:
            pairs = rule.gel_texts(value)
        except _Problem as problem:
            assert problem.code is not None
            raise fault(problem.code, field=rule.field_name, mapping=self.mapping, **problem.params) from None
        for target, text in pairs:
            reason = target.leaf.problem(text)
            if reason is not None:
                converted = "" if _text(value) == text else f"convertido a {text!r}, "
                raise fault(
                    FaultCode.MAP_BAD_VALUE, value=value, field=rule.field_name, mapping=self.mapping,
                    detail=f"{converted}el valor de {target.path} {reason}",
                )
        return pairs

    def _short(self, clark: str) -> str:
        parsed = etree.QName(clark)
        prefix = self.prefix_of.get(parsed.namespace or "")
        return f"{prefix}:{parsed.localname}" if prefix else parsed.localname

    def _field_for(self, tags: Sequence[str]) -> str:
        for rule in self.rules:
            for target in rule.targets:
                if target.attribute is None and target.steps[-1] in tags:
                    return rule.field_name
        return " o ".join(self._short(t) for t in tags)

    def _check(self, root: etree._Element) -> None:
        language = self.registry.language
        if language.validate(root):
            return
        entry = cast(Any, language.error_log)[0]
        message = entry.message
        expected = _EXPECTED.search(message)
        if entry.type_name == "SCHEMAV_ELEMENT_CONTENT" and expected:
            tags = _CLARK.findall(expected.group(1))
            raise fault(FaultCode.MAP_REQUIRED, field=self._field_for(tags), side=SOURCE_SIDE, mapping=self.mapping)
        missing = _MISSING_ATTRIBUTE.match(message)
        if missing:
            raise fault(
                FaultCode.MAP_REQUIRED, field=f"{self._short(missing.group(1))}/@{missing.group(2)}",
                side=SOURCE_SIDE, mapping=self.mapping,
            )
        from broker.gelxml.validation import schema_fault

        element = _ELEMENT.match(message)
        tag = element.group(1) if element else str(root.tag)
        node = next(root.iter(tag), root)
        raise fault(
            FaultCode.MAP_BAD_VALUE, value=(node.text or "").strip(), field=self._field_for([tag]),
            mapping=self.mapping, detail=schema_fault(root, entry).message.rstrip("."),
        )


@dataclass(frozen=True, slots=True)
class ServiceMapping:
    """A loaded mapping file: the service it maps and its request and response sections."""

    service: str
    version: str
    solicitud: Section
    respuesta: Section
    source: str = "<mapeo>"

    def section_for(self, payload: etree._Element) -> Section:
        """The section whose root is `payload`'s (request or response)."""
        for section in (self.solicitud, self.respuesta):
            if payload.tag == section.root_tag:
                return section
        raise ValueError(f"el mapeo {self.source} no cubre {etree.QName(payload).localname}")


# Loading


_RULE_KEYS = ("gel", "legacy", "nom", "codes", "split", "date", "number", "dane", "value", "default", "required")
_KINDS = ("codes", "split", "date", "number", "dane", "value")
_TOP_KEYS = ("service", "version", "namespaces", "solicitud", "respuesta", "codes")
_SCALARS = (str, int, float, bool, Decimal, date)


def _code_tables(raw: Any, fail: Any) -> dict[str, CodeTable]:
    if raw is None:
        return {}
    if not isinstance(raw, dict):
        fail("codes debe ser un objeto {tabla: {CODIGO_GEL: codigo_legado}}")
    tables: dict[str, CodeTable] = {}
    for name, entries in raw.items():
        if not isinstance(entries, dict) or not entries:
            fail(f"la tabla de códigos {name!r} debe ser un objeto no vacío {{CODIGO_GEL: codigo_legado}}")
        legacy: dict[str, Any] = {}
        names: dict[str, str] = {}
        for gel_code, entry in entries.items():
            code = _text(gel_code)
            if isinstance(entry, dict):
                unknown = set(entry) - {"legacy", "nom"}
                if unknown or "legacy" not in entry:
                    fail(f"en la tabla {name!r}, el código {code} debe ser un valor o un objeto {{legacy: …, nom: …}}")
                value = entry["legacy"]
                if "nom" in entry:
                    names[code] = _text(entry["nom"])
            else:
                value = entry
            if not isinstance(value, _SCALARS) or _empty(value):
                fail(f"en la tabla {name!r}, el código {code} debe tener un código legado no vacío")
            clash = next((c for c, v in legacy.items() if _text(v) == _text(value)), None)
            if clash is not None:
                fail(f"en la tabla {name!r}, {clash} y {code} tienen el mismo código legado {_text(value)!r}")
            legacy[code] = value
        tables[str(name)] = CodeTable(name=str(name), legacy=legacy, names=names)
    return tables


def _parse_rule(raw: Any, number: int, view: _SchemaView, tables: Mapping[str, CodeTable]) -> Rule:
    if not isinstance(raw, dict):
        raise _Problem("cada regla debe ser un objeto {gel: …, legacy: …}")
    unknown = [k for k in raw if k not in _RULE_KEYS]
    if unknown:
        raise _Problem(f"clave desconocida {unknown[0]!r} (claves admitidas: {', '.join(_RULE_KEYS)})")
    kinds = [k for k in _KINDS if k in raw]
    if len(kinds) > 1:
        raise _Problem(f"combina {' y '.join(kinds)}; use una sola transformación por regla")
    kind = kinds[0] if kinds else "rename"
    if "gel" not in raw:
        raise _Problem("falta la clave gel (la ruta del elemento GEL-XML)")
    paths = raw["gel"] if isinstance(raw["gel"], list) else [raw["gel"]]
    if not all(isinstance(p, str) for p in paths):
        raise _Problem("gel debe ser una ruta o, con split, una lista de dos rutas")
    if kind == "split" and len(paths) != 2:
        raise _Problem("split necesita dos rutas en gel: [primera, segunda]")
    if kind != "split" and len(paths) != 1:
        raise _Problem("solo split admite una lista de rutas en gel")
    legacy = raw.get("legacy")
    if kind == "value":
        extra = [k for k in ("legacy", "default", "required", "nom") if k in raw]
        if extra:
            raise _Problem(f"una regla value es una constante del lado GEL-XML y no admite {', '.join(extra)}")
    elif not isinstance(legacy, str) or not legacy.strip():
        raise _Problem("falta legacy (el nombre del campo en el sistema de origen)")
    if "nom" in raw and kind not in ("codes", "dane"):
        raise _Problem("nom solo se admite con codes o dane")
    required = raw.get("required", False)
    if not isinstance(required, bool):
        raise _Problem("required debe ser true o false")
    default = raw.get("default")
    if default is not None and not isinstance(default, _SCALARS):
        raise _Problem("default debe ser un valor simple (texto, número, fecha o booleano)")

    gel = tuple(view.resolve(p) for p in paths)
    nom = view.resolve(raw["nom"]) if isinstance(raw.get("nom"), str) else None
    if "nom" in raw and nom is None:
        raise _Problem("nom debe ser una ruta")
    leaf = gel[0].leaf
    options: dict[str, Any] = {}
    match kind:
        case "codes":
            table = tables.get(str(raw["codes"]))
            if table is None:
                defined = ", ".join(tables) or "ninguna"
                raise _Problem(f"la tabla de códigos {raw['codes']!r} no está definida en codes (definidas: {defined})")
            if leaf.enumeration is not None:
                foreign = [c for c in table.legacy if c not in leaf.enumeration]
                if foreign:
                    raise _Problem(
                        f"la tabla {table.name!r} tiene {', '.join(foreign)}, que {gel[0].path} no admite "
                        f"(admite: {', '.join(leaf.enumeration)})"
                    )
            if nom is not None:
                unnamed = [c for c in table.legacy if c not in table.names]
                if unnamed:
                    raise _Problem(f"la regla usa nom pero la tabla {table.name!r} no da nom para {', '.join(unnamed)}")
            options["codes"] = table
        case "split":
            if raw["split"] not in ("nombres", "apellidos"):
                raise _Problem(f"split admite nombres o apellidos, no {raw['split']!r}")
            options["split"] = raw["split"]
        case "date":
            fmt = raw["date"]
            if leaf.kind not in ("date", "dateTime"):
                raise _Problem(f"date exige un elemento de fecha, y {gel[0].path} es {leaf.type_name}")
            if not isinstance(fmt, str) or not _date_format_ok(fmt):
                raise _Problem(f"el formato de fecha {fmt!r} debe incluir día, mes y año (p. ej. \"%d/%m/%Y\")")
            options["date_format"] = fmt
        case "number":
            if raw["number"] not in ("co", "plain"):
                raise _Problem(f"number admite co o plain, no {raw['number']!r}")
            if leaf.kind not in ("decimal", "integer"):
                raise _Problem(f"number exige un elemento numérico, y {gel[0].path} es {leaf.type_name}")
            options["number_style"] = raw["number"]
        case "dane":
            if raw["dane"] not in ("municipio", "departamento"):
                raise _Problem(f"dane admite municipio o departamento, no {raw['dane']!r}")
            options["dane"] = raw["dane"]
        case "value":
            if not isinstance(raw["value"], _SCALARS):
                raise _Problem("value debe ser un valor simple (texto, número, fecha o booleano)")
            options["value"] = _text(raw["value"])
    rule = Rule(
        number=number, kind=kind, gel=gel, legacy=legacy.strip() if isinstance(legacy, str) else None, nom=nom,
        default=default, required=required, **options,
    )
    _check_constant(rule, "value" if kind == "value" else "default")
    return rule


def _date_format_ok(fmt: str) -> bool:
    sample = datetime(2001, 11, 23, 14, 35, 56)
    try:
        return datetime.strptime(sample.strftime(fmt), fmt).date() == sample.date()
    except ValueError:
        return False


def _check_constant(rule: Rule, which: str) -> None:
    """A constant (`value`) or `default` must convert to valid GEL text now, not at the first message."""
    constant = rule.value if which == "value" else rule.default
    if _empty(constant):
        return
    label = "la constante (value)" if which == "value" else "el valor por defecto (default)"
    try:
        pairs = rule.gel_texts(constant)
    except _Problem:
        raise _Problem(f"{label} {constant!r} no se puede convertir con esta regla") from None
    for target, text in pairs:
        reason = target.leaf.problem(text)
        if reason is not None:
            raise _Problem(f"{label} {constant!r} no sirve para {target.path}: {reason}")


def _with_department(rules: list[Rule], view: _SchemaView) -> list[Rule]:
    """Municipality rules fill `ubi:codDepartamento` beside `ubi:codMunicipio` when no rule does."""
    filled = {t.key for r in rules for t in r.targets}
    department_tag = qname(UBICACION, "codDepartamento")
    result: list[Rule] = []
    for rule in rules:
        parent = rule.gel[0].steps[:-1]
        if rule.kind == "dane" and rule.dane == "municipio" and department_tag in view.layout(parent):
            steps = (*parent, department_tag)
            if (steps, None) not in filled:
                path = "/".join([*(view.short(s) for s in parent), "ubi:codDepartamento"])
                rule = replace(rule, department=view.resolve(path))
                filled.add((steps, None))
        result.append(rule)
    return result


def _section(
    kind: str, raw: Any, *, root_local: str, service_ns: str, schema: Any, prefixes: Mapping[str, str],
    tables: Mapping[str, CodeTable], mapping: str, source: str, registry: SchemaRegistry,
) -> Section:
    root_tag = qname(service_ns, root_local)
    prefix_of: dict[str, str] = {}
    for prefix, uri in prefixes.items():
        if prefix != SERVICE_PREFIX:
            prefix_of.setdefault(uri, prefix)
    prefix_of.setdefault(service_ns, SERVICE_PREFIX)
    view = _SchemaView(schema, root_tag, prefixes, prefix_of)
    if raw is None:
        raw = []
    if not isinstance(raw, list):
        raise MappingError(f"Mapeo {source}: la sección {kind} debe ser una lista de reglas")
    rules: list[Rule] = []
    seen: dict[tuple[tuple[str, ...], str | None], int] = {}
    for number, raw_rule in enumerate(raw, start=1):
        try:
            rule = _parse_rule(raw_rule, number, view, tables)
        except _Problem as problem:
            raise MappingError(f"Mapeo {source}, sección {kind}, regla {number}: {problem}") from None
        for target in rule.targets:
            if target.key in seen:
                raise MappingError(
                    f"Mapeo {source}, sección {kind}, regla {number}: {target.path} ya lo llena la regla "
                    f"{seen[target.key]}"
                )
            seen[target.key] = number
        rules.append(rule)
    rules = _with_department(rules, view)
    layout: dict[tuple[str, ...], Mapping[str, int]] = {}
    empties: dict[tuple[str, ...], tuple[str, ...]] = {}
    used = {service_ns}
    pending: list[tuple[str, ...]] = [()]
    for rule in rules:
        for target in rule.targets:
            pending.extend(target.steps[:depth] for depth in range(len(target.steps)))
            used.update(etree.QName(step).namespace or "" for step in target.steps)
    while pending:
        steps = pending.pop()
        if steps in layout:
            continue
        layout[steps] = view.layout(steps)
        empties[steps] = view.empty_containers(steps)
        for tag in empties[steps]:
            pending.append((*steps, tag))
            used.add(etree.QName(tag).namespace or "")
    nsmap = {prefix_of[uri]: uri for uri in sorted(used) if uri in prefix_of}
    return Section(
        kind=kind, mapping=mapping, root_tag=root_tag, rules=tuple(rules), nsmap=nsmap, layout=layout,
        empties=empties, prefix_of=prefix_of, registry=registry,
    )


def mapping_from_dict(data: Any, registry: SchemaRegistry, *, source: str = "<mapeo>") -> ServiceMapping:
    """A mapping from already-parsed YAML data; `source` names it in errors and faults."""

    def fail(message: str) -> Any:
        raise MappingError(f"Mapeo {source}: {message}")

    if not isinstance(data, dict):
        fail("el archivo debe ser un objeto con service, version, solicitud, respuesta y codes")
    unknown = [k for k in data if k not in _TOP_KEYS]
    if unknown:
        fail(f"clave desconocida {unknown[0]!r} (claves admitidas: {', '.join(_TOP_KEYS)})")
    code, version = data.get("service"), data.get("version")
    if not isinstance(code, str) or version is None:
        fail("faltan service (código del servicio) o version (entre comillas, p. ej. \"1.0\")")
    version = str(version)
    service = registry.service(code, version)
    if service is None:
        fail(f"el servicio {code} versión {version} no está en el registro de esquemas")
    assert service is not None
    prefixes: dict[str, str] = {**COMMON_PREFIXES, SERVICE_PREFIX: service.namespace}
    extra = data.get("namespaces") or {}
    if not isinstance(extra, dict):
        fail("namespaces debe ser un objeto {prefijo: URI}")
    for prefix, uri in extra.items():
        if not isinstance(prefix, str) or not re.fullmatch(r"[A-Za-z_][\w.-]*", prefix) or not isinstance(uri, str):
            fail(f"namespaces: {prefix!r} no es un prefijo con su URI")
        if prefixes.get(prefix, uri) != uri:
            fail(f"namespaces: el prefijo {prefix!r} está reservado para {prefixes[prefix]}")
        prefixes[prefix] = uri
    if "solicitud" not in data and "respuesta" not in data:
        fail("el mapeo no tiene solicitud ni respuesta")
    tables = _code_tables(data.get("codes"), fail)
    schema = registry.decoder(service.namespace)
    name = Path(source).name
    common = {
        "service_ns": service.namespace, "schema": schema, "prefixes": prefixes, "tables": tables,
        "mapping": name, "source": source, "registry": registry,
    }
    return ServiceMapping(
        service=service.code,
        version=service.version,
        solicitud=_section("solicitud", data.get("solicitud"), root_local=service.request_root, **common),
        respuesta=_section("respuesta", data.get("respuesta"), root_local=service.response_root, **common),
        source=source,
    )


def load_mapping(path: Path | str, registry: SchemaRegistry) -> ServiceMapping:
    """Load and check a YAML mapping file; raises MappingError (a ValueError) naming the file and rule."""
    path = Path(path)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise MappingError(f"No se pudo leer el mapeo {path}: {exc.strerror or exc}") from None
    except yaml.YAMLError as exc:
        raise MappingError(f"El mapeo {path} no es YAML válido: {exc}") from None
    return mapping_from_dict(data, registry, source=str(path))


