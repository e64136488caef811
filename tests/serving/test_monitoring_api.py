"""Online monitoring for data scientists through the real API: agreement of AI reads with signed
reads per finding, site and period, input drift, the chart, site scoping and roles."""

from __future__ import annotations

import io

import pytest

from tests.serving.worklist_fixtures import *  # noqa: F403
from tests.serving.worklist_fixtures import ecg_json, login, post_ecg, signed_at_one_instant


@pytest.fixture
def db_url(tmp_path) -> str:  # SQLite only: the SQL is shared with evaluation's tests on both
    return f"sqlite:///{tmp_path / 'preread.db'}"


def _sign(c, reader: dict, accepted: dict, flip: str | None = None) -> None:
    uid = accepted["study_uid"]
    ai = {f["code"]: f["positive"] for f in accepted["read"]["findings"]}
    assert c.http.post(f"/api/v1/studies/{uid}/claim", headers=reader).status_code == 200
    final = dict(ai)
    if flip is not None:
        final[flip] = not ai[flip]
    r = c.http.post(
        f"/api/v1/studies/{uid}/sign",
        headers=reader,
        json={"agree": flip is None, "findings": final, "impression": "read"},
    )
    assert r.status_code == 200, r.text


@pytest.fixture
def signed_reads(reading_client):
    """Six signed ECGs: four at site demo (one with STACH corrected), two at site other."""
    c = reading_client
    clinic, reader = login(c, "clinic-demo"), login(c, "reader-demo")
    for seed in range(4):
        _sign(c, reader, post_ecg(c, ecg_json(bpm=72, seed=seed), clinic), flip="STACH" if seed == 0 else None)
    other_clinic, other_reader = login(c, "clinic-other"), login(c, "reader-other")
    for seed in range(4, 6):
        _sign(c, other_reader, post_ecg(c, ecg_json(bpm=72, seed=seed, site="other"), other_clinic))
    signed_at_one_instant(c.services.db)  # one period, whatever the wall clock
    return c


def test_agreement_summary_per_finding_and_site(signed_reads):
    c = signed_reads
    r = c.http.get("/api/v1/monitoring", headers=login(c, "datasci"))
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["signed_reads"] == 6 and body["sites"] is None
    summary = {(row["modality"], row["finding"]): row for row in body["summary"]}
    assert summary[("ECG", "STACH")]["n"] == 6
    assert summary[("ECG", "STACH")]["agreement"] == pytest.approx(5 / 6)
    others = [row for key, row in summary.items() if key[1] != "STACH"]
    assert others and all(row["agreement"] == 1.0 and row["n"] == 6 for row in others)

    per_site = {(row["site"], row["finding"]): row for row in body["agreement"]}
    assert per_site[("demo", "STACH")]["n"] == 4 and per_site[("demo", "STACH")]["agreement"] == pytest.approx(0.75)
    assert per_site[("other", "STACH")]["agreement"] == 1.0
    assert all(row["few_cases"] for row in body["agreement"])  # 6 reads are far below the minimum
    assert {row["period"] for row in body["agreement"]} and all(len(row["period"]) == 10 for row in body["agreement"])

    drift = body["drift"]
    assert {(row["site"], row["finding"]) for row in drift} == set(per_site)
    # one period only: each site's current period is its own reference, so nothing has shifted
    assert all(
        row["psi"] is not None and row["psi"] < body["bands"]["psi_moderate"] and row["flag"] is None for row in drift
    )
    assert {row["n"] for row in drift if row["site"] == "demo"} == {4}


def test_monitoring_is_scoped_to_the_callers_sites(signed_reads):
    c = signed_reads
    body = c.http.get("/api/v1/monitoring", headers=c.auth("datasci", ("other",), "ds-other")).json()
    assert body["signed_reads"] == 2 and body["sites"] == ["other"]
    assert {row["site"] for row in body["agreement"]} == {"other"}
    assert {row["site"] for row in body["drift"]} == {"other"}
    assert all(row["agreement"] == 1.0 for row in body["summary"])


def test_filters_roles_and_bad_parameters(signed_reads):
    c = signed_reads
    datasci = login(c, "datasci")
    empty = c.http.get("/api/v1/monitoring?modality=CR&freq=M", headers=datasci).json()
    assert empty["signed_reads"] == 0 and empty["summary"] == [] and empty["agreement"] == [] and empty["drift"] == []
    bad = c.http.get("/api/v1/monitoring?freq=Y", headers=datasci)
    assert bad.status_code == 422 and "freq" in bad.text
    for user in ("reader-demo", "clinic-demo"):
        refused = c.http.get("/api/v1/monitoring", headers=login(c, user))
        assert refused.status_code == 403 and "datasci" in refused.json()["detail"]
    assert c.http.get("/api/v1/monitoring").status_code == 401
    assert c.http.get("/api/v1/monitoring/agreement.png").status_code == 401
    actions = c.services.db.engine.connect().exec_driver_sql("SELECT action FROM audit_log").scalars().all()
    assert "view_monitoring" in actions


def test_agreement_chart_is_a_png(signed_reads):
    import matplotlib.image as mpimg

    c = signed_reads
    r = c.http.get("/api/v1/monitoring/agreement.png?metric=kappa&freq=D", headers=login(c, "datasci"))
    assert r.status_code == 200 and r.headers["content-type"] == "image/png"
    image = mpimg.imread(io.BytesIO(r.content), format="png")
    assert image.shape[0] > 100 and image.shape[1] > 100
    assert c.http.get("/api/v1/monitoring/agreement.png?metric=auc", headers=login(c, "datasci")).status_code == 422
