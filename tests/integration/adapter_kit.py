"""What the adapter tests share: sample payloads to send, reading answers, and the caller's inbox."""

from __future__ import annotations

import copy
import threading
from dataclasses import dataclass, field

from lxml import etree

from adapters.sdk.runtime import Incoming
from broker.gelxml import MessageType
from broker.gelxml.envelope import payload_of
from broker.gelxml.parsing import parse_untrusted
from tests.conftest import SAMPLES


def sample_payload(name: str, **texts: str) -> etree._Element:
    """A copy of a valid sample's payload; `texts` set the first element of each local name to a new text."""
    found = payload_of(parse_untrusted((SAMPLES / "valid" / name).read_bytes()))
    assert found is not None
    body = copy.deepcopy(found)
    for local, value in texts.items():
        node = body.find(f".//{{*}}{local}")
        assert node is not None, local
        node.text = value
    return body


def text(source: Incoming | etree._Element | None, local_name: str) -> str | None:
    """The text of the first element of that local name in an answer's payload (or in an element)."""
    element = source.payload if isinstance(source, Incoming) else source
    assert element is not None
    return element.findtext(f".//{{*}}{local_name}")


@dataclass
class Inbox:
    """The caller application: what its adapter handed it, in order (an `on_message` callback)."""

    messages: list[Incoming] = field(default_factory=list)
    changed: threading.Condition = field(default_factory=threading.Condition)

    def __call__(self, incoming: Incoming) -> None:
        with self.changed:
            self.messages.append(incoming)
            self.changed.notify_all()

    def wait_for(self, count: int, timeout: float = 15) -> list[Incoming]:
        with self.changed:
            self.changed.wait_for(lambda: len(self.messages) >= count, timeout=timeout)
            return list(self.messages)

    def of_type(self, message_type: MessageType) -> list[Incoming]:
        return [m for m in self.messages if m.header.message_type is message_type]

    def answer_to(self, request_id: str, timeout: float = 30) -> Incoming:
        """The response or falla correlated to `request_id`."""
        def found() -> Incoming | None:
            return next((m for m in self.messages if m.header.correlation_id == request_id
                         and m.header.message_type in (MessageType.RESPONSE, MessageType.FAULT)), None)

        with self.changed:
            self.changed.wait_for(lambda: found() is not None, timeout=timeout)
            answer = found()
        assert answer is not None, f"no answer to {request_id}"
        return answer
