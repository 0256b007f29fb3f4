"""A stand-in mail relay for the citizens' notification channel: an in-process SMTP server (aiosmtpd) on
loopback that keeps every message it accepts and writes each one as an .eml file, so the demo's e-mails can be
opened and the chain tests can read what a citizen received.

`start_mailbox(folder)` serves on a free port and returns the `Mailbox`; `stop()` shuts it down. aiosmtpd is a
development dependency: without it, `start_mailbox` raises ModuleNotFoundError and the caller decides.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from email.policy import default as default_policy
from pathlib import Path
from typing import Any

from adapters.legacy.server import free_port

__all__ = ["Mailbox", "start_mailbox"]


@dataclass
class Mailbox:
    """What the relay accepted, in order; `folder` holds the same messages as numbered .eml files."""

    host: str
    port: int
    folder: Path
    received: list[tuple[list[str], bytes]] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)
    controller: Any = None

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        raw = bytes(envelope.original_content)
        with self.changed:
            self.received.append((list(envelope.rcpt_tos), raw))
            (self.folder / f"{len(self.received):05d}.eml").write_bytes(raw)
            self.changed.notify_all()
        return "250 2.0.0 Mensaje aceptado para entrega"

    def messages(self, address: str | None = None) -> list[EmailMessage]:
        """Every message accepted (for `address` only, when given), parsed."""
        with self.changed:
            raws = [raw for recipients, raw in self.received if address is None or address in recipients]
        return [message_from_bytes(raw, policy=default_policy) for raw in raws]

    def wait_for(self, address: str, count: int = 1, timeout: float = 30.0) -> list[EmailMessage]:
        """The messages for `address` once there are at least `count` (fewer if the time runs out)."""
        with self.changed:
            self.changed.wait_for(lambda: sum(address in r for r, _ in self.received) >= count, timeout=timeout)
        return self.messages(address)

    def stop(self) -> None:
        if self.controller is not None:
            self.controller.stop()
            self.controller = None


def start_mailbox(folder: Path, *, host: str = "127.0.0.1") -> Mailbox:
    """Serve SMTP on a free loopback port, keeping the messages in memory and under `folder`."""
    from aiosmtpd.controller import Controller

    folder.mkdir(parents=True, exist_ok=True)
    mailbox = Mailbox(host=host, port=free_port(), folder=folder)
    controller = Controller(mailbox, hostname=host, port=mailbox.port)
    controller.start()
    mailbox.controller = controller
    return mailbox
