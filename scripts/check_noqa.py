"""Every ``noqa`` outside tests/ says which rule it silences and why.

ruff reports a finding; a noqa comment naming the rule silences it. Silencing is sometimes right (a heavy
dependency imported only when a subcommand runs, a module that needs sys.path set first), but a
bare ``noqa`` hides what should have been fixed (an import cycle, an unused import). So each one
here must name its codes and give a reason after them: ``# noqa: PLC0415 - loaded on demand``.
Run by ``make lint``; exits 1 and lists the offending lines.
"""

from __future__ import annotations

import re
import subprocess
import sys

NOQA = re.compile(r"#\s*noqa(?P<codes>:\s*[A-Z]+[0-9]+(?:\s*,\s*[A-Z]+[0-9]+)*)?(?P<rest>.*)$")
REASON = re.compile(r"^\s*(?:-|—|–|:)\s*\S.{3,}")
EXEMPT_PREFIXES = ("tests/",)


def offending_lines(path: str, text: str) -> list[str]:
    """``path:line: why`` for each noqa in ``text`` that names no code or gives no reason."""
    found = []
    for number, line in enumerate(text.splitlines(), start=1):
        match = NOQA.search(line)
        if match is None:
            continue
        if not match.group("codes"):
            found.append(f"{path}:{number}: a bare noqa: name the rule (e.g. noqa: PLC0415)")
        elif not REASON.match(match.group("rest")):
            found.append(f"{path}:{number}: noqa{match.group('codes')} without a reason (`- why` after the codes)")
    return found


def main() -> int:
    files = subprocess.run(["git", "ls-files", "*.py"], check=True, capture_output=True, text=True).stdout.split()
    problems = []
    for path in files:
        if path.startswith(EXEMPT_PREFIXES):
            continue
        with open(path, encoding="utf-8") as handle:
            problems += offending_lines(path, handle.read())
    for problem in problems:
        print(problem)
    if problems:
        print(f"{len(problems)} noqa comment(s) without a rule and a reason", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
