"""The suite cannot go green by skipping: under CI a missing peer, a skip in a fixture, a skipif and a
module that skips itself at collection are failures; without CI they stay skips with the reason."""

from __future__ import annotations

import pytest

from tests.conftest import PEERS, REPO_ROOT, require_peer

pytestmark = pytest.mark.reliability

SUITE = """
import pytest
from tests.conftest import require_peer

PEERS_HERE = False

@pytest.fixture
def broken_fixture():
    pytest.skip("tiny CXR training failed")

def test_missing_peer():
    require_peer("dcmtk", "storescu not installed")

def test_fixture_skip(broken_fixture):
    pass

@pytest.mark.skipif(True, reason="Orthanc is not installed")
def test_skipif():
    pass

@pytest.mark.ci_may_skip("not applicable on this platform")
def test_allowed_skip():
    pytest.skip("not applicable")

def test_passes():
    pass
"""


@pytest.fixture
def suite(pytester, monkeypatch):
    # The inner run is a subprocess in a temp folder: it finds our tests package through the path.
    monkeypatch.setenv("PYTHONPATH", str(REPO_ROOT))
    pytester.makeconftest(
        "from tests.conftest import pytest_configure, pytest_runtest_setup, "
        "pytest_runtest_makereport, pytest_make_collect_report  # noqa: F401\n"
    )
    pytester.makepyfile(
        test_peers=SUITE,
        test_collect_skip="import pytest\npytest.importorskip('no_such_module_preread')\ndef test_never():\n    pass\n",
    )
    return pytester


def test_under_ci_skips_are_failures(suite, monkeypatch):
    monkeypatch.setenv("CI", "true")
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "--continue-on-collection-errors")
    outcomes = result.parseoutcomes()
    # the peer skip fails; the fixture skip, the skipif and the collection skip are errors (setup/collect)
    assert outcomes.get("failed") == 1 and outcomes.get("errors") == 3, result.stdout.str()
    assert outcomes.get("passed") == 1 and outcomes.get("skipped") == 1, outcomes
    text = result.stdout.str()
    assert "peer dcmtk missing: storescu not installed" in text and "tiny CXR training failed" in text
    assert result.ret != 0


def test_without_ci_they_stay_skips_with_the_reason(suite, monkeypatch):
    monkeypatch.delenv("CI", raising=False)
    result = suite.runpytest_subprocess("-p", "no:cacheprovider", "-rs")
    outcomes = result.parseoutcomes()
    assert outcomes.get("skipped") == 5 and outcomes.get("passed") == 1, outcomes
    assert "peer dcmtk missing" in result.stdout.str()
    assert result.ret == 0


def test_require_peer_knows_its_peers_and_refuses_unknown_names():
    assert {"triton", "dcmtk", "orthanc", "chromium", "postgresql"} <= set(PEERS)
    with pytest.raises(KeyError):
        require_peer("no-such-peer")


def test_marks_sit_on_tests():
    """A ``pytest.mark`` on a helper function is silently ignored: a ``slow`` mark that slipped from its
    test onto the helper above it put a 9-second test back into the default suite. Marks go on tests."""
    import ast

    misplaced = []
    for path in sorted((REPO_ROOT / "tests").rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)) or node.name.startswith("test"):
                continue
            for decorator in node.decorator_list:
                target = decorator.func if isinstance(decorator, ast.Call) else decorator
                if "pytest.mark." in ast.unparse(target):
                    misplaced.append(f"{path.relative_to(REPO_ROOT)}:{node.lineno} {node.name}")
    assert not misplaced, misplaced
