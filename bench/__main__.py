"""`python -m bench`: run the benchmarks, print a table, write bench/results/latest.json."""

from __future__ import annotations

import argparse
import json
import platform
import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from bench import gateway_bench, gelxml_bench, log_bench, security_bench, transport_bench

SUITES = {"gelxml": gelxml_bench.run, "security": security_bench.run, "log": log_bench.run,
          "transport": transport_bench.run, "gateway": gateway_bench.run}
RESULTS = Path(__file__).resolve().parent / "results"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench", description="GEL Broker benchmarks (not tests).")
    parser.add_argument("--json", action="store_true", help="print the results as JSON")
    parser.add_argument("--only", choices=sorted(SUITES), action="append", help="run only these suites")
    parser.add_argument("--seconds", type=float, default=1.0, help="measuring time per figure")
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
    RESULTS.mkdir(exist_ok=True)
    (RESULTS / "latest.json").write_text(json.dumps(report, indent=2, ensure_ascii=False))
    if args.json:
        print(json.dumps(report, indent=2, ensure_ascii=False))
        return 0
    for name, suite in report["suites"].items():
        print(f"\n== {name} ==")
        for key, value in suite.items():
            if key != "measurements":
                print(f"  {key}: {value:.3f}" if isinstance(value, float) else f"  {key}: {value}")
        print(f"  {'figure':58} {'mean µs':>10} {'p50 µs':>10} {'p99 µs':>10} {'ops':>9}")
        for m in suite.get("measurements", []):
            print(f"  {m['name']:58} {m['mean_us']:10.1f} {m['p50_us']:10.1f} {m['p99_us']:10.1f} {m['ops']:9}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
