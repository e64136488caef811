"""ECG label vocabularies of the standard sets, and their code mappings both ways.

* :class:`PtbxlSuperclass` — the five PTB-XL diagnostic superclasses (Wagner et al. 2020; Strodthoff
  et al. 2021 benchmark): ``NORM``, ``MI``, ``STTC``, ``CD``, ``HYP``. The read reports each as a
  finding with a probability under exactly these codes.
* :data:`PTBXL_DIAGNOSTIC_STATEMENTS` — the 44 diagnostic SCP-ECG statements of PTB-XL's
  ``scp_statements.csv`` with their superclass and subclass; :func:`superclasses_of` maps a record's
  ``scp_codes`` to superclasses (the benchmark's aggregation), :func:`statements_of` goes back.
* :data:`CINC2021_SCORED` — the PhysioNet/CinC Challenge 2021 scored classes (SNOMED CT codes with the
  challenge's abbreviations), with the four pairs the challenge scores as one class
  (:func:`cinc_equivalent`); :data:`SNOMED_TO_SUPERCLASS` says which SNOMED diagnoses imply a PTB-XL
  superclass, and :func:`snomed_superclasses` applies it.

The rhythm statements the read prints (sinus rhythm, AF, ...) are ``datasets.vocabulary.ecg_statements``.
A leaf module: it imports nothing of ours.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

__all__ = [
    "CINC2021_SCORED",
    "PTBXL_DIAGNOSTIC_STATEMENTS",
    "SNOMED_NORMAL_SINUS_RHYTHM",
    "SNOMED_TO_SUPERCLASS",
    "SUPERCLASS_CODES",
    "CincScoredClass",
    "PtbxlSuperclass",
    "ScpStatement",
    "cinc_equivalent",
    "snomed_superclasses",
    "statements_of",
    "superclasses_of",
]


class PtbxlSuperclass(StrEnum):
    """The five PTB-XL diagnostic superclasses. A record can have several (multi-label)."""

    NORM = "NORM"
    """Normal ECG: no diagnostic abnormality stated by the cardiologists (SCP statement NORM)."""
    MI = "MI"
    """Myocardial infarction: anterior, inferior, lateral, posterior infarction or subendocardial injury."""
    STTC = "STTC"
    """ST/T change: ischaemic, non-specific or drug/electrolyte ST-T changes, long QT."""
    CD = "CD"
    """Conduction disturbance: bundle branch and fascicular blocks, AV blocks, IVCD, WPW."""
    HYP = "HYP"
    """Hypertrophy: ventricular hypertrophy and atrial overload/enlargement."""

    @property
    def display_name(self) -> str:
        """What a doctor reads (PTB-XL paper, table 3)."""
        return _SUPERCLASS_NAMES[self]


_SUPERCLASS_NAMES = {
    PtbxlSuperclass.NORM: "Normal ECG",
    PtbxlSuperclass.MI: "Myocardial infarction",
    PtbxlSuperclass.STTC: "ST/T change",
    PtbxlSuperclass.CD: "Conduction disturbance",
    PtbxlSuperclass.HYP: "Hypertrophy",
}

SUPERCLASS_CODES: tuple[str, ...] = tuple(member.value for member in PtbxlSuperclass)


@dataclass(frozen=True)
class ScpStatement:
    """One diagnostic SCP-ECG statement of PTB-XL (``scp_statements.csv``, diagnostic == 1)."""

    code: str
    description: str
    superclass: PtbxlSuperclass
    subclass: str


# The 44 diagnostic statements, as in PTB-XL 1.0.x scp_statements.csv (diagnostic_class / _subclass).
PTBXL_DIAGNOSTIC_STATEMENTS: tuple[ScpStatement, ...] = (
    ScpStatement("NORM", "normal ECG", PtbxlSuperclass.NORM, "NORM"),
    ScpStatement("ALMI", "anterolateral myocardial infarction", PtbxlSuperclass.MI, "AMI"),
    ScpStatement("AMI", "anterior myocardial infarction", PtbxlSuperclass.MI, "AMI"),
    ScpStatement("ASMI", "anteroseptal myocardial infarction", PtbxlSuperclass.MI, "AMI"),
    ScpStatement("ILMI", "inferolateral myocardial infarction", PtbxlSuperclass.MI, "IMI"),
    ScpStatement("IMI", "inferior myocardial infarction", PtbxlSuperclass.MI, "IMI"),
    ScpStatement("INJAL", "subendocardial injury in anterolateral leads", PtbxlSuperclass.MI, "AMI"),
    ScpStatement("INJAS", "subendocardial injury in anteroseptal leads", PtbxlSuperclass.MI, "AMI"),
    ScpStatement("INJIL", "subendocardial injury in inferolateral leads", PtbxlSuperclass.MI, "IMI"),
    ScpStatement("INJIN", "subendocardial injury in inferior leads", PtbxlSuperclass.MI, "IMI"),
    ScpStatement("INJLA", "subendocardial injury in lateral leads", PtbxlSuperclass.MI, "AMI"),
    ScpStatement("IPLMI", "inferoposterolateral myocardial infarction", PtbxlSuperclass.MI, "IMI"),
    ScpStatement("IPMI", "inferoposterior myocardial infarction", PtbxlSuperclass.MI, "IMI"),
    ScpStatement("LMI", "lateral myocardial infarction", PtbxlSuperclass.MI, "LMI"),
    ScpStatement("PMI", "posterior myocardial infarction", PtbxlSuperclass.MI, "PMI"),
    ScpStatement("ANEUR", "ST-T changes compatible with ventricular aneurysm", PtbxlSuperclass.STTC, "STTC"),
    ScpStatement("DIG", "digitalis-effect", PtbxlSuperclass.STTC, "STTC"),
    ScpStatement("EL", "electrolytic disturbance or drug (former EDIS)", PtbxlSuperclass.STTC, "STTC"),
    ScpStatement("ISCAL", "ischemic in anterolateral leads", PtbxlSuperclass.STTC, "ISCA"),
    ScpStatement("ISCAN", "ischemic in anterior leads", PtbxlSuperclass.STTC, "ISCA"),
    ScpStatement("ISCAS", "ischemic in anteroseptal leads", PtbxlSuperclass.STTC, "ISCA"),
    ScpStatement("ISCIL", "ischemic in inferolateral leads", PtbxlSuperclass.STTC, "ISCI"),
    ScpStatement("ISCIN", "ischemic in inferior leads", PtbxlSuperclass.STTC, "ISCI"),
    ScpStatement("ISCLA", "ischemic in lateral leads", PtbxlSuperclass.STTC, "ISCA"),
    ScpStatement("ISC_", "non-specific ischemic", PtbxlSuperclass.STTC, "ISC_"),
    ScpStatement("LNGQT", "long QT-interval", PtbxlSuperclass.STTC, "STTC"),
    ScpStatement("NDT", "non-diagnostic T abnormalities", PtbxlSuperclass.STTC, "STTC"),
    ScpStatement("NST_", "non-specific ST changes", PtbxlSuperclass.STTC, "NST_"),
    ScpStatement("1AVB", "first degree AV block", PtbxlSuperclass.CD, "_AVB"),
    ScpStatement("2AVB", "second degree AV block", PtbxlSuperclass.CD, "_AVB"),
    ScpStatement("3AVB", "third degree AV block", PtbxlSuperclass.CD, "_AVB"),
    ScpStatement("CLBBB", "complete left bundle branch block", PtbxlSuperclass.CD, "CLBBB"),
    ScpStatement("CRBBB", "complete right bundle branch block", PtbxlSuperclass.CD, "CRBBB"),
    ScpStatement("ILBBB", "incomplete left bundle branch block", PtbxlSuperclass.CD, "ILBBB"),
    ScpStatement("IRBBB", "incomplete right bundle branch block", PtbxlSuperclass.CD, "IRBBB"),
    ScpStatement("IVCD", "non-specific intraventricular conduction disturbance (block)", PtbxlSuperclass.CD, "IVCD"),
    ScpStatement("LAFB", "left anterior fascicular block", PtbxlSuperclass.CD, "LAFB/LPFB"),
    ScpStatement("LPFB", "left posterior fascicular block", PtbxlSuperclass.CD, "LAFB/LPFB"),
    ScpStatement("WPW", "Wolf-Parkinson-White syndrome", PtbxlSuperclass.CD, "WPW"),
    ScpStatement("LAO/LAE", "left atrial overload/enlargement", PtbxlSuperclass.HYP, "LAO/LAE"),
    ScpStatement("LVH", "left ventricular hypertrophy", PtbxlSuperclass.HYP, "LVH"),
    ScpStatement("RAO/RAE", "right atrial overload/enlargement", PtbxlSuperclass.HYP, "RAO/RAE"),
    ScpStatement("RVH", "right ventricular hypertrophy", PtbxlSuperclass.HYP, "RVH"),
    ScpStatement("SEHYP", "septal hypertrophy", PtbxlSuperclass.HYP, "SEHYP"),
)

_STATEMENT_BY_CODE = {statement.code: statement for statement in PTBXL_DIAGNOSTIC_STATEMENTS}


def superclasses_of(
    scp_codes: Mapping[str, float] | Iterable[str], min_likelihood: float = 0.0
) -> set[PtbxlSuperclass]:
    """The superclasses of a PTB-XL record's ``scp_codes`` ({statement: likelihood 0-100}).

    As the PTB-XL benchmark aggregates: a diagnostic statement counts whatever its likelihood unless
    ``min_likelihood`` > 0; non-diagnostic (form, rhythm) statements give no superclass."""
    items = scp_codes.items() if isinstance(scp_codes, Mapping) else ((code, 100.0) for code in scp_codes)
    return {
        _STATEMENT_BY_CODE[code].superclass
        for code, likelihood in items
        if code in _STATEMENT_BY_CODE and (min_likelihood <= 0 or float(likelihood or 0) >= min_likelihood)
    }


def statements_of(superclass: PtbxlSuperclass | str) -> tuple[str, ...]:
    """The diagnostic SCP statement codes that make up a superclass (the mapping the other way)."""
    target = PtbxlSuperclass(superclass)
    return tuple(statement.code for statement in PTBXL_DIAGNOSTIC_STATEMENTS if statement.superclass is target)


@dataclass(frozen=True)
class CincScoredClass:
    """A scored diagnosis of the PhysioNet/CinC Challenge 2021 (dx_mapping_scored.csv)."""

    snomed: str
    abbreviation: str
    description: str


CINC2021_SCORED: tuple[CincScoredClass, ...] = (
    CincScoredClass("164889003", "AF", "atrial fibrillation"),
    CincScoredClass("164890007", "AFL", "atrial flutter"),
    CincScoredClass("6374002", "BBB", "bundle branch block"),
    CincScoredClass("426627000", "Brady", "bradycardia"),
    CincScoredClass("733534002", "CLBBB", "complete left bundle branch block"),
    CincScoredClass("713427006", "CRBBB", "complete right bundle branch block"),
    CincScoredClass("270492004", "IAVB", "1st degree av block"),
    CincScoredClass("713426002", "IRBBB", "incomplete right bundle branch block"),
    CincScoredClass("39732003", "LAD", "left axis deviation"),
    CincScoredClass("445118002", "LAnFB", "left anterior fascicular block"),
    CincScoredClass("164909002", "LBBB", "left bundle branch block"),
    CincScoredClass("251146004", "LQRSV", "low qrs voltages"),
    CincScoredClass("698252002", "NSIVCB", "nonspecific intraventricular conduction disorder"),
    CincScoredClass("10370003", "PR", "pacing rhythm"),
    CincScoredClass("365413008", "PRWP", "poor R wave progression"),
    CincScoredClass("427172004", "PVC", "premature ventricular contractions"),
    CincScoredClass("164947007", "LPR", "prolonged pr interval"),
    CincScoredClass("111975006", "LQT", "prolonged qt interval"),
    CincScoredClass("164917005", "QAb", "qwave abnormal"),
    CincScoredClass("47665007", "RAD", "right axis deviation"),
    CincScoredClass("59118001", "RBBB", "right bundle branch block"),
    CincScoredClass("427393009", "SA", "sinus arrhythmia"),
    CincScoredClass("426177001", "SB", "sinus bradycardia"),
    CincScoredClass("426783006", "NSR", "sinus rhythm"),
    CincScoredClass("427084000", "STach", "sinus tachycardia"),
    CincScoredClass("63593006", "SVPB", "supraventricular premature beats"),
    CincScoredClass("164934002", "TAb", "t wave abnormal"),
    CincScoredClass("59931005", "TInv", "t wave inversion"),
    CincScoredClass("17338001", "VPB", "ventricular premature beats"),
    CincScoredClass("284470004", "PAC", "premature atrial contraction"),
)

# The challenge scores each pair as one class.
_CINC_EQUIVALENT = {"733534002": "164909002", "713427006": "59118001", "284470004": "63593006", "427172004": "17338001"}
_CINC_EQUIVALENT.update({b: a for a, b in list(_CINC_EQUIVALENT.items())})

SNOMED_NORMAL_SINUS_RHYTHM = "426783006"

# SNOMED CT diagnoses (CinC headers) that imply a PTB-XL superclass: the SCP statements they name
# (CinC converted PTB-XL's statements to these codes). Sinus rhythm implies none: a sinus rhythm
# with an infarct is not a normal ECG. Rhythm-only and form codes (AF, axis deviation, low voltage,
# premature beats, T inversion, Q wave) have no superclass in PTB-XL either.
SNOMED_TO_SUPERCLASS: dict[str, PtbxlSuperclass] = {
    # CD: AV blocks, bundle branch and fascicular blocks, IVCD, WPW
    "270492004": PtbxlSuperclass.CD,
    "195042002": PtbxlSuperclass.CD,
    "54016002": PtbxlSuperclass.CD,
    "28189009": PtbxlSuperclass.CD,
    "27885002": PtbxlSuperclass.CD,
    "6374002": PtbxlSuperclass.CD,
    "733534002": PtbxlSuperclass.CD,
    "164909002": PtbxlSuperclass.CD,
    "713427006": PtbxlSuperclass.CD,
    "59118001": PtbxlSuperclass.CD,
    "713426002": PtbxlSuperclass.CD,
    "251120003": PtbxlSuperclass.CD,
    "445118002": PtbxlSuperclass.CD,
    "445211001": PtbxlSuperclass.CD,
    "698252002": PtbxlSuperclass.CD,
    "74390002": PtbxlSuperclass.CD,
    # HYP: LVH, RVH, atrial enlargement, septal hypertrophy
    "164873001": PtbxlSuperclass.HYP,
    "89792004": PtbxlSuperclass.HYP,
    "67741000119109": PtbxlSuperclass.HYP,
    "446358003": PtbxlSuperclass.HYP,
    "446813000": PtbxlSuperclass.HYP,
    "55827005": PtbxlSuperclass.HYP,
    # MI: myocardial infarction (unspecified, acute, anterior)
    "164865005": PtbxlSuperclass.MI,
    "57054005": PtbxlSuperclass.MI,
    "54329005": PtbxlSuperclass.MI,
    # STTC: ischaemia (any, acute, anterior, inferior), non-specific ST-T change, T-wave abnormality, long QT.
    # ST elevation / depression alone are form statements in PTB-XL (STE_, STD_): no superclass.
    "164861001": PtbxlSuperclass.STTC,
    "413444003": PtbxlSuperclass.STTC,
    "426434006": PtbxlSuperclass.STTC,
    "425419005": PtbxlSuperclass.STTC,
    "428750005": PtbxlSuperclass.STTC,
    "55930002": PtbxlSuperclass.STTC,
    "164934002": PtbxlSuperclass.STTC,
    "111975006": PtbxlSuperclass.STTC,
}


def cinc_equivalent(snomed: str) -> str | None:
    """The code the challenge scores together with ``snomed`` (e.g. CRBBB ↔ RBBB), or None."""
    return _CINC_EQUIVALENT.get(str(snomed).strip())


def snomed_superclasses(codes: Iterable[str]) -> tuple[set[PtbxlSuperclass], bool]:
    """(superclasses implied by SNOMED diagnoses, whether the record's NORM label is known).

    NORM is said only of a record whose one diagnosis is sinus rhythm (nothing else annotated):
    ({NORM}, True). A record with a diagnosis implying MI, STTC, CD or HYP is known not normal:
    (that set, True). Anything else — e.g. sinus rhythm with left axis deviation, which PTB-XL may
    still call normal — leaves NORM unknown: (set(), False)."""
    cleaned = {str(code).strip() for code in codes if str(code).strip()}
    found = {SNOMED_TO_SUPERCLASS[code] for code in cleaned if code in SNOMED_TO_SUPERCLASS}
    if cleaned == {SNOMED_NORMAL_SINUS_RHYTHM}:
        return {PtbxlSuperclass.NORM}, True
    return found, bool(found)
