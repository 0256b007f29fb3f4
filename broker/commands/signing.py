"""`gel sign` and `gel verify`: sign a message as an entity, and check a signed message as the gateway does."""

from __future__ import annotations

import datetime as dt
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

from broker.commands.output import console, fail, print_json
from broker.commands.validate import format_problem, read_limited
from broker.gelxml import Falla, GelFault, check_message, load_registry
from broker.security.pki import DevPKI, TrustStore
from broker.security.signing import sign_message
from broker.security.timestamp import (
    TimeStampAuthority,
    TimeStampInfo,
    extract_timestamp,
    timestamp_message,
    verify_message_timestamp,
)
from broker.security.verification import VerifiedMessage, verify_message
from broker.settings import get_settings

DirOption = Annotated[
    Path | None, typer.Option("--dir", help="Carpeta de la PKI (por defecto GEL_CERTS_DIR, certs/dev).")
]


def sign(
    entity: Annotated[str, typer.Option("--entity", "-e", help="Entidad firmante, p. ej. CO/GOB/830121208.",
                                        show_default=False)],
    source: Annotated[Path, typer.Argument(help="Mensaje GEL-XML sin firmar.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Archivo de salida (por defecto, la "
                                                "salida estándar).")] = None,
    directory: DirOption = None,
) -> None:
    """Firma un mensaje GEL-XML con el certificado de una entidad (XMLDSig envuelta, C14N exclusiva, SHA-256).

    El mensaje se valida antes de firmar: no se firma nada que la pasarela vaya a rechazar.
    """
    settings = get_settings()
    pki = DevPKI(directory or settings.certs_dir)
    try:
        data = read_limited(source, settings.parse_limits)
        message = check_message(data, load_registry(settings.schemas_dir), settings.parse_limits)
        if message.header.sender != entity:
            fail("GEL-AUTH-SENDER_MISMATCH",
                 f"el mensaje dice venir de {message.header.sender} y se pidió firmar como {entity}",
                 "una entidad solo firma en su propio nombre: corrija entidadOrigen o --entity")
        signed = sign_message(data, pki.credential(entity), settings.parse_limits)
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    if output is None:
        sys.stdout.buffer.write(signed)
        return
    output.write_bytes(signed)
    console.print(f"{output}: firmado por {entity}.")


def stamp(
    source: Annotated[Path, typer.Argument(help="Mensaje firmado.", show_default=False)],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Archivo de salida (por defecto, la "
                                                "salida estándar).")] = None,
    directory: DirOption = None,
) -> None:
    """Añade el sello de tiempo RFC 3161 de la plataforma a un mensaje firmado (XAdES-T, sin romper la firma)."""
    settings = get_settings()
    pki = DevPKI(directory or settings.certs_dir)
    try:
        data = read_limited(source, settings.parse_limits)
        verify_message(data, pki.trust_store(), window=None, limits=settings.parse_limits)
        stamped = timestamp_message(data, TimeStampAuthority(pki.tsa_credential()))
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    if output is None:
        sys.stdout.buffer.write(stamped)
        return
    output.write_bytes(stamped)
    console.print(f"{output}: sellado por la TSA de la plataforma.")


def _verify_one(path: Path, trust: TrustStore, window: dt.timedelta | None
                ) -> tuple[VerifiedMessage, TimeStampInfo | None] | Falla:
    settings = get_settings()
    try:
        data = read_limited(path, settings.parse_limits)
        check_message(data, load_registry(settings.schemas_dir), settings.parse_limits)
        verified = verify_message(data, trust, window=window, limits=settings.parse_limits)
        stamped = extract_timestamp(verified.signature) is not None
        return verified, verify_message_timestamp(data, trust) if stamped else None
    except GelFault as exc:
        return exc.falla


def verify(
    files: Annotated[list[Path], typer.Argument(help="Mensajes firmados.", show_default=False)],
    directory: DirOption = None,
    window: Annotated[int | None, typer.Option(
        "--ventana", help="Rechaza mensajes cuya fechaHoraEnvio se aleje más de estos segundos de la hora "
        "actual (la pasarela usa GEL_REPLAY_WINDOW_SECONDS). Sin esta opción no se comprueba la frescura, "
        "para poder verificar mensajes archivados.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Resultado en JSON.")] = False,
) -> None:
    """Verifica mensajes firmados como lo hará la pasarela.

    Comprueba validación, firma, cadena de confianza, vigencia, revocación (CRL), uso de clave y que el
    certificado corresponda a entidadOrigen.

    Sale con 0 si todos verifican y con 1 si alguno falla; cada falla lleva su código.
    """
    pki_dir = directory or get_settings().certs_dir
    try:
        trust = TrustStore.from_dir(pki_dir)
    except GelFault as exc:
        fail(str(exc.falla.code), exc.falla.message)
    span = dt.timedelta(seconds=window) if window is not None else None
    results: list[dict[str, Any]] = []
    failed = 0
    for path in files:
        outcome = _verify_one(path, trust, span)
        if isinstance(outcome, Falla):
            failed += 1
            results.append({"archivo": str(path), "valido": False, "fallas": [p.to_dict() for p in outcome.all()]})
            if not as_json:
                for problem in outcome.all():
                    console.print(format_problem(path, problem), markup=False, soft_wrap=True)
            continue
        verified, stamp_info = outcome
        serial = format(verified.certificate.serial_number, "x")
        stamped_at = stamp_info.gen_time.isoformat() if stamp_info else None
        results.append({"archivo": str(path), "valido": True, "firmante": verified.signer,
                        "idMensaje": verified.header.message_id, "serieCertificado": serial,
                        "selloTiempo": stamped_at})
        if not as_json:
            stamped_text = f"; sellado el {stamped_at}" if stamped_at else "; sin sello de tiempo"
            console.print(f"{path}: firma válida de {verified.signer} (certificado {serial[:12]}…){stamped_text}",
                          markup=False, soft_wrap=True)
    if as_json:
        print_json(results)
    raise typer.Exit(1 if failed else 0)
