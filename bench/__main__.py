"""`python -m bench`: run the benchmarks, print a table, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import json
import math
import platform
import sys
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import (
    chain_bench,
    gateway_bench,
    gelxml_bench,
    log_bench,
    relay_bench,
    scale_bench,
    security_bench,
    transport_bench,
)

SUITES: dict[str, Callable[[float], dict[str, Any]]] = {
    "gelxml": gelxml_bench.run, "security": security_bench.run, "log": log_bench.run,
    "transport": transport_bench.run, "gateway": gateway_bench.run, "relay": relay_bench.run,
    "chains": chain_bench.run, "scale": scale_bench.run}
DESCRIPTIONS = {
    "gelxml": "parse + validate a ~2 KB GEL-XML message (lxml, XSD, header rules)",
    "security": "signing, verification and time-stamping against the raw cryptography",
    "log": "message-log appends (SQLite, PostgreSQL if it answers) and one Pipeline.admit",
    "transport": "1 KB persistent messages on RabbitMQ (and the embedded transport): confirms, prefetch",
    "gateway": "signed requests through gateway workers: embedded, RabbitMQ 1 worker, 2 threads, 2 processes",
    "relay": "full pipeline (sender signs → gateway → receiver verifies) beside the raw two-hop relay\n"
             "             on the same RabbitMQ: msg/s, ratio, latency at 50 % load, CPU per stage",
    "chains": "housing chains through the orchestrator alone (no bus): chains/s, overhead per step p50/p99",
    "scale": "routing to 1 vs 1,200 entity quorum queues (msg/s, ratio); 10,000 chain instances in flight:\n"
             "             start time, orchestrator RSS, store size, reply → next step p50/p99 at 150 and 10,000",
}
HEADLINE = ("raw_relay_msgs_per_s", "pipeline_msgs_per_s", "pipeline_ratio", "pipeline_p99_ms",
            "pipeline_2_workers_msgs_per_s", "pipeline_2_workers_ratio", "pipeline_2_workers_p99_ms",
            "chain_step_overhead_p99_ms", "scale_queues_ratio", "scale_queues_type", "scale_quorum_fanout_queues",
            "scale_quorum_fanout_ratio", "scale_chains_in_flight", "scale_orchestrator_rss_mb",
            "scale_chain_step_overhead_p99_ms")
"""Top-level keys of latest.json (null when the suite that measures them did not run or could not)."""
TARGETS: dict[str, tuple[str, Callable[[float], bool]]] = {
    "pipeline_ratio": ("≥ 0.50 (pipeline ≥ 50 % of the raw ceiling)", lambda v: v >= 0.5),
    "pipeline_p99_ms": ("< 25 ms at 50 % of the sustained rate", lambda v: v < 25.0),
    "pipeline_2_workers_ratio": ("≥ 0.50 (2 gateway workers, gel gateway's default)", lambda v: v >= 0.5),
    "pipeline_2_workers_p99_ms": ("< 25 ms at 50 % (2 gateway workers)", lambda v: v < 25.0),
    "chain_step_overhead_p99_ms": ("< 50 ms", lambda v: v < 50.0),
    "scale_queues_ratio": ("≥ 0.90 (1,200 queues vs 1, scale_queues_type)", lambda v: v >= 0.9),
    "scale_quorum_fanout_ratio": ("≥ 0.90 (quorum: that many queues vs 1)", lambda v: v >= 0.9),
    "scale_chains_in_flight": ("10,000 instances in flight", lambda v: v >= 10_000),
    "scale_chain_step_overhead_p99_ms": ("< 50 ms with 10,000 in flight", lambda v: v < 50.0),
}
RESULTS = Path(__file__).resolve().parent / "results"


def _epilog() -> str:
    lines = ["suites (all of them, in this order, unless --only is given):"]
    lines += [f"  {name:10} {DESCRIPTIONS.get(name, '')}" for name in sorted(SUITES)]
    lines += ["", "The relay, gateway, transport and scale suites need RabbitMQ (GEL_AMQP_URL, default 127.0.0.1:5672)",
              "and rabbitmqctl (each works in a vhost of its own, deleted afterwards); without it they measure what",
              "they can. Results go to bench/results/latest.json; its top-level keys (null when not measured):",
              "  " + ", ".join(HEADLINE[:4]) + ",", "  " + ", ".join(HEADLINE[4:7]) + " (relay suite),",
              "  " + HEADLINE[7] + " (chains suite),",
              "  " + ", ".join(HEADLINE[8:11]) + ",", "  " + ", ".join(HEADLINE[11:13]) + ",",
              "  " + ", ".join(HEADLINE[13:]) + " (scale suite)."]
    return "\n".join(lines)


def headline(suites: dict[str, dict[str, Any]]) -> dict[str, Any]:
    found: dict[str, Any] = dict.fromkeys(HEADLINE)
    for suite in suites.values():
        found |= {k: v for k, v in suite.get("headline", {}).items() if v is not None or k not in found}
    return found


def _format(value: Any) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return f"{value:,.3f}" if abs(value) < 10 else f"{value:,.1f}"
    return str(value)


def print_summary(figures: dict[str, Any]) -> None:
    print(f"{'figure':32} {'value':>12}  {'target':46} verdict")
    for key, value in figures.items():
        target, verdict = "", ""
        if key in TARGETS:
            target, check = TARGETS[key]
            if value is None or (isinstance(value, float) and math.isnan(value)):
                verdict = "no medido"
            else:
                verdict = "cumple" if check(value) else "no cumple"
        print(f"{key:32} {_format(value):>12}  {target:46} {verdict}")


def print_suite(name: str, suite: dict[str, Any]) -> None:
    print(f"\n== {name} ==")
    for key, value in suite.items():
        if key not in ("measurements", "stages", "headline"):
            print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
    if suite.get("stages"):
        print(f"  {'stage (one message, in process)':62} {'CPU µs':>9} {'CPU p50':>9} {'CPU p99':>9} "
              f"{'wall µs':>9} {'ops':>6}")
        for row in suite["stages"]:
            print(f"  {row['stage']:62} {row['cpu_mean_us']:9.1f} {row['cpu_p50_us']:9.1f} {row['cpu_p99_us']:9.1f} "
                  f"{row['wall_mean_us']:9.1f} {row['ops']:6}")
    if suite.get("measurements"):
        print(f"  {'figure':62} {'mean µs':>10} {'p50 µs':>10} {'p99 µs':>10} {'ops':>9}")
        for m in suite["measurements"]:
            print(f"  {m['name']:62} {m['mean_us']:10.1f} {m['p50_us']:10.1f} {m['p99_us']:10.1f} {m['ops']:9}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="GEL Broker benchmarks (not tests).",
                                     epilog=_epilog(), formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", choices=sorted(SUITES), action="append", help="run only these suites (repeatable)")
    parser.add_argument("--seconds", type=float, default=1.0,
                        help="measuring time per figure; bursts and message counts scale with it (default 1)")
    args = parser.parse_args(argv)
    report: dict[str, Any] = {
        "when": datetime.now(UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "machine": platform.machine(),
        "suites": {},
    }
    for name in args.only or sorted(SUITES):
        print(f"running {name}…", file=sys.stderr)
        report["suites"][name] = SUITES[name](args.seconds)
    figures = headline(report["suites"])
    report = {**figures, **report}
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    print_summary(figures)
    for name, suite in report["suites"].items():
        print_suite(name, suite)
    return 0


if __name__ == "__main__":
    sys.exit(main())
