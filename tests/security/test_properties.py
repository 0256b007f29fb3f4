"""Properties of what stands between untrusted bytes and the platform (hypothesis).

- the hardened parser answers any bytes with a tree or its coded `GelFault`, never another exception, quickly;
- so does the whole admission chain (parse, validate, verify) for any mutation of a valid signed message;
- a header survives build → serialize → parse → read, and passes the envelope schema;
- no single-byte change of a signed message is accepted unless it leaves the canonical content unchanged;
- the legacy mapping turns any legacy value into a valid payload or a coded GEL-MAP-* fault, and money and
  date-times written by the legacy system come back exactly as they were.

Example counts are modest (the file runs in well under 30 s); `database=None` keeps runs reproducible from
the printed seed rather than from a local example database.
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import uuid
from dataclasses import replace
from decimal import Decimal
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from lxml import etree

from adapters.sdk.mapping import ServiceMapping, load_mapping
from broker.catalog import load_catalog
from broker.gateway.pipeline import Admitted, Duplicate, LogReplayGuard, Pipeline, Rejected
from broker.gelxml import FaultCode, GelFault, MessageType, SchemaRegistry, ServiceRef, check_message, load_registry
from broker.gelxml.envelope import Header, build_message, payload_of, read_header, reissue, serialize
from broker.gelxml.faults import falla
from broker.gelxml.parsing import ParseLimits, parse_untrusted
from broker.security.message_log import MessageLog
from broker.security.pki import DevPKI
from broker.security.signing import DS, Engine, sign_message
from broker.security.timestamp import TimeStampAuthority
from broker.security.verification import verify_message
from tests.conftest import ROOT, SAMPLES, SCHEMAS

QUICK = settings(max_examples=300, deadline=dt.timedelta(milliseconds=500), database=None,
                 suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
MAPPINGS = ROOT / "tests" / "data" / "mappings"
SENDER = "CO/IPS/860015536"

# -- the parser ---------------------------------------------------------------------------------
_FRAGMENTS = st.sampled_from([
    "<", ">", "</", "/>", "<a>", "</a>", "<a ", 'b="1"', "='", "&", ";", "&amp;", "&x;", "&#0;", "&#x10FFFF;",
    "<!DOCTYPE a>", "<!DOCTYPE a [<!ENTITY x 'y'>]>", "<!ENTITY", "%p;", "<![CDATA[", "]]>", "<!--", "-->",
    "<?xml version='1.0'?>", "<?pi x?>", "?>", 'xmlns="urn:a"', "xmlns:p='urn:p'", "<p:a>", "</p:a>",
    "xi:include", "http://www.w3.org/2001/XInclude", "\x00", "\ufeff", "\ud7ff", "ñ", " ", "\n", "texto",
])
_xmlish = st.lists(_FRAGMENTS, max_size=40).map("".join)


def parse_or_fault(data: bytes, limits: ParseLimits | None = None) -> etree._Element | GelFault:
    try:
        return parse_untrusted(data, limits) if limits is not None else parse_untrusted(data)
    except GelFault as fault:
        assert fault.falla.code in FaultCode and fault.falla.message
        return fault


@QUICK
@given(st.binary(max_size=4096))
def test_the_parser_answers_any_bytes_with_a_tree_or_a_coded_fault(data: bytes) -> None:
    parse_or_fault(data)


@QUICK
@given(_xmlish, st.sampled_from(["utf-8", "utf-16", "latin-1"]))
def test_the_parser_answers_any_markup_soup_with_a_tree_or_a_coded_fault(text: str, encoding: str) -> None:
    parse_or_fault(text.encode(encoding, errors="surrogatepass" if encoding == "utf-8" else "replace"),
                   ParseLimits(max_bytes=2048, max_depth=8))


@QUICK
@given(st.integers(min_value=1, max_value=400), st.integers(min_value=1, max_value=64))
def test_nesting_beyond_the_limit_is_always_too_deep(depth: int, limit: int) -> None:
    """The root is level 1: a document `limit` levels deep passes, one level more is refused."""
    outcome = parse_or_fault(b"<a>" * depth + b"</a>" * depth, ParseLimits(max_depth=limit))
    if depth > limit:
        assert isinstance(outcome, GelFault) and outcome.falla.code == FaultCode.PARSE_TOO_DEEP
    else:
        assert not isinstance(outcome, GelFault)


# -- the admission chain on mutated messages -----------------------------------------------------
@pytest.fixture(scope="module")
def language() -> SchemaRegistry:
    return load_registry(SCHEMAS)


@pytest.fixture(scope="module")
def genuine(pki: DevPKI) -> bytes:
    message = reissue(parse_untrusted((SAMPLES / "valid" / "verificarDerechos-solicitud.xml").read_bytes()))
    return sign_message(message, pki.credential(SENDER))


_mutation = st.one_of(
    st.tuples(st.just("flip"), st.integers(min_value=0), st.integers(min_value=1, max_value=255)),
    st.tuples(st.just("delete"), st.integers(min_value=0), st.integers(min_value=1, max_value=40)),
    st.tuples(st.just("insert"), st.integers(min_value=0), _FRAGMENTS),
    st.tuples(st.just("truncate"), st.integers(min_value=0), st.just(0)),
)


def mutate(data: bytes, mutation: tuple[str, int, Any]) -> bytes:
    kind, where, what = mutation
    at = where % (len(data) + 1)
    if kind == "flip":
        return data[:at] + bytes([data[at % len(data)] ^ what]) + data[at + 1:] if at < len(data) else data
    if kind == "delete":
        return data[:at] + data[at + what:]
    if kind == "insert":
        return data[:at] + what.encode("utf-8", errors="surrogatepass") + data[at:]
    return data[:at]


def admit(data: bytes, registry: SchemaRegistry, pki: DevPKI, engine: Engine = "fast") -> etree._Element:
    """What the gateway's pipeline does before the catalog: parse, validate, verify (freshness aside)."""
    message = check_message(data, registry)
    return verify_message(message.root, pki.trust_store(), window=None, engine=engine).root


@QUICK
@given(st.lists(_mutation, min_size=1, max_size=3), st.sampled_from(["fast", "signxml"]))
def test_any_mutation_of_a_signed_message_is_admitted_unchanged_or_refused_with_a_code(
        genuine: bytes, language: SchemaRegistry, pki: DevPKI, mutations: list[tuple[str, int, Any]],
        engine: Engine) -> None:
    mutated = genuine
    for mutation in mutations:
        mutated = mutate(mutated, mutation)
    try:
        admitted = admit(mutated, language, pki, engine)
    except GelFault as fault:
        assert fault.falla.code in FaultCode and fault.falla.message
        return
    assert canonical(admitted) == canonical(admit(genuine, language, pki)), "only insignificant changes pass"


@pytest.fixture(scope="module")
def pipeline(language: SchemaRegistry, pki: DevPKI, tmp_path_factory: pytest.TempPathFactory) -> Pipeline:
    log = MessageLog(f"sqlite:///{tmp_path_factory.mktemp('propiedades') / 'log.db'}")
    return Pipeline(registry=language, trust=pki.trust_store(), tsa=TimeStampAuthority(pki.tsa_credential()),
                    log=log, replay=LogReplayGuard(log), window=None,
                    catalog=load_catalog(ROOT / "deploy" / "catalog.yaml"))


_leaf_text = st.one_of(
    _FRAGMENTS.filter(lambda f: "\x00" not in f and "\ud7ff" not in f),
    st.from_regex(r"[A-Z]{2}/[A-Z]{2,8}/[0-9]{9}", fullmatch=True),
    st.sampled_from(["CO/PLAT/900000001", "CO/GOB/901037916", "CO/EPS/800251440", SENDER, "solicitud", "respuesta",
                     "evento", "acuse", "falla", "verificarDerechos", "autorizarServicio", "1.0", "9.9", "CC", "XX"]),
    st.uuids().map(str),
    st.datetimes(timezones=st.just(dt.UTC)).map(lambda d: d.isoformat()),
    st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs")), max_size=40),
)


@settings(QUICK, max_examples=200)
@given(st.data())
def test_any_content_its_sender_signs_is_admitted_or_refused_by_the_whole_pipeline_with_a_code(
        pipeline: Pipeline, pki: DevPKI, data: st.DataObject) -> None:
    """The sender signs whatever it likes (a message with leaves rewritten, elements dropped or doubled):
    validation, catalog, replay memory, time stamp and log answer with an outcome, never an exception."""
    root = reissue(parse_untrusted((SAMPLES / "valid" / "verificarDerechos-solicitud.xml").read_bytes()))
    for _ in range(data.draw(st.integers(min_value=1, max_value=4), label="changes")):
        elements = [e for e in root.iter() if isinstance(e.tag, str) and e is not root]
        if not elements:
            break
        element = data.draw(st.sampled_from(elements), label="element")
        change = data.draw(st.sampled_from(["text", "drop", "double"]), label="change")
        parent = element.getparent()
        if change == "text" or parent is None:
            element.text = data.draw(_leaf_text, label="text")
        elif change == "drop":
            parent.remove(element)
        else:
            parent.insert(parent.index(element), copy.deepcopy(element))
    outcome = pipeline.admit(sign_message(root, pki.credential(SENDER)), transport_user=SENDER)
    assert isinstance(outcome, Admitted | Duplicate | Rejected)
    if isinstance(outcome, Rejected):
        assert outcome.falla.code in FaultCode and outcome.record.fault_code == outcome.falla.code


def canonical(root: etree._Element) -> bytes:
    return etree.tostring(root, method="c14n", exclusive=True, with_comments=False)


def signed_region(data: bytes) -> range:
    """Byte offsets from the root's start tag to the end of the document (content and signature alike)."""
    return range(data.index(b"<mensaje"), len(data))


@settings(QUICK, max_examples=500)
@given(st.data())
def test_no_single_byte_change_inside_the_signed_message_is_accepted_unless_canonically_void(
        genuine: bytes, pki: DevPKI, data: st.DataObject) -> None:
    """Every byte of `mensaje` and of its ds:Signature counts: changed, either the verifier refuses it with a
    code, or the change is one canonicalisation erases (whitespace between attributes, say)."""
    region = signed_region(genuine)
    at = data.draw(st.integers(min_value=region.start, max_value=region.stop - 1), label="offset")
    value = data.draw(st.integers(min_value=0, max_value=255).filter(lambda b: b != genuine[at]), label="byte")
    mutated = genuine[:at] + bytes([value]) + genuine[at + 1:]
    try:
        verified = verify_message(mutated, pki.trust_store(), window=None)
    except GelFault as fault:
        assert fault.falla.code in FaultCode
        return
    original = verify_message(genuine, pki.trust_store(), window=None)
    assert canonical(verified.root) == canonical(original.root)
    assert verified.signer == original.signer


def test_the_byte_property_is_not_vacuous(genuine: bytes, pki: DevPKI) -> None:
    """Changing one digit of the document number is refused, and so is one character of the SignatureValue."""
    digit = genuine.index(b">79845123<") + 1
    with pytest.raises(GelFault) as caught:
        verify_message(genuine[:digit] + b"8" + genuine[digit + 1:], pki.trust_store(), window=None)
    assert caught.value.falla.code == FaultCode.AUTH_BAD_SIGNATURE
    value = genuine.index(b"SignatureValue>") + len(b"SignatureValue>") + 5
    flipped = b"A" if genuine[value:value + 1] != b"A" else b"B"
    with pytest.raises(GelFault) as caught:
        verify_message(genuine[:value] + flipped + genuine[value + 1:], pki.trust_store(), window=None)
    assert caught.value.falla.code == FaultCode.AUTH_BAD_SIGNATURE
    assert DS.encode() in genuine


# -- the envelope --------------------------------------------------------------------------------
_CATALOG_SERVICES = [ServiceRef("verificarIdentidad", "1.0"), ServiceRef("verificarDerechos", "1.0"),
                     ServiceRef("consultarSisben", "1.0"), ServiceRef("asignarSubsidio", "1.0")]
_entity = st.from_regex(r"[A-Z]{2}/[A-Z]{2,8}/[0-9]{9}", fullmatch=True)
_uuid = st.uuids().map(str)
_zone = st.integers(min_value=-14 * 60, max_value=14 * 60).map(lambda m: dt.timezone(dt.timedelta(minutes=m)))
_moment = st.datetimes(min_value=dt.datetime(1990, 1, 1), max_value=dt.datetime(2090, 12, 31),
                       timezones=_zone)
_words = st.text(alphabet=st.characters(blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="\r"),
                 max_size=300).map(str.strip)
_headers = st.builds(
    Header,
    message_id=_uuid,
    sent_at=_moment,
    sender=_entity,
    recipient=_entity,
    service=st.sampled_from(_CATALOG_SERVICES),
    message_type=st.just(MessageType.FAULT),
    correlation_id=_uuid,
    request_hash=st.none() | st.binary(min_size=32, max_size=32).map(lambda b: base64.b64encode(b).decode("ascii")),
    chain_id=st.none() | _uuid,
    radicado=st.none() | st.from_regex(r"[A-Z]{2,5}-[0-9]{4}-[0-9]{6,10}", fullmatch=True),
    user=st.none() | st.from_regex(r"(CC|CE|TI|RC|PA|NIT|NUIP)-[0-9A-Z]{3,20}", fullmatch=True),
    subject=st.none() | _words.filter(bool),
)
_FALLA = falla(FaultCode.VALID_NIT_CHECK_DIGIT, found="1", nit="899999040", expected=6).to_xml()
_RESPONSE = Header(message_id=str(uuid.uuid4()), sent_at=dt.datetime(2026, 11, 20, 7, 42, tzinfo=dt.UTC),
                   sender="CO/GOB/899999040", recipient="CO/PLAT/900000002",
                   service=ServiceRef("verificarIdentidad", "1.0"), message_type=MessageType.RESPONSE,
                   correlation_id=str(uuid.uuid4()), request_hash=base64.b64encode(bytes(32)).decode("ascii"))
_SAMPLE_RESPONSE = payload_of(parse_untrusted((SAMPLES / "valid" / "verificarIdentidad-respuesta.xml").read_bytes()))


@settings(QUICK, max_examples=200)
@given(_headers)
def test_a_header_survives_build_serialize_parse_and_passes_the_envelope_schema(
        language: SchemaRegistry, header: Header) -> None:
    data = serialize(build_message(header, _FALLA))
    assert read_header(parse_untrusted(data)) == header
    assert check_message(data, language).header == header


@settings(QUICK, max_examples=200)
@given(_headers, st.sampled_from(list(MessageType)))
def test_build_serialize_parse_keeps_the_header_whatever_the_message_type(header: Header,
                                                                          message_type: MessageType) -> None:
    header = replace(header, message_type=message_type,
                     correlation_id=header.correlation_id if message_type.is_reply else None)
    assert read_header(parse_untrusted(serialize(build_message(header, _FALLA)))) == header


@pytest.mark.parametrize("sent", ["2026-11-20T24:00:00Z", "2026-11-20T24:00:00-05:00", "2026-11-20T23:59:60Z",
                                  "10000-01-01T00:00:00Z", "-0001-12-31T00:00:00Z", "0000-01-01T00:00:00Z"])
def test_a_send_time_python_cannot_hold_is_refused_with_a_code(language: SchemaRegistry, sent: str) -> None:
    """xs:dateTime admits hour 24 and years Python's datetime cannot hold: the validator refuses them as an
    invalid value instead of letting a ValueError out of the gateway's pipeline (found by the corpus)."""
    base = serialize(build_message(replace(_RESPONSE, message_type=MessageType.FAULT), _FALLA))
    start = base.index(b"<fechaHoraEnvio>") + len(b"<fechaHoraEnvio>")
    data = base[:start] + sent.encode() + base[base.index(b"</fechaHoraEnvio>"):]
    with pytest.raises(GelFault) as caught:
        check_message(data, language)
    assert caught.value.falla.code == FaultCode.VALID_VALUE
    assert "fechaHoraEnvio" in caught.value.falla.message


# -- the legacy mapping --------------------------------------------------------------------------
@pytest.fixture(scope="module")
def fiduprevisora(language: SchemaRegistry) -> ServiceMapping:
    return load_mapping(MAPPINGS / "movilizarSubsidio-fiduprevisora.yaml", language)


@pytest.fixture(scope="module")
def entity_a(language: SchemaRegistry) -> ServiceMapping:
    return load_mapping(MAPPINGS / "verificarIdentidad-entidad-a.yaml", language)


DISBURSEMENT = {"ESTADO": "P", "REFERENCIA": "FPV-DES-2026-004512", "VALOR": "39.000.000,00", "MEDIO": "TRF",
                "BANCO": "1007", "AUTORIZACION": "ACH20261215448812", "FECHA_PAGO": "15/12/2026 09:00:07"}
PERSON = {"TipoDoc": "C.C.", "NumeroDoc": "1020304050", "Estado": "V", "Nombres": "MARÍA FERNANDA",
          "Apellidos": "GÓMEZ RUIZ", "FechaNacimiento": "12/04/1990"}


def colombian(amount: Decimal) -> str:
    """1234567.05 → '1.234.567,05', as the trust company's system writes money."""
    whole, cents = f"{amount:.2f}".split(".")
    return f"{int(whole):,}".replace(",", ".") + "," + cents


@settings(QUICK, max_examples=100)
@given(st.decimals(min_value=0, max_value=Decimal("9999999999999.99"), places=2, allow_nan=False),
       st.datetimes(min_value=dt.datetime(1900, 1, 1), max_value=dt.datetime(2199, 12, 31)))
def test_money_and_local_date_times_cross_to_gel_and_back_unchanged(fiduprevisora: ServiceMapping,
                                                                    amount: Decimal, moment: dt.datetime) -> None:
    record = {**DISBURSEMENT, "VALOR": colombian(amount), "FECHA_PAGO": moment.strftime("%d/%m/%Y %H:%M:%S")}
    payload = fiduprevisora.respuesta.to_gel(record)
    assert Decimal(payload.findtext(".//{*}valorPesos") or "") == amount
    assert fiduprevisora.respuesta.to_legacy(payload) == record


_legacy_value = st.one_of(
    st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), st.decimals(allow_nan=False),
    st.text(max_size=60), st.dates(), st.datetimes(), st.binary(max_size=20),
)


@settings(QUICK, max_examples=200)
@given(st.sampled_from(sorted(PERSON)), _legacy_value)
def test_any_legacy_value_becomes_a_valid_payload_or_a_coded_mapping_fault(
        entity_a: ServiceMapping, language: SchemaRegistry, field: str, value: Any) -> None:
    try:
        payload = entity_a.respuesta.to_gel({**PERSON, field: value})
    except GelFault as fault:
        assert str(fault.falla.code).startswith("GEL-MAP-"), fault.falla
        return
    check_message(serialize(build_message(_RESPONSE, payload)), language)


@settings(QUICK, max_examples=300)
@given(st.data())
def test_any_text_in_a_payload_becomes_a_legacy_record_or_a_coded_mapping_fault(
        entity_a: ServiceMapping, data: st.DataObject) -> None:
    payload = copy.deepcopy(_SAMPLE_RESPONSE)
    leaves = [e for e in payload.iter() if isinstance(e.tag, str) and len(e) == 0]
    leaf = data.draw(st.sampled_from(leaves), label="leaf")
    leaf.text = data.draw(_words, label="text")
    try:
        record = entity_a.respuesta.to_legacy(payload)
    except GelFault as fault:
        assert str(fault.falla.code).startswith("GEL-MAP-"), fault.falla
        return
    assert set(record) == set(entity_a.respuesta.legacy_fields)

