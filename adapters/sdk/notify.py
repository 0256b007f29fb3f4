"""E-mail to citizens over SMTP (smtplib), with the SDK's coded errors.

```python
sender = MailSender("CO/PLAT/900000003", SmtpSettings.resolve())        # GEL_SMTP_* or defaults
sent = sender.send(Email(to="ana@example.co", to_name="ANA RUIZ", subject="Su trámite", body="…",
                         message_id=sender.message_id_for("3c9d2f4e-…")))
```

Settings come from a configuration mapping (`host`, `port`, `from`, `starttls`, `user`, `password`,
`timeout`, `ca_file`) or from the environment: `GEL_SMTP_HOST` (default 127.0.0.1), `GEL_SMTP_PORT` (25),
`GEL_SMTP_FROM`, `GEL_SMTP_STARTTLS` (true/false, default false), `GEL_SMTP_USER`, `GEL_SMTP_PASSWORD`,
`GEL_SMTP_TIMEOUT` (seconds, default 10) and `GEL_SMTP_CA_FILE` (a private CA for STARTTLS); a value in the
mapping wins over the environment.

The message is plain text in UTF-8 (quoted-printable, so it crosses any 7-bit relay), with the display
name and subject encoded per RFC 2047, `Auto-Submitted: auto-generated` and a Message-ID the caller
chooses: derive it from the request's idMensaje so a retried send carries the same Message-ID and the
receiving side can recognise a duplicate.

How SMTP outcomes map to the SDK's errors (the adapter runtime retries the retryable ones with backoff and
then answers with their coded `falla`):

- connection refused or reset, DNS failure, server closed the connection, TLS failed, a 4xx reply,
  STARTTLS not offered, login refused: `LegacyUnavailable` (GEL-ADAPTER-LEGACY_UNAVAILABLE, retryable);
- no answer within the timeout: `LegacyTimeout` (GEL-ADAPTER-LEGACY_TIMEOUT, retryable);
- recipient refused with a 5xx reply: `RecipientRefused` (GEL-ADAPTER-RECIPIENT_REFUSED, final);
- sender or message refused with a 5xx reply: `MailRejected` (GEL-ADAPTER-MAIL_REJECTED, final).

The last two codes are not in `broker.gelxml.faults.FaultCode` (that catalogue is not this module's);
they follow its `GEL-<ETAPA>-<MOTIVO>` form and the Falla schema's pattern.
"""

from __future__ import annotations

import os
import smtplib
import ssl
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from email.headerregistry import Address
from email.message import EmailMessage
from email.policy import SMTP as SMTP_POLICY
from email.utils import format_datetime, parseaddr
from typing import Any

from adapters.sdk.connectors.base import ConnectorError, LegacyTimeout, LegacyUnavailable, seconds_text
from broker.gelxml.faults import FaultCode

__all__ = [
    "MAIL_REJECTED",
    "RECIPIENT_REFUSED",
    "Email",
    "MailRejected",
    "MailSender",
    "RecipientRefused",
    "SentEmail",
    "SmtpSettings",
]

RECIPIENT_REFUSED = FaultCode.ADAPTER_RECIPIENT_REFUSED
MAIL_REJECTED = FaultCode.ADAPTER_MAIL_REJECTED

COLOMBIA = timezone(timedelta(hours=-5), "COT")
_ENV_PREFIX = "GEL_SMTP_"
_TRUE = frozenset({"1", "true", "si", "sí", "yes", "on"})
_FALSE = frozenset({"0", "false", "no", "off", ""})
_DETAIL_MAX = 160


def _flag(name: str, value: Any) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().casefold()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise ValueError(f"El valor {value!r} de {name} debe ser true o false.")


@dataclass(frozen=True, slots=True)
class SmtpSettings:
    """Where and how to send: the SMTP server, the sender, STARTTLS and login (both optional)."""

    host: str = "127.0.0.1"
    port: int = 25
    sender: str = "Plataforma GEL - Notificaciones <no-responder@notificaciones.gel.gov.co>"
    starttls: bool = False
    user: str | None = None
    password: str | None = field(default=None, repr=False)
    timeout: float = 10.0
    ca_file: str | None = None

    def __post_init__(self) -> None:
        if not self.host.strip():
            raise ValueError("El servidor de correo (host) no puede estar vacío.")
        if not 0 < self.port < 65536:
            raise ValueError(f"El puerto de correo {self.port} no es válido (1 a 65535).")
        if self.timeout <= 0:
            raise ValueError("El tiempo de espera del correo debe ser un número positivo de segundos.")
        if "@" not in self.sender_address:
            raise ValueError(f"El remitente {self.sender!r} no es una dirección de correo.")
        if (self.user is None) != (self.password is None):
            raise ValueError("Para autenticarse en el servidor de correo se necesitan usuario y contraseña.")

    @property
    def sender_address(self) -> str:
        return parseaddr(self.sender)[1]

    @classmethod
    def resolve(cls, config: Mapping[str, Any] | None = None, environ: Mapping[str, str] | None = None
                ) -> SmtpSettings:
        """Settings from `config` (keys host, port, from, starttls, user, password, timeout, ca_file), then
        the `GEL_SMTP_*` environment, then the defaults. Bad values are a Spanish ValueError."""
        config = config or {}
        environ = os.environ if environ is None else environ
        known = ("host", "port", "from", "starttls", "user", "password", "timeout", "ca_file")
        unknown = [key for key in config if key not in known]
        if unknown:
            raise ValueError(f"La clave {unknown[0]!r} no existe en la configuración del correo "
                             f"(admitidas: {', '.join(known)}).")

        def pick(key: str) -> Any:
            if config.get(key) is not None:
                return config[key]
            found = environ.get(_ENV_PREFIX + key.upper())
            return found if found not in (None, "") else None

        values: dict[str, Any] = {}
        for key in ("host", "user", "password", "ca_file"):
            if (value := pick(key)) is not None:
                values[key] = str(value)
        if (sender := pick("from")) is not None:
            values["sender"] = str(sender)
        try:
            if (port := pick("port")) is not None:
                values["port"] = int(port)
            if (timeout := pick("timeout")) is not None:
                values["timeout"] = float(timeout)
        except ValueError:
            raise ValueError(f"El puerto y el tiempo de espera del correo deben ser números (puerto {port!r}, "
                             f"tiempo {pick('timeout')!r}).") from None
        if (starttls := pick("starttls")) is not None:
            values["starttls"] = _flag(_ENV_PREFIX + "STARTTLS", starttls)
        return cls(**values)


@dataclass(frozen=True, slots=True)
class Email:
    """One plain-text message to one person. `message_id` is the whole header value, `<local@domain>`."""

    to: str
    subject: str
    body: str
    message_id: str
    to_name: str | None = None
    headers: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class SentEmail:
    """The server accepted the message for delivery (it may still bounce later)."""

    message_id: str
    recipient: str
    accepted_at: datetime


class RecipientRefused(ConnectorError):
    """The server refused the recipient address for good (5xx to RCPT TO). Params: recipient, smtp_code, reply."""

    code = FaultCode.ADAPTER_RECIPIENT_REFUSED


class MailRejected(ConnectorError):
    """The server refused the sender or the message for good (5xx to MAIL FROM or DATA)."""

    code = FaultCode.ADAPTER_MAIL_REJECTED


def _reply_text(reply: bytes | str) -> str:
    text = reply.decode("utf-8", "replace") if isinstance(reply, bytes) else str(reply)
    text = " ".join(text.split())
    return text if len(text) <= _DETAIL_MAX else text[: _DETAIL_MAX - 1] + "…"


class MailSender:
    """Sends e-mail through one SMTP server, one connection per message (thread-safe: no shared state)."""

    def __init__(self, entity: str, settings: SmtpSettings) -> None:
        self.entity = entity
        self.settings = settings

    @property
    def domain(self) -> str:
        return self.settings.sender_address.rpartition("@")[2]

    def message_id_for(self, key: str) -> str:
        """The Message-ID for a stable key (an idMensaje): the same key always gives the same Message-ID."""
        local = "".join(c for c in key if c.isalnum() or c in "-._") or "mensaje"
        return f"<{local}@{self.domain}>"

    def compose(self, email: Email, *, now: datetime | None = None) -> EmailMessage:
        message = EmailMessage(policy=SMTP_POLICY)
        message["From"] = self.settings.sender
        username, _, domain = email.to.partition("@")
        message["To"] = Address(display_name=email.to_name or "", username=username, domain=domain)
        message["Subject"] = email.subject
        message["Date"] = format_datetime(now or datetime.now(COLOMBIA))
        message["Message-ID"] = email.message_id
        message["Auto-Submitted"] = "auto-generated"
        for name, value in email.headers.items():
            message[name] = value
        message.set_content(email.body, subtype="plain", charset="utf-8", cte="quoted-printable")
        return message

    def send(self, email: Email) -> SentEmail:
        """Hand `email` to the server. Raises LegacyUnavailable/LegacyTimeout (retry) or a coded refusal."""
        message = self.compose(email)
        with self._errors(email.to):
            with self._connect() as smtp:
                refused = smtp.send_message(message, from_addr=self.settings.sender_address, to_addrs=[email.to])
            if refused:
                code, reply = refused.get(email.to, next(iter(refused.values())))
                raise RecipientRefused(self.entity, recipient=email.to, smtp_code=code, reply=_reply_text(reply))
        return SentEmail(message_id=email.message_id, recipient=email.to,
                         accepted_at=datetime.now(COLOMBIA).replace(microsecond=0))

    def check(self) -> None:
        """Prove the server answers (EHLO, STARTTLS and login when configured, NOOP)."""
        with self._errors(None), self._connect() as smtp:
            code, _reply = smtp.noop()
            if code >= 400:
                raise LegacyUnavailable(self.entity, detail=f"el servidor de correo respondió {code} a NOOP")

    def _connect(self) -> smtplib.SMTP:
        settings = self.settings
        smtp = smtplib.SMTP(settings.host, settings.port, timeout=settings.timeout)
        try:
            smtp.ehlo()
            if settings.starttls:
                smtp.starttls(context=ssl.create_default_context(cafile=settings.ca_file))
                smtp.ehlo()
            if settings.user is not None and settings.password is not None:
                smtp.login(settings.user, settings.password)
        except BaseException:
            smtp.close()
            raise
        return smtp

    @contextmanager
    def _errors(self, recipient: str | None) -> Iterator[None]:
        """Translate smtplib and socket errors into the SDK's connector errors (see the module table)."""
        try:
            yield
        except ConnectorError:
            raise
        except Exception as exc:
            raise self._translate(exc, recipient or "(verificación)") from exc

    def _translate(self, exc: Exception, recipient: str) -> ConnectorError:
        entity, settings = self.entity, self.settings
        where = f"{settings.host}:{settings.port}"
        if isinstance(exc, smtplib.SMTPRecipientsRefused):
            code, reply = next(iter(exc.recipients.values()), (550, b""))
            if 400 <= code < 500:
                return LegacyUnavailable(entity, detail=f"el servidor de correo aplazó al destinatario ({code})")
            return RecipientRefused(entity, recipient=recipient, smtp_code=code, reply=_reply_text(reply))
        if isinstance(exc, smtplib.SMTPSenderRefused | smtplib.SMTPDataError):
            if 400 <= exc.smtp_code < 500:
                return LegacyUnavailable(entity, detail=f"el servidor de correo aplazó el mensaje ({exc.smtp_code})")
            return MailRejected(entity, recipient=recipient, smtp_code=exc.smtp_code,
                                reply=_reply_text(exc.smtp_error))
        if isinstance(exc, smtplib.SMTPNotSupportedError):
            return LegacyUnavailable(entity, detail=f"el servidor de correo {where} no ofrece STARTTLS")
        if isinstance(exc, smtplib.SMTPAuthenticationError):
            return LegacyUnavailable(entity, detail=f"el servidor de correo rechazó el usuario ({exc.smtp_code})")
        if isinstance(exc, smtplib.SMTPResponseException):
            return LegacyUnavailable(entity, detail=f"el servidor de correo respondió {exc.smtp_code}")
        if isinstance(exc, smtplib.SMTPServerDisconnected):
            return LegacyUnavailable(entity, detail=f"el servidor de correo {where} cerró la conexión")
        if isinstance(exc, TimeoutError):
            return LegacyTimeout(entity, seconds=seconds_text(settings.timeout))
        if isinstance(exc, ssl.SSLError):
            return LegacyUnavailable(entity, detail=f"falló la negociación TLS con {where}")
        if isinstance(exc, OSError):
            return LegacyUnavailable(entity, detail=f"no se pudo conectar con el servidor de correo {where} "
                                                    f"({type(exc).__name__})")
        return LegacyUnavailable(entity, detail=f"error de correo {type(exc).__name__}")
