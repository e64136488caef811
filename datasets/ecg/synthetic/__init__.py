"""Synthetic 12-lead ECGs with controlled labels, for tests and the demo model.

How a record is made:
  1. Beat templates. ``neurokit2.ecg_simulate(method="multileads")`` (the ECGSYN dynamical model
     with per-lead wave amplitudes) is run a handful of times at 60 bpm with perturbed wave
     parameters (angles, amplitudes, widths). Each run's median beat per lead is cut into three
     components — P wave, QRS, ST-T — with smooth cross-fades. Running ECGSYN takes about a
     second per 10 s, so the templates are made once and cached to disk
     (``$PREREAD_CACHE`` or ``~/.cache/preread``, or the ``cache_dir`` given).
  2. Rhythm. R-peak times come from the label: sinus rhythms at a drawn rate with mild
     respiratory sinus arrhythmia; atrial fibrillation with irregularly irregular RR intervals
     (or atrial flutter with variable block); premature ventricular beats replace a sinus beat
     earlier than due, leaving a compensatory pause.
  3. Beats. Each beat places the template components on a time axis: the P wave at the PR
     interval before the QRS, the QRS (stretched for wide-QRS records), the ST-T segment anchored
     at the J point and time-scaled with the RR interval (QT shortens as the rate rises, Bazett).
     Label-specific waves are added in millivolts: ST elevation over a contiguous lead territory
     with reciprocal depression, bundle-branch-block terminal waves, fibrillatory or flutter waves,
     wide premature ventricular complexes with discordant T waves.
  4. Noise. Baseline wander (respiration and slower drift), mains hum (50/60 Hz), EMG-like broadband
     noise, per-lead electrode gain.

Label semantics (our codes, see ``datasets.vocabulary.ecg_labels``): exactly one rhythm label — NORM (sinus,
60–100 bpm), STACH, SBRAD or AF — plus any of STE, WQRS, PREM. Rates are drawn a few bpm away
from the 60/100 bpm boundaries so that a label is never ambiguous.

Caveat: ECGSYN's per-lead templates are scaled independently, so limb leads do not satisfy
Einthoven's law (III = II − I) exactly as real recordings do. Good enough to exercise the
whole pipeline and train a demo model; never evidence of clinical performance.

The package, one concern a module: ``templates`` (step 1), ``rhythm`` (2), ``record`` (3, and the
labels), ``canvas`` (where beats are drawn), ``waves`` (label-specific waves and noise, 3–4),
``dataset`` (labelled sets), ``cache`` (the on-disk caches and the version that keys them).
The label codes are the vocabulary's ``ECG_LABEL_CODES``; a test checks the generator covers each.
"""

from datasets.ecg.synthetic.cache import GENERATOR_VERSION, default_cache_dir
from datasets.ecg.synthetic.dataset import (
    MORPHOLOGY_PROBABILITIES,
    RHYTHM_PROBABILITIES,
    dataset_cache_path,
    labels_to_vector,
    make_synthetic_ecg_dataset,
    sample_label_set,
)
from datasets.ecg.synthetic.record import (
    HEART_RATE_RANGES,
    LABEL_CODES,
    MORPHOLOGY_LABELS,
    RHYTHM_LABELS,
    simulate_ecg,
)
from datasets.ecg.synthetic.templates import BeatTemplates, load_templates

__all__ = [
    "GENERATOR_VERSION",
    "HEART_RATE_RANGES",
    "LABEL_CODES",
    "MORPHOLOGY_LABELS",
    "MORPHOLOGY_PROBABILITIES",
    "RHYTHM_LABELS",
    "RHYTHM_PROBABILITIES",
    "BeatTemplates",
    "dataset_cache_path",
    "default_cache_dir",
    "labels_to_vector",
    "load_templates",
    "make_synthetic_ecg_dataset",
    "sample_label_set",
    "simulate_ecg",
]
