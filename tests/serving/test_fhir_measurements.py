"""The FHIR DiagnosticReport's measurement Observations (serving/results/fhir.py): each measurement of the
read a cart prints goes out LOINC-coded with its UCUM unit, keyed by the read's own measurement names."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from datasets.vocabulary.ecg_measurements import CART_MEASUREMENTS, EcgMeasurement
from models.read import ModelIdentity, PreRead, Triage
from serving.results.fhir import LOINC, MEASUREMENTS, diagnostic_report
from serving.store.schema import Study

UCUM = "http://unitsofmeasure.org"
CART_VALUES = {
    EcgMeasurement.HEART_RATE: 72.0,
    EcgMeasurement.RR_INTERVAL: 833.0,
    EcgMeasurement.PR_INTERVAL: 160.0,
    EcgMeasurement.P_DURATION: 100.0,
    EcgMeasurement.QRS_DURATION: 92.0,
    EcgMeasurement.QT_INTERVAL: 380.0,
    EcgMeasurement.QTC_BAZETT: 416.0,
    EcgMeasurement.QTC_FRIDERICIA: 404.0,
    EcgMeasurement.P_AXIS: 55.0,
    EcgMeasurement.QRS_AXIS: -12.0,
    EcgMeasurement.T_AXIS: 40.0,
}


def _study(measurements: dict[str, float]) -> Study:
    read = PreRead(
        modality="ECG",
        disclaimer="AI preliminary ECG read",
        model=ModelIdentity(name="ecg", version=3, demo=True),
        measurements=measurements,
        triage=Triage(level="routine", score=0.1),
    )
    return Study(
        study_uid="1.2.826.0.1.3680043.8.498.1",
        site="clinic-1",
        modality="ECG",
        arrived_at=datetime(2026, 12, 6, 9, 0, tzinfo=UTC),
        report_status="preliminary",
        ai_read=read.model_dump(mode="json"),
    )


def _observations(measurements: dict[str, float]) -> dict[str, dict]:
    """The report's measurement Observations by their text (the LOINC display, or the key when uncoded)."""
    report = diagnostic_report(_study(measurements)).model_dump(mode="json", exclude_none=True)
    return {o["code"]["text"]: o for o in report["contained"] if o["id"].startswith("measurement-")}


def _loinc_check_digit(number: str) -> int:
    """LOINC's mod-10 check digit: the odd positions from the right doubled, the digits summed."""
    digits = number[::-1]
    odd, even = digits[0::2][::-1], digits[1::2][::-1]
    total = sum(int(d) for d in even + str(int(odd) * 2))
    return (10 - total % 10) % 10


def test_the_qtc_of_a_read_goes_out_loinc_coded():
    # The read's key is qtc_bazett_ms; the table used to name it "qtc_ms", so QTc left uncoded.
    observations = _observations({EcgMeasurement.QTC_BAZETT.value: 441.0})
    (qtc,) = observations.values()
    assert qtc["code"]["coding"] == [{"system": LOINC, "code": "8636-3", "display": "Q-T interval corrected"}]
    assert qtc["valueQuantity"] == {"value": 441.0, "unit": "ms", "system": UCUM, "code": "ms"}


def test_every_coded_measurement_a_cart_prints_goes_out_with_its_code_and_unit():
    observations = _observations({key.value: value for key, value in CART_VALUES.items()})
    assert len(observations) == len(CART_VALUES)
    for key, (code, display, unit) in MEASUREMENTS.items():
        observation = observations[display]
        assert observation["code"]["coding"] == [{"system": LOINC, "code": code, "display": display}], key
        assert observation["valueQuantity"] == {"value": CART_VALUES[key], "unit": unit, "system": UCUM, "code": unit}
    # No code could be confirmed for these: they go out by name, never under a guessed code.
    for key in (EcgMeasurement.P_DURATION, EcgMeasurement.QTC_FRIDERICIA):
        assert observations[key.value]["code"] == {"text": key.value}


def test_the_table_is_keyed_by_the_vocabulary_with_valid_loinc_codes():
    assert all(isinstance(key, EcgMeasurement) for key in MEASUREMENTS)
    assert set(MEASUREMENTS) <= set(CART_MEASUREMENTS)
    for key, (code, _, unit) in MEASUREMENTS.items():
        number, check = code.split("-")
        assert _loinc_check_digit(number) == int(check), f"{key}: {code} is not a LOINC code"
        assert unit == {"_ms": "ms", "_bpm": "/min", "_deg": "deg"}[key.value[key.value.rindex("_") :]], key


@pytest.mark.parametrize("code", ["8867-4", "8625-6", "8633-0", "8634-8", "8636-3", "8626-4", "8632-2", "8638-9"])
def test_the_check_digit_accepts_known_codes(code):
    number, check = code.split("-")
    assert _loinc_check_digit(number) == int(check)


@pytest.mark.parametrize("code", ["8633-3", "8634-1", "8636-6"])  # what the table said before
def test_the_check_digit_refuses_mistyped_codes(code):
    number, check = code.split("-")
    assert _loinc_check_digit(number) != int(check)
