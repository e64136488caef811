"""A 20-second version of the load test (bench/load_test.py): `preread serve` as its own process,
locust at a county's daily rate ×0.5 compressed into 20 s, then the zero-loss check. The full run
(10 minutes at 10× the volume) is a benchmark: docs/benchmarks.md "Load test"."""

from __future__ import annotations

import json

import pytest

pytestmark = [pytest.mark.reliability, pytest.mark.slow]


def test_load_smoke_loses_nothing(cxr_registry, tmp_path):
    from bench.load_test import main

    out = tmp_path / "load.json"
    code = main(
        [
            "--minutes",
            "0.33",
            "--scale",
            "0.5",
            "--registry",
            str(cxr_registry),
            "--drain-minutes",
            "5",
            "--json",
            str(out),
        ]
    )
    report = json.loads(out.read_text())
    assert report["acknowledged"] > 0 and code == 0, report
    assert report["missing"] == report["without_file"] == report["read_more_than_once"] == 0, report
    assert report["unread"] == 0, report
