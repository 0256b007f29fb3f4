"""The short chaos run of `make test` (the long one is `make chaos`): every kind of fault at least once while
housing and environmental cases run; nothing lost, nothing done twice, everything back in service.

It restarts the shared RabbitMQ and PostgreSQL, so tests/conftest.py runs it after every other test."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.chaos.run import FAULTS, SHORT, run_chaos
from tests.conftest import require_tool

pytestmark = [pytest.mark.rabbitmq, pytest.mark.postgres, pytest.mark.chaos]


@pytest.mark.timeout(1200)
def test_cases_survive_killed_processes_and_restarted_services(tmp_path: Path, amqp_url: str,
                                                               postgres_url: str) -> None:
    require_tool("rabbitmqctl")
    require_tool("pg_ctlcluster")
    report = run_chaos(SHORT, tmp_path, amqp_url=amqp_url, postgres_url=postgres_url)
    summary = "\n".join(report.lines())
    print(summary)
    assert {fault.kind for fault in report.faults} == set(FAULTS), summary
    assert all(fault.recovered is not None for fault in report.faults), summary
    assert report.started == SHORT.housing + SHORT.environmental, summary
    assert report.lost == 0 and report.duplicated == 0, summary
    assert report.completed + report.failed == report.started, summary
    assert summary.splitlines()[-1] == (f"chaos: started={report.started} completed={report.started} lost=0 "
                                        "duplicated=0")
