"""scripts/check_noqa.py (run by `make lint`) refuses a noqa that names no rule or gives no reason."""

from __future__ import annotations

import importlib.util

from tests.conftest import REPO_ROOT


def _checker():
    spec = importlib.util.spec_from_file_location("check_noqa", REPO_ROOT / "scripts" / "check_noqa.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_a_noqa_needs_a_rule_and_a_reason():
    check = _checker()
    source = "\n".join(
        [
            "import os  # noqa",
            "    import torch  # noqa: PLC0415",
            "    import ray  # noqa: PLC0415 - only inside a Ray replica",
            "x = 1  # noqa: E501, B023 — a table row read as one line",
            "    from serving import app  # noqa: PLC0415 -",
        ]
    )
    found = check.offending_lines("m.py", source)
    assert [line.split(":")[1] for line in found] == ["1", "2", "5"]
    assert "bare noqa" in found[0]
    assert "without a reason" in found[1]
