"""Real ECG records for the measurement, quality and statement tests (read once per session), and the
hand-built faults (limb-lead reversal, noisy leads, ST elevation) made from them."""

from __future__ import annotations

from functools import cache, lru_cache

import numpy as np

from datasets.ecg.readers import read_dicom_waveform, read_wfdb
from datasets.ecg.record import STANDARD_LEADS, EcgRecord
from datasets.ecg.validate import validate_record
from tests.conftest import shared_data_dir

CINC_DIR = shared_data_dir() / "ecg" / "cinc2021"
CINC_RECORDS = sorted(p.stem for p in CINC_DIR.glob("*.hea"))

SINUS_RHYTHM, SINUS_TACHYCARDIA, SINUS_BRADYCARDIA = "426783006", "427084000", "426177001"
ATRIAL_FIBRILLATION, RBBB = "164889003", "59118001"
SINUS_LABELS = {SINUS_RHYTHM, SINUS_TACHYCARDIA, SINUS_BRADYCARDIA}
L = {name: i for i, name in enumerate(STANDARD_LEADS)}


@cache
def cinc(name: str) -> EcgRecord:
    return validate_record(read_wfdb(CINC_DIR / f"{name}.hea"))


@lru_cache(maxsize=1)
def mortara() -> EcgRecord:
    from pydicom.data import get_testdata_file

    return validate_record(read_dicom_waveform(get_testdata_file("waveform_ecg.dcm")))


def with_signals(record: EcgRecord, signals: np.ndarray, seconds: float | None = None) -> EcgRecord:
    if seconds is not None:
        signals = signals[:, : int(seconds * record.sampling_rate)]
    return EcgRecord(np.ascontiguousarray(signals), record.leads, record.sampling_rate, dict(record.patient))


def reverse_arm_electrodes(record: EcgRecord) -> EcgRecord:
    """What an LA/RA swap records: I inverted, II ↔ III, aVR ↔ aVL, aVF unchanged, chest leads unchanged."""
    x = record.signals.copy()
    s = record.signals
    x[L["I"]] = -s[L["I"]]
    x[L["II"]], x[L["III"]] = s[L["III"]], s[L["II"]]
    x[L["aVR"]], x[L["aVL"]] = s[L["aVL"]], s[L["aVR"]]
    return with_signals(record, x)


def add_muscle_noise(record: EcgRecord, leads: list[str], rms_mv: float = 0.15, seed: int = 0) -> EcgRecord:
    """Tremor-like noise (white, 20-150 Hz band) plus 50 Hz mains on ``leads``."""
    import scipy.signal as sps

    rng = np.random.default_rng(seed)
    fs = record.sampling_rate
    x = record.signals.copy()
    sos = sps.butter(4, [20, min(150, 0.45 * fs)], btype="bandpass", fs=fs, output="sos")
    t = np.arange(x.shape[1]) / fs
    for name in leads:
        noise = sps.sosfilt(sos, rng.normal(size=x.shape[1]))
        x[L[name]] += rms_mv * noise / noise.std() + 0.1 * np.sin(2 * np.pi * 50 * t)
    return with_signals(record, x)


def add_st_elevation(record: EcgRecord, leads_mv: dict[str, float], r_peaks: np.ndarray) -> EcgRecord:
    """Raise the ST segment (J point to 250 ms after) of every beat by ``leads_mv`` in those leads; the
    limb leads are kept consistent (Einthoven / Goldberger) by elevating II and III and deriving."""
    fs = record.sampling_rate
    x = record.signals.copy()
    shape = np.zeros(x.shape[1])
    rise = np.hanning(int(0.04 * fs))[: int(0.02 * fs)]
    for r in r_peaks:
        a, b = int(r + 0.04 * fs), int(r + 0.30 * fs)
        if b + len(rise) >= x.shape[1]:
            continue
        shape[a:b] = 1.0
        shape[a : a + len(rise)] = rise
        shape[b : b + len(rise)] = rise[::-1]
    for name, mv in leads_mv.items():
        x[L[name]] += mv * shape
    if "II" in leads_mv or "III" in leads_mv:  # derived limb leads from the new II and III
        i_lead = x[L["II"]] - x[L["III"]]
        x[L["I"]] = i_lead
        x[L["aVR"]] = -(i_lead + x[L["II"]]) / 2
        x[L["aVL"]] = (i_lead - x[L["III"]]) / 2
        x[L["aVF"]] = (x[L["II"]] + x[L["III"]]) / 2
    return with_signals(record, x)
