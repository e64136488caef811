#!/usr/bin/env bash
# Dependency audit (pip-audit) of the pinned versions in requirements.lock, run by `make test` (CI).
#
# Policy (docs/reliability.md):
#   - a known vulnerability in a pinned version FAILS the build, unless its id is listed in
#     .pip-audit-ignore with a reason (one "ID  reason" per line) — upgrade the pin when a fixed
#     version installs, that is the normal fix;
#   - when no vulnerability database can be reached (an offline CI machine: PyPI's JSON API and OSV
#     unreachable, every package skipped) the audit says loudly that it was NOT performed and does not
#     fail the build; PREREAD_AUDIT_STRICT=1 makes that a failure too (for a networked CI).
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
SERVICE=${PREREAD_AUDIT_SERVICE:-pypi}
OUT=$(mktemp)
trap 'rm -f "$OUT"' EXIT
ignore_args=()
if [[ -f .pip-audit-ignore ]]; then
  while read -r id _; do [[ -n "$id" && "$id" != \#* ]] && ignore_args+=(--ignore-vuln "$id"); done < .pip-audit-ignore
fi
echo "[dep-audit] pip-audit -r requirements.lock (vulnerability service: $SERVICE)"
timeout 900 "$PY" -m pip_audit -r requirements.lock --no-deps --disable-pip -s "$SERVICE" \
    --progress-spinner off --format json --output "$OUT" "${ignore_args[@]}" 2> >(grep -v "encouraged to fully hash\|pip-compile" >&2)
status=$?
"$PY" - "$OUT" "$status" <<'PY'
import json, os, sys

path, status = sys.argv[1], int(sys.argv[2])
try:
    report = json.load(open(path))
except Exception:
    print(f"[dep-audit] pip-audit produced no report (exit {status}): audit NOT performed")
    sys.exit(1 if os.environ.get("PREREAD_AUDIT_STRICT") == "1" else 0)
deps = report.get("dependencies", [])
skipped = [d for d in deps if d.get("skip_reason")]
vulnerable = [d for d in deps if d.get("vulns")]
audited = len(deps) - len(skipped)
print(f"[dep-audit] {len(deps)} pinned packages: {audited} audited, {len(skipped)} skipped, "
      f"{len(vulnerable)} with known vulnerabilities")
for dep in vulnerable:
    for vuln in dep["vulns"]:
        fixed = ", ".join(vuln.get("fix_versions") or []) or "no fixed version yet"
        print(f"[dep-audit]   {dep['name']}=={dep['version']}: {vuln['id']} (fixed in: {fixed})")
if vulnerable:
    print("[dep-audit] FAIL: upgrade the pins in requirements.lock, or list the id in .pip-audit-ignore with a reason")
    sys.exit(1)
if audited == 0 and deps:
    print("[dep-audit] WARNING: no vulnerability database reachable from this machine "
          f"({skipped[0]['skip_reason']}): the audit was NOT performed")
    sys.exit(1 if os.environ.get("PREREAD_AUDIT_STRICT") == "1" else 0)
print("[dep-audit] OK")
PY
