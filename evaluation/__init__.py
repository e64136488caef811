"""Evaluation: metrics with bootstrap intervals, calibration, subgroups, the champion-vs-challenger
gate, reports and online monitoring (uses models/ and datasets/, never training/ or serving/)."""

# Here rather than in evaluation/bootstrap.py: `preread evaluate`'s parser shows it without loading NumPy.
DEFAULT_N_BOOT = 1000  # bootstrap resamples when none are asked for
