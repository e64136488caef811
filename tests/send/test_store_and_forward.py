"""The sender against the real county service over a link that fails: the issue's acceptance run
(200 ECGs + 20 radiographs, two kill -9, `slow`) and its small default-suite version."""

from __future__ import annotations

import pytest

from bench.county import county_service
from bench.send_studies import cinc_zips, ptbxl_jsons, ptbxl_zips, radiographs, waveform_dicoms
from bench.standin_readers import StandInEcgReader
from tests.send.e2e import run_store_and_forward


def expect_exactly_once(report: dict) -> None:
    n = report["expected"]
    assert report["sent_items"] == n, report
    assert report["missing_at_county"] == 0, report
    assert report["all_county_instances"] == n, report  # nothing duplicated, nothing else stored
    assert report["all_county_studies"] == report["clinic_studies"] == n, report
    assert report["read_more_than_once"] == 0, report
    assert report["results_back"] == n and report["results_mismatched"] == 0, report
    assert report["alerts_missing"] == 0 and report["alerts_unexpected"] == 0, report


@pytest.mark.reliability
def test_twenty_ecgs_three_films_one_kill(tmp_path, fresh_county, cinc_dir, nih_dir, shared_data):
    county = fresh_county
    ecgs = cinc_zips(cinc_dir, 12) + ptbxl_jsons(shared_data / "ecg" / "ptbxl", 0, 4) + waveform_dicoms(4)
    films = radiographs(nih_dir, 3)
    report = run_store_and_forward(tmp_path, county, ecgs, films, kills=1, timeout_s=120)
    expect_exactly_once(report)
    assert report["films_stored"] == 3
    assert report["alerts_expected"] > 0, "the fake reader flags some ECGs: the notification path was not exercised"
    stats = county.proxy.stats
    assert stats["refused"] + stats["stalled"] + stats["reset"] > 0, f"the link never failed: {stats}"


@pytest.mark.slow
@pytest.mark.reliability
def test_two_hundred_ecgs_twenty_films_two_kills(tmp_path, ecg_registry, cinc_dir, nih_dir, shared_data):
    from models.ecg.pipeline import EcgPreReader
    from tests.conftest import REPO_ROOT

    reader = EcgPreReader.from_registry(ecg_registry, "ecg@champion", REPO_ROOT / "configs" / "triage" / "ecg.yaml")
    county, close = county_service(tmp_path / "county", ecg_registry, reader)
    ptbxl = shared_data / "ecg" / "ptbxl"
    ecgs = cinc_zips(cinc_dir, 30) + ptbxl_zips(ptbxl, 0, 130) + ptbxl_jsons(ptbxl, 130, 20) + waveform_dicoms(20)
    films = radiographs(nih_dir, 20)
    assert len(ecgs) == 200 and len({e.data for e in ecgs}) == 200
    try:
        report = run_store_and_forward(tmp_path, county, ecgs, films, kills=2, timeout_s=900, seed=2)
    finally:
        close()
    print(report)
    expect_exactly_once(report)
    assert report["films_stored"] == 20


def test_fake_reader_is_deterministic():
    import numpy as np

    signals = np.ones((12, 100), np.float32)
    assert StandInEcgReader().read(signals) == StandInEcgReader().read(signals)
