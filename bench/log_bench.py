"""Message-log appends (SQLite and, when it answers, PostgreSQL) and the whole admission pipeline."""

from __future__ import annotations

import os
import socket
import tempfile
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import create_engine, text

from bench.gelxml_bench import ROOT, pick_sample
from bench.harness import Measurement, measure
from broker.gateway import Pipeline
from broker.gelxml import load_registry, parse_untrusted
from broker.security.entities import load_entities
from broker.security.message_log import LogEntry, MessageLog
from broker.security.pki import DevPKI
from broker.security.signing import sign_message
from broker.security.timestamp import TimeStampAuthority

POSTGRES_URL = os.environ.get("GEL_TEST_POSTGRES_URL", "postgresql+psycopg://postgres@127.0.0.1:5432/test")


def _postgres_answers() -> bool:
    try:
        with socket.create_connection(("127.0.0.1", 5432), timeout=0.5):
            return True
    except OSError:
        return False


def _append(log: MessageLog, data: bytes, token: bytes) -> None:
    log.append(LogEntry(message=data, message_id=str(uuid.uuid4()), sender="CO/GOB/830121208",
                        recipient="CO/PLAT/900000002", service="asignarSubsidio v1.0", message_type="respuesta",
                        outcome="aceptado", token=token))


def run(seconds: float) -> dict[str, Any]:
    sample = pick_sample()
    data = sample.read_bytes()
    sender = parse_untrusted(data).findtext("{*}encabezado/{*}entidadOrigen") or ""
    token = b"\x30" * 1200
    results: list[Measurement] = []
    with tempfile.TemporaryDirectory() as tmp:
        sqlite_log = MessageLog(f"sqlite:///{Path(tmp) / 'log.db'}")
        results.append(measure("log append, SQLite (WAL, synchronous=FULL)", lambda: _append(sqlite_log, data, token),
                               seconds=seconds, batch=20))
        if _postgres_answers():
            schema = f"bench_{uuid.uuid4().hex[:8]}"
            engine = create_engine(POSTGRES_URL)
            with engine.begin() as connection:
                connection.execute(text(f"CREATE SCHEMA {schema}"))
            try:
                pg_log = MessageLog(POSTGRES_URL, schema=schema)
                results.append(measure("log append, PostgreSQL", lambda: _append(pg_log, data, token),
                                       seconds=seconds, batch=20))
                pg_log.close()
            finally:
                with engine.begin() as connection:
                    connection.execute(text(f"DROP SCHEMA {schema} CASCADE"))
                engine.dispose()
        pki = DevPKI(Path(tmp) / "pki")
        pki.initialise(load_entities(ROOT / "deploy" / "entities.yaml"))
        signed = sign_message(data, pki.credential(sender))
        pipeline = Pipeline(registry=load_registry(ROOT / "schemas"), trust=pki.trust_store(),
                            tsa=TimeStampAuthority(pki.tsa_credential()), log=sqlite_log,
                            replay=None, window=None)  # the same message is admitted again and again
        results.append(measure("pipeline.admit (validate, verify, stamp, log on SQLite)",
                               lambda: pipeline.admit(signed), seconds=seconds, batch=10))
        sqlite_log.close()
    return {
        "sample": sample.name,
        "measurements": [m.to_dict() for m in results],
        "admissions_per_second_one_worker": 1e6 / results[-1].mean_us,
    }
