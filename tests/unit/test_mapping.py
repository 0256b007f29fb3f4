"""The declarative mapping between legacy records and GEL-XML payloads (adapters/sdk/mapping.py)."""

from __future__ import annotations

import copy
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import given
from hypothesis import strategies as st
from lxml import etree

from adapters.sdk.mapping import (
    AmbiguousMunicipality,
    MappingError,
    ServiceMapping,
    UnknownMunicipality,
    department_code,
    divipola,
    join_names,
    load_mapping,
    mapping_from_dict,
    municipality_code,
    municipality_name,
    split_given_names,
    split_surnames,
)
from broker.gelxml import FaultCode, GelFault, SchemaRegistry, check_message, payload_of
from broker.gelxml.namespaces import DOCUMENTO, ENTIDAD, FINANCIERO, MENSAJE, PERSONAL, UBICACION, qname

ROOT = Path(__file__).resolve().parents[2]
VALID = ROOT / "schemas" / "samples" / "valid"
MAPPINGS = ROOT / "tests" / "data" / "mappings"
VID = "http://www.gobiernoenlinea.gov.co/GEL-XML/1.0/schemas/Identidad/VerificarIdentidad/1.0"

PERSON_A = {
    "TipoDoc": "C.C.",
    "NumeroDoc": "1020304050",
    "Estado": "V",
    "Nombres": "MARÍA FERNANDA",
    "Apellidos": "GÓMEZ RUIZ",
    "FechaNacimiento": "12/04/1990",
}
PERSON_B = {
    "tipo_id": 1,
    "numero_id": "1020304050",
    "estado": 1,
    "Nombres": "MARÍA FERNANDA",
    "PrimerApellido": "GÓMEZ",
    "SegundoApellido": "RUIZ",
    "nacimiento": "19900412",
}
DISBURSEMENT = {
    "ESTADO": "P",
    "REFERENCIA": "FPV-DES-2026-004512",
    "VALOR": "39.000.000,00",
    "MEDIO": "TRF",
    "BANCO": "1007",
    "AUTORIZACION": "ACH20261215448812",
    "FECHA_PAGO": "15/12/2026 09:00:07",
}


def sample(name: str) -> etree._Element:
    return etree.parse(str(VALID / name)).getroot()


def sample_payload(name: str) -> etree._Element:
    payload = payload_of(sample(name))
    assert payload is not None
    return payload


def c14n(element: etree._Element) -> str:
    """Canonical form independent of prefix names, inherited declarations and indentation."""
    return etree.canonicalize(etree.tostring(element).decode(), rewrite_prefixes=True, strip_text=True)


def message_with(sample_name: str, payload: etree._Element) -> bytes:
    """The sample message with its payload replaced, as bytes ready for the platform's validator."""
    root = sample(sample_name)
    old = payload_of(root)
    assert old is not None
    root.find(qname(MENSAJE, "cuerpo")).replace(old, copy.deepcopy(payload))  # type: ignore[union-attr]
    return etree.tostring(root, xml_declaration=True, encoding="UTF-8")


def gel_fault(excinfo: pytest.ExceptionInfo[GelFault]) -> tuple[str, str]:
    return str(excinfo.value.falla.code), excinfo.value.falla.message


@pytest.fixture(scope="module")
def entity_a(registry: SchemaRegistry) -> ServiceMapping:
    return load_mapping(MAPPINGS / "verificarIdentidad-entidad-a.yaml", registry)


@pytest.fixture(scope="module")
def entity_b(registry: SchemaRegistry) -> ServiceMapping:
    return load_mapping(MAPPINGS / "verificarIdentidad-entidad-b.yaml", registry)


@pytest.fixture(scope="module")
def fiduprevisora(registry: SchemaRegistry) -> ServiceMapping:
    return load_mapping(MAPPINGS / "movilizarSubsidio-fiduprevisora.yaml", registry)


@pytest.fixture(scope="module")
def adres(registry: SchemaRegistry) -> ServiceMapping:
    return load_mapping(MAPPINGS / "verificarDerechos-adres.yaml", registry)


def a_mapping(registry: SchemaRegistry, **changes: Any) -> ServiceMapping:
    """Entity A's mapping with top-level keys replaced, loaded from a dict."""
    data = yaml.safe_load((MAPPINGS / "verificarIdentidad-entidad-a.yaml").read_text(encoding="utf-8"))
    data.update(changes)
    return mapping_from_dict(data, registry, source="prueba.yaml")


# Two legacy styles, one GEL-XML payload


def test_both_styles_build_the_same_payload_as_the_sample(
    entity_a: ServiceMapping, entity_b: ServiceMapping, registry: SchemaRegistry
) -> None:
    from_a = entity_a.respuesta.to_gel(PERSON_A)
    from_b = entity_b.respuesta.to_gel(PERSON_B)
    expected = sample_payload("verificarIdentidad-respuesta.xml")
    assert c14n(from_a) == c14n(from_b) == c14n(expected)
    for payload in (from_a, from_b):
        validated = check_message(message_with("verificarIdentidad-respuesta.xml", payload), registry)
        assert validated.payload.findtext(f"{{{PERSONAL}}}nombreCompleto/{{{PERSONAL}}}primerApellido") == "GÓMEZ"


def test_both_styles_read_the_sample_back(entity_a: ServiceMapping, entity_b: ServiceMapping) -> None:
    payload = sample_payload("verificarIdentidad-respuesta.xml")
    assert entity_a.respuesta.to_legacy(payload) == PERSON_A
    assert entity_b.respuesta.to_legacy(payload) == PERSON_B


def test_both_styles_build_a_valid_request(
    entity_a: ServiceMapping, entity_b: ServiceMapping, registry: SchemaRegistry
) -> None:
    from_a = entity_a.solicitud.to_gel(
        {"TipoDoc": "C.C.", "NumeroDoc": "1020304050", "Nombres": "MARÍA FERNANDA", "Apellidos": "GÓMEZ RUIZ",
         "FechaExpedicion": "20/05/2008"}
    )
    from_b = entity_b.solicitud.to_gel(
        {"tipo_id": "1", "numero_id": "1020304050", "Nombres": "MARÍA FERNANDA", "PrimerApellido": "GÓMEZ",
         "SegundoApellido": "RUIZ"}
    )
    assert c14n(from_a) == c14n(sample_payload("verificarIdentidad-solicitud.xml"))
    check_message(message_with("verificarIdentidad-solicitud.xml", from_a), registry)
    check_message(message_with("verificarIdentidad-solicitud.xml", from_b), registry)
    assert entity_b.solicitud.to_legacy(from_a) == {
        "tipo_id": 1, "numero_id": "1020304050", "Nombres": "MARÍA FERNANDA", "PrimerApellido": "GÓMEZ",
        "SegundoApellido": "RUIZ",
    }


def test_compound_surnames_cross_between_the_styles(entity_a: ServiceMapping, entity_b: ServiceMapping) -> None:
    record_a = {**PERSON_A, "Apellidos": "DE LA TORRE GÓMEZ"}
    payload = entity_a.respuesta.to_gel(record_a)
    names = payload.find(f"{{{PERSONAL}}}nombreCompleto")
    assert names is not None
    assert names.findtext(f"{{{PERSONAL}}}primerApellido") == "DE LA TORRE"
    assert names.findtext(f"{{{PERSONAL}}}segundoApellido") == "GÓMEZ"
    assert entity_a.respuesta.to_legacy(payload) == record_a
    as_b = entity_b.respuesta.to_legacy(payload)
    assert (as_b["PrimerApellido"], as_b["SegundoApellido"]) == ("DE LA TORRE", "GÓMEZ")
    assert c14n(entity_b.respuesta.to_gel(as_b)) == c14n(payload)


def test_a_single_surname_leaves_out_the_second(entity_a: ServiceMapping, entity_b: ServiceMapping) -> None:
    payload = entity_a.respuesta.to_gel({**PERSON_A, "Apellidos": "PÉREZ", "Nombres": "JUAN"})
    names = payload.find(f"{{{PERSONAL}}}nombreCompleto")
    assert names is not None
    assert [etree.QName(c).localname for c in names] == ["primerNombre", "primerApellido"]
    assert entity_b.respuesta.to_legacy(payload)["SegundoApellido"] is None
    assert entity_a.respuesta.to_legacy(payload)["Apellidos"] == "PÉREZ"


# Names


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("DE LA TORRE GÓMEZ", ("DE LA TORRE", "GÓMEZ")),
        ("GÓMEZ DE LA TORRE", ("GÓMEZ", "DE LA TORRE")),
        ("DEL CASTILLO RUIZ", ("DEL CASTILLO", "RUIZ")),
        ("RUIZ DEL CASTILLO", ("RUIZ", "DEL CASTILLO")),
        ("DE LOS RÍOS PÉREZ", ("DE LOS RÍOS", "PÉREZ")),
        ("PÉREZ DE LOS RÍOS", ("PÉREZ", "DE LOS RÍOS")),
        ("DE LAS CASAS MEJÍA", ("DE LAS CASAS", "MEJÍA")),
        ("SAN MIGUEL ORTIZ", ("SAN MIGUEL", "ORTIZ")),
        ("ORTIZ SAN MIGUEL", ("ORTIZ", "SAN MIGUEL")),
        ("SANTA MARÍA LÓPEZ", ("SANTA MARÍA", "LÓPEZ")),
        ("VAN DER BERG SALAZAR", ("VAN DER BERG", "SALAZAR")),
        ("PÉREZ-ACOSTA GÓMEZ", ("PÉREZ-ACOSTA", "GÓMEZ")),
        ("GÓMEZ PÉREZ-ACOSTA", ("GÓMEZ", "PÉREZ-ACOSTA")),
        ("ORTEGA Y GASSET LÓPEZ", ("ORTEGA Y GASSET", "LÓPEZ")),
        ("PÉREZ", ("PÉREZ", None)),
        ("DE LA TORRE", ("DE LA TORRE", None)),
        ("  de la   Torre   gómez ", ("de la Torre", "gómez")),
    ],
)
def test_split_surnames(text: str, expected: tuple[str, str | None]) -> None:
    assert split_surnames(text) == expected


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("MARÍA FERNANDA", ("MARÍA", "FERNANDA")),
        ("JUAN", ("JUAN", None)),
        ("JUAN DE DIOS", ("JUAN", "DE DIOS")),
        ("MARÍA DEL PILAR", ("MARÍA", "DEL PILAR")),
        ("ANA MARÍA JOSÉ", ("ANA", "MARÍA JOSÉ")),
    ],
)
def test_split_given_names(text: str, expected: tuple[str, str | None]) -> None:
    assert split_given_names(text) == expected


def test_split_of_nothing_is_an_error() -> None:
    with pytest.raises(ValueError):
        split_surnames("   ")


_PARTICLE_RUNS = [[], [], ["DE"], ["DEL"], ["DE", "LA"], ["DE", "LAS"], ["DE", "LOS"], ["LA"], ["SAN"], ["SANTA"],
                  ["VAN"], ["VAN", "DER"], ["VON"]]
_NOT_WORDS = {"DE", "DEL", "LA", "LAS", "LOS", "LO", "DA", "DAS", "DO", "DOS", "DI", "DU", "LE", "SAN", "SANTA",
              "SANTO", "VAN", "VON", "DER", "DEN", "TEN", "TER", "Y"}
_words = st.one_of(
    st.sampled_from(["GÓMEZ", "RUIZ", "TORRE", "CASTILLO", "RÍOS", "MIGUEL", "PÉREZ-ACOSTA", "MUÑOZ", "D'ALEMAN"]),
    st.text(alphabet="ABCDEFGHIJKLMNÑOPQRSTUVWXYZÁÉÍÓÚÜ", min_size=1, max_size=12),
).filter(lambda w: w not in _NOT_WORDS)
_surnames = st.builds(lambda run, word: " ".join([*run, word]), st.sampled_from(_PARTICLE_RUNS), _words)


@given(first=_surnames, second=st.one_of(st.none(), _surnames))
def test_surnames_split_and_join_back(first: str, second: str | None) -> None:
    text = join_names(first, second)
    assert split_surnames(text) == (first, second)
    assert join_names(*split_surnames(text)) == text


# Round trips


@pytest.mark.parametrize(
    ("mapping_file", "sample_name"),
    [
        ("verificarIdentidad-entidad-a.yaml", "verificarIdentidad-respuesta.xml"),
        ("verificarIdentidad-entidad-b.yaml", "verificarIdentidad-respuesta.xml"),
        ("movilizarSubsidio-fiduprevisora.yaml", "movilizarSubsidio-respuesta.xml"),
        ("verificarDerechos-adres.yaml", "verificarDerechos-respuesta.xml"),
    ],
)
def test_sample_payload_to_legacy_and_back_is_the_sample(
    mapping_file: str, sample_name: str, registry: SchemaRegistry
) -> None:
    mapping = load_mapping(MAPPINGS / mapping_file, registry)
    payload = sample_payload(sample_name)
    rebuilt = mapping.respuesta.to_gel(mapping.respuesta.to_legacy(payload))
    assert c14n(rebuilt) == c14n(payload)
    check_message(message_with(sample_name, rebuilt), registry)


def test_money_and_local_time_read_from_the_sample(fiduprevisora: ServiceMapping) -> None:
    assert fiduprevisora.respuesta.to_legacy(sample_payload("movilizarSubsidio-respuesta.xml")) == DISBURSEMENT


def test_legacy_to_gel_and_back_is_the_record(
    entity_a: ServiceMapping, fiduprevisora: ServiceMapping, adres: ServiceMapping
) -> None:
    record = {**PERSON_A, "Apellidos": "SAN MIGUEL DE LOS RÍOS", "Nombres": "JUAN DE DIOS", "Estado": "S"}
    assert entity_a.respuesta.to_legacy(entity_a.respuesta.to_gel(record)) == record
    payment = {**DISBURSEMENT, "VALOR": "1.234.567,05", "FECHA_PAGO": "01/02/2027 23:59:00", "ESTADO": "E"}
    assert fiduprevisora.respuesta.to_legacy(fiduprevisora.respuesta.to_gel(payment)) == payment
    affiliation = adres.respuesta.to_legacy(sample_payload("verificarDerechos-respuesta.xml"))
    moved = {**affiliation, "MUNICIPIO": "SOACHA", "APELLIDOS": "DE LA TORRE", "REGIMEN": "S", "AFILIADO": "N"}
    assert adres.respuesta.to_legacy(adres.respuesta.to_gel(moved)) == moved


def test_money_is_written_with_the_schema_decimals(fiduprevisora: ServiceMapping, registry: SchemaRegistry) -> None:
    pago = f"{{{FINANCIERO}}}pago/{{{FINANCIERO}}}valorPesos"
    for legacy, gel in [("39.000.000,00", "39000000.00"), ("39.000.000", "39000000.00"), ("$ 1.500,5", "1500.50"),
                        ("950", "950.00"), (39000000, "39000000.00"), ("0,07", "0.07")]:
        payload = fiduprevisora.respuesta.to_gel({**DISBURSEMENT, "VALOR": legacy})
        assert payload.findtext(pago) == gel, legacy
    check_message(message_with("movilizarSubsidio-respuesta.xml", payload), registry)


def test_municipality_by_name_writes_code_and_official_name(adres: ServiceMapping) -> None:
    record = adres.respuesta.to_legacy(sample_payload("verificarDerechos-respuesta.xml"))
    for name in ("Bogotá D.C.", "BOGOTA", "Bogotá, D.C.", "bogota dc"):
        payload = adres.respuesta.to_gel({**record, "MUNICIPIO": name})
        assert payload.findtext(f"{{{UBICACION}}}codMunicipio") == "11001"
        assert payload.findtext(f"{{{UBICACION}}}nomMunicipio") == "BOGOTÁ, D.C."
    payload = adres.respuesta.to_gel({**record, "MUNICIPIO": "soacha"})
    assert payload.findtext(f"{{{UBICACION}}}codMunicipio") == "25754"
    assert adres.respuesta.to_legacy(payload)["MUNICIPIO"] == "SOACHA"


def test_municipality_fills_the_department_beside_it(registry: SchemaRegistry) -> None:
    mapping = load_mapping(MAPPINGS / "radicarPostulacion-ubicacion.yaml", registry)
    payload = mapping.solicitud.to_gel({"MunicipioDeseado": "Soacha"}, validate=False)
    desired = sample_payload("radicarPostulacion-solicitud.xml").find(
        "{*}hogar/{*}ubicacionDeseada"
    )
    built = payload.find("{*}hogar/{*}ubicacionDeseada")
    assert built is not None and desired is not None
    assert c14n(built) == c14n(desired)
    assert payload.findtext("{*}hogar/{*}ahorroPrevio") == "0.00"


def test_children_follow_the_schema_order_whatever_the_rule_order(
    entity_a: ServiceMapping, registry: SchemaRegistry
) -> None:
    data = yaml.safe_load((MAPPINGS / "verificarIdentidad-entidad-a.yaml").read_text(encoding="utf-8"))
    data["respuesta"] = list(reversed(data["respuesta"]))
    reversed_mapping = mapping_from_dict(data, registry, source="al-reves.yaml")
    assert c14n(reversed_mapping.respuesta.to_gel(PERSON_A)) == c14n(entity_a.respuesta.to_gel(PERSON_A))


def test_accepts_a_whole_message_and_python_values(entity_a: ServiceMapping, fiduprevisora: ServiceMapping) -> None:
    from datetime import date, datetime
    from decimal import Decimal

    message = sample("verificarIdentidad-respuesta.xml")
    assert entity_a.respuesta.to_legacy(message) == PERSON_A
    payload = entity_a.respuesta.to_gel({**PERSON_A, "FechaNacimiento": date(1990, 4, 12)})
    assert payload.findtext(f"{{{PERSONAL}}}fechaNacimiento") == "1990-04-12"
    paid = fiduprevisora.respuesta.to_gel(
        {**DISBURSEMENT, "VALOR": Decimal("39000000"), "FECHA_PAGO": datetime(2026, 12, 15, 9, 0, 7)}
    )
    assert paid.findtext(f"{{{FINANCIERO}}}pago/{{{FINANCIERO}}}valorPesos") == "39000000.00"
    assert paid.findtext(f"{{{FINANCIERO}}}pago/{{{FINANCIERO}}}fechaHoraPago") == "2026-12-15T09:00:07-05:00"


def test_wrong_payload_root_is_refused(entity_a: ServiceMapping) -> None:
    with pytest.raises(ValueError, match="salidaVerificarIdentidad"):
        entity_a.respuesta.to_legacy(sample_payload("verificarIdentidad-solicitud.xml"))


# Faults


def test_required_missing_in_the_legacy_record(entity_a: ServiceMapping) -> None:
    with pytest.raises(GelFault) as excinfo:
        entity_a.solicitud.to_gel({"TipoDoc": "C.C.", "NumeroDoc": "  ", "Nombres": "ANA", "Apellidos": "RUIZ"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_REQUIRED
    assert "NumeroDoc" in message and "sistema de origen" in message
    assert "verificarIdentidad-entidad-a.yaml" in message


def test_schema_mandatory_element_is_required_without_the_flag(entity_a: ServiceMapping) -> None:
    with pytest.raises(GelFault) as excinfo:
        entity_a.respuesta.to_gel({k: v for k, v in PERSON_A.items() if k != "Estado"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_REQUIRED and "Estado" in message


def test_required_missing_in_the_gel_payload(entity_a: ServiceMapping) -> None:
    payload = sample_payload("verificarIdentidad-solicitud.xml")
    number = payload.find(f"{{{PERSONAL}}}identificacion/{{{PERSONAL}}}numDocumento")
    assert number is not None
    number.getparent().remove(number)  # type: ignore[union-attr]
    with pytest.raises(GelFault) as excinfo:
        entity_a.solicitud.to_legacy(payload)
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_REQUIRED
    assert "per:identificacion/per:numDocumento" in message and "mensaje GEL-XML" in message
    location = excinfo.value.falla.location
    assert location is not None and location.xpath is not None
    assert location.xpath.endswith("entradaVerificarIdentidad/identificacion/numDocumento")


def test_mandatory_element_inside_a_mandatory_parent_names_the_legacy_field(entity_b: ServiceMapping) -> None:
    with pytest.raises(GelFault) as excinfo:
        entity_b.solicitud.to_gel({"tipo_id": 1, "numero_id": "1020304050"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_REQUIRED and "Nombres" in message


def test_unmapped_mandatory_element_is_named(registry: SchemaRegistry) -> None:
    lookup_only = a_mapping(registry, solicitud=[
        {"gel": "per:identificacion/per:codTipoDocumento", "legacy": "TipoDoc", "codes": "tipo_documento"},
        {"gel": "per:identificacion/per:numDocumento", "legacy": "NumeroDoc", "required": True},
    ])
    assert lookup_only.solicitud.to_legacy(sample_payload("verificarIdentidad-solicitud.xml")) == {
        "TipoDoc": "C.C.", "NumeroDoc": "1020304050",
    }
    with pytest.raises(GelFault) as excinfo:
        lookup_only.solicitud.to_gel({"TipoDoc": "C.C.", "NumeroDoc": "1020304050"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_REQUIRED and "per:nombreCompleto" in message and "prueba.yaml" in message
    unchecked = lookup_only.solicitud.to_gel({"TipoDoc": "C.C.", "NumeroDoc": "1020304050"}, validate=False)
    assert [etree.QName(c).localname for c in unchecked] == ["identificacion"]


def test_unknown_legacy_code(entity_a: ServiceMapping) -> None:
    with pytest.raises(GelFault) as excinfo:
        entity_a.respuesta.to_gel({**PERSON_A, "TipoDoc": "C.X."})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_UNKNOWN_CODE
    assert "'C.X.'" in message and "TipoDoc" in message and "C.C., C.E., T.I." in message


def test_unknown_gel_code(entity_b: ServiceMapping) -> None:
    payload = sample_payload("verificarIdentidad-respuesta.xml")
    kind = payload.find(f"{{{PERSONAL}}}identificacion/{{{PERSONAL}}}codTipoDocumento")
    assert kind is not None
    kind.text = "NUIP"
    with pytest.raises(GelFault) as excinfo:
        entity_b.respuesta.to_legacy(payload)
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_UNKNOWN_CODE
    assert "'NUIP'" in message and "per:identificacion/per:codTipoDocumento" in message and "CC, CE, TI" in message


def test_bad_legacy_date(entity_a: ServiceMapping) -> None:
    with pytest.raises(GelFault) as excinfo:
        entity_a.respuesta.to_gel({**PERSON_A, "FechaNacimiento": "31/02/1990"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_BAD_DATE
    assert "'31/02/1990'" in message and "FechaNacimiento" in message and "%d/%m/%Y" in message


def test_bad_gel_date(entity_a: ServiceMapping) -> None:
    payload = sample_payload("verificarIdentidad-respuesta.xml")
    born = payload.find(f"{{{PERSONAL}}}fechaNacimiento")
    assert born is not None
    born.text = "12/04/1990"
    with pytest.raises(GelFault) as excinfo:
        entity_a.respuesta.to_legacy(payload)
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_BAD_DATE and "per:fechaNacimiento" in message


@pytest.mark.parametrize("value", ["39,000,000.00", "treinta", "39.00.000", "1.5e3", True])
def test_bad_number(fiduprevisora: ServiceMapping, value: object) -> None:
    with pytest.raises(GelFault) as excinfo:
        fiduprevisora.respuesta.to_gel({**DISBURSEMENT, "VALOR": value})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_BAD_NUMBER and "VALOR" in message


def test_too_many_decimals_for_money(fiduprevisora: ServiceMapping) -> None:
    with pytest.raises(GelFault) as excinfo:
        fiduprevisora.respuesta.to_gel({**DISBURSEMENT, "VALOR": "1.000,005"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_BAD_VALUE and "VALOR" in message and "2 decimales" in message


def test_unknown_municipality(adres: ServiceMapping) -> None:
    record = adres.respuesta.to_legacy(sample_payload("verificarDerechos-respuesta.xml"))
    with pytest.raises(GelFault) as excinfo:
        adres.respuesta.to_gel({**record, "MUNICIPIO": "Macondo"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_UNKNOWN_MUNICIPALITY and "'Macondo'" in message and "MUNICIPIO" in message


def test_ambiguous_municipality_asks_for_the_department(adres: ServiceMapping) -> None:
    record = adres.respuesta.to_legacy(sample_payload("verificarDerechos-respuesta.xml"))
    with pytest.raises(GelFault) as excinfo:
        adres.respuesta.to_gel({**record, "MUNICIPIO": "Rionegro"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_BAD_VALUE and "departamento" in message and "05615" in message
    payload = adres.respuesta.to_gel({**record, "MUNICIPIO": "Rionegro (Santander)"})
    assert payload.findtext(f"{{{UBICACION}}}codMunicipio") == "68615"


def test_value_breaking_the_schema_pattern(entity_a: ServiceMapping) -> None:
    with pytest.raises(GelFault) as excinfo:
        entity_a.respuesta.to_gel({**PERSON_A, "Nombres": "María Fernanda"})
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_BAD_VALUE
    assert "Nombres" in message and "per:nombreCompleto/per:primerNombre" in message and "patrón" in message


def test_unknown_municipality_code_in_the_payload(adres: ServiceMapping) -> None:
    payload = sample_payload("verificarDerechos-respuesta.xml")
    town = payload.find(f"{{{UBICACION}}}codMunicipio")
    assert town is not None
    town.text = "99999"
    with pytest.raises(GelFault) as excinfo:
        adres.respuesta.to_legacy(payload)
    code, message = gel_fault(excinfo)
    assert code == FaultCode.MAP_UNKNOWN_MUNICIPALITY and "'99999'" in message and "ubi:codMunicipio" in message


# default, required, value


def test_default_fills_a_missing_legacy_value(entity_b: ServiceMapping) -> None:
    record = {k: v for k, v in PERSON_B.items() if k != "estado"}
    payload = entity_b.respuesta.to_gel({**record, "estado": ""})
    assert payload.findtext(f"{{{VID}}}codEstadoDocumento") == "VIGENTE"
    assert payload.findtext(f"{{{VID}}}nomEstadoDocumento") == "Vigente"


def test_default_fills_a_missing_gel_value(registry: SchemaRegistry) -> None:
    mapping = load_mapping(MAPPINGS / "radicarPostulacion-ubicacion.yaml", registry)
    payload = sample_payload("radicarPostulacion-solicitud.xml")
    saving = payload.find("{*}hogar/{*}ahorroPrevio")
    assert saving is not None
    assert mapping.solicitud.to_legacy(payload) == {"MunicipioDeseado": "SOACHA", "Ahorro": "8.500.000,00"}
    saving.getparent().remove(saving)  # type: ignore[union-attr]
    assert mapping.solicitud.to_legacy(payload)["Ahorro"] == "0"


def test_optional_missing_values_are_none_and_leave_no_element(entity_a: ServiceMapping) -> None:
    record = {k: v for k, v in PERSON_A.items() if k not in ("FechaNacimiento", "Nombres", "Apellidos")}
    payload = entity_a.respuesta.to_gel(record)
    assert payload.find(f"{{{PERSONAL}}}fechaNacimiento") is None
    assert payload.find(f"{{{PERSONAL}}}nombreCompleto") is None
    assert entity_a.respuesta.to_legacy(payload) == {**record, "FechaNacimiento": None, "Nombres": None,
                                                      "Apellidos": None}


def test_value_is_a_gel_constant(entity_a: ServiceMapping) -> None:
    payload = entity_a.respuesta.to_gel({**PERSON_A, "coincidenciaNombre": "false"})
    assert payload.findtext(f"{{{VID}}}coincidenciaNombre") == "true"
    payload.find(f"{{{VID}}}coincidenciaNombre").text = "false"  # type: ignore[union-attr]
    assert "coincidenciaNombre" not in entity_a.respuesta.to_legacy(payload)
    assert entity_a.respuesta.legacy_fields == tuple(PERSON_A)


# DANE


@pytest.mark.parametrize(
    ("name", "code"),
    [
        ("Bogotá D.C.", "11001"), ("BOGOTA", "11001"), ("Bogotá, D.C.", "11001"), ("bogota", "11001"),
        ("Santa Fe de Bogotá", "11001"), ("Medellín", "05001"), ("MEDELLIN", "05001"), ("Cali", "76001"),
        ("Santiago de Cali", "76001"), ("Barranquilla", "08001"), ("Cartagena", "13001"),
        ("Cartagena de Indias", "13001"), ("Cúcuta", "54001"), ("Soacha", "25754"), ("soacha.", "25754"),
        ("Maicao", "44430"), ("URIBIA", "44847"), ("Itagüí", "05360"), ("ITAGUI", "05360"),
        ("Rionegro, Antioquia", "05615"),
        ("Rionegro - Santander", "68615"), ("05001", "05001"), ("5001", "05001"), (25754, "25754"),
    ],
)
def test_municipality_code(name: str | int, code: str) -> None:
    assert municipality_code(name) == code


def test_municipality_name_is_official() -> None:
    assert municipality_name("11001") == "BOGOTÁ, D.C."
    assert municipality_name("05001") == "MEDELLÍN"
    assert municipality_name("25754") == "SOACHA"
    assert department_code("Cundinamarca") == "25"
    assert department_code("Bogotá D.C.") == "11"


def test_unknown_and_ambiguous_municipalities() -> None:
    with pytest.raises(UnknownMunicipality):
        municipality_code("Macondo")
    with pytest.raises(UnknownMunicipality):
        municipality_code("00001")
    with pytest.raises(UnknownMunicipality):
        municipality_name("11999")
    with pytest.raises(AmbiguousMunicipality) as excinfo:
        municipality_code("Barbosa")
    assert {m.code for m in excinfo.value.candidates} == {"05079", "68077"}


def test_dane_table_has_every_department_and_capital() -> None:
    table = divipola()
    assert len(table.departments) == 33
    for department in table.departments:
        if department != "25":
            assert f"{department}001" in table.municipalities, department
    for code, municipality in table.municipalities.items():
        assert re.fullmatch(r"[0-9]{5}", code) and code[:2] == municipality.department_code


def test_dane_table_knows_every_sample_municipality() -> None:
    for path in VALID.glob("*.xml"):
        root = etree.parse(str(path)).getroot()
        for node in root.iter(f"{{{UBICACION}}}codMunicipio"):
            if len(node.text or "") != 5:
                continue
            name = node.getnext()
            assert municipality_name(node.text or "")
            if name is not None and name.tag == f"{{{UBICACION}}}nomMunicipio":
                assert municipality_code(name.text or "") == node.text, path.name


# Load-time errors


def _rule_error(registry: SchemaRegistry, rule: dict[str, Any], **extra: Any) -> str:
    good = {"gel": "per:identificacion/per:numDocumento", "legacy": "NumeroDoc"}
    with pytest.raises(MappingError) as excinfo:
        a_mapping(registry, respuesta=[good, rule], **extra)
    message = str(excinfo.value)
    assert "prueba.yaml" in message and "regla 2" in message and "respuesta" in message
    return message


@pytest.mark.parametrize(
    ("rule", "fragment"),
    [
        ({"gel": "svc:noExiste", "legacy": "X"}, "svc:noExiste no existe dentro de"),
        ({"gel": "per:identificacion/per:numeroDocumento", "legacy": "X"}, "per:numDocumento"),
        ({"gel": "x:y", "legacy": "X"}, "prefijo 'x' no está declarado"),
        ({"gel": "numDocumento", "legacy": "X"}, "prefijo:nombre"),
        ({"gel": "per:fechaNacimiento", "legacy": "X", "codes": "no_existe"}, "tabla de códigos 'no_existe'"),
        ({"gel": "per:fechaNacimiento", "legacy": "X", "formato": "%d"}, "clave desconocida 'formato'"),
        ({"gel": "per:nombreCompleto", "legacy": "X"}, "elemento compuesto"),
        ({"gel": "svc:codEstadoDocumento", "legacy": "X", "date": "%d/%m/%Y"}, "elemento de fecha"),
        ({"gel": "per:fechaNacimiento", "legacy": "X", "date": "%H:%M"}, "día, mes y año"),
        ({"gel": "per:fechaNacimiento", "legacy": "X", "number": "co"}, "elemento numérico"),
        ({"gel": "svc:coincidenciaNombre", "value": "quizá"}, "quizá"),
        ({"gel": "svc:coincidenciaNombre", "value": True, "legacy": "X"}, "no admite legacy"),
        ({"gel": "per:fechaNacimiento"}, "falta legacy"),
        ({"gel": "per:fechaNacimiento", "legacy": "X", "split": "nombres"}, "dos rutas"),
        ({"gel": "per:identificacion/per:numDocumento", "legacy": "Y"}, "ya lo llena la regla 1"),
        ({"gel": "per:fechaNacimiento", "legacy": "X", "date": "%d/%m/%Y", "codes": "tipo_documento"}, "combina"),
        ({"gel": "per:identificacion/per:codTipoDocumento", "legacy": "X", "codes": "tipo_documento",
          "default": "NO.VALE"}, "default"),
    ],
)
def test_bad_rules_are_refused_at_load_time(registry: SchemaRegistry, rule: dict[str, Any], fragment: str) -> None:
    assert fragment in _rule_error(registry, rule)


def test_code_table_must_match_the_schema_enumeration(registry: SchemaRegistry) -> None:
    message = _rule_error(
        registry, {"gel": "svc:codEstadoDocumento", "nom": "svc:nomEstadoDocumento", "legacy": "Estado",
                   "codes": "estados"},
        codes={
            "tipo_documento": {"CC": "C.C."},
            "estados": {"VIGENTE": {"legacy": "V", "nom": "Vigente"}, "CANCELADA": {"legacy": "C", "nom": "Cancelada"}},
        },
    )
    assert "CANCELADA" in message and "CANCELADO_MUERTE" in message


def test_bad_files_are_refused_with_their_name(registry: SchemaRegistry, tmp_path: Path) -> None:
    unknown_service = tmp_path / "sin-servicio.yaml"
    unknown_service.write_text('service: verificarNada\nversion: "1.0"\nrespuesta: []\n', encoding="utf-8")
    with pytest.raises(MappingError, match=r"sin-servicio\.yaml.*verificarNada"):
        load_mapping(unknown_service, registry)
    broken = tmp_path / "roto.yaml"
    broken.write_text("service: [\n", encoding="utf-8")
    with pytest.raises(ValueError, match=r"roto\.yaml.*YAML"):
        load_mapping(broken, registry)
    bad_prefix = tmp_path / "prefijo.yaml"
    bad_prefix.write_text(
        'service: verificarIdentidad\nversion: "1.0"\nnamespaces: {per: "urn:otro"}\nrespuesta: []\n',
        encoding="utf-8",
    )
    with pytest.raises(MappingError, match=r"prefijo\.yaml.*'per' está reservado"):
        load_mapping(bad_prefix, registry)
    with pytest.raises(MappingError, match=r"no-existe\.yaml"):
        load_mapping(tmp_path / "no-existe.yaml", registry)


# Every shipped service


def _leaf_paths(payload: etree._Element) -> Iterator[str]:
    """prefix:name paths (first occurrences) of every leaf element and attribute of a payload."""
    prefixes = {PERSONAL: "per", UBICACION: "ubi", DOCUMENTO: "doc", FINANCIERO: "fin", ENTIDAD: "ent"}
    service_ns = etree.QName(payload).namespace

    def step(node: etree._Element) -> str:
        parsed = etree.QName(node)
        return f"{'svc' if parsed.namespace == service_ns else prefixes[parsed.namespace or '']}:{parsed.localname}"

    def walk(node: etree._Element, prefix: str) -> Iterator[str]:
        seen: set[str] = set()
        for child in node:
            tag = child.tag
            if not isinstance(tag, str) or tag in seen:
                continue
            seen.add(tag)
            path = f"{prefix}/{step(child)}" if prefix else step(child)
            if len(child) == 0 and (child.text or "").strip():
                yield path
            for attribute in map(str, child.attrib):
                yield f"{path}/@{attribute}"
            yield from walk(child, path)

    return walk(payload, "")


NEEDS_LISTS = {"consultarAreasProtegidas-solicitud.xml", "consultarPresenciaComunidades-solicitud.xml"}
"""Payloads with an element that must repeat (a polygon of at least 3 vertices): a mapping of single values
can only fill its first occurrence."""


@pytest.mark.parametrize(
    "sample_name", sorted(p.name for p in VALID.glob("*.xml") if not p.name.endswith("-evento.xml")), ids=str
)
def test_rename_mapping_of_every_sample_leaf_builds_a_valid_message(
    sample_name: str, registry: SchemaRegistry
) -> None:
    payload = sample_payload(sample_name)
    code = sample(sample_name).findtext(f"{{{MENSAJE}}}encabezado/{{{MENSAJE}}}servicio/{{{MENSAJE}}}codServicio")
    section = "solicitud" if etree.QName(payload).localname.startswith("entrada") else "respuesta"
    paths = list(dict.fromkeys(_leaf_paths(payload)))
    mapping = mapping_from_dict(
        {"service": code, "version": "1.0", section: [{"gel": p, "legacy": p} for p in paths]},
        registry, source=f"todo-{sample_name}.yaml",
    )
    mapped = getattr(mapping, section)
    record = mapped.to_legacy(payload)
    assert None not in record.values()
    if sample_name in NEEDS_LISTS:
        with pytest.raises(GelFault) as excinfo:
            mapped.to_gel(record)
        assert excinfo.value.falla.code == FaultCode.MAP_REQUIRED and "svc:vertice" in excinfo.value.falla.message
        return
    rebuilt = mapped.to_gel(record)
    check_message(message_with(sample_name, rebuilt), registry)
    assert mapped.to_legacy(rebuilt) == record
    if not any(len({c.tag for c in node}) < len(node) for node in payload.iter()):
        assert c14n(rebuilt) == c14n(payload)
