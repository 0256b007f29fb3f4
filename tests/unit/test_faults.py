from __future__ import annotations

import re
import string

from lxml import etree

from broker.gelxml.faults import Falla, FaultCode, Location, Stage, catalogue, falla

CODE = re.compile(r"^GEL-[A-Z]+-[A-Z0-9_]+$")


def test_every_code_is_stable_shaped_and_has_a_spanish_template() -> None:
    specs = catalogue()
    assert set(specs) == set(FaultCode)
    for code, spec in specs.items():
        assert CODE.match(code.value), code
        assert spec.template.strip()
        assert isinstance(spec.stage, Stage)


def test_codes_are_unique() -> None:
    values = [code.value for code in FaultCode]
    assert len(values) == len(set(values))


def test_templates_only_use_named_fields() -> None:
    for code, spec in catalogue().items():
        fields = [name for _, name, _, _ in string.Formatter().parse(spec.template) if name is not None]
        assert all(name.isidentifier() for name in fields), code


def test_falla_xml_is_valid_against_the_platform_schema(registry) -> None:  # type: ignore[no-untyped-def]
    fault = falla(
        FaultCode.VALID_PATTERN,
        location=Location(line=12, column=5, xpath="/mensaje/cuerpo/x"),
        value="'1100'", element="ubi:codMunicipio", pattern="[0-9]{5}",
        problems=(falla(FaultCode.VALID_MISSING_CORRELATION, message_type="respuesta"),),
    )
    schema = etree.XMLSchema(file=str(registry.root / "Plataforma" / "Falla.xsd"))
    xml = fault.to_xml()
    assert schema.validate(xml), schema.error_log
    assert xml.findtext("{*}codFalla") == "GEL-VALID-PATTERN"
    assert xml.findtext("{*}etapa") == "validacion"
    assert xml.findtext("{*}ubicacion/{*}linea") == "12"
    assert xml.findtext("{*}problema/{*}codFalla") == "GEL-VALID-MISSING_CORRELATION"


def test_to_dict_carries_code_stage_and_location() -> None:
    fault = Falla(FaultCode.PARSE_EMPTY, "vacío", Stage.PARSE, Location(line=1))
    data = fault.to_dict()
    assert data["codigo"] == "GEL-PARSE-EMPTY"
    assert data["etapa"] == "analisis"
    assert data["linea"] == 1
