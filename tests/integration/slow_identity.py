"""A hand-written handler for the SIGKILL test: slow the first time, so the test can kill the adapter
while it is handling the request; every call is written to a journal the test reads."""

from __future__ import annotations

import copy
import os
import time
from pathlib import Path

from lxml import etree

from adapters.sdk.runtime import Incoming
from broker.gelxml.envelope import payload_of
from broker.gelxml.parsing import parse_untrusted

SAMPLE = Path(__file__).resolve().parents[2] / "schemas" / "samples" / "valid" / "verificarIdentidad-respuesta.xml"


def answer(request: Incoming) -> etree._Element:
    journal = Path(os.environ["GEL_TEST_JOURNAL"])
    first_time = not journal.exists()
    with journal.open("a", encoding="utf-8") as handle:
        handle.write(request.header.message_id + "\n")
        handle.flush()
        os.fsync(handle.fileno())
    if first_time:
        time.sleep(float(os.environ.get("GEL_TEST_SLOW_SECONDS", "30")))
    payload = payload_of(parse_untrusted(SAMPLE.read_bytes()))
    assert payload is not None
    return copy.deepcopy(payload)
