"""The project's one shared vocabulary: triage levels, study statuses, SOP classes, age bands, label
sets and their code mappings, quality verdict reasons.

A leaf: it imports nothing of ours (the import contract in CI checks it), so datasets/, models/,
training/, evaluation/ and serving/ can all use it. One definition per concept, with a docstring per
member, in the manner of highdicom's ``highdicom/sr/enum.py``:

- ``levels``      TriageLevel (critical, urgent, routine) and LEVEL_RANK
- ``statuses``    StudyStatus, ReportStatus
- ``sop``         EcgSopClass, ImageSopClass, ResultSopClass, STORAGE_SOP_CLASSES, ECG_SOP_CLASSES
- ``age``         AgeBand (de-identified exports and evaluation subgroups alike), one age parser
- ``ecg_labels``  the ECG label set with its SNOMED CT codes
- ``ecg_measurements``  EcgMeasurement (every global ECG measurement, with its unit) and its ordered subsets
- ``cxr_labels``  the chest X-ray label set with its ChestX-ray14 names and SR/FHIR codings
- ``quality``     QualityReason: why a study cannot be read
"""

from datasets.vocabulary.age import AgeBand, age_band, age_in_years, deidentified_age_band
from datasets.vocabulary.ecg_measurements import EcgMeasurement
from datasets.vocabulary.levels import LEVEL_RANK, TriageLevel
from datasets.vocabulary.quality import QualityReason
from datasets.vocabulary.sop import ECG_SOP_CLASSES, STORAGE_SOP_CLASSES, EcgSopClass, ImageSopClass, ResultSopClass
from datasets.vocabulary.statuses import ReportStatus, StudyStatus

__all__ = [
    "ECG_SOP_CLASSES",
    "LEVEL_RANK",
    "STORAGE_SOP_CLASSES",
    "AgeBand",
    "EcgMeasurement",
    "EcgSopClass",
    "ImageSopClass",
    "QualityReason",
    "ReportStatus",
    "ResultSopClass",
    "StudyStatus",
    "TriageLevel",
    "age_band",
    "age_in_years",
    "deidentified_age_band",
]
