"""Authorisation against the service catalog: deny by default, one code per reason."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from broker.catalog import Catalog, ServiceEntry, ServiceStatus, load_catalog
from broker.gelxml import GelFault, MessageType, SchemaRegistry
from broker.gelxml.envelope import Header, read_header
from broker.gelxml.faults import FaultCode
from broker.gelxml.parsing import parse_untrusted
from tests.conftest import ROOT, SAMPLES

CATALOG = load_catalog(ROOT / "deploy" / "catalog.yaml")


def header_of(name: str) -> Header:
    return read_header(parse_untrusted((SAMPLES / "valid" / name).read_bytes()))


def no_requests(_: str) -> None:
    return None


def refused(code: FaultCode, catalog: Catalog, header: Header, lookup=no_requests) -> None:  # type: ignore[no-untyped-def]
    with pytest.raises(GelFault) as caught:
        catalog.authorise(header, routed_request=lookup)
    assert caught.value.falla.code == code, caught.value.falla
    assert caught.value.falla.stage.value == "autorizacion"


def test_every_registered_service_is_in_the_catalog(registry: SchemaRegistry) -> None:
    assert set(registry.services) == set(CATALOG.entries)


@pytest.mark.parametrize("path", sorted((SAMPLES / "valid").glob("*-solicitud.xml")), ids=lambda p: p.name)
def test_every_sample_request_is_authorised(path: Path) -> None:
    header = header_of(path.name)
    entry = CATALOG.authorise(header, routed_request=no_requests)
    assert entry is not None and header.recipient in entry.providers


def test_a_caller_not_listed_is_denied() -> None:
    header = replace(header_of("consultarSisben-solicitud.xml"), sender="CO/CCF/860007336")
    refused(FaultCode.AUTHZ_DENIED, CATALOG, header)


def test_a_request_to_an_entity_that_does_not_provide_the_service_is_refused() -> None:
    header = replace(header_of("consultarSisben-solicitud.xml"), recipient="CO/GOB/899999040")
    refused(FaultCode.AUTHZ_WRONG_PROVIDER, CATALOG, header)


def test_an_unpublished_version_is_refused() -> None:
    header = header_of("consultarSisben-solicitud.xml")
    refused(FaultCode.AUTHZ_UNKNOWN_SERVICE, CATALOG, replace(header, service=replace(header.service, version="2.0")))


def test_a_retired_version_is_refused_naming_the_active_ones() -> None:
    header = header_of("consultarSisben-solicitud.xml")
    old = ServiceEntry("consultarSisben", "0.9", ServiceStatus.RETIRED, frozenset({header.recipient}),
                       frozenset({header.sender}))
    catalog = Catalog({**CATALOG.entries, old.key: old})
    with pytest.raises(GelFault) as caught:
        catalog.authorise(replace(header, service=replace(header.service, version="0.9")), routed_request=no_requests)
    assert caught.value.falla.code == FaultCode.AUTHZ_RETIRED and "1.0" in caught.value.falla.message


def test_a_reply_must_answer_a_routed_request_between_the_same_parties() -> None:
    reply = header_of("consultarSisben-respuesta.xml")
    assert reply.message_type is MessageType.RESPONSE
    routed = {reply.correlation_id: (reply.recipient, reply.sender, MessageType.REQUEST)}
    assert CATALOG.authorise(reply, routed_request=routed.get) is None
    refused(FaultCode.AUTHZ_UNSOLICITED_REPLY, CATALOG, reply)
    stolen = replace(reply, recipient="CO/CCF/860007336")
    refused(FaultCode.AUTHZ_UNSOLICITED_REPLY, CATALOG, stolen, routed.get)
    answering_a_response = {reply.correlation_id: (reply.recipient, reply.sender, MessageType.RESPONSE)}
    refused(FaultCode.AUTHZ_UNSOLICITED_REPLY, CATALOG, reply, answering_a_response.get)


def test_a_receipt_may_acknowledge_a_response_but_a_response_may_not_answer_one() -> None:
    reply = header_of("consultarSisben-respuesta.xml")
    receipt = replace(reply, message_type=MessageType.RECEIPT)
    routed = {reply.correlation_id: (reply.recipient, reply.sender, MessageType.RESPONSE)}
    assert CATALOG.authorise(receipt, routed_request=routed.get) is None
    refused(FaultCode.AUTHZ_UNSOLICITED_REPLY, CATALOG, reply, routed.get)


def test_an_event_to_the_platform_fans_out_to_every_subscriber() -> None:
    event = header_of("asignarSubsidio-evento.xml")
    platform = event.recipient
    assert CATALOG.authorise(event, routed_request=no_requests, platform_id=platform) is not None
    assert CATALOG.recipients(event, platform_id=platform) == (
        "CO/CCF/860007336", "CO/CCF/860066942", "CO/FID/860525148", "CO/PRIV/900123451")
    assert CATALOG.recipients(replace(event, recipient="CO/FID/860525148"), platform_id=platform) == (
        "CO/FID/860525148",)
    silent = replace(event, service=replace(event.service, code="calificarPostulacion"))
    with pytest.raises(GelFault) as caught:
        CATALOG.authorise(silent, routed_request=no_requests, platform_id=platform)
    assert caught.value.falla.code == FaultCode.AUTHZ_NO_SUBSCRIBERS
    refused(FaultCode.AUTHZ_DENIED, CATALOG, event)  # without platform_id the platform is no subscriber


def test_events_go_from_a_provider_to_subscribers_only() -> None:
    base = header_of("notificarResultado-solicitud.xml")
    entry = ServiceEntry("notificarResultado", "1.0", ServiceStatus.ACTIVE, frozenset({"CO/PLAT/900000002"}),
                         frozenset(), frozenset({"CO/CCF/860007336"}))
    catalog = Catalog({entry.key: entry})
    event = replace(base, message_type=MessageType.EVENT, sender="CO/PLAT/900000002", recipient="CO/CCF/860007336")
    assert catalog.authorise(event, routed_request=no_requests) is entry
    refused(FaultCode.AUTHZ_DENIED, catalog, replace(event, recipient="CO/CCF/860066942"))
    refused(FaultCode.AUTHZ_DENIED, catalog, replace(event, sender="CO/CCF/860007336"))


def test_a_malformed_catalog_names_the_entry(tmp_path: Path) -> None:
    path = tmp_path / "catalog.yaml"
    path.write_text("services:\n  - {code: x, version: '1.0', status: vigente}\n")
    with pytest.raises(ValueError, match=r"n\.º 1"):
        load_catalog(path)
