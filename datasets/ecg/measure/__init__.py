"""The ECG measurement suite (a vectorised delineator; see suite.py for the list of measurements)."""

from datasets.ecg.measure.suite import METHOD, EcgMeasurements, measure

__all__ = ["METHOD", "EcgMeasurements", "measure"]
