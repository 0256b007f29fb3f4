"""Log lines carry the platform's field names (idMensaje, idCadena, entidad, etapa) as JSON."""

from __future__ import annotations

from broker.logs import platform_fields


def test_code_names_become_the_platforms_field_names() -> None:
    event = platform_fields(None, "info", {"event": "gateway.routed", "message_id": "m-1", "chain_id": "c-1",
                                           "entity": "CO/GOB/899999040", "stage": "enrutamiento", "ms": 3.2})
    assert event == {"event": "gateway.routed", "idMensaje": "m-1", "idCadena": "c-1",
                     "entidad": "CO/GOB/899999040", "etapa": "enrutamiento", "ms": 3.2}


def test_a_field_already_named_the_platforms_way_is_kept() -> None:
    event = platform_fields(None, "info", {"event": "x", "idCadena": "c-1", "entidad": "CO/PLAT/900000002"})
    assert event == {"event": "x", "idCadena": "c-1", "entidad": "CO/PLAT/900000002"}
