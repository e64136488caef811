"""Bootstrap users (password from the environment, or generated into a 0600 file, never logged), argon2 hashes, and the
image viewer's endpoints (original with window/level, AI heatmap) for an image study."""

from __future__ import annotations

import io
import logging

import numpy as np
from PIL import Image
from sqlalchemy import select, update

from serving.auth import users
from serving.config_access import BootstrapUser
from serving.store.db import NewInstance
from serving.store.schema import Instance, User
from tests.serving.worklist_fixtures import login


def test_demo_users_are_bootstrapped_at_start(local_client, monkeypatch):
    # local_client's config keeps the default demo users: the app created them when it started
    db = local_client.services.db
    with db.session() as s:
        made = {u.username: u for u in s.scalars(select(User)).all()}
    assert {"demo-reader", "demo-clinic", "demo-admin"} <= set(made)
    assert all(u.password_hash.startswith("$argon2id$") for u in made.values())


def test_bootstrap_password_from_env_or_generated_into_a_private_file(local_client, monkeypatch, caplog, tmp_path):
    db = local_client.services.db
    monkeypatch.setenv("TEST_NURSE_PASSWORD", "nurse-password-123")
    specs = [
        BootstrapUser(username="nurse", role="grassroots", sites=["demo"], password_env="TEST_NURSE_PASSWORD"),
        BootstrapUser(username="doc", role="reader", sites=["demo", "other"], password_env="TEST_UNSET_PASSWORD"),
    ]
    users._bootstrapped.discard(id(db))
    password_file = tmp_path / "bootstrap" / "passwords.txt"  # (the app keeps its own beside the key)
    with caplog.at_level(logging.DEBUG):
        generated = users.ensure_bootstrap_users(db, specs, password_file=password_file)
    assert set(generated) == {"doc"}
    # The generated password goes to a file only its owner reads, and the log says where — never what.
    assert password_file.read_text() == f"doc {generated['doc']}\n"
    assert password_file.stat().st_mode & 0o777 == 0o600
    assert "'doc'" in caplog.text and str(password_file) in caplog.text
    assert generated["doc"] not in caplog.text and "nurse-password-123" not in caplog.text
    users._bootstrapped.discard(id(db))
    assert users.ensure_bootstrap_users(db, specs) == {}  # existing users are left alone
    r = local_client.http.post("/api/v1/login", json={"username": "doc", "password": generated["doc"]})
    assert r.status_code == 200 and r.json()["sites"] == ["demo", "other"]
    login(local_client, "nurse", "nurse-password-123")


def _png(arr: np.ndarray, mode: str) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(arr, mode).save(buffer, "PNG")
    return buffer.getvalue()


def test_image_and_heatmap_endpoints(local_client):
    c = local_client
    svc = c.services
    uid = "1.2.826.0.1.3680043.10.999.1"
    headers = c.auth("reader", ("demo",), "dr")
    # before anything is stored for the study: 404s the page handles
    gradient = np.tile(np.arange(256, dtype=np.uint8), (64, 1))
    original = svc.store.put(_png(gradient, "L"), ".png")
    svc.db.accept_instance(
        NewInstance(
            "1.2.3.100", uid, "demo", "CR", "image/png", original.key, original.sha256, original.size_bytes, "http"
        )
    )
    assert c.http.get(f"/api/v1/studies/{uid}/heatmap.png", headers=headers).status_code == 404
    heat = np.zeros((64, 256, 3), dtype=np.uint8)
    heat[:, 100:150, 0] = 255
    stored = svc.store.put(_png(heat, "RGB"), ".png")
    svc.db.accept_instance(
        NewInstance("1.2.3.101", uid, "demo", "CR", "image/png", stored.key, stored.sha256, stored.size_bytes, "ai")
    )
    with svc.db.session() as s:
        s.execute(update(Instance).where(Instance.sop_instance_uid == "1.2.3.101").values(role="ai_sc"))

    img = c.http.get(f"/api/v1/studies/{uid}/image.png", headers=headers)
    assert img.status_code == 200 and img.headers["content-type"] == "image/png"
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(img.content))), gradient)
    windowed = np.asarray(
        Image.open(
            io.BytesIO(c.http.get(f"/api/v1/studies/{uid}/image.png?window=50&level=128", headers=headers).content)
        )
    )
    assert windowed[0, 90] == 0 and windowed[0, 170] == 255 and 0 < windowed[0, 128] < 255
    hm = c.http.get(f"/api/v1/studies/{uid}/heatmap.png", headers=headers)
    assert hm.status_code == 200 and np.asarray(Image.open(io.BytesIO(hm.content)))[0, 120, 0] == 255
    assert c.http.get(f"/api/v1/studies/{uid}/ecg", headers=headers).status_code == 404
    other = c.auth("reader", ("other",), "dr-other")
    assert c.http.get(f"/api/v1/studies/{uid}/image.png", headers=other).status_code == 404
    detail = c.http.get(f"/api/v1/studies/{uid}", headers=headers).json()
    assert detail["links"]["image"].endswith("/image.png") and detail["report_status"] == "preliminary"
