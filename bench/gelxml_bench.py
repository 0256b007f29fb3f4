"""Parsing and validation of a ~2 KB message: the hardened path against bare lxml, side by side."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lxml import etree

from bench.harness import measure
from broker.gelxml import check_message, load_registry, parse_untrusted, validate_message

ROOT = Path(__file__).resolve().parent.parent


def pick_sample(target: int = 2048) -> Path:
    samples = sorted((ROOT / "schemas" / "samples" / "valid").glob("*.xml"))
    return min(samples, key=lambda p: abs(p.stat().st_size - target))


def run(seconds: float) -> dict[str, Any]:
    registry = load_registry(ROOT / "schemas")
    sample = pick_sample()
    data = sample.read_bytes()
    bare_parser = etree.XMLParser()
    root = parse_untrusted(data)
    language = registry.language
    results = [
        measure("lxml bare parse", lambda: etree.fromstring(data, bare_parser), seconds=seconds),
        measure("hardened parse (parse_untrusted)", lambda: parse_untrusted(data), seconds=seconds),
        measure("schema validation only (lxml XMLSchema)", lambda: language.validate(root), seconds=seconds),
        measure("validate_message (schema + header rules)", lambda: validate_message(root, registry), seconds=seconds),
        measure("check_message (parse + validate)", lambda: check_message(data, registry), seconds=seconds),
    ]
    return {
        "sample": sample.name,
        "sample_bytes": len(data),
        "measurements": [m.to_dict() for m in results],
        "parse_validate_us": results[-1].mean_us,
        "hardening_overhead_ratio": results[1].mean_us / results[0].mean_us,
    }
