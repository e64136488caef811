"""`preread token` signs with the running service's secret or refuses with a reason: run outside the
repository it used to create a new var/secret.key there and print a token the service refused."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest
import yaml

from serving.auth.tokens import TokenService
from tests.conftest import REPO_ROOT

pytestmark = pytest.mark.reliability


def preread_token(cwd, *args: str, env: dict | None = None) -> subprocess.CompletedProcess:
    base = {k: v for k, v in os.environ.items() if k not in ("PREREAD_CONFIG", "PREREAD_SECRET")}
    return subprocess.run(
        [sys.executable, "-m", "preread.cli", "token", "--user", "ops", "--role", "admin", "--sites", "*", *args],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        env={**base, "PYTHONPATH": str(REPO_ROOT), **(env or {})},
    )


def service_config(folder, secret: str):
    """A deployment's config and secret, as `preread serve` in ``folder`` would use them."""
    (folder / "state").mkdir(parents=True)
    (folder / "state" / "secret.key").write_text(secret)
    config = yaml.safe_load((REPO_ROOT / "configs" / "serving.yaml").read_text())
    config["auth"]["secret_file"] = str(folder / "state" / "secret.key")
    path = folder / "serving.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def test_outside_the_repository_it_refuses_and_creates_nothing(tmp_path):
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    done = preread_token(elsewhere)
    if (REPO_ROOT / "var" / "secret.key").exists():  # a developer's own service beside the repository
        assert done.returncode == 0, done.stderr
    else:
        assert done.returncode == 2 and "no deployment secret found" in done.stderr, done.stderr
        assert "PREREAD_CONFIG" in done.stderr and not done.stdout
    assert not (elsewhere / "var").exists(), "the token command created a secret"


@pytest.mark.parametrize("how", ["--config", "PREREAD_CONFIG"])
def test_the_running_services_config_gives_a_token_the_service_accepts(tmp_path, how):
    secret = "s" * 48
    config = service_config(tmp_path / "deploy", secret)
    elsewhere = tmp_path / "home"
    elsewhere.mkdir()
    done = (
        preread_token(elsewhere, "--config", str(config))
        if how == "--config"
        else preread_token(elsewhere, env={"PREREAD_CONFIG": str(config)})
    )
    assert done.returncode == 0, done.stderr
    who = TokenService(secret).verify(done.stdout.strip())
    assert who.role == "admin" and who.user == "ops"
    assert not (elsewhere / "var").exists()


def test_a_config_whose_secret_is_gone_is_refused_not_recreated(tmp_path):
    config = service_config(tmp_path / "deploy", "s" * 48)
    (tmp_path / "deploy" / "state" / "secret.key").unlink()
    done = preread_token(tmp_path, "--config", str(config))
    assert done.returncode == 2 and "no deployment secret found" in done.stderr
    assert not (tmp_path / "deploy" / "state" / "secret.key").exists()
