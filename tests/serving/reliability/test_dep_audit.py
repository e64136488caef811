"""scripts/dep-audit.sh's verdicts, with pip-audit replaced by a fake that writes a given JSON report:
a known vulnerability fails the build (and names the package, id and fixed version), ignored ids
from .pip-audit-ignore are passed on, a clean report passes, and an audit that could not run (no
report, or every package skipped for want of a vulnerability database) says so and fails only with
PREREAD_AUDIT_STRICT=1."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.reliability

# Stands in for the venv's python: `-m pip_audit ... --output FILE` writes $FAKE_REPORT there (if
# set), records its arguments and exits $FAKE_STATUS; anything else runs the real interpreter.
FAKE_PYTHON = f"""#!/usr/bin/env bash
if [[ "$1 $2" == "-m pip_audit" ]]; then
  printf '%s\\n' "$@" > "$FAKE_ARGS"
  while [[ $# -gt 0 ]]; do
    if [[ "$1" == --output && -n "${{FAKE_REPORT:-}}" ]]; then cp "$FAKE_REPORT" "$2"; fi
    shift
  done
  exit "${{FAKE_STATUS:-0}}"
fi
exec {sys.executable} "$@"
"""


def _dep(name: str, vulns=(), skip: str | None = None) -> dict:
    dep = {"name": name, "version": "1.0"}
    if skip:
        dep["skip_reason"] = skip
    else:
        dep["vulns"] = list(vulns)
    return dep


@pytest.fixture
def audit(tmp_path):
    """Runs a copy of the script in a scratch checkout (its own .pip-audit-ignore) → (rc, output, args)."""
    root = tmp_path / "checkout"
    (root / "scripts").mkdir(parents=True)
    shutil.copy(REPO_ROOT / "scripts" / "dep-audit.sh", root / "scripts" / "dep-audit.sh")
    (root / "requirements.lock").write_text("numpy==1.0\n")
    (root / ".pip-audit-ignore").write_text("# ID  reason\nGHSA-aaaa-bbbb-cccc  not reachable: we never parse X\n")
    fake = tmp_path / "python"
    fake.write_text(FAKE_PYTHON)
    fake.chmod(0o755)

    def run(report: dict | None, status: int = 0, strict: bool = False):
        env = {k: v for k, v in os.environ.items() if k != "PREREAD_AUDIT_STRICT"}
        env.update(PYTHON=str(fake), FAKE_ARGS=str(tmp_path / "args"), FAKE_STATUS=str(status))
        if report is not None:
            (tmp_path / "report.json").write_text(json.dumps(report))
            env["FAKE_REPORT"] = str(tmp_path / "report.json")
        if strict:
            env["PREREAD_AUDIT_STRICT"] = "1"
        done = subprocess.run(
            ["bash", str(root / "scripts" / "dep-audit.sh")], env=env, capture_output=True, text=True, timeout=120
        )
        return done.returncode, done.stdout + done.stderr, (tmp_path / "args").read_text().split("\n")

    return run


def test_clean_report_passes_and_ignored_ids_are_passed_on(audit):
    rc, out, args = audit({"dependencies": [_dep("numpy"), _dep("pydicom")]})
    assert rc == 0 and "[dep-audit] OK" in out, out
    assert "2 audited, 0 skipped, 0 with known vulnerabilities" in out
    assert args[args.index("--ignore-vuln") + 1] == "GHSA-aaaa-bbbb-cccc"
    assert "-r" in args and args[args.index("-r") + 1] == "requirements.lock"


def test_a_known_vulnerability_fails(audit):
    vuln = {"id": "PYSEC-2099-1", "fix_versions": ["1.1"], "description": "x"}
    rc, out, _ = audit({"dependencies": [_dep("numpy", [vuln]), _dep("pydicom")]}, status=1)
    assert rc == 1, out
    assert "numpy==1.0: PYSEC-2099-1 (fixed in: 1.1)" in out and "FAIL" in out


@pytest.mark.parametrize("strict", [False, True])
def test_an_audit_that_could_not_run_is_reported_not_passed(audit, strict):
    offline = {"dependencies": [_dep("numpy", skip="Dependency not found on PyPI and could not be audited")]}
    rc, out, _ = audit(offline, status=1, strict=strict)
    assert "audit was NOT performed" in out and "OK" not in out, out
    assert rc == (1 if strict else 0)
    rc, out, _ = audit(None, status=1, strict=strict)  # pip-audit crashed: no report at all
    assert "produced no report" in out and "NOT performed" in out, out
    assert rc == (1 if strict else 0)
