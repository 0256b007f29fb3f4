"""The notification channel's mail operations (the Python connector's functions), over `adapters.sdk.notify`.

The SMTP settings are read from the environment (`GEL_SMTP_*`) on every call, so a changed relay needs no
restart. Errors are the SDK's: LegacyUnavailable / LegacyTimeout (retried by the runtime) or a coded refusal.
"""

from __future__ import annotations

from typing import Any

from adapters.sdk.notify import Email, MailSender, SmtpSettings

__all__ = ["ENTITY", "enviar_correo", "verificar_servidor"]

ENTITY = "CO/PLAT/900000003"


def _sender(entity: str = ENTITY) -> MailSender:
    return MailSender(entity, SmtpSettings.resolve())


def enviar_correo(*, destinatario: str, asunto: str, cuerpo: str, id_solicitud: str, nombre: str | None = None,
                  radicado: str | None = None, id_cadena: str | None = None, entidad: str = ENTITY) -> dict[str, Any]:
    """Send one notification; its Message-ID derives from the request's idMensaje (`id_solicitud`)."""
    sender = _sender(entidad)
    headers = {"X-GEL-IdSolicitud": id_solicitud}
    if radicado:
        headers["X-GEL-Radicado"] = radicado
    if id_cadena:
        headers["X-GEL-IdCadena"] = id_cadena
    sent = sender.send(Email(to=destinatario, to_name=nombre, subject=asunto, body=cuerpo,
                             message_id=sender.message_id_for(id_solicitud), headers=headers))
    return {"id_mensaje_correo": sent.message_id, "aceptado_en": sent.accepted_at.isoformat(),
            "destinatario": sent.recipient}


def verificar_servidor() -> None:
    """`gel adapter check`: the SMTP server answers (EHLO, STARTTLS and login when configured, NOOP)."""
    _sender().check()
